"""THE deflate library: every compressed byte we write (gzip members, vmdk grains) comes from
here, and here from zlib-ng as bundled in the ``zlib-ng`` wheel that pyproject.toml pins exactly,
never from the system's libz.

Why a pin: deflate is not canonical. Python's :mod:`zlib` links whatever libz the machine has:
Debian's zlib 1.2.13 and 1.3.1 agree, but Fedora's zlib-ng-compat (and any other
implementation) gives other bytes for the same input and level, so a release built on one
distribution could not be verified on another. The wheel links zlib-ng statically, so the same
pin gives the same bytes on every machine. Why zlib-ng (docs/reproducibility.md has the
numbers): its API mirrors zlib's (``compressobj`` with ``zdict``, sync flushes: the block
layout of :mod:`composer.streams.gz` carries over), it has all nine levels (``--gzip-level``
keeps its meaning; ISA-L has four, 0-3, none of them zlib's 6 or 9), and it compresses about
2x (level 6) to 3x (level 9) faster than zlib 1.2.13, releasing the GIL as zlib does (so
GzipWriter's threads still run in parallel).

Inflating does not shape bytes (any correct inflater gives the same output), so readers keep
using :mod:`gzip`/:mod:`zlib` or ISA-L. CRC-32 is a fixed function; it is computed here too
only because zlib-ng's is fast.

``tests/golden/test_zlib_swap.py`` replaces Python's :mod:`zlib` with another implementation
and sees identical bytes, then points :data:`_LIB` at that replacement (removing the pin) and
sees the bytes change.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

PACKAGE = "zlib-ng"  # the PyPI distribution, pinned with == in pyproject.toml; the record lists it
_LIB: ModuleType | None = None  # set by _lib(); tests point it elsewhere to remove the pin

DEFLATED = 8
MAX_WBITS = 15
DEF_MEM_LEVEL = 8
Z_DEFAULT_STRATEGY = 0


def _lib() -> ModuleType:
    """The pin: the one place the deflate implementation is chosen. Imported on first use, so
    the format table stays importable without the wheel (scripts/crosscheck.sh lists formats
    with the bare system Python)."""
    global _LIB
    if _LIB is None:
        from zlib_ng import zlib_ng

        _LIB = zlib_ng
    return _LIB


def library_id() -> str:
    """The deflate implementation that shapes the bytes, e.g. ``zlib-ng-2.3.3``: part of every
    compressor id, so the build record names it."""
    from zlib_ng import zlib_ng

    return f"zlib-ng-{zlib_ng.ZLIBNG_VERSION}"


def compressobj(level: int, wbits: int, zdict: bytes = b"") -> Any:
    """A deflate compressor at ``level`` with the default memory level and strategy; ``wbits``
    as zlib's: -15 raw deflate, 15 a zlib stream (RFC 1950), 31 a gzip member."""
    kwargs = {"zdict": zdict} if zdict else {}
    return _lib().compressobj(level, DEFLATED, wbits, DEF_MEM_LEVEL, Z_DEFAULT_STRATEGY,
                              **kwargs)


def finish(compressor: Any, final: bool = True) -> bytes:
    """The compressor's pending output: ending the stream, or at a byte boundary (sync flush)
    so another block can follow."""
    lib = _lib()
    return compressor.flush(lib.Z_FINISH if final else lib.Z_SYNC_FLUSH)


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    return _lib().crc32(data, value)
