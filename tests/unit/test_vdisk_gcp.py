"""gcp writer: GNU tar + gzip, read back by GNU tar and gzip, compared with GNU tar's own."""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from pathlib import Path

import pytest

from composer import tools
from composer.errors import ComposerError
from outputs.disk import gcp
from outputs.disk.gcp import write_gcp, write_gcp_tar
from outputs.disk.rawscan import data_chunks
from tests.fixtures.perturb import environment  # noqa: F401  (a fixture)
from tests.fixtures.raw_disks import GiB, MiB, make_dense_copy, make_raw
from tests.integration.conftest import require_tool

EPOCH = 1492533000


def convert(raw: Path, out: Path, **kw) -> Path:
    kw.setdefault("epoch", EPOCH)
    with open(out, "wb") as f:
        write_gcp(raw, f, **kw)
    return out


def sha256_of_stream(argv: list[str]) -> str:
    h = hashlib.sha256()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, env=tools.tool_env()) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            h.update(chunk)
    assert proc.returncode == 0
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def extracted_equals(out: Path, raw: Path, work: Path) -> bool:
    """GNU tar extracts ``disk.raw`` (sparse, so this is quick); same content as ``raw``?"""
    work.mkdir()
    tools.run(["tar", "-xzf", out, "-C", work])
    got = work / "disk.raw"
    if got.stat().st_size != raw.stat().st_size:
        return False
    with open(got, "rb") as a, open(raw, "rb") as b:
        size = raw.stat().st_size
        return (list(data_chunks(a.fileno(), size)) == list(data_chunks(b.fileno(), size)))


def test_gnu_tar_and_gzip_read_it_back(tmp_path: Path) -> None:
    tar = require_tool("tar")
    require_tool("gzip")
    raw = make_raw(tmp_path / "disk.raw", GiB)
    out = convert(raw, tmp_path / "NAME.img.tar.gz")
    tools.run(["gzip", "-t", out])
    listing = tools.run([tar, "--numeric-owner", "-tvzf", out], capture=True).stdout.decode()
    assert [line.split() for line in listing.splitlines()] == [
        ["-rw-r--r--", "0/0", str(GiB), "2017-04-18", "16:30", "disk.raw"]]
    names = tools.run([tar, "-tvzf", out], capture=True).stdout.decode()
    assert " root/root " in names
    assert extracted_equals(out, raw, tmp_path / "x")
    assert out.read_bytes()[:10] == b"\x1f\x8b\x08\x00\0\0\0\0\x02\x03"  # gzip -9, Unix
    assert out.stat().st_size < 8 * MiB


def test_dense_member_read_back(tmp_path: Path, monkeypatch) -> None:
    """``sparse=False`` (linuxkit's plain ``tar cf``): every byte stored, as a type-0 member."""
    tar = require_tool("tar")
    monkeypatch.setattr(gcp, "GiB", 8 * MiB)  # the real 1 GiB only costs time here
    raw = make_raw(tmp_path / "disk.raw", 8 * MiB)
    out = convert(raw, tmp_path / "NAME.img.tar.gz", sparse=False, level=1)
    listing = tools.run([tar, "--numeric-owner", "-tvzf", out], capture=True).stdout.decode()
    assert [line.split() for line in listing.splitlines()] == [
        ["-rw-r--r--", "0/0", str(8 * MiB), "2017-04-18", "16:30", "disk.raw"]]
    assert sha256_of_stream([tar, "-xOzf", str(out), "disk.raw"]) == sha256_file(raw)
    assert out.read_bytes()[:10] == b"\x1f\x8b\x08\x00\0\0\0\0\x04\x03"  # gzip -1


