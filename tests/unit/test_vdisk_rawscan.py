"""rawscan: the non-zero chunks of a raw disk, by content, whatever its holes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from composer.errors import ComposerError
from outputs.disk import rawscan
from outputs.disk.rawscan import CHUNK, ContentDigest, data_chunks, pad_raw
from tests.fixtures.raw_disks import MiB, make_dense_copy, make_raw


def naive(path: Path, chunk: int) -> list[tuple[int, bytes]]:
    data = path.read_bytes()
    return [(i, data[i:i + chunk]) for i in range(0, len(data), chunk)
            if data[i:i + chunk].strip(b"\0")]


def scan(path: Path, chunk: int = CHUNK) -> list[tuple[int, bytes]]:
    with open(path, "rb") as f:
        return list(data_chunks(f.fileno(), os.fstat(f.fileno()).st_size, chunk))


@pytest.mark.parametrize("size", [9 * MiB + 1536, 10 * MiB, 6 * MiB + 512])
def test_chunks_are_the_non_zero_ones(tmp_path: Path, size: int) -> None:
    raw = make_raw(tmp_path / "a.raw", size)
    got = scan(raw)
    assert got == naive(raw, CHUNK)
    assert got[-1][0] + len(got[-1][1]) == size  # a short last chunk when size is unaligned
    assert scan(raw, 2 * MiB) == naive(raw, 2 * MiB)


def test_holes_do_not_change_the_answer(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "a.raw", 9 * MiB + 1536)
    dense = make_dense_copy(raw, tmp_path / "dense.raw")
    assert os.stat(dense).st_blocks > os.stat(raw).st_blocks  # really not sparse
    assert scan(dense) == scan(raw)


def test_random_layouts_against_a_naive_scan(tmp_path: Path) -> None:
    rng = random.Random(7)
    for case in range(30):
        size = rng.randrange(1, 64) * 8192 * 8
        raw = tmp_path / f"r{case}.raw"
        with open(raw, "wb") as f:
            f.truncate(size)
            for _ in range(rng.randrange(0, 8)):
                off = rng.randrange(size)
                f.seek(off)
                f.write(rng.choice([b"\0", b"\x07"]) * rng.randrange(1, 3 * CHUNK))
        assert scan(raw) == naive(raw, CHUNK), case


def test_content_digest_ignores_how_the_zeros_are_stored(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "a.raw", 8 * MiB)
    dense = make_dense_copy(raw, tmp_path / "dense.raw")

    def digest(path: Path) -> bytes:
        d = ContentDigest(8 * MiB)
        for offset, data in scan(path):
            d.update(offset, data)
        return d.digest()

    assert digest(raw) == digest(dense)
    other = make_raw(tmp_path / "b.raw", 8 * MiB, seed=2)
    assert digest(other) != digest(raw)


def test_derived_uuid_is_rfc_shaped_and_keyed() -> None:
    u = rawscan.derive_uuid("vhd uuid", b"seed", b"content")
    assert u[6] >> 4 == 8 and u[8] >> 6 == 2
    assert u == rawscan.derive_uuid("vhd uuid", b"seed", b"content")
    assert u != rawscan.derive_uuid("vhd uuid", b"seed2", b"content")
    assert u != rawscan.derive_uuid("vhd uuid", b"seed", b"content2")
    assert u != rawscan.derive_uuid("other", b"seed", b"content")


def test_pad_raw_grows_with_a_hole_and_refuses_to_shrink(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "a.raw", 2 * MiB)
    blocks = os.stat(raw).st_blocks
    pad_raw(raw, 1 << 30)
    assert os.stat(raw).st_size == 1 << 30
    assert os.stat(raw).st_blocks == blocks
    with pytest.raises(ComposerError, match="more than"):
        pad_raw(raw, 1 << 29)
    assert rawscan.LINUXKIT_SIZES == {"vhd": 1 << 30, "vmdk": 1 << 30, "gcp": 1 << 30,
                                      "dynamic-vhd": 25 << 30}
