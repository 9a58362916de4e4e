"""Fixed and dynamic VHD writers, checked by qemu-img (info -f vpc, compare) and against
qemu-img's own output, which must equal ours but for the timestamp, UUID and checksum."""

from __future__ import annotations

import os
import struct
import time
import uuid
from pathlib import Path

import pytest

from composer.errors import ComposerError
from outputs.disk import vhd
from outputs.disk.vhd import write_vhd_dynamic, write_vhd_fixed
from tests.fixtures.perturb import environment  # noqa: F401  (a fixture)
from tests.fixtures.raw_disks import (
    GiB,
    MiB,
    assert_same_content,
    make_dense_copy,
    make_raw,
    qemu_img,
    qemu_info,
)

EPOCH = 1492533000  # linuxkit's 2017-04-18T16:30:00Z
WRITERS = {"fixed": write_vhd_fixed, "dynamic": write_vhd_dynamic}


def convert(raw: Path, out: Path, kind: str, *, epoch: int = EPOCH, seed: bytes = b"seed",
            force_size: bool = True) -> Path:
    with open(out, "wb") as f:
        WRITERS[kind](raw, f, epoch=epoch, seed=seed, force_size=force_size)
    return out


def footer_fields(image: bytes, at: int) -> dict:
    f = image[at:at + 512]
    (cookie, features, version, data_offset, ts, app, app_version, host, orig, cur, cyl, heads,
     spt, kind, checksum, uid, saved) = struct.unpack_from(">8sIIQI4sI4sQQHBBII16sB", f)
    assert checksum == ~sum(f[:64] + bytes(4) + f[68:]) & 0xFFFFFFFF
    assert f[85:] == bytes(512 - 85)
    return {"cookie": cookie, "features": features, "version": version,
            "data_offset": data_offset, "timestamp": ts, "creator": app,
            "creator_version": app_version, "host": host, "original": orig, "current": cur,
            "chs": (cyl, heads, spt), "type": kind, "uuid": uid, "saved": saved}


def masked(image: bytes, footers: list[int]) -> bytes:
    """``image`` with each footer's timestamp, checksum and UUID zeroed."""
    b = bytearray(image)
    for at in footers:
        b[at + 24:at + 28] = bytes(4)
        b[at + 64:at + 84] = bytes(20)
    return bytes(b)


def footers(image: bytes, kind: str) -> list[int]:
    return [len(image) - 512] + ([0] if kind == "dynamic" else [])


@pytest.mark.parametrize("kind,size", [("fixed", 10 * MiB), ("fixed", GiB),
                                       ("dynamic", 10 * MiB + 1536), ("dynamic", 25 * GiB)])
def test_qemu_reads_the_exact_size_and_content(tmp_path: Path, kind: str, size: int) -> None:
    raw = make_raw(tmp_path / "disk.raw", size)
    out = convert(raw, tmp_path / "disk.vhd", kind)
    info = qemu_info(out, "vpc")
    assert info["format"] == "vpc"
    assert info["virtual-size"] == size
    assert_same_content(raw, out, "vpc")


@pytest.mark.parametrize("kind", ["fixed", "dynamic"])
@pytest.mark.parametrize("force_size", [True, False])
def test_equals_qemu_img_but_for_time_uuid_checksum(tmp_path: Path, kind: str,
                                                    force_size: bool) -> None:
    size = 10 * MiB if kind == "fixed" else 10 * MiB + 1536
    raw = make_raw(tmp_path / "disk.raw", size)
    ours = convert(raw, tmp_path / "ours.vhd", kind, force_size=force_size).read_bytes()
    options = f"subformat={kind}" + (",force_size" if force_size else "")
    qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", options, raw, tmp_path / "qemu.vhd")
    theirs = (tmp_path / "qemu.vhd").read_bytes()
    assert masked(ours, footers(ours, kind)) == masked(theirs, footers(theirs, kind))


