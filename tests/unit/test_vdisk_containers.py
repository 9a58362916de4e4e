"""The container table: linuxkit's virtual sizes, applied to a raw disk, read back by qemu-img
and tar."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer import tools
from composer.errors import ComposerError
from outputs.disk.containers import CONTAINERS, fit
from tests.fixtures.raw_disks import GiB, MiB, make_raw, qemu_info

QEMU_FORMAT = {"qcow2": "qcow2", "vhd": "vpc", "dynamic-vhd": "vpc", "vmdk": "vmdk"}
SIZES = {"qcow2": 3 * MiB, "vhd": GiB, "dynamic-vhd": 25 * GiB, "vmdk": GiB, "gcp": GiB}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_linuxkit_sizes(tmp_path: Path, name: str) -> None:
    container = CONTAINERS[name]
    raw = make_raw(tmp_path / "disk.raw", 3 * MiB)
    assert fit(raw, container) == SIZES[name] == raw.stat().st_size
    out = tmp_path / "out"
    with open(out, "wb") as f:
        container.write(raw, f, 1492533000, b"seed")
    if name in QEMU_FORMAT:
        assert qemu_info(out, QEMU_FORMAT[name])["virtual-size"] == SIZES[name]
    else:
        listing = tools.run(["tar", "--numeric-owner", "-tvzf", out], capture=True)
        assert f" {GiB} " in listing.stdout.decode()
    if container.compressor is not None:
        assert "zlib-" in container.compressor()


def test_size_rounding_and_too_small(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", 3 * MiB)
    assert fit(raw, CONTAINERS["gcp"], size=GiB + 1) == 2 * GiB
    assert fit(raw, CONTAINERS["vhd"], size=2 * GiB + 100) == 2 * GiB + MiB
    with pytest.raises(ComposerError, match="larger --size"):
        fit(raw, CONTAINERS["vmdk"])  # 2 GiB + 1 MiB does not fit linuxkit's 1 GiB
