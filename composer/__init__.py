"""image-composer: reproducible system images from linuxkit-style YAML."""

__version__ = "0.1.0"
