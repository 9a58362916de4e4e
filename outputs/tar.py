"""Format ``tar``: the canonical rootfs tar itself, byte for byte.

It is placed, not rewritten: a reflink or hard link of the phase-one result where the filesystem
allows, else an in-kernel copy (see :meth:`composer.atomic.OutputSet.place`).
"""

from __future__ import annotations

from pathlib import Path

from composer.atomic import OutputSet
from outputs.options import Options


def write_tar(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    outset.place(f"{name}.tar", rootfs)
