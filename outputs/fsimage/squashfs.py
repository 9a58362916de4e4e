"""Format ``kernel+squashfs``: ``NAME-kernel``, ``NAME-cmdline`` and ``NAME-squashfs.img``.

The image is made by ``tar2sqfs`` (squashfs-tools-ng), fed the rootfs minus ``boot/`` as a
canonical tar through a pipe: nothing is unpacked on the host and no second copy of the rootfs
is written. linuxkit runs ``mksquashfs`` on an unpacked tree with its defaults; we keep its
filesystem parameters (gzip, 128 KiB blocks, padding to 4 KiB, fragments and tail packing,
xattrs) and pin everything the tool would otherwise take from the host:

- the version: squashfs-tools-ng ``PINNED_VERSION`` only (another version may lay out the
  same tree differently), recorded in the build record as ``tools``;
- the superblock's mkfs time and the root directory (which the tar has no entry for):
  ``--defaults uid=0,gid=0,mode=0755,mtime=Options.mtime`` (tar2sqfs takes the mkfs time from
  it too); ``SOURCE_DATE_EPOCH`` in the caller's environment is overridden;
- the thread count: ``-j`` is fixed at ``JOBS`` (tar2sqfs orders blocks itself, so the bytes
  do not depend on it; tested);
- the compressor settings: gzip level 9, window 15, given explicitly.

squashfs stores 32-bit times: an entry dated after 2106 is an error, not silently clamped.
The gzip bytes come from the system's zlib, as with every distribution's squashfs image.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import BinaryIO

from composer import tools
from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.tar.canon import CanonicalTarWriter
from outputs.fsimage.rootfs import ROOT_MODE, kernel_files, tree_entries
from outputs.initrd.formats import CMDLINE, KERNEL
from outputs.options import Options

TOOL = "tar2sqfs"
PACKAGE = "squashfs-tools-ng"
PINNED_VERSION = "1.2.0"
JOBS = 2
BLOCK_SIZE = 131072
DEVICE_BLOCK = 4096
MAX_TIME = 0xFFFFFFFF
FILES = ("{name}-kernel", "{name}-cmdline", "{name}-squashfs.img")


def tool_version() -> str:
    """``squashfs-tools-ng 1.2.0``; an error unless it is the pinned version."""
    out = tools.run([tools.find_tool(TOOL, f"apt-get install {PACKAGE}"), "--version"],
                    capture=True).stdout.decode(errors="replace")
    match = re.search(r"\(squashfs-tools-ng\) (\S+)", out)
    version = match.group(1) if match else "unknown"
    if version != PINNED_VERSION:
        raise ComposerError(f"{TOOL} is {PACKAGE} {version}; format kernel+squashfs is pinned to "
                            f"{PACKAGE} {PINNED_VERSION} (Debian 12's), whose bytes were checked")
    return f"{PACKAGE} {version}"


def tar2sqfs_args(dest: Path, mtime: int, jobs: int = JOBS) -> list[str]:
    return [TOOL, "--quiet", "--no-skip", "--compressor", "gzip", "--comp-extra",
            "level=9,window=15", "--block-size", str(BLOCK_SIZE), "--dev-block-size",
            str(DEVICE_BLOCK), "--num-jobs", str(jobs),
            "--defaults", f"uid=0,gid=0,mode=0{ROOT_MODE:o},mtime={mtime}", "--force", str(dest)]


def feed_tree(rootfs: Path, pipe: BinaryIO, name: str, fmt: str,
              sinks: dict[str, BinaryIO] | None) -> None:
    """Write the rootfs minus ``boot/`` to ``pipe`` as a canonical tar."""
    tar = CanonicalTarWriter(pipe)
    for entry, data in tree_entries(rootfs, name, fmt, sinks):
        if entry.mtime > MAX_TIME:
            raise ComposerError(f"{entry.path}: mtime {entry.mtime} is past 2106, which "
                                "squashfs cannot store (set SOURCE_DATE_EPOCH to clamp it)")
        tar.add(entry, data)
    tar.close()


def write_squashfs(rootfs: Path, dest: Path, mtime: int, *, name: str = "rootfs",
                   sinks: dict[str, BinaryIO] | None = None, jobs: int = JOBS) -> None:
    """``dest``: the squashfs image of the rootfs minus ``boot/``."""
    tool_version()
    tools.run(tar2sqfs_args(dest, mtime, jobs), capture=True,
              env={"SOURCE_DATE_EPOCH": str(mtime)},
              feed=lambda pipe: feed_tree(rootfs, pipe, name, "kernel+squashfs", sinks))


def write_kernel_squashfs(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    kernel, cmdline = kernel_files(name)
    with outset.scratch(f"{name}-squashfs") as tmp, contextlib.ExitStack() as stack:
        sinks = {KERNEL: stack.enter_context(outset.create(kernel)),
                 CMDLINE: stack.enter_context(outset.create(cmdline))}
        image = tmp / "squashfs.img"
        write_squashfs(rootfs, image, options.mtime, name=name, sinks=sinks)
        outset.place(f"{name}-squashfs.img", image)
