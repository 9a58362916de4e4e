"""gcp: a raw disk as Google Compute Engine imports it, ``disk.raw`` alone in a gzip'd GNU tar.

GCE wants the member named ``disk.raw``, its size a multiple of 1 GiB, and a GNU-format tar
(Google's own instructions: ``tar --format=oldgnu -Sczf``). The canonical tar writer
(``composer.tar.canon``) writes pax, so this one member gets its own small GNU header writer.

The member is a GNU sparse member (type ``S``) by default: only the non-zero 64 KiB chunks are
stored, found by content (``rawscan``), not by where the raw file has holes, so the bytes are the
same however the raw was written; they equal what GNU tar 1.34 writes with ``--format=oldgnu -S
--mtime=@EPOCH --owner=root:0 --group=root:0 --mode=0644`` for a raw whose holes are exactly its
zero chunks (tested). The sparse map must precede the data, so the raw is walked twice: once to
map it, once to copy it. ``sparse=False`` stores every byte (linuxkit's ``tar cf``, type ``0``).

Fields: mode 0644, uid/gid 0, uname/gname root, mtime = the build epoch, no atime/ctime,
numbers in octal or, past 8 GiB, GNU base-256. The stream goes through the one gzip writer
(``composer.streams.gz``), so the gzip header is fixed and the bytes never depend on the thread
count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.streams.gz import GzipWriter, check_level, compressor_id
from outputs.disk.rawscan import CHUNK, GiB, data_chunks, disk_size

__all__ = ["LEVEL", "compressor_id", "write_gcp", "write_gcp_tar"]

BLOCK = 512
RECORD = 20 * BLOCK
MEMBER = "disk.raw"
GNU_MAGIC = b"ustar  \0"
IN_HEADER, PER_EXTENSION = 4, 21  # sparse map entries in the header and in each extension
COPY = 1 << 20
LEVEL = 9  # linuxkit's gzip -9


def number(value: int, width: int) -> bytes:
    """A GNU tar number field: NUL-terminated octal, or base-256 when octal does not fit."""
    if value < 0:
        raise ValueError(f"negative tar number {value}")
    if value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    if value >= 1 << (8 * (width - 1)):
        raise ComposerError(f"{value} does not fit a tar header field")
    return b"\x80" + value.to_bytes(width - 1, "big")


def _sparse_entries(entries: list[tuple[int, int]]) -> bytes:
    return b"".join(number(off, 12) + number(n, 12) for off, n in entries)


def header(size: int, mtime: int, regions: list[tuple[int, int]] | None) -> list[bytes]:
    """The header block (and, for a sparse member with many regions, its extension blocks)."""
    stored = size if regions is None else sum(n for _, n in regions)
    head = bytearray(BLOCK)
    head[0:len(MEMBER)] = MEMBER.encode()
    head[100:136] = number(0o644, 8) + number(0, 8) + number(0, 8) + number(stored, 12)
    head[136:148] = number(mtime, 12)
    head[148:156] = b" " * 8
    head[156] = ord("0" if regions is None else "S")
    head[257:265] = GNU_MAGIC
    head[265:269] = b"root"
    head[297:301] = b"root"
    blocks = [head]
    if regions is not None:
        entries = [*regions, (size, 0)]  # GNU tar always ends the map with (size, 0)
        head[386:386 + 24 * min(IN_HEADER, len(entries))] = _sparse_entries(entries[:IN_HEADER])
        head[483:495] = number(size, 12)
        rest = entries[IN_HEADER:]
        head[482] = 1 if rest else 0
        while rest:
            ext = bytearray(BLOCK)
            part, rest = rest[:PER_EXTENSION], rest[PER_EXTENSION:]
            ext[0:24 * len(part)] = _sparse_entries(part)
            ext[504] = 1 if rest else 0
            blocks.append(ext)
    head[148:156] = b"%06o\0 " % sum(head)
    return [bytes(b) for b in blocks]


def data_regions(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the runs of non-zero 64 KiB chunks, merged, in order."""
    regions: list[tuple[int, int]] = []
    for offset, data in data_chunks(fd, size, CHUNK):
        if regions and regions[-1][0] + regions[-1][1] == offset:
            regions[-1] = (regions[-1][0], regions[-1][1] + len(data))
        else:
            regions.append((offset, len(data)))
    return regions


def _read(fd: int, offset: int, length: int) -> Iterator[bytes]:
    end = offset + length
    while offset < end:
        want = min(COPY, end - offset)
        buf = os.pread(fd, want, offset)
        if len(buf) != want:
            raise ComposerError(f"the disk image changed while it was read (short read at "
                                f"offset {offset + len(buf)})")
        yield buf
        offset += want


def write_gcp_tar(raw: Path, out: BinaryIO | GzipWriter, *, epoch: int,
                  sparse: bool = True) -> None:
    """The uncompressed tar (what :func:`write_gcp` gzips), written to ``out``."""
    with open(raw, "rb") as src:
        fd = src.fileno()
        size = disk_size(fd)
        if size == 0 or size % GiB:
            raise ComposerError(f"a gcp disk.raw must be a positive multiple of 1 GiB, "
                                f"not {size} bytes")
        regions = data_regions(fd, size) if sparse else None
        written = 0
        for block in header(size, max(0, epoch), regions):
            out.write(block)
            written += BLOCK
        for offset, length in regions if regions is not None else [(0, size)]:
            for buf in _read(fd, offset, length):
                out.write(buf)
            written += length
            if length % BLOCK:
                out.write(bytes(-length % BLOCK))
                written += -length % BLOCK
        trailer = 2 * BLOCK + (-(written + 2 * BLOCK) % RECORD)
        out.write(bytes(trailer))


def write_gcp(raw: Path, out: BinaryIO, *, epoch: int, sparse: bool = True, level: int = LEVEL,
              threads: int | None = None) -> None:
    """Write ``raw`` as ``NAME.img.tar.gz`` content into ``out``; gzip -9 by default, as
    linuxkit's ``gzip -9``."""
    with GzipWriter(out, check_level(level), threads=threads) as gz:
        write_gcp_tar(raw, gz, epoch=epoch, sparse=sparse)
