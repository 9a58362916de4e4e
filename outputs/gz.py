"""A deterministic, streaming gzip writer (RFC 1952) on top of :mod:`zlib`.

We write the 10-byte gzip header ourselves instead of using :mod:`gzip` or zlib's own gzip
wrapper, because both put host-dependent bytes there (zlib's OS byte depends on the platform it
was compiled for; :class:`gzip.GzipFile` has changed buffering and header rules across Python
versions). Ours is always::

    1f 8b  08 (deflate)  00 (no FNAME, no FEXTRA, ...)  00000000 (mtime 0)  XFL  03 (Unix)

with XFL = 2 for level 9, 4 for level 1, else 0 (what gzip(1) and zlib write). The body is raw
deflate at a fixed level with zlib's default window, memory level and strategy, followed by CRC-32
and the length mod 2**32.

The deflate bytes still depend on the zlib implementation and version (zlib-ng differs), so
:func:`compressor_id` names both for the build record: same id, same bytes.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

from composer.errors import ComposerError

DEFAULT_LEVEL = 6  # gzip(1)'s and zlib's default: the usual speed/size balance
_BUFFER = 256 * 1024  # small writes (cpio headers) are batched before deflate sees them


def check_level(level: int) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 9:
        raise ComposerError(f"gzip level must be an integer from 1 to 9, not {level!r}")
    return level


def header(level: int) -> bytes:
    """The fixed gzip member header for ``level``."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00" + b"\0\0\0\0" + bytes([xfl, 3])


def compressor_id(level: int = DEFAULT_LEVEL) -> str:
    """Which compressor shaped the bytes, e.g. ``zlib-1.2.13 gzip -6``, for the build record."""
    return f"zlib-{zlib.ZLIB_RUNTIME_VERSION} gzip -{check_level(level)}"


class GzipWriter:
    """Write-only file object that gzips into ``out`` as data arrives; memory stays flat.

    ``close`` finishes the gzip member but leaves ``out`` open (the caller owns it).
    """

    def __init__(self, out: BinaryIO, level: int = DEFAULT_LEVEL):
        self._out = out
        self._deflate = zlib.compressobj(check_level(level), zlib.DEFLATED, -zlib.MAX_WBITS,
                                         zlib.DEF_MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY)
        self._crc = 0
        self._size = 0
        self._pending = bytearray()
        self._closed = False
        out.write(header(level))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed GzipWriter")
        n = len(data)
        self._crc = zlib.crc32(data, self._crc)
        self._size += n
        if len(self._pending) + n < _BUFFER:
            self._pending += data
        else:
            self._drain()
            self._out.write(self._deflate.compress(data))
        return n

    def _drain(self) -> None:
        if self._pending:
            self._out.write(self._deflate.compress(bytes(self._pending)))
            self._pending.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._drain()
        self._out.write(self._deflate.flush(zlib.Z_FINISH))
        self._out.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._closed = True

    def __enter__(self) -> GzipWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
