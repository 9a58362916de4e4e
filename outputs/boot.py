"""What every bootable format shares (the ISO and disk families): the boot files split off the
rootfs tar (kernel, initrd, command line) into a scratch directory, identifiers derived from a
content seed, and the quoting bootloader configs need.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from outputs.initrd.formats import CMDLINE, KERNEL, UCODE, split_boot, write_initrd


def derive(seed_bytes: bytes, purpose: str, size: int) -> bytes:
    return hashlib.sha256(seed_bytes + b"\0" + purpose.encode()).digest()[:size]


def derive_u32(seed_bytes: bytes, purpose: str) -> int:
    """A non-zero 32-bit number for ``purpose`` (0 means "none" to some tools)."""
    return int.from_bytes(derive(seed_bytes, purpose, 4), "little") or 1


def command_line(raw: bytes) -> str:
    """``boot/cmdline`` as one line: words joined by single spaces (bootloader configs are
    line-based)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ComposerError(f"{CMDLINE} is not UTF-8 text") from None
    return " ".join(text.split())


def grub_quote(word: str) -> str:
    """One GRUB script word, single-quoted so ``$``, ``;``, ``#`` and quotes stay literal."""
    return "'" + word.replace("'", "'\\''") + "'"


def boot_files(rootfs: Path, tmp: Path, name: str, fmt: str, gzip_level: int,
               compression: str = "gzip") -> str:
    """``kernel``, ``initrd.img`` (microcode first, as ``kernel+initrd`` writes it) and
    ``cmdline`` (empty if the rootfs has none) in ``tmp``; returns the command line."""
    with contextlib.ExitStack() as stack:
        files: dict[str, BinaryIO] = {
            KERNEL: stack.enter_context(open(tmp / "kernel", "wb")),
            CMDLINE: stack.enter_context(open(tmp / "cmdline", "wb")),
            UCODE: stack.enter_context(open(tmp / "initrd.img", "wb")),
        }
        links = split_boot(rootfs, files.__getitem__, name, fmt)
        write_initrd(rootfs, links, files[UCODE], gzip_level, tmp, compression)
    return command_line((tmp / "cmdline").read_bytes())