def test_fixed_footer_fields(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", 10 * MiB)
    image = convert(raw, tmp_path / "disk.vhd", "fixed").read_bytes()
    assert image[:10 * MiB] == raw.read_bytes()
    f = footer_fields(image, 10 * MiB)
    assert f["cookie"] == b"conectix" and f["features"] == 2 and f["version"] == 0x10000
    assert f["data_offset"] == 2**64 - 1 and f["type"] == 2 and f["saved"] == 0
    assert (f["creator"], f["creator_version"], f["host"]) == (b"qem2", 0x00050003, b"Wi2k")
    assert f["original"] == f["current"] == 10 * MiB
    assert f["chs"] == (65535, 16, 255)
    assert f["timestamp"] == EPOCH - 946684800
    assert uuid.UUID(bytes=f["uuid"]).version == 8


def test_dynamic_layout(tmp_path: Path) -> None:
    size = 20 * MiB + 1536
    raw = make_raw(tmp_path / "disk.raw", size)
    image = convert(raw, tmp_path / "disk.vhd", "dynamic").read_bytes()
    assert image[:512] == image[-512:]
    assert footer_fields(image, 0)["data_offset"] == 512
    head = image[512:1536]
    cookie, data_offset, table, version, entries, block, checksum = struct.unpack_from(
        ">8sQQIIII", head)
    assert (cookie, data_offset, table, version, block) == (
        b"cxsparse", 2**64 - 1, 1536, 0x10000, 2 * MiB)
    assert entries == 11 and checksum == ~sum(head[:36] + bytes(4) + head[40:]) & 0xFFFFFFFF
    bat = struct.unpack_from(">11I", image, 1536)
    data = raw.read_bytes()
    for i, sector in enumerate(bat):
        chunk = data[i * 2 * MiB:(i + 1) * 2 * MiB]
        if not chunk.strip(b"\0"):
            assert sector == 0xFFFFFFFF  # an all-zero block is not stored
            continue
        at = sector * 512
        assert image[at:at + 512] == b"\xff" * 512
        assert image[at + 512:at + 512 + len(chunk)] == chunk
    assert 0xFFFFFFFF in bat


def test_fixed_is_written_sparse(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", GiB)
    out = convert(raw, tmp_path / "disk.vhd", "fixed")
    assert os.stat(out).st_blocks * 512 < 16 * MiB


def test_fixed_needs_whole_mib(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", 10 * MiB + 512)
    with pytest.raises(ComposerError, match="whole number of MiB"):
        convert(raw, tmp_path / "disk.vhd", "fixed")
    assert qemu_info(convert(raw, tmp_path / "chs.vhd", "fixed", force_size=False),
                     "vpc")["virtual-size"] >= 10 * MiB + 512


def test_too_large_for_dynamic(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(2041 * GiB)
    with pytest.raises(ComposerError, match="2040 GiB"):
        convert(raw, tmp_path / "disk.vhd", "dynamic")


def test_timestamp_clamps_and_limits() -> None:
    assert vhd.timestamp(0) == 0
    assert vhd.timestamp(946684800 + 5) == 5
    with pytest.raises(ComposerError, match="2136"):
        vhd.timestamp(946684800 + 2**32)


# --- determinism --------------------------------------------------------------------------------

def two_writes(raw: Path, tmp_path: Path, kind: str, environment) -> tuple[bytes, bytes]:  # noqa: F811
    out = []
    for which in (0, 1):
        environment(which)
        out.append(convert(raw, tmp_path / f"out{which}.vhd", kind).read_bytes())
    return out[0], out[1]


@pytest.mark.parametrize("kind", ["fixed", "dynamic"])
def test_same_bytes_whatever_clock_tz_umask_cwd_seed_and_holes(tmp_path: Path, environment,  # noqa: F811
                                                               kind: str) -> None:
    raw = make_raw(tmp_path / "disk.raw", 10 * MiB)
    a, b = two_writes(raw, tmp_path, kind, environment)
    assert a == b
    dense = make_dense_copy(raw, tmp_path / "dense.raw")
    assert convert(dense, tmp_path / "dense.vhd", kind).read_bytes() == a


@pytest.mark.parametrize("kind", ["fixed", "dynamic"])
@pytest.mark.parametrize("pin", ["uuid", "timestamp"])
def test_each_pin_matters(tmp_path: Path, environment, monkeypatch, kind: str,  # noqa: F811
                          pin: str) -> None:
    """With qemu's own choice instead of a pin (a random UUID, the wall clock), the same two
    writes differ: so the test above would catch either leak."""
    if pin == "uuid":
        monkeypatch.setattr(vhd, "derive_uuid", lambda *a: os.urandom(16))
    else:
        monkeypatch.setattr(vhd, "timestamp", lambda epoch: int(time.time()) - 946684800)
    raw = make_raw(tmp_path / "disk.raw", 10 * MiB)
    a, b = two_writes(raw, tmp_path, kind, environment)
    assert a != b


@pytest.mark.parametrize("kind", ["fixed", "dynamic"])
def test_uuid_follows_seed_and_content_timestamp_follows_epoch(tmp_path: Path,
                                                               kind: str) -> None:
    raw = make_raw(tmp_path / "disk.raw", 10 * MiB)
    other = make_raw(tmp_path / "other.raw", 10 * MiB, seed=2)

    def fields(path: Path, **kw) -> dict:
        image = convert(path, tmp_path / "x.vhd", kind, **kw).read_bytes()
        return footer_fields(image, len(image) - 512)

    base = fields(raw)
    assert fields(raw, seed=b"other")["uuid"] != base["uuid"]
    assert fields(other)["uuid"] != base["uuid"]
    later = fields(raw, epoch=EPOCH + 1)
    assert later["timestamp"] == base["timestamp"] + 1 and later["uuid"] == base["uuid"]
