"""qcow2 writer, checked by qemu-img: check, info, compare against the raw."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from composer.errors import ComposerError
from outputs.disk import qcow2
from outputs.disk.qcow2 import write_qcow2
from tests.fixtures.raw_disks import (
    GiB,
    MiB,
    assert_same_content,
    make_dense_copy,
    make_raw,
    qemu_img,
    qemu_info,
)


def convert(raw: Path, out: Path) -> Path:
    with open(out, "wb") as f:
        write_qcow2(raw, f)
    return out


# 9 MiB + 3 sectors: not cluster-aligned; 1 GiB + 64 KiB: two L1 entries, a partly used L2
@pytest.mark.parametrize("size", [9 * MiB + 1536, GiB + 64 * 1024, 512])
def test_qemu_reads_it_back(tmp_path: Path, size: int) -> None:
    raw = make_raw(tmp_path / "disk.raw", size)
    out = convert(raw, tmp_path / "disk.qcow2")
    assert "No errors were found on the image." in qemu_img("check", "-f", "qcow2", out)
    info = qemu_info(out, "qcow2")
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == size
    assert info["cluster-size"] == 65536
    assert info["format-specific"]["data"]["compat"] == "1.1"  # version 3
    assert_same_content(raw, out, "qcow2")


def test_zero_clusters_stay_unallocated(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", 25 * GiB)  # linuxkit's dynamic-vhd size, sparse
    out = convert(raw, tmp_path / "disk.qcow2")
    with open(raw, "rb") as f:
        offsets = [o for o, _ in qcow2.data_chunks(f.fileno(), 25 * GiB, qcow2.CLUSTER)]
    l2_tables = len({o // qcow2.L2_SPAN for o in offsets})
    assert l2_tables == 5
    # header + data + one L2 per touched 512 MiB range + L1 + refcount block + table
    assert os.path.getsize(out) == (1 + len(offsets) + l2_tables + 3) * qcow2.CLUSTER
    assert "No errors" in qemu_img("check", "-f", "qcow2", out)
    assert_same_content(raw, out, "qcow2")


def test_same_disk_same_bytes_however_stored(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", 9 * MiB + 1536)
    dense = make_dense_copy(raw, tmp_path / "dense.raw")
    a = convert(raw, tmp_path / "a.qcow2").read_bytes()
    assert convert(raw, tmp_path / "b.qcow2").read_bytes() == a
    assert convert(dense, tmp_path / "c.qcow2").read_bytes() == a
    other = make_raw(tmp_path / "other.raw", 9 * MiB + 1536, seed=2)
    assert convert(other, tmp_path / "d.qcow2").read_bytes() != a


def test_header_fields(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", 9 * MiB + 1536)
    head = convert(raw, tmp_path / "disk.qcow2").read_bytes()[:qcow2.CLUSTER]
    magic, version, backing, _, bits, size = struct.unpack_from(">4sIQIIQ", head)
    assert (magic, version, backing, bits, size) == (b"QFI\xfb", 3, 0, 16, 9 * MiB + 1536)
    assert struct.unpack_from(">QQQII", head, 72) == (0, 0, 0, 4, 104)
    assert head[104:] == bytes(len(head) - 104)  # no extensions: the end marker is zeros


def test_refcount_layout_covers_itself() -> None:
    for clusters in (1, 100, 32766, 32767, 32768, 10**6, 2 * 10**8):
        blocks, table = qcow2.refcount_layout(clusters)
        total = clusters + blocks + table
        assert blocks * qcow2.REFS_PER_BLOCK >= total
        assert table * qcow2.CLUSTER >= blocks * 8
        assert (blocks - 1) * qcow2.REFS_PER_BLOCK < total  # not one block too many


@pytest.mark.parametrize("size", [0, 1000])
def test_sizes_qcow2_cannot_hold(tmp_path: Path, size: int) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\1" * size)
    with pytest.raises(ComposerError, match="multiple of 512"), open(tmp_path / "o", "wb") as f:
        write_qcow2(raw, f)
