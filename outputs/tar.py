"""Format ``tar``: the canonical rootfs tar itself, copied byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

from composer.atomic import OutputSet
from composer.tarcanon import COPY_CHUNK
from outputs.options import Options

FILES = ("{name}.tar",)


def write_tar(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    with open(rootfs, "rb") as src, outset.create(f"{name}.tar") as out:
        shutil.copyfileobj(src, out, COPY_CHUNK)
