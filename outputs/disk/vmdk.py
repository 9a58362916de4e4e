"""streamOptimized VMDK (vSphere's import format) from a raw disk image, the same bytes for the
same disk, as qemu's ``block/vmdk.c`` and VMware's stream readers take it.

Layout (sectors of 512 bytes; markers are ``u64 val, u32 size, u32 type`` padded to a sector)::

    0         sparse header "KDMV" v3, flags NL_DETECT|COMPRESS|MARKER, grain 128 sectors,
              512 GTEs per GT, descriptor at 1 (20 sectors), GD offset "at end" (-1)
    1..20     the embedded descriptor (CID derived from the seed and the content)
    128..     per 32 MiB of guest data: its non-zero grains in guest order, each as a grain
              marker (LBA, compressed size) + one zlib stream, then a GT marker + the grain table
    then      GD marker + the grain directory, footer marker + footer (the header with the real
              GD offset), end-of-stream marker

All-zero grains are not stored (GTE 0) and a grain table with no grain is not written (GD
entry 0). When the size is not a whole number of grains, the last grain holds only the sectors
up to the capacity, as qemu writes it. Grains are zlib streams (RFC 1950, as VMware and qemu's
``uncompress`` expect) at a fixed level with zlib's default window, memory level and strategy
(``composer.streams.gz``'s rules), compressed on a bounded thread pool and written in order, so the
thread count never changes a byte. The deflate library is the pinned one
(:mod:`composer.streams.deflate`, zlib-ng), named by :func:`compressor_id`, so the bytes are the
same on every machine; qemu-img's grains (from the system's zlib) are the same grains with the
same parameters and content, compressed by another implementation (tested). The descriptor is
written last (the output is seeked back to sector 1): it needs the content's CID.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.streams import deflate
from composer.streams.gz import DEFAULT_LEVEL, check_level
from outputs.disk.rawscan import ContentDigest, data_chunks, derive, disk_size

SECTOR = 512
GRAIN_SECTORS = 128
GRAIN = GRAIN_SECTORS * SECTOR
GTES = 512  # grain table entries per grain table
GT_SPAN = GTES * GRAIN  # guest bytes one grain table maps: 32 MiB
DESC_OFFSET, DESC_SECTORS = 1, 20
OVERHEAD = 128  # sectors before the first grain
FLAGS = 0x1 | 0x10000 | 0x20000  # valid newline detection, compressed grains, markers
GD_AT_END = 0xFFFFFFFFFFFFFFFF
MARKER_EOS, MARKER_GT, MARKER_GD, MARKER_FOOTER = 0, 1, 2, 3


def compressor_id(level: int = DEFAULT_LEVEL) -> str:
    """Which compressor shaped the grains, for the build record."""
    return f"{deflate.library_id()} deflate -{check_level(level)} grains 64KiB"


def compress_grain(grain: bytes, level: int) -> bytes:
    """One grain as one zlib stream (RFC 1950)."""
    c = deflate.compressobj(level, deflate.MAX_WBITS)
    return c.compress(grain) + deflate.finish(c)


def header(capacity: int, gd_offset: int) -> bytes:
    body = struct.pack(
        "<4sIIQQQQIQQQB4sH", b"KDMV", 3, FLAGS, capacity, GRAIN_SECTORS, DESC_OFFSET,
        DESC_SECTORS, GTES, 0, gd_offset, OVERHEAD, 0, b"\n \r\n", 1,  # 1: deflate
    )
    return body.ljust(SECTOR, b"\0")


def marker(val: int, kind: int) -> bytes:
    return struct.pack("<QII", val, 0, kind).ljust(SECTOR, b"\0")


def descriptor(cid: int, capacity: int, extent_name: str, adapter: str = "lsilogic",
               hw_version: str = "6") -> bytes:
    """The embedded descriptor, in qemu's wording (linuxkit's ``compat6`` and lsilogic)."""
    heads = 16 if adapter == "ide" else 255
    cylinders = capacity * SECTOR // (63 * heads * SECTOR)
    text = (
        "# Disk DescriptorFile\n"
        "version=1\n"
        f"CID={cid:08x}\n"
        "parentCID=ffffffff\n"
        'createType="streamOptimized"\n'
        "\n"
        "# Extent description\n"
        f'RW {capacity} SPARSE "{extent_name}"\n'
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        f'ddb.virtualHWVersion = "{hw_version}"\n'
        f'ddb.geometry.cylinders = "{cylinders}"\n'
        f'ddb.geometry.heads = "{heads}"\n'
        'ddb.geometry.sectors = "63"\n'
        f'ddb.adapterType = "{adapter}"\n'
        'ddb.toolsVersion = "2147483647"\n'
    ).encode("ascii")
    return text.ljust(DESC_SECTORS * SECTOR, b"\0")


def cid_from(seed: bytes, content: bytes) -> int:
    """A content CID; never ffffffff, which VMware reads as "no parent"."""
    cid = int.from_bytes(derive("vmdk cid", seed, content, 4), "big")
    return cid if cid != 0xFFFFFFFF else 0xFFFFFFFE


def write_vmdk(raw: Path, out: BinaryIO, *, seed: bytes, extent_name: str = "disk.vmdk",
               level: int = DEFAULT_LEVEL, threads: int | None = None) -> None:
    """Write ``raw`` as a streamOptimized VMDK into ``out`` (a seekable file). The descriptor
    names the extent ``extent_name`` (linuxkit's files always say "disk.vmdk")."""
    check_level(level)
    if not extent_name or '"' in extent_name or not extent_name.isascii() \
            or not extent_name.isprintable():
        raise ComposerError(f"not a usable VMDK extent name: {extent_name!r}")
    with open(raw, "rb") as src:
        fd = src.fileno()
        size = disk_size(fd)
        if size == 0 or size % SECTOR:
            raise ComposerError(f"a VMDK disk must be a positive multiple of 512 bytes, "
                                f"not {size}")
        capacity = size // SECTOR
        base = out.tell()
        sector = OVERHEAD  # where the next record goes
        out.write(header(capacity, GD_AT_END).ljust(OVERHEAD * SECTOR, b"\0"))
        gd = [0] * -(-size // GT_SPAN)
        gt = bytearray(GTES * 4)
        gt_index = -1
        content = ContentDigest(size)

        def emit(data: bytes | bytearray) -> None:
            nonlocal sector
            out.write(data)
            pad = -len(data) % SECTOR
            if pad:
                out.write(bytes(pad))
            sector += (len(data) + pad) // SECTOR

        def flush_gt() -> None:
            if gt_index < 0:
                return
            emit(marker(len(gt) // SECTOR, MARKER_GT))
            gd[gt_index] = sector
            emit(gt)

        def put(offset: int, compressed: bytes) -> None:
            nonlocal gt_index
            index = offset // GT_SPAN
            if index != gt_index:
                flush_gt()
                gt[:] = bytes(len(gt))
                gt_index = index
            struct.pack_into("<I", gt, (offset % GT_SPAN) // GRAIN * 4, sector)
            emit(struct.pack("<QI", offset // SECTOR, len(compressed)) + compressed)

        workers = threads or min(4, os.cpu_count() or 1)
        inflight: deque[tuple[int, Future[bytes]]] = deque()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            try:
                for offset, data in data_chunks(fd, size, GRAIN):
                    content.update(offset, data)
                    # a short last grain is compressed as it is (qemu does the same)
                    inflight.append((offset, pool.submit(compress_grain, data, level)))
                    while len(inflight) >= 2 * workers:
                        done_offset, future = inflight.popleft()
                        put(done_offset, future.result())
                while inflight:
                    done_offset, future = inflight.popleft()
                    put(done_offset, future.result())
            finally:
                for _, future in inflight:
                    future.cancel()
        flush_gt()

        gd_bytes = struct.pack(f"<{len(gd)}I", *gd)
        emit(marker(-(-len(gd_bytes) // SECTOR), MARKER_GD))
        gd_offset = sector
        emit(gd_bytes)
        emit(marker(1, MARKER_FOOTER))
        emit(header(capacity, gd_offset))
        emit(marker(0, MARKER_EOS))
        end = out.tell()
        out.seek(base + DESC_OFFSET * SECTOR)
        out.write(descriptor(cid_from(seed, content.digest()), capacity, extent_name))
        out.seek(end)
