"""The Raspberry Pi family: ``rpi3`` (``formats``), linuxkit's SD card tar of the Pi's firmware,
u-boot and uImages, whose legacy headers ``uimage`` writes (no u-boot-tools at build time)."""
