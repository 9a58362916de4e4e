"""Committed digests of every container writer's output for fixed synthetic disks: every machine
must reproduce them. vmdk and gcp are deflate-compressed by the pinned zlib-ng
(composer.streams.deflate), never the host's zlib, so they are compared unconditionally too.

Regenerate (only when the bytes are meant to change, saying why in the commit):
``python -m tests.unit.test_vdisk_golden``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from composer.streams import deflate
from outputs.disk import gcp
from outputs.disk.gcp import write_gcp
from outputs.disk.qcow2 import write_qcow2
from outputs.disk.vhd import write_vhd_dynamic, write_vhd_fixed
from outputs.disk.vmdk import write_vmdk
from tests.fixtures.raw_disks import GiB, MiB, make_raw

EPOCH, SEED = 1492533000, b"golden"
WRITERS = {
    "qcow2": (9 * MiB + 1536, lambda raw, out: write_qcow2(raw, out)),
    "vhd": (10 * MiB, lambda raw, out: write_vhd_fixed(raw, out, epoch=EPOCH, seed=SEED)),
    "dynamic-vhd": (10 * MiB + 1536,
                    lambda raw, out: write_vhd_dynamic(raw, out, epoch=EPOCH, seed=SEED)),
    "dynamic-vhd-chs": (10 * MiB + 1536, lambda raw, out: write_vhd_dynamic(
        raw, out, epoch=EPOCH, seed=SEED, force_size=False)),
    "vmdk": (9 * MiB + 1536, lambda raw, out: write_vmdk(raw, out, seed=SEED)),
    "gcp": (GiB, lambda raw, out: write_gcp(raw, out, epoch=EPOCH)),
}
COMPRESSED = ("vmdk", "gcp")  # made by the pinned deflate library, named by GOLDEN_DEFLATE
GOLDEN_DEFLATE = "zlib-ng-2.3.3"
GOLDEN = {
    "dynamic-vhd": "d4631e4a0802ea32f5258c6bc3abe3454d7ba259678f5fbfc6ae110f170c45cd",
    "dynamic-vhd-chs": "a831d2c8f799c0a94981136fe3f0045fec7eeb2fbbe7b01bad708b300b96f7fb",
    "gcp": "9759278f5037365326b4661569767fc367a1344750e61a4d8f5af0a6275ad7e2",
    "qcow2": "4af745719d376058bb15431354099ef32e1975a280fa2c605fb4c72e30815435",
    "vhd": "b79243a120f17997389c7ba072eec30202cf86987241e2be770c8801be370ba9",
    "vmdk": "341332574eebfde24f1ec85675188150c2eaf20cdd38e80ac099ab9c43f5d019",
}


def build(fmt: str, workdir: Path) -> str:
    size, write = WRITERS[fmt]
    raw = make_raw(workdir / f"{fmt}.raw", size, seed=11)
    out = workdir / f"{fmt}.out"
    with open(out, "wb") as f:
        write(raw, f)
    h = hashlib.sha256()
    with open(out, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_output_matches_golden_digest(tmp_path: Path, fmt: str) -> None:
    assert gcp.GiB == GiB
    assert build(fmt, tmp_path) == GOLDEN[fmt]


def test_goldens_were_made_by_the_pinned_deflate() -> None:
    """A new zlib-ng pin changes vmdk and gcp bytes: regenerate them with it, saying so."""
    assert deflate.library_id() == GOLDEN_DEFLATE


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(f"# {deflate.library_id()}", file=sys.stderr)
        for name in sorted(WRITERS):
            print(f'    "{name}": "{build(name, Path(tmp))}",')
