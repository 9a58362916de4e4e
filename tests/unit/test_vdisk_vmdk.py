"""streamOptimized VMDK writer, checked by qemu-img (check, info, compare) and parsed here."""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import pytest

from composer.errors import ComposerError
from outputs.disk import vmdk
from outputs.disk.vmdk import write_vmdk
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


def convert(raw: Path, out: Path, *, seed: bytes = b"seed", **kw) -> Path:
    with open(out, "wb") as f:
        write_vmdk(raw, f, seed=seed, **kw)
    return out


@pytest.mark.parametrize("size", [9 * MiB + 1536, GiB, 512])
def test_qemu_reads_it_back(tmp_path: Path, size: int) -> None:
    raw = make_raw(tmp_path / "disk.raw", size)
    out = convert(raw, tmp_path / "disk.vmdk")
    assert "No errors were found on the image." in qemu_img("check", "-f", "vmdk", out)
    info = qemu_info(out, "vmdk")
    assert info["format"] == "vmdk"
    assert info["virtual-size"] == size
    data = info["format-specific"]["data"]
    assert data["create-type"] == "streamOptimized"
    assert data["extents"][0]["compressed"] is True
    assert data["parent-cid"] == 0xFFFFFFFF
    assert_same_content(raw, out, "vmdk")


