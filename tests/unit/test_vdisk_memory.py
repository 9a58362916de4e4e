"""Every container writer keeps memory flat: a 4 GiB disk with 32 MiB of data scattered over it
and one 48 MiB run converts with a small, bounded Python heap (tracemalloc peak; measured
1-4 MiB), far below the data it holds."""

from __future__ import annotations

import random
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from outputs.disk.gcp import write_gcp
from outputs.disk.qcow2 import write_qcow2
from outputs.disk.vhd import write_vhd_dynamic, write_vhd_fixed
from outputs.disk.vmdk import write_vmdk
from tests.fixtures.raw_disks import GiB, MiB, qemu_info

WRITERS: dict[str, tuple[Callable[[Path, BinaryIO], None], str | None]] = {
    "qcow2": (write_qcow2, "qcow2"),
    "vhd": (lambda raw, out: write_vhd_fixed(raw, out, epoch=0, seed=b""), "vpc"),
    "dynamic-vhd": (lambda raw, out: write_vhd_dynamic(raw, out, epoch=0, seed=b""), "vpc"),
    "vmdk": (lambda raw, out: write_vmdk(raw, out, seed=b""), "vmdk"),
    "gcp": (lambda raw, out: write_gcp(raw, out, epoch=0, level=1), None),
}
BOUND = 16 * MiB  # a 4 MiB read buffer, a few grains/blocks in flight, small tables


@pytest.fixture(scope="module")
def big_raw(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mem") / "disk.raw"
    rng = random.Random(5)
    with open(path, "wb") as f:
        f.truncate(4 * GiB)
        for i in range(256):  # 256 scattered 128 KiB runs: 32 MiB of data
            f.seek(i * 16 * MiB + rng.randrange(0, 8 * MiB))
            f.write(rng.randbytes(128 * 1024))
        f.seek(3 * GiB + 8 * MiB)  # and one long run of (compressible) data: 48 MiB
        f.write(rng.randbytes(4096) * (12 * 1024))
    return path


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_peak_heap_stays_small(big_raw: Path, tmp_path: Path, fmt: str) -> None:
    write, qemu_format = WRITERS[fmt]
    out = tmp_path / "out"
    tracemalloc.start()
    try:
        with open(out, "wb") as f:
            write(big_raw, f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < BOUND, f"{fmt}: peak {peak / MiB:.1f} MiB"
    if qemu_format:
        assert qemu_info(out, qemu_format)["virtual-size"] == 4 * GiB


def test_peak_rss_of_a_whole_process(big_raw: Path, tmp_path: Path) -> None:
    """The issue's bound (250 MB peak RSS for a 1 GiB workload), for the two compressing
    writers on the 4 GiB disk, measured on the process as the OS sees it."""
    code = ("import sys; from pathlib import Path; from outputs.disk.containers import CONTAINERS;"
            "c = CONTAINERS[sys.argv[1]]; f = open(sys.argv[3], 'wb');"
            "c.write(Path(sys.argv[2]), f, 0, b''); f.close();"
            # VmHWM: this process's own peak; ru_maxrss would include the forked pytest's
            "print([ln.split()[1] for ln in open('/proc/self/status')"
            " if ln.startswith('VmHWM')][0])")
    for fmt in ("vmdk", "gcp"):
        out = subprocess.run([sys.executable, "-c", code, fmt, str(big_raw), str(tmp_path / fmt)],
                             check=True, capture_output=True, text=True).stdout
        assert int(out) * 1024 < 100 * MiB, f"{fmt}: {int(out) // 1024} MiB"
