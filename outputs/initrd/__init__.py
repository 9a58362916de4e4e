"""The initrd family: ``kernel+initrd`` and ``tar-kernel-initrd`` (``formats``), written as
newc cpio records (``cpio``) in THE deterministic gzip stream. Other families (ISO, disk) reuse
``formats.write_initrd`` so every format boots the same initrd bytes."""
