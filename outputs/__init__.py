"""Phase two: each output format is a pure converter from the canonical rootfs tar to files.

A converter is ``convert(rootfs_tar, name, outset, options)``: it reads the tar at ``rootfs_tar``
(never YAML, registries or the cache) and writes its files through ``outset.create(filename)``,
so they appear only when the whole build commits. Every format is one row of
:data:`outputs.formats.FORMATS`; the families that implement them:

    initrd/   kernel+initrd, tar-kernel-initrd: newc cpio in a deterministic gzip stream
    iso/      iso-bios, iso-efi, iso-efi-initrd, iso-hybrid: ISO 9660 + El Torito (pycdlib)
    image/    docker, oci, oci-dir, docker-context: OCI images and linuxkit's build context
    disk/     partitioned disk images and the VM/cloud containers around them
    rpi3/     rpi3: the Raspberry Pi 3 SD card tar (firmware, u-boot, uImages)
    tar.py    tar: the canonical rootfs tar itself

Shared by the families: :mod:`outputs.options` (the options table), :mod:`outputs.bootloaders`
(pinned bootloader files), :mod:`outputs.fat` (THE FAT writer).
"""

from __future__ import annotations

from composer.streams.gz import compressor_id
from outputs.formats import (
    FORMATS,
    Converter,
    Format,
    check_arch,
    check_clashes,
    get_format,
    output_files,
)
from outputs.options import Options

__all__ = ["FORMATS", "Converter", "Format", "Options", "check_arch", "check_clashes",
           "compressor_id", "get_format", "output_files"]
