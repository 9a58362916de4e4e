"""Fixed and dynamic VHD from a raw disk image, the same bytes for the same disk and epoch.

Fixed (Azure's format): the raw bytes, then a 512-byte footer. Azure wants the virtual size a
whole number of MiB and read exactly, so the footer is what ``qemu-img convert -o
subformat=fixed,force_size`` writes (the option qemu has for Azure): creator "qem2" 5.3 on
"Wi2k", CHS 65535/16/255 (the maximum geometry, which makes qemu read the footer's current size;
Hyper-V reads the current size anyway), original = current size. Zero chunks are written as
holes, so the file is as sparse as the raw. Byte-identical to qemu-img 7.2's output apart from
the timestamp, UUID and checksum (tested).

Dynamic: footer copy at 0, dynamic header ("cxsparse") at 512, the BAT at 1536 (padded to a
sector), then one 512-byte sector bitmap (all ones) + 2 MiB of data per block that holds a
non-zero byte, in guest order, and the footer. All-zero blocks stay unallocated (BAT
0xFFFFFFFF). ``force_size=False`` gives qemu's default instead: creator "qemu" and a CHS geometry
rounded up from the size, the virtual size being C*H*S sectors (what linuxkit's dynamic-vhd has).

Pins: the footer timestamp is the build epoch as seconds since 2000-01-01 (clamped at 0 for older
epochs); the UUID is derived from the caller's seed and the disk's content (``rawscan.derive``);
nothing else varies.
"""

from __future__ import annotations

import struct
import sys
from array import array
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from outputs.disk.rawscan import ContentDigest, MiB, data_chunks, derive_uuid, disk_size

SECTOR = 512
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z
FIXED, DYNAMIC = 2, 3
BLOCK = 2 * MiB
MAX_CHS = (65535, 16, 255)
MAX_SECTORS = 65535 * 255 * 255  # qemu's and the spec's 2040 GiB limit for dynamic disks
CREATOR_VERSION = 0x00050003
CREATOR_OS = b"Wi2k"
FOOTER_COOKIE = b"conectix"


def timestamp(epoch: int) -> int:
    """The footer time: seconds since 2000-01-01, clamped at 0 (SOURCE_DATE_EPOCH=0 is common)."""
    ts = max(0, epoch - VHD_EPOCH)
    if ts >= 1 << 32:
        raise ComposerError(f"epoch {epoch} is past what a VHD timestamp can hold (year 2136)")
    return ts


def _checksum(data: bytes) -> int:
    return ~sum(data) & 0xFFFFFFFF


