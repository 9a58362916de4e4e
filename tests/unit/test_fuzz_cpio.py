"""Fuzz the newc cpio writer: random canonical trees -> tar -> outputs.initrd.cpio -> GNU cpio.

GNU ``cpio -it`` must list exactly the tar's paths in order, and ``cpio -idm`` must extract the
same contents, modes, symlink targets and hard-link groups. Bounded for CI; ``FUZZ_EXAMPLES``
raises the count. Devices are listed but never extracted (that would create host nodes).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key
from composer.tools import run
from outputs.initrd.cpio import tar_to_cpio

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAME = st.sampled_from(["a", "b", "c.d", "é", "x" * 150, "-n", "sp ace", "#", "ÿ"])
KINDS = [Kind.FILE, Kind.DIR, Kind.SYMLINK, Kind.HARDLINK, Kind.FIFO, Kind.CHAR]


@pytest.fixture(scope="module", autouse=True)
def need_cpio() -> None:
    if shutil.which("cpio") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("cpio is required in CI (apt-get install cpio)")
        pytest.skip("cpio not installed")


@st.composite
def trees(draw, devices: bool) -> list[tuple[Entry, bytes | None]]:
    paths = draw(st.lists(st.lists(NAME, min_size=1, max_size=3).map("/".join), min_size=1,
                          max_size=12, unique=True))
    kinds: dict[str, Kind] = {}
    for path in sorted(paths, key=sort_key):
        parts = path.split("/")
        for i in range(1, len(parts)):
            kinds[("/".join(parts[:i]))] = Kind.DIR  # a parent is always a directory
    for path in paths:
        if path not in kinds:
            kinds[path] = draw(st.sampled_from(KINDS if devices else KINDS[:5]))
    out: list[tuple[Entry, bytes | None]] = []
    files: dict[str, dict] = {}
    for path in sorted(kinds, key=sort_key):
        kind = kinds[path]
        mode = draw(st.sampled_from([0o644, 0o755, 0o700, 0o4755, 0o1777, 0o600]))
        common = {"mode": mode, "uid": draw(st.integers(0, 70000)),
                  "gid": draw(st.integers(0, 70000)), "mtime": draw(st.integers(0, 2**32 - 1))}
        if kind is Kind.HARDLINK and not files:
            kind = Kind.FILE
        if kind is Kind.FILE:
            data = draw(st.binary(max_size=300))
            out.append((Entry(path, kind, size=len(data), **common), data))
            files[path] = common
        elif kind is Kind.HARDLINK:
            target = draw(st.sampled_from(sorted(files)))  # one inode: the target's metadata
            out.append((Entry(path, kind, linkname=target, **files[target]), None))
        elif kind is Kind.SYMLINK:
            out.append((Entry(path, kind, linkname=draw(st.sampled_from(
                ["a", "/etc/passwd", "../../..", "é" * 80, "x/y"])), **common), None))
        elif kind is Kind.CHAR:
            out.append((Entry(path, kind, devmajor=draw(st.integers(0, 4095)),
                              devminor=draw(st.integers(0, 2**20 - 1)), **common), None))
        else:
            out.append((Entry(path, kind, **common), None))
    return out


def to_cpio(tmp: Path, entries: list[tuple[Entry, bytes | None]]) -> Path:
    with open(tmp / "rootfs.tar", "wb") as fh:
        writer = CanonicalTarWriter(fh)
        for entry, data in entries:
            writer.add(entry, data)
        writer.close()
    with open(tmp / "out.cpio", "wb") as out:
        tar_to_cpio(tmp / "rootfs.tar", out, spool_dir=tmp)
    return tmp / "out.cpio"


def cpio(*args: str | Path, cwd: Path | None = None) -> bytes:
    *opts, archive = args
    return run(["cpio", *opts, "--force-local", "-F", archive], cwd=cwd, capture=True).stdout


@FUZZ
@given(trees(devices=True))
def test_gnu_cpio_lists_every_path_in_order(entries) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = to_cpio(Path(tmp), entries)
        listed = cpio("-it", "--quiet", archive).decode("utf-8", "surrogateescape").splitlines()
    assert listed == [e.path for e, _ in entries]


@FUZZ
@given(trees(devices=False))
def test_gnu_cpio_extracts_the_same_tree(entries) -> None:
    # not root (a developer, the crosscheck's user): cpio cannot fill a directory whose mode
    # shuts its owner out, nor can the temporary directory be removed afterwards
    assume(os.geteuid() == 0 or all(e.mode & 0o700 == 0o700 for e, _ in entries
                                    if e.kind is Kind.DIR))
    with tempfile.TemporaryDirectory() as tmp:
        archive = to_cpio(Path(tmp), entries)
        root = Path(tmp) / "x"
        root.mkdir()
        cpio("-idm", "--quiet", "--no-absolute-filenames", archive, cwd=root)
        inodes: dict[str, int] = {}
        for entry, data in entries:
            path = root / entry.path
            st_ = os.lstat(path)
            if entry.kind is Kind.SYMLINK:
                assert os.readlink(path) == entry.linkname
                continue
            assert stat.S_IMODE(st_.st_mode) == entry.mode, entry.path
            if entry.kind is Kind.FILE:
                assert path.read_bytes() == data
                inodes[entry.path] = st_.st_ino
            elif entry.kind is Kind.HARDLINK:
                assert st_.st_ino == inodes[entry.linkname], entry.path
            elif entry.kind is Kind.FIFO:
                assert stat.S_ISFIFO(st_.st_mode)
            else:
                assert stat.S_ISDIR(st_.st_mode)
