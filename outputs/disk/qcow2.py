"""qcow2 version 3 from a raw disk image, in one pass, the same bytes for the same disk.

Layout (64 KiB clusters, 16-bit refcounts, no backing file, no snapshots, no compression)::

    cluster 0            header (104 bytes, no header extensions)
    then, per 512 MiB    the non-zero data clusters in guest order, then their L2 table
    then                 the L1 table, the refcount blocks, the refcount table

All-zero clusters are left unallocated (L2 entry 0) and an all-zero 512 MiB range gets no L2
table (L1 entry 0): a sparse 25 GiB disk costs a few clusters. Every cluster has refcount 1, so
every L1/L2 entry carries the COPIED flag, as ``qemu-img check`` expects. The header is written
last (the file is seeked back to its start), so the output must be a seekable file; memory holds
one L2 table and the L1 table. qcow2 has no timestamp, UUID or host field: nothing to pin.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from outputs.disk.rawscan import data_chunks, disk_size, round_up

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
L2_ENTRIES = CLUSTER // 8
L2_SPAN = L2_ENTRIES * CLUSTER  # guest bytes one L2 table maps: 512 MiB
REFCOUNT_ORDER = 4  # 16-bit refcounts, qemu's default
REFS_PER_BLOCK = CLUSTER * 8 >> REFCOUNT_ORDER
COPIED = 1 << 63
HEADER_LENGTH = 104


def header(size: int, l1_size: int, l1_offset: int, rt_offset: int, rt_clusters: int) -> bytes:
    """The version-3 header; the zero rest of cluster 0 ends the (empty) extension list."""
    return struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb", 3, 0, 0, CLUSTER_BITS, size, 0,  # magic, version, no backing, no crypt
        l1_size, l1_offset, rt_offset, rt_clusters, 0, 0,  # no snapshots
        0, 0, 0, REFCOUNT_ORDER, HEADER_LENGTH,  # no incompatible/compatible/autoclear features
    )


def refcount_layout(clusters: int) -> tuple[int, int]:
    """(refcount blocks, refcount table clusters) that cover ``clusters`` plus themselves."""
    blocks, table = 1, 1
    while True:
        total = clusters + blocks + table
        need_blocks = -(-total // REFS_PER_BLOCK)
        need_table = -(-need_blocks * 8 // CLUSTER)
        if (need_blocks, need_table) == (blocks, table):
            return blocks, table
        blocks, table = max(blocks, need_blocks), max(table, need_table)


def write_qcow2(raw: Path, out: BinaryIO) -> None:
    """Write ``raw`` (a disk image, possibly sparse) as qcow2 into ``out`` (a seekable file
    positioned where the image starts). The virtual size is the raw file's size."""
    with open(raw, "rb") as src:
        fd = src.fileno()
        size = disk_size(fd)
        if size == 0 or size % 512:
            raise ComposerError(f"a qcow2 disk must be a positive multiple of 512 bytes, "
                                f"not {size}")
        l1_size = -(-size // L2_SPAN)
        base = out.tell()
        out.write(bytes(CLUSTER))  # cluster 0: the header, written last
        host = 1  # the next free host cluster
        l1 = bytearray(round_up(l1_size * 8, CLUSTER))
        l2 = bytearray(CLUSTER)
        l2_index = -1

        def flush_l2() -> None:
            nonlocal host
            if l2_index < 0:
                return
            out.write(l2)
            struct.pack_into(">Q", l1, l2_index * 8, (host << CLUSTER_BITS) | COPIED)
            host += 1

        for offset, data in data_chunks(fd, size, CLUSTER):
            index = offset // L2_SPAN
            if index != l2_index:
                flush_l2()
                l2[:] = bytes(CLUSTER)
                l2_index = index
            out.write(data if len(data) == CLUSTER else data.ljust(CLUSTER, b"\0"))
            entry = (offset % L2_SPAN) // CLUSTER
            struct.pack_into(">Q", l2, entry * 8, (host << CLUSTER_BITS) | COPIED)
            host += 1
        flush_l2()

        l1_offset = host << CLUSTER_BITS
        out.write(l1)
        host += len(l1) // CLUSTER
        blocks, table = refcount_layout(host)
        total = host + blocks + table
        one = struct.pack(">H", 1)
        for b in range(blocks):
            used = min(REFS_PER_BLOCK, total - b * REFS_PER_BLOCK)
            out.write(one * used + bytes(2 * (REFS_PER_BLOCK - used)))
        rt = b"".join(struct.pack(">Q", (host + b) << CLUSTER_BITS) for b in range(blocks))
        out.write(rt.ljust(table * CLUSTER, b"\0"))
        rt_offset = (host + blocks) << CLUSTER_BITS
        end = out.tell()
        out.seek(base)
        out.write(header(size, l1_size, l1_offset, rt_offset, table))
        out.seek(end)
