"""Read Debian packages (.deb) as a stream of tar entries, without dpkg and without extracting.

A .deb is an ``ar`` archive holding ``debian-binary``, ``control.tar.*`` and ``data.tar.*``. The
``ar`` format is small enough to parse here (no dependency, no ``ar`` binary), and the data tar is
decompressed as a stream, so memory stays flat however big the package is. A package is trusted
only as far as its pinned sha256, which is checked before a single entry is read.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from composer.errors import ComposerError
from composer.streams.types import Readable
from composer.tar.canon import CanonError, Entry
from composer.tar.read import read_entries

AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60
CHUNK = 1 << 20


class DebError(ComposerError):
    """A .deb that is missing, corrupt, or not the one that was pinned."""


@dataclass(frozen=True)
class ArMember:
    """One member of an ``ar`` archive: its name and where its bytes are in the file."""

    name: str
    offset: int
    size: int


def deb_filename(name: str, version: str, arch: str) -> str:
    """The file name ``apt-get download`` gives a package (``:`` in the version is ``%3a``)."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def file_sha256(fh: BinaryIO) -> str:
    """Hex sha256 of a whole open file, read from its start."""
    fh.seek(0)
    digest = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def ar_members(fh: BinaryIO, what: str) -> list[ArMember]:
    """The members of an ``ar`` archive, in archive order (common format, as dpkg writes it)."""
    fh.seek(0)
    if fh.read(len(AR_MAGIC)) != AR_MAGIC:
        raise DebError(f"{what}: not a Debian package (no ar header)")
    members: list[ArMember] = []
    offset = len(AR_MAGIC)
    while True:
        header = fh.read(AR_HEADER)
        if not header:
            return members
        if len(header) != AR_HEADER or header[58:60] != b"`\n":
            raise DebError(f"{what}: corrupt ar member header at byte {offset}")
        name = header[:16].decode("ascii", "replace").rstrip(" ").removesuffix("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DebError(f"{what}: corrupt ar member size at byte {offset}") from None
        start = offset + AR_HEADER
        members.append(ArMember(name, start, size))
        offset = start + size + (size % 2)
        fh.seek(offset)


class _Slice(io.RawIOBase):
    """A read-only window ``[offset, offset+size)`` of a file, so a decompressor sees one member."""

    def __init__(self, fh: BinaryIO, offset: int, size: int, what: str):
        super().__init__()
        self._fh = fh
        self._pos = offset
        self._left = size
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            return 0
        self._fh.seek(self._pos)
        data = self._fh.read(min(len(buffer), self._left))
        if not data:
            raise DebError(f"{self._what}: truncated")
        buffer[: len(data)] = data
        self._pos += len(data)
        self._left -= len(data)
        return len(data)


def _decompressor(name: str, raw: BinaryIO) -> BinaryIO:
    """The decompressed stream of a ``*.tar[.xz|.zst|.gz|.bz2]`` member, chosen by its name."""
    if name.endswith(".tar"):
        return raw
    if name.endswith(".tar.xz"):
        return cast(BinaryIO, lzma.LZMAFile(raw))
    if name.endswith(".tar.zst"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    if name.endswith(".tar.gz"):
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
    if name.endswith(".tar.bz2"):
        return cast(BinaryIO, bz2.BZ2File(raw))
    raise DebError(f"unsupported compression of .deb member {name!r}")


def _decode_errors() -> tuple[type[BaseException], ...]:
    import zstandard

    return (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError, zstandard.ZstdError)


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Decompression and tar errors, wherever they surface, as one-line DebErrors."""
    try:
        yield
    except _decode_errors() as exc:
        if isinstance(exc, DebError):
            raise
        reason = str(exc) if isinstance(exc, CanonError) else f"{type(exc).__name__}: {exc}"
        raise DebError(f"{what}: {reason}") from exc


class _Content(io.RawIOBase):
    """A member's content reader whose decompression errors name the .deb."""

    def __init__(self, raw: Readable, what: str):
        super().__init__()
        self._raw = raw
        self._what = what

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        with _reading(self._what):
            return self._raw.read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _member_entries(fh: BinaryIO, members: list[ArMember], prefix: str,
                    what: str) -> Iterator[tuple[Entry, Readable | None]]:
    found = [m for m in members if m.name.startswith(prefix + ".tar")]
    if len(found) != 1:
        raise DebError(f"{what}: expected one {prefix}.tar.* member, found "
                       f"{', '.join(m.name for m in found) or 'none'}")
    member = found[0]
    where = f"{what}: {member.name}"
    raw = io.BufferedReader(_Slice(fh, member.offset, member.size, where), CHUNK)
    with _reading(where):
        for entry, reader in read_entries(_decompressor(member.name, raw)):
            if entry.path:  # "./" itself is the root, which is never an entry
                yield entry, (_Content(reader, f"{where}: {entry.path}")
                              if reader is not None else None)


@contextlib.contextmanager
def open_deb(path: Path, sha256: str | None) -> Iterator[DebReader]:
    """Open and verify a .deb; ``sha256=None`` skips the check (tests and diagnostics only)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise DebError(f"{path}: no such .deb") from None
    except OSError as exc:
        raise DebError(f"{path}: {exc.strerror}") from None
    with fh:
        if sha256 is not None:
            actual = file_sha256(fh)
            if actual != sha256.lower():
                raise DebError(f"{path}: sha256 is {actual}, pinned {sha256}")
        yield DebReader(fh, str(path), ar_members(fh, str(path)))


@dataclass(frozen=True)
class DebReader:
    """An open, verified .deb. Entry readers are valid only until the next entry is requested."""

    fh: BinaryIO
    what: str
    members: list[ArMember]

    def data_entries(self) -> Iterator[tuple[Entry, Readable | None]]:
        """The installed files: ``data.tar.*`` entries with normalised relative paths."""
        return _member_entries(self.fh, self.members, "data", self.what)

    def control(self) -> dict[str, str]:
        """The ``control`` file's fields (first paragraph; continuation lines joined)."""
        for entry, reader in _member_entries(self.fh, self.members, "control", self.what):
            if entry.path == "control" and reader is not None:
                return parse_control(reader.read().decode("utf-8", "replace"))
        raise DebError(f"{self.what}: no control file")


def parse_control(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    return fields
