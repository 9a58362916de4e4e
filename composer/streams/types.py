"""The two shapes of byte stream passed between modules: something to read, something to write.

Our own streams (digest-verifying readers, hashing and gzip writers, tar member contents) are
:class:`io.RawIOBase` subclasses or plain classes, not :class:`typing.BinaryIO`; these protocols
name just the methods a receiver calls, so a real file and one of ours are both accepted.
(:mod:`composer.tar`, a sibling leaf that may not import this package, names the concrete
``IO[bytes] | io.RawIOBase`` its readers are.)
"""

from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    """A byte source: ``read`` and ``close`` (``readinto`` is used where it exists, see
    :func:`composer.streams.digest.read_into`)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class Writable(Protocol):
    """A byte sink: ``write``."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int | None: ...
