"""The rootfs minus ``boot/``, entry by entry, for the formats that carry it as a filesystem.

``kernel+squashfs``, ``kernel+erofs`` and ``kernel+iso`` split the canonical rootfs tar as
linuxkit does: ``boot/kernel`` becomes ``NAME-kernel`` and ``boot/cmdline`` ``NAME-cmdline``
(byte for byte, the same files ``kernel+initrd`` writes; an absent cmdline gives an empty file),
the rest of ``boot/`` is dropped (there is no initrd, so no microcode either), and everything
else becomes the filesystem image. The root directory, which the tar has no entry for, is
``0755``, owned by 0:0 and dated ``Options.mtime``.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, cast

from composer.errors import ComposerError
from composer.tar.canon import COPY_CHUNK, Entry, Kind
from composer.tar.read import read_entries
from outputs.initrd.formats import CMDLINE, KERNEL, in_initrd

ROOT_MODE = 0o755
BOOT_SINKS = (KERNEL, CMDLINE)


def tree_entries(rootfs: Path, name: str, fmt: str, sinks: dict[str, BinaryIO] | None = None
                 ) -> Iterator[tuple[Entry, IO[bytes] | io.RawIOBase | None]]:
    """Every entry outside ``boot/`` with its content reader (valid until the next entry);
    ``boot/kernel`` and ``boot/cmdline`` are copied to ``sinks`` on the way if given. Raises
    at the end if the rootfs has no kernel (only when ``sinks`` is given)."""
    found = set()
    with open(rootfs, "rb") as f:
        for entry, data in read_entries(f):
            if in_initrd(entry.path):
                if entry.kind is Kind.HARDLINK and not in_initrd(entry.linkname):
                    raise ComposerError(f"{entry.path}: hard link into boot/ "
                                        f"({entry.linkname}), which format {fmt} leaves out")
                yield entry, data
            elif sinks is not None and entry.path in BOOT_SINKS:
                if entry.kind is not Kind.FILE:
                    raise ComposerError(f"{name}: {entry.path} in the root filesystem is a "
                                        f"{entry.kind.name.lower()}, not a regular file")
                assert data is not None  # a regular file has a reader
                shutil.copyfileobj(cast(BinaryIO, data), sinks[entry.path], COPY_CHUNK)
                found.add(entry.path)
    if sinks is not None and KERNEL not in found:
        raise ComposerError(f"{name}: the root filesystem has no {KERNEL}: the spec needs a "
                            f"kernel section for format {fmt}")


def kernel_files(name: str) -> tuple[str, str]:
    return f"{name}-kernel", f"{name}-cmdline"
