"""Phase two: each output format is a pure converter from the canonical rootfs tar to files.

A converter is ``convert(rootfs_tar, name, outset, options)``: it reads the tar at ``rootfs_tar``
(never YAML, registries or the cache) and writes its files through ``outset.create(filename)``,
so they appear only when the whole build commits. ``FORMAT_FILES[fmt]`` lists the files a format
always writes, as ``str.format`` patterns over ``name``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from composer.atomic import OutputSet
from outputs.disk import CONVERTERS as DISK_CONVERTERS
from outputs.disk import DISK_FILES
from outputs.gz import compressor_id
from outputs.image import CONVERTERS as IMAGE_CONVERTERS
from outputs.image import IMAGE_FILES
from outputs.initrd import (
    KERNEL_INITRD_FILES,
    TAR_KERNEL_INITRD_FILES,
    write_kernel_initrd,
    write_tar_kernel_initrd,
)
from outputs.iso import CONVERTERS as ISO_CONVERTERS
from outputs.iso import ISO_FILES
from outputs.options import Options
from outputs.tar import FILES as TAR_FILES
from outputs.tar import write_tar

Converter = Callable[[Path, str, OutputSet, Options], None]

FORMATS: dict[str, Converter] = {
    "tar": write_tar,
    "kernel+initrd": write_kernel_initrd,
    "tar-kernel-initrd": write_tar_kernel_initrd,
    **ISO_CONVERTERS,
    **IMAGE_CONVERTERS,
    **DISK_CONVERTERS,
}

FORMAT_FILES: dict[str, tuple[str, ...]] = {
    "tar": TAR_FILES,
    "kernel+initrd": KERNEL_INITRD_FILES,
    "tar-kernel-initrd": TAR_KERNEL_INITRD_FILES,
    **ISO_FILES,
    **IMAGE_FILES,
    **DISK_FILES,
}


def output_files(fmt: str, name: str) -> tuple[str, ...]:
    """The file names format ``fmt`` writes for base name ``name``."""
    return tuple(pattern.format(name=name) for pattern in FORMAT_FILES[fmt])


__all__ = ["FORMATS", "FORMAT_FILES", "Converter", "Options", "compressor_id", "output_files"]
