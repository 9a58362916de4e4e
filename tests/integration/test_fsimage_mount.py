"""The Linux kernel as the independent reader of kernel+squashfs and kernel+erofs: the image is
loop-mounted read-only and its tree (types, modes with setuid/setgid/sticky, owners, mtimes,
link targets, device numbers, contents, every xattr, hard links) must equal the rootfs tar
minus boot/. Needs root and loop devices (the product never does); kernel+iso is not here
because this host's kernel may lack isofs (the unit tests read it with xorriso and isoinfo).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from composer.atomic import OutputSet
from outputs import FORMATS
from outputs.options import Options
from tests.fixtures.fs_trees import expected_tree, walk, write_odd_rootfs
from tests.integration.conftest import require_tool

MTIME = 1492533000
IMAGES = {"kernel+squashfs": ("t-squashfs.img", "squashfs"),
          "kernel+erofs": ("t-erofs.img", "erofs")}


def unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def mounted(image: Path, fstype: str, where: Path):
    if os.geteuid() != 0:
        unavailable("loop-mounting an image needs root")
    where.mkdir()
    proc = subprocess.run([require_tool("mount", "mount"), "-o", "loop,ro", "-t", fstype,
                           str(image), str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        unavailable(f"cannot loop-mount {fstype} here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("fmt", sorted(IMAGES))
def test_kernel_reads_the_rootfs_tree(fmt, tmp_path):
    rootfs = write_odd_rootfs(tmp_path / "rootfs.tar")
    with OutputSet(tmp_path / "out") as outs:
        FORMATS[fmt].convert(rootfs, "t", outs, Options(mtime=MTIME))
        outs.commit()
    filename, fstype = IMAGES[fmt]
    with mounted(tmp_path / "out" / filename, fstype, tmp_path / "mnt") as root:
        got, groups = walk(root)
    want, want_groups = expected_tree(rootfs, MTIME)
    assert got == want
    assert sorted(map(sorted, groups)) == sorted(map(sorted, want_groups))
