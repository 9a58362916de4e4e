"""``pkg build``: package directories -> one-layer OCI images in the cache.

- ``package``: a package directory: its ``build.yml``, pinned debs, overrides and tag (what
  ``@pkg:DIR`` in a spec names; the spec loader asks it, so it sits below the spec);
- ``deb``: reading ``.deb`` files (ar + tar) without dpkg and without extracting them;
- ``build``: staging the debs and ``rootfs`` entries and writing the image.
"""
