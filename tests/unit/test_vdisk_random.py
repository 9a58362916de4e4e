"""Seeded random disks (sizes, runs of data and zeros at odd offsets, across cluster, grain
table and block boundaries) through every qemu-readable writer, compared by qemu-img."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from outputs.disk.qcow2 import write_qcow2
from outputs.disk.vhd import write_vhd_dynamic, write_vhd_fixed
from outputs.disk.vmdk import write_vmdk
from tests.fixtures.raw_disks import MiB, assert_same_content, qemu_img, qemu_info

WRITERS = {
    "qcow2": (lambda raw, out: write_qcow2(raw, out), 512),
    "vpc-fixed": (lambda raw, out: write_vhd_fixed(raw, out, epoch=0, seed=b"r"), MiB),
    "vpc-dynamic": (lambda raw, out: write_vhd_dynamic(raw, out, epoch=0, seed=b"r"), 512),
    "vmdk": (lambda raw, out: write_vmdk(raw, out, seed=b"r", threads=2), 512),
}
FORMAT = {"qcow2": "qcow2", "vpc-fixed": "vpc", "vpc-dynamic": "vpc", "vmdk": "vmdk"}


def random_raw(path: Path, seed: int, unit: int) -> int:
    rng = random.Random(seed)
    size = rng.randrange(1, 80 * MiB // unit + 1) * unit
    with open(path, "wb") as f:
        f.truncate(size)
        for _ in range(rng.randrange(0, 12)):
            offset = rng.randrange(size)
            length = min(size - offset, rng.choice([1, 511, 65536, 65537, 3 * MiB]))
            f.seek(offset)
            f.write(rng.randbytes(length) if rng.random() < 0.8 else bytes(length))
    return size


@pytest.mark.parametrize("name", sorted(WRITERS))
@pytest.mark.parametrize("seed", range(6))
def test_random_disks_read_back(tmp_path: Path, name: str, seed: int) -> None:
    write, unit = WRITERS[name]
    raw = tmp_path / "disk.raw"
    size = random_raw(raw, seed * 31 + len(name), unit)
    out = tmp_path / "out"
    with open(out, "wb") as f:
        write(raw, f)
    assert qemu_info(out, FORMAT[name])["virtual-size"] == size
    if FORMAT[name] != "vpc":
        assert "No errors" in qemu_img("check", "-f", FORMAT[name], out)
    assert_same_content(raw, out, FORMAT[name])
