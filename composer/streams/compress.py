"""The stream compressors an initrd may use: what the Linux kernel can unpack, each from a
library the package pins (so the bytes do not depend on the machine), each with one fixed
setting (so the bytes do not depend on a flag we did not record).

- ``gzip``: THE gzip writer (:mod:`composer.streams.gz`), at the build's gzip level;
- ``zstd``: one zstd frame, level 19 window 8 MiB (``zstd -19``), single-threaded, with a
  checksum and no content size (the stream's length is not known up front);
- ``lz4``: the legacy lz4 format the kernel's ``unlz4`` reads (``lz4 -l -9``: magic, then 8 MiB
  chunks, each a 32-bit little-endian length and one high-compression block);
- ``none``: the cpio as it is.

``xz`` is left out on purpose: Python's :mod:`lzma` links the system's liblzma, which no wheel
pins, and a different liblzma may give different bytes.
"""

from __future__ import annotations

import importlib.metadata
import struct
from typing import Any, BinaryIO, Protocol

from composer.errors import ComposerError
from composer.streams.gz import DEFAULT_LEVEL, GzipWriter, compressor_id

NAMES = ("gzip", "zstd", "lz4", "none")
ZSTD_LEVEL = 19
LZ4_MAGIC = 0x184C2102
LZ4_CHUNK = 8 << 20


class Writer(Protocol):
    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: Any) -> Any: ...


def check(name: str) -> str:
    if name not in NAMES:
        raise ComposerError(f"initrd compression must be one of {', '.join(NAMES)}, "
                            f"not {name!r}")
    return name


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def describe(name: str, gzip_level: int = DEFAULT_LEVEL) -> str:
    """Which compressor shaped the bytes, for the build record."""
    if check(name) == "gzip":
        return compressor_id(gzip_level)
    if name == "zstd":
        import zstandard

        libzstd = ".".join(map(str, zstandard.ZSTD_VERSION))
        return f"zstandard-{_version('zstandard')} libzstd-{libzstd} zstd -{ZSTD_LEVEL}"
    if name == "lz4":
        import lz4

        return f"lz4-{_version('lz4')} liblz4-{lz4.library_version_string()} lz4 -l -9"
    return "none"


class _Plain:
    """No compression: the bytes pass through (``out`` stays open)."""

    def __init__(self, out: BinaryIO):
        self._out = out

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._out.write(data)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Zstd(_Plain):
    def __init__(self, out: BinaryIO):
        import zstandard

        super().__init__(out)
        params = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL, window_log=23, threads=0, write_checksum=True,
            write_content_size=False)
        self._writer = zstandard.ZstdCompressor(compression_params=params).stream_writer(
            out, closefd=False)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._writer.write(data)
        return len(data)

    def close(self) -> None:
        self._writer.close()


class _Lz4Legacy(_Plain):
    def __init__(self, out: BinaryIO):
        super().__init__(out)
        self._pending = bytearray()
        out.write(struct.pack("<I", LZ4_MAGIC))

    def _chunk(self, data: bytes) -> None:
        import lz4.block

        block = lz4.block.compress(data, mode="high_compression", compression=9,
                                   store_size=False)
        self._out.write(struct.pack("<I", len(block)) + block)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._pending += data
        while len(self._pending) >= LZ4_CHUNK:
            self._chunk(bytes(self._pending[:LZ4_CHUNK]))
            del self._pending[:LZ4_CHUNK]
        return len(data)

    def close(self) -> None:
        if self._pending:
            self._chunk(bytes(self._pending))
            self._pending.clear()


def writer(name: str, out: BinaryIO, gzip_level: int = DEFAULT_LEVEL) -> Writer:
    """A writer compressing into ``out`` with ``name`` (``close`` leaves ``out`` open)."""
    if check(name) == "gzip":
        return GzipWriter(out, gzip_level)
    if name == "zstd":
        return _Zstd(out)
    if name == "lz4":
        return _Lz4Legacy(out)
    return _Plain(out)
