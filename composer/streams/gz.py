"""A deterministic, streaming gzip writer (RFC 1952) on top of the pinned deflate library
(:mod:`composer.streams.deflate`: zlib-ng from its wheel, never the system's libz).

We write the 10-byte gzip header ourselves instead of using :mod:`gzip` or zlib's own gzip
wrapper, because both put host-dependent bytes there (zlib's OS byte depends on the platform it
was compiled for; :class:`gzip.GzipFile` has changed buffering and header rules across Python
versions). Ours is always::

    1f 8b  08 (deflate)  00 (no FNAME, no FEXTRA, ...)  00000000 (mtime 0)  XFL  03 (Unix)

with XFL = 2 for level 9, 4 for level 1, else 0 (what gzip(1) and zlib write). The body is raw
deflate at a fixed level with zlib's default window, memory level and strategy, in independent
256 KiB blocks (see :class:`GzipWriter`), followed by CRC-32 and the length mod 2**32.

The deflate bytes depend on the deflate implementation and its version, which the package pins
(so they are the same on every machine); :func:`compressor_id` names it with the settings for
the build record: same id, same bytes.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from composer.errors import ComposerError
from composer.streams import deflate
from composer.streams.types import Writable

DEFAULT_LEVEL = 6  # gzip(1)'s and zlib's default: the usual speed/size balance
BLOCK = 256 * 1024  # fixed deflate block: part of the output's identity, like the level
WINDOW = 32 * 1024  # deflate's window: how much preceding input primes each block


def check_level(level: int) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 9:
        raise ComposerError(f"gzip level must be an integer from 1 to 9, not {level!r}")
    return level


def header(level: int) -> bytes:
    """The fixed gzip member header for ``level``."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00" + b"\0\0\0\0" + bytes([xfl, 3])


def compressor_id(level: int = DEFAULT_LEVEL) -> str:
    """Which compressor shaped the bytes, e.g. ``zlib-ng-2.3.3 gzip -6 blocks 256KiB``: the
    pinned library and every setting, for the build record and the golden digests."""
    return f"{deflate.library_id()} gzip -{check_level(level)} blocks 256KiB"


class GzipWriter:
    """Write-only file object that gzips into ``out`` as data arrives, on every core.

    The input is cut into fixed 256 KiB blocks; each block is deflated on its own, primed with
    the 32 KiB of input before it (so it compresses as well as a single stream), and ends with a
    sync flush, the last with the final block: one valid deflate stream, as pigz makes. The
    bytes depend on the block size and the level only, never on the number of threads (tested),
    and memory is bounded by ``2 * threads`` blocks in flight.

    ``close`` finishes the gzip member but leaves ``out`` open (the caller owns it).
    """

    def __init__(self, out: Writable, level: int = DEFAULT_LEVEL, threads: int | None = None):
        self._out = out
        self._level = check_level(level)
        self._crc = 0
        self._size = 0
        self._block = bytearray()
        self._dictionary = b""
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1))
        self._inflight: deque[Future[bytes]] = deque()
        self._limit = 2 * (threads or min(4, os.cpu_count() or 1))
        out.write(header(level))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed GzipWriter")
        n = len(data)
        self._crc = deflate.crc32(data, self._crc)
        self._size += n
        view = memoryview(data)
        while view:
            take = BLOCK - len(self._block)
            self._block += view[:take]
            view = view[take:]
            if len(self._block) == BLOCK:
                self._submit(final=False)
        return n

    def _submit(self, final: bool) -> None:
        block = bytes(self._block)
        self._block.clear()
        self._inflight.append(self._pool.submit(_deflate_block, block, self._dictionary,
                                                self._level, final))
        self._dictionary = block[-WINDOW:]
        while len(self._inflight) >= self._limit:
            self._out.write(self._inflight.popleft().result())

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._submit(final=True)
            while self._inflight:
                self._out.write(self._inflight.popleft().result())
            self._out.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> GzipWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)


def _deflate_block(block: bytes, dictionary: bytes, level: int, final: bool) -> bytes:
    """One block as raw deflate; the library releases the GIL while it works."""
    compressor = deflate.compressobj(level, -deflate.MAX_WBITS, dictionary)
    return compressor.compress(block) + deflate.finish(compressor, final)
