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
from composer.errors import UsageError
from outputs.fsimage import CONVERTERS as FS_CONVERTERS
from outputs.fsimage import FS_FILES
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
    **FS_CONVERTERS,
}

FORMAT_FILES: dict[str, tuple[str, ...]] = {
    "tar": TAR_FILES,
    "kernel+initrd": KERNEL_INITRD_FILES,
    "tar-kernel-initrd": TAR_KERNEL_INITRD_FILES,
    **ISO_FILES,
    **IMAGE_FILES,
    **FS_FILES,
}
# Files that every format writing them writes with the same bytes (boot/kernel and boot/cmdline
# verbatim), so formats may share them; any other file two formats write is a clash.
SHARED_FILES = frozenset({"{name}-kernel", "{name}-cmdline"})


def output_files(fmt: str, name: str) -> tuple[str, ...]:
    """The file names format ``fmt`` writes for base name ``name``."""
    return tuple(pattern.format(name=name) for pattern in FORMAT_FILES[fmt])


def check_clashes(formats: tuple[str, ...] | list[str]) -> None:
    """A usage error if two of ``formats`` would write the same file with different bytes
    (``vhd``/``dynamic-vhd``, ``kernel+iso``/``iso-bios``), instead of one overwriting the
    other."""
    owner: dict[str, str] = {}
    for fmt in formats:
        for pattern in FORMAT_FILES[fmt]:
            if pattern in SHARED_FILES:
                continue
            if pattern in owner and owner[pattern] != fmt:
                raise UsageError(f"formats {owner[pattern]} and {fmt} both write "
                                 f"{pattern.format(name='NAME')}: build them separately "
                                 "(or into different -o directories)")
            owner[pattern] = fmt


__all__ = ["FORMATS", "FORMAT_FILES", "SHARED_FILES", "Converter", "Options", "check_clashes",
           "compressor_id", "output_files"]
