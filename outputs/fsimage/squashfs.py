"""Format ``kernel+squashfs``: ``NAME-kernel``, ``NAME-cmdline`` and ``NAME-squashfs.img``.

The image is made by ``tar2sqfs`` (squashfs-tools-ng), fed the rootfs minus ``boot/`` as a
canonical tar through a pipe: nothing is unpacked on the host and no second copy of the rootfs
is written. linuxkit runs ``mksquashfs`` on an unpacked tree with its defaults; we keep its
filesystem parameters (gzip, 128 KiB blocks, padding to 4 KiB, fragments and tail packing,
xattrs) and pin everything the tool would otherwise take from the host:

- the program: ``tar2sqfs`` of Debian 12's squashfs-tools-ng 1.2.0, run from its pinned .deb
  with the pinned libsquashfs and zlib (:data:`outputs.tool_debs.TAR2SQFS`), never the host's
  (another version may lay out the same tree differently; Debian 13 has 1.3.2), recorded in
  the build record as ``tools``;
- the superblock's mkfs time and the root directory (which the tar has no entry for):
  ``--defaults uid=0,gid=0,mode=0755,mtime=Options.mtime`` (tar2sqfs takes the mkfs time from
  it too); ``SOURCE_DATE_EPOCH`` in the caller's environment is overridden;
- the thread count: ``-j`` is fixed at ``JOBS`` (tar2sqfs orders blocks itself, so the bytes
  do not depend on it; tested);
- the compressor settings: gzip level 9, window 15, given explicitly.

squashfs stores 32-bit times: an entry dated after 2106 is an error, not silently clamped.
The gzip bytes come from the pinned zlib1g (1.2.13), not the host's.
"""

from __future__ import annotations

import contextlib
import tempfile
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
JOBS = 2
BLOCK_SIZE = 131072
DEVICE_BLOCK = 4096
MAX_TIME = 0xFFFFFFFF
FILES = ("{name}-kernel", "{name}-cmdline", "{name}-squashfs.img")


def tool_version() -> str:
    """The pinned packages ``tar2sqfs`` runs from, for the build record."""
    from outputs.tool_debs import TAR2SQFS

    return TAR2SQFS.record()


def tar2sqfs_args(dest: Path, mtime: int, jobs: int = JOBS,
                  program: str = TOOL) -> list[str]:
    return [program, "--quiet", "--no-skip", "--compressor", "gzip", "--comp-extra",
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
    """``dest``: the squashfs image of the rootfs minus ``boot/``, made by the pinned
    ``tar2sqfs`` unpacked beside it for the run."""
    from composer.debian.unpack import unpack
    from outputs.tool_debs import TAR2SQFS

    with tempfile.TemporaryDirectory(prefix=".tar2sqfs-", dir=dest.parent) as scratch:
        tool = unpack(TAR2SQFS, Path(scratch))
        tools.run(tar2sqfs_args(dest, mtime, jobs, str(tool.program)), capture=True,
                  env={"SOURCE_DATE_EPOCH": str(mtime), **tool.env},
                  feed=lambda pipe: feed_tree(rootfs, pipe, name, "kernel+squashfs", sinks))


def write_kernel_squashfs(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    kernel, cmdline = kernel_files(name)
    with outset.scratch(f"{name}-squashfs") as tmp, contextlib.ExitStack() as stack:
        sinks = {KERNEL: stack.enter_context(outset.create(kernel)),
                 CMDLINE: stack.enter_context(outset.create(cmdline))}
        image = tmp / "squashfs.img"
        write_squashfs(rootfs, image, options.mtime, name=name, sinks=sinks)
        outset.place(f"{name}-squashfs.img", image)
