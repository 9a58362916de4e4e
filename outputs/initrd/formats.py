"""Formats ``kernel+initrd`` and ``tar-kernel-initrd``: split ``boot/`` off, the rest is the initrd.

From the rootfs tar, ``boot/kernel``, ``boot/cmdline`` and ``boot/ucode.cpio`` are taken out as
they are; the rest of ``boot/`` (and ``boot`` itself) is left out, as linuxkit does; every other
entry becomes a newc record (:mod:`outputs.initrd.cpio`) in a gzip stream
(:mod:`composer.streams.gz`).

``kernel+initrd`` writes ``NAME-kernel``, ``NAME-initrd.img`` and ``NAME-cmdline``. If there is
microcode, ``NAME-initrd.img`` starts with ``boot/ucode.cpio`` raw (the kernel wants early
microcode as an uncompressed cpio at the very front) followed by the gzip'd initrd.
``NAME-cmdline`` is written even when empty or absent (linuxkit skips an empty one): a format
always makes the same set of files (its row in :data:`outputs.formats.FORMATS`), which is
simpler to verify and to use.

``tar-kernel-initrd`` writes ``NAME-initrd.tar`` holding ``cmdline``, ``initrd.img`` (without
microcode), ``kernel`` and, if present, ``ucode.cpio``: the canonical tar writer's format, mode
0644, uid/gid 0, mtime ``Options.mtime``.

Streaming: the tar is read twice (once for the boot files and hard-link counts, once for the
initrd) and nothing is held in memory; the wrapper tar needs sizes before contents, so its members
are built in a hidden temporary directory next to the outputs and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.streams import compress
from composer.tar.canon import COPY_CHUNK, CanonicalTarWriter, Entry, Kind
from composer.tar.read import read_entries
from outputs.initrd.cpio import HardLinks, TarToNewc
from outputs.options import Options

KERNEL = "boot/kernel"
CMDLINE = "boot/cmdline"
UCODE = "boot/ucode.cpio"
BOOT_FILES = (CMDLINE, KERNEL, UCODE)
_MEMBERS = {CMDLINE: "cmdline", KERNEL: "kernel", UCODE: "ucode.cpio"}


def in_initrd(path: str) -> bool:
    """Whether a rootfs path goes into the initrd: everything but ``boot`` and below."""
    return path != "boot" and not path.startswith("boot/")


def split_boot(rootfs: Path, sink: Callable[[str], BinaryIO], name: str, fmt: str,
               also: Callable[[str], bool] | None = None) -> HardLinks:
    """Pass one: copy each boot file present (and each file under ``boot/`` that ``also``
    picks: rpi3's device trees) to ``sink(path)``; count the initrd's hard links."""
    links = HardLinks()
    found = set()
    with open(rootfs, "rb") as f:
        for entry, data in read_entries(f):
            if entry.path in BOOT_FILES or (also is not None and entry.kind is Kind.FILE
                                            and not in_initrd(entry.path) and also(entry.path)):
                if entry.kind is not Kind.FILE:
                    raise ComposerError(f"{name}: {entry.path} in the root filesystem is a "
                                        f"{entry.kind.name.lower()}, not a regular file")
                assert data is not None  # read_entries gives every regular file a reader
                shutil.copyfileobj(data, sink(entry.path), COPY_CHUNK)
                found.add(entry.path)
            elif in_initrd(entry.path):
                links.note(entry)
    if KERNEL not in found:
        raise ComposerError(f"{name}: the root filesystem has no {KERNEL}: the spec needs a "
                            f"kernel section for format {fmt}")
    return links


def write_initrd(rootfs: Path, links: HardLinks, out: BinaryIO, level: int,
                 spool_dir: Path, compression: str = "gzip") -> None:
    """Pass two: the newc cpio of every entry outside ``boot/``, compressed (gzip at ``level``
    unless told otherwise: :mod:`composer.streams.compress`), appended to ``out``."""
    with compress.writer(compression, out, level) as gz, \
            TarToNewc(gz, links, in_initrd, spool_dir) as conv, open(rootfs, "rb") as f:
        for entry, data in read_entries(f):
            conv.add(entry, data)


def write_kernel_initrd(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    with contextlib.ExitStack() as stack:
        files = {
            UCODE: stack.enter_context(outset.create(f"{name}-initrd.img")),  # ucode goes first
            KERNEL: stack.enter_context(outset.create(f"{name}-kernel")),
            CMDLINE: stack.enter_context(outset.create(f"{name}-cmdline")),
        }
        links = split_boot(rootfs, files.__getitem__, name, "kernel+initrd")
        write_initrd(rootfs, links, files[UCODE], options.gzip_level, outset.directory,
                     options.initrd_compression)


def write_tar_kernel_initrd(rootfs: Path, name: str, outset: OutputSet,
                            options: Options) -> None:
    outset.directory.mkdir(parents=True, exist_ok=True)
    with outset.scratch(f"{name}-initrd.tar") as t:
        tmp = Path(t)
        with contextlib.ExitStack() as stack:
            def sink(path: str) -> BinaryIO:
                return stack.enter_context(open(tmp / _MEMBERS[path], "wb"))

            links = split_boot(rootfs, sink, name, "tar-kernel-initrd")
            stack.enter_context(open(tmp / "cmdline", "ab"))  # an empty one if there was none
            initrd = stack.enter_context(open(tmp / "initrd.img", "wb"))
            write_initrd(rootfs, links, initrd, options.gzip_level, tmp,
                         options.initrd_compression)
        with outset.create(f"{name}-initrd.tar") as out:
            tar = CanonicalTarWriter(out)
            for member in ("cmdline", "initrd.img", "kernel", "ucode.cpio"):  # sorted
                if not (tmp / member).exists():
                    continue
                with open(tmp / member, "rb") as src:
                    size = os.fstat(src.fileno()).st_size
                    tar.add(Entry(member, Kind.FILE, mode=0o644, uid=0, gid=0,
                                  mtime=options.mtime, size=size), src)
            tar.close()
