"""Digests of byte streams: THE digest-verifying reader, the hashing writer, ``sha256_file``.

A leaf both phases use: phase one verifies every blob it reads (:class:`VerifyingReader`) and
names every blob it writes (:class:`HashingWriter`); phase two hashes its outputs and the pinned
bootloaders. Nothing here knows about caches, registries or formats.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.streams.types import Readable, Writable

CHUNK = 1 << 20


class DigestMismatch(ComposerError):
    """A blob's bytes do not match the digest or size that named it."""


def check_digest(digest: str) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest; anything else is refused."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ComposerError(f"unsupported or malformed digest {digest!r}")
    return hexpart


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class VerifyingReader(io.RawIOBase):
    """Reads ``raw`` and, at its end, insists it was exactly ``size`` bytes hashing to ``digest``.

    ``size`` may be None when unknown (the digest still has to match). Reading past the expected
    size fails at once, so an endless stream cannot fill a disk.
    """

    def __init__(self, raw: Readable, digest: str, size: int | None, what: str,
                 close_raw: bool = True):
        super().__init__()
        check_digest(digest)
        self._raw = raw
        self._close_raw = close_raw
        self._digest = digest
        self._size = size
        self._what = what
        self._hash = hashlib.sha256()
        self._seen = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._done:
            return 0
        n = read_into(self._raw, buffer)
        if n:
            self._seen += n
            if self._size is not None and self._seen > self._size:
                raise DigestMismatch(f"{self._what}: more than the expected {self._size} bytes")
            self._hash.update(memoryview(buffer)[:n])
            return n
        self._done = True
        if self._size is not None and self._seen != self._size:
            raise DigestMismatch(
                f"{self._what}: got {self._seen} bytes, expected {self._size} ({self._digest})"
            )
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            raise DigestMismatch(f"{self._what}: content is {actual}, expected {self._digest}")
        return 0

    def close(self) -> None:
        if self._close_raw:
            with contextlib.suppress(Exception):
                self._raw.close()
        super().close()


class HashingWriter(io.RawIOBase):
    """Write-through file object that counts and sha256-hashes the bytes passing to ``out``.

    How a new blob or a spooled layer gets its digest (or diff_id) without being read a second
    time. Wrap it in :func:`composer.streams.behind.write_behind` when many small writes come (tar
    headers): hashing and writing in 1 MiB pieces, on another core, costs far less.
    """

    def __init__(self, out: BinaryIO):
        super().__init__()
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._hash.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        # also called when this wrapper is closed or collected, often after ``out`` (the
        # caller's file) is closed: nothing is left to flush then
        if not self._out.closed:
            self._out.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def read_into(raw: Readable, buffer) -> int:
    """``raw.readinto(buffer)`` where it exists (one copy less per byte), else read + copy."""
    readinto = getattr(raw, "readinto", None)
    if readinto is not None:
        return readinto(buffer) or 0
    data = raw.read(len(buffer))
    buffer[: len(data)] = data
    return len(data)


def drain(reader: Readable, sink: Writable | None = None) -> int:
    """Copy a reader to its end (which is when a VerifyingReader checks), returning the size."""
    total = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while n := read_into(reader, buffer):
        total += n
        if sink is not None:
            sink.write(view[:n])
    return total


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