def calculate_geometry(total_sectors: int) -> tuple[int, int, int]:
    """CHS for ``total_sectors`` as the VHD specification (and qemu's vpc.c) computes it."""
    total_sectors = min(total_sectors, 65535 * 16 * 255)
    if total_sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total_sectors // spt
    else:
        spt = 17
        cth = total_sectors // spt
        heads = max(4, -(-cth // 1024))
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total_sectors // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total_sectors // spt
    return cth // heads, heads, spt


def chs_rounded(size: int) -> tuple[tuple[int, int, int], int]:
    """qemu's size without force_size: the smallest CHS geometry holding ``size``, and its size."""
    total = min(65535 * 16 * 255, size // SECTOR)
    chs = (0, 0, 0)
    i = 0
    while total > chs[0] * chs[1] * chs[2]:
        chs = calculate_geometry(total + i)
        i += 1
    if chs[0] * chs[1] * chs[2] == 65535 * 16 * 255:
        return chs, size
    return chs, chs[0] * chs[1] * chs[2] * SECTOR


def footer(size: int, disk_type: int, ts: int, uuid: bytes, force_size: bool = True,
           chs: tuple[int, int, int] = MAX_CHS) -> bytes:
    data_offset = 0xFFFFFFFFFFFFFFFF if disk_type == FIXED else SECTOR
    creator = b"qem2" if force_size else b"qemu"
    body = struct.pack(
        ">8sIIQI4sI4sQQHBBII16sB", FOOTER_COOKIE, 2, 0x00010000, data_offset, ts, creator,
        CREATOR_VERSION, CREATOR_OS, size, size, chs[0], chs[1], chs[2], disk_type, 0, uuid, 0,
    ).ljust(SECTOR, b"\0")
    return body[:64] + struct.pack(">I", _checksum(body)) + body[68:]


def dynamic_header(entries: int) -> bytes:
    body = struct.pack(">8sQQIIII", b"cxsparse", 0xFFFFFFFFFFFFFFFF, 3 * SECTOR, 0x00010000,
                       entries, BLOCK, 0).ljust(1024, b"\0")
    return body[:36] + struct.pack(">I", _checksum(body)) + body[40:]


def _geometry(size: int, force_size: bool) -> tuple[tuple[int, int, int], int]:
    if size == 0 or size % SECTOR:
        raise ComposerError(f"a VHD disk must be a positive multiple of 512 bytes, not {size}")
    return (MAX_CHS, size) if force_size else chs_rounded(size)


class _Writer:
    """Sequential writes that become holes where the data is zero (seek instead of write)."""

    def __init__(self, out: BinaryIO):
        self.out, self.base = out, out.tell()
        out.truncate()  # a hole must read as zeros, not as what a reused file held
        self.pos = 0  # relative to base

    def at(self, offset: int, data: bytes) -> None:
        if offset != self.pos:
            self.out.seek(self.base + offset)
        self.out.write(data)
        self.pos = offset + len(data)


def write_vhd_fixed(raw: Path, out: BinaryIO, *, epoch: int, seed: bytes,
                    force_size: bool = True) -> None:
    """Write ``raw`` as a fixed VHD into ``out`` (a seekable file). With ``force_size`` (the
    default, Azure's rule) the size must be a whole number of MiB and is kept exactly."""
    with open(raw, "rb") as src:
        fd = src.fileno()
        size = disk_size(fd)
        if force_size and (size == 0 or size % MiB):
            raise ComposerError(f"a fixed VHD for Azure must be a whole number of MiB, "
                                f"not {size} bytes")
        chs, virtual = _geometry(size, force_size)
        content = ContentDigest(virtual)
        w = _Writer(out)
        for offset, data in data_chunks(fd, size):
            w.at(offset, data)
            content.update(offset, data)
        uuid = derive_uuid("vhd uuid", seed, content.digest())
        w.at(virtual, footer(virtual, FIXED, timestamp(epoch), uuid, force_size, chs))


def write_vhd_dynamic(raw: Path, out: BinaryIO, *, epoch: int, seed: bytes,
                      force_size: bool = True) -> None:
    """Write ``raw`` as a dynamic VHD into ``out`` (a seekable file, seeked back to its start
    at the end for the footer copy, header and BAT)."""
    with open(raw, "rb") as src:
        fd = src.fileno()
        size = disk_size(fd)
        chs, virtual = _geometry(size, force_size)
        if virtual > MAX_SECTORS * SECTOR:
            raise ComposerError(f"a dynamic VHD holds at most 2040 GiB, not {virtual} bytes")
        entries = -(-virtual // BLOCK)
        bat = array("I", [0xFFFFFFFF]) * entries
        bat_bytes = -(-entries * 4 // SECTOR) * SECTOR
        next_block = 3 * SECTOR + bat_bytes  # where the next allocated block goes
        content = ContentDigest(virtual)
        w = _Writer(out)
        block_start = -1  # file offset of the current block's data
        block = -1
        for offset, data in data_chunks(fd, size):
            if offset // BLOCK != block:
                block = offset // BLOCK
                bat[block] = next_block // SECTOR
                w.at(next_block, b"\xff" * SECTOR)  # every sector present
                block_start = next_block + SECTOR
                next_block = block_start + BLOCK
            w.at(block_start + offset % BLOCK, data)
            content.update(offset, data)
        uuid = derive_uuid("vhd uuid", seed, content.digest())
        tail = footer(virtual, DYNAMIC, timestamp(epoch), uuid, force_size, chs)
        w.at(next_block, tail)
        if sys.byteorder == "little":
            bat.byteswap()  # the BAT is big-endian
        w.at(0, tail + dynamic_header(entries) + bat.tobytes().ljust(bat_bytes, b"\xff"))
        out.seek(w.base + next_block + SECTOR)
