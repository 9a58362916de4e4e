"""Running what we built: ``run qemu`` (``qemu``), through :func:`composer.tools.run`."""