def chunky_raw(path: Path, size: int, chunks: list[int], seed: int = 1) -> Path:
    """Non-zero 64 KiB chunks at ``chunks`` (indexes), real holes everywhere else: the file's
    holes are exactly its zero chunks, so GNU tar's hole map equals our content map."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for i in chunks:
            f.seek(i * 65536)
            f.write(b"\x01" + rng.randbytes(65535))
    return path


@pytest.mark.parametrize("chunks", [
    [], [0], [63], [0, 3, 4, 9, 20],  # few regions: all in the header
    [0, 3, 4, 9, 20, 33, 50, 70, 100],  # one extension block
    list(range(0, 127, 2)),  # 64 regions: several extension blocks
])
@pytest.mark.parametrize("sparse", [True, False])
def test_equals_gnu_tar(tmp_path: Path, monkeypatch, chunks: list[int], sparse: bool) -> None:
    tar = require_tool("tar")
    monkeypatch.setattr(gcp, "GiB", MiB)  # GNU tar needs the whole file: keep it small
    size = 8 * MiB
    work = tmp_path / "w"
    work.mkdir()
    raw = chunky_raw(work / "disk.raw", size, chunks)
    options = ["--format=oldgnu", "-S"] if sparse else ["--format=gnu"]
    tools.run([tar, *options, "-cf", tmp_path / "gnu.tar", f"--mtime=@{EPOCH}",
               "--owner=root:0", "--group=root:0", "--mode=0644", "disk.raw"], cwd=work)
    with open(tmp_path / "ours.tar", "wb") as f:
        write_gcp_tar(raw, f, epoch=EPOCH, sparse=sparse)
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "gnu.tar").read_bytes()


def test_past_8_gib_numbers_go_base_256(tmp_path: Path) -> None:
    tar = require_tool("tar")
    size = 9 * GiB
    raw = make_raw(tmp_path / "disk.raw", size)
    out = convert(raw, tmp_path / "big.img.tar.gz")
    listing = tools.run([tar, "--numeric-owner", "-tvzf", out], capture=True).stdout.decode()
    assert f" {size} " in listing
    assert extracted_equals(out, raw, tmp_path / "x")
    assert gcp.number(8**11, 12) == b"\x80" + (8**11).to_bytes(11, "big")
    assert gcp.number(8**11 - 1, 12) == b"77777777777\0"


def test_size_must_be_whole_gib(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", GiB + 512)
    with pytest.raises(ComposerError, match="multiple of 1 GiB"):
        convert(raw, tmp_path / "x.tar.gz")


# --- determinism --------------------------------------------------------------------------------

def two_writes(raw: Path, tmp_path: Path, environment) -> tuple[bytes, bytes]:  # noqa: F811
    out = []
    for which, threads in ((0, 1), (1, 3)):
        environment(which)
        out.append(convert(raw, tmp_path / f"o{which}.tar.gz", threads=threads).read_bytes())
    return out[0], out[1]


def test_same_bytes_whatever_environment_threads_and_holes(tmp_path: Path, environment,  # noqa: F811
                                                           monkeypatch) -> None:
    monkeypatch.setattr(gcp, "GiB", 16 * MiB)  # small, so the dense copy is cheap
    raw = make_raw(tmp_path / "disk.raw", 16 * MiB)
    a, b = two_writes(raw, tmp_path, environment)
    assert a == b
    dense = make_dense_copy(raw, tmp_path / "dense.raw")
    assert convert(dense, tmp_path / "dense.tar.gz").read_bytes() == a


def test_mtime_pin_matters(tmp_path: Path, environment, monkeypatch) -> None:  # noqa: F811
    """With tar's own choice (the file's time, here the clock) instead of the epoch, the same
    two writes differ; and the epoch does reach the header."""
    real = gcp.header
    monkeypatch.setattr(gcp, "header", lambda size, mtime, regions:
                        real(size, int(time.time()), regions))
    raw = make_raw(tmp_path / "disk.raw", GiB)
    a, b = two_writes(raw, tmp_path, environment)
    assert a != b
    monkeypatch.setattr(gcp, "header", real)
    with open(tmp_path / "t.tar", "wb") as f:
        write_gcp_tar(raw, f, epoch=EPOCH + 8)
    assert (tmp_path / "t.tar").read_bytes()[136:148] == b"%011o\0" % (EPOCH + 8)