def records(image: bytes) -> list[tuple[int, int, int, bytes]]:
    """Walk the stream as a sequential reader would: (sector, val, size/type, payload)."""
    out = []
    sector = struct.unpack_from("<Q", image, 64)[0]  # overhead
    while True:
        at = sector * 512
        val, size = struct.unpack_from("<QI", image, at)
        if size:  # a grain marker: LBA, compressed size, zlib data
            out.append((sector, val, -1, image[at + 12:at + 12 + size]))
            sector += -(-(12 + size) // 512)
            continue
        kind = struct.unpack_from("<I", image, at + 12)[0]
        out.append((sector, val, kind, image[at + 512:at + 512 + val * 512]))
        if kind == vmdk.MARKER_EOS:
            return out
        sector += 1 + val


def test_stream_layout(tmp_path: Path) -> None:
    size = 200 * MiB + 1536  # seven grain tables' worth, the third one empty
    raw = make_raw(tmp_path / "disk.raw", size)
    image = convert(raw, tmp_path / "disk.vmdk").read_bytes()
    data = raw.read_bytes()
    head = image[:512]
    fields = struct.unpack_from("<4sIIQQQQIQQQB4sH", head)
    assert fields == (b"KDMV", 3, 0x30001, size // 512, 128, 1, 20, 512, 0, 2**64 - 1, 128, 0,
                      b"\n \r\n", 1)
    recs = records(image)
    kinds = [k for _, _, k, _ in recs]
    assert kinds[-3:] == [vmdk.MARKER_GD, vmdk.MARKER_FOOTER, vmdk.MARKER_EOS]
    assert image[-1536:] == b"".join(
        [vmdk.marker(1, vmdk.MARKER_FOOTER), recs[-2][3], vmdk.marker(0, vmdk.MARKER_EOS)])
    footer = struct.unpack_from("<4sIIQQQQIQQQB4sH", recs[-2][3])
    gd_sector = recs[-3][0] + 1
    assert footer == (*fields[:9], gd_sector, *fields[10:])
    gd = struct.unpack_from("<7I", image, gd_sector * 512)
    assert gd[2] == 0  # no grain in that 32 MiB: no grain table
    grains = {}
    for sector, val, kind, payload in recs:
        if kind == -1:
            grains[val] = sector
            plain = zlib.decompress(payload)
            assert plain == data[val * 512:val * 512 + 65536]  # the last one is short
        elif kind == vmdk.MARKER_GT:
            assert sector + 1 in gd
    zero = bytes(65536)
    expected = {o // 512 for o in range(0, size, 65536) if data[o:o + 65536] != zero[:size - o]}
    assert set(grains) == expected
    assert list(grains) == sorted(grains)  # guest order


def test_descriptor(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", GiB)
    image = convert(raw, tmp_path / "NAME.vmdk").read_bytes()
    desc = image[512:512 * 21]
    text = desc.rstrip(b"\0").decode()
    assert re.fullmatch(
        r'# Disk DescriptorFile\nversion=1\nCID=[0-9a-f]{8}\nparentCID=ffffffff\n'
        r'createType="streamOptimized"\n\n# Extent description\n'
        r'RW 2097152 SPARSE "disk.vmdk"\n\n# The Disk Data Base\n#DDB\n\n'
        r'ddb.virtualHWVersion = "6"\nddb.geometry.cylinders = "130"\n'
        r'ddb.geometry.heads = "255"\nddb.geometry.sectors = "63"\n'
        r'ddb.adapterType = "lsilogic"\nddb.toolsVersion = "2147483647"\n', text)
    cid = int(re.search(r"CID=([0-9a-f]{8})", text).group(1), 16)
    assert qemu_info(tmp_path / "NAME.vmdk", "vmdk")["format-specific"]["data"]["cid"] == cid


def _grain_payloads(image: bytes, start: int) -> dict[int, bytes]:
    """LBA -> the compressed payload of every grain marker from sector ``start`` on."""
    got, sector = {}, start
    while True:
        val, size = struct.unpack_from("<QI", image, sector * 512)
        if not size:
            return got
        got[val] = image[sector * 512 + 12:sector * 512 + 12 + size]
        sector += -(-(12 + size) // 512)


def _qemu_grains(raw: Path, tmp_path: Path) -> dict[int, bytes]:
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o",
             "adapter_type=lsilogic,subformat=streamOptimized,compat6", raw,
             tmp_path / "qemu.vmdk")
    theirs = (tmp_path / "qemu.vmdk").read_bytes()
    return _grain_payloads(theirs, struct.unpack_from("<Q", theirs, 64)[0])


def test_grains_are_qemu_img_grains_from_the_pinned_deflate(tmp_path: Path) -> None:
    """qemu compresses each grain with zlib's compress() at the default level (from the
    system's libz); we make the same grains with the same parameters from the pinned zlib-ng:
    the same LBAs and content, and each payload exactly zlib-ng's compress() of it."""
    from zlib_ng import zlib_ng

    raw = make_raw(tmp_path / "disk.raw", 9 * MiB + 1536)
    ours = _grain_payloads(convert(raw, tmp_path / "ours.vmdk").read_bytes(), 128)
    theirs = _qemu_grains(raw, tmp_path)
    assert sorted(ours) == sorted(theirs)
    for lba, payload in theirs.items():
        plain = zlib.decompress(payload)
        assert zlib.decompress(ours[lba]) == plain, lba
        assert zlib.compress(plain, 6) == payload, lba  # qemu: the system zlib, level 6
        c = zlib_ng.compressobj(6, zlib_ng.DEFLATED, zlib_ng.MAX_WBITS, 8, 0)
        assert c.compress(plain) + c.flush() == ours[lba], lba


def test_without_the_pin_grains_equal_qemu_img_grains(tmp_path: Path, monkeypatch) -> None:
    """With the deflate pin removed (the system zlib, which qemu links too), the payloads are
    qemu's byte for byte: the grain layout and parameters are qemu's, only the library is not."""
    from composer.streams import deflate

    monkeypatch.setattr(deflate, "_LIB", zlib)
    raw = make_raw(tmp_path / "disk.raw", 9 * MiB + 1536)
    ours = _grain_payloads(convert(raw, tmp_path / "ours.vmdk").read_bytes(), 128)
    assert ours == _qemu_grains(raw, tmp_path)


# --- determinism --------------------------------------------------------------------------------

def test_same_bytes_whatever_environment_threads_and_holes(tmp_path: Path,
                                                           environment) -> None:  # noqa: F811
    raw = make_raw(tmp_path / "disk.raw", 9 * MiB + 1536)
    out = []
    for which, threads in ((0, 1), (1, 4)):
        environment(which)
        out.append(convert(raw, tmp_path / f"o{which}.vmdk", threads=threads).read_bytes())
    assert out[0] == out[1]
    dense = make_dense_copy(raw, tmp_path / "dense.raw")
    assert convert(dense, tmp_path / "dense.vmdk").read_bytes() == out[0]


def test_cid_pin_matters(tmp_path: Path, environment, monkeypatch) -> None:  # noqa: F811
    """With qemu's random CID instead of the derived one, two writes differ."""
    monkeypatch.setattr(vmdk, "cid_from", lambda seed, content: int.from_bytes(os.urandom(4)))
    raw = make_raw(tmp_path / "disk.raw", 9 * MiB + 1536)
    out = []
    for which in (0, 1):
        environment(which)
        out.append(convert(raw, tmp_path / f"o{which}.vmdk").read_bytes())
    assert out[0] != out[1]


def test_cid_follows_seed_and_content(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", 9 * MiB + 1536)
    other = make_raw(tmp_path / "other.raw", 9 * MiB + 1536, seed=2)

    def cid(path: Path, seed: bytes = b"seed") -> bytes:
        image = convert(path, tmp_path / "x.vmdk", seed=seed).read_bytes()
        return re.search(rb"CID=([0-9a-f]{8})", image).group(1)

    base = cid(raw)
    assert cid(raw, b"other") != base
    assert cid(other) != base
    assert vmdk.cid_from(b"", b"") != 0xFFFFFFFF


def test_level_shapes_bytes_and_is_checked(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "disk.raw", 9 * MiB + 1536)
    assert (convert(raw, tmp_path / "a.vmdk", level=1).read_bytes()
            != convert(raw, tmp_path / "b.vmdk").read_bytes())
    with pytest.raises(ComposerError, match="level"):
        convert(raw, tmp_path / "c.vmdk", level=0)
    from zlib_ng import zlib_ng

    assert vmdk.compressor_id() == f"zlib-ng-{zlib_ng.ZLIBNG_VERSION} deflate -6 grains 64KiB"


@pytest.mark.parametrize("name", ["", 'a"b', "d\n"])
def test_bad_extent_names(tmp_path: Path, name: str) -> None:
    raw = make_raw(tmp_path / "disk.raw", MiB)
    with pytest.raises(ComposerError, match="extent name"):
        convert(raw, tmp_path / "x.vmdk", extent_name=name)
