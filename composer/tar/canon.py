"""The one canonical tar writer, and the entry model both tar readers produce.

The writer is ours, not :mod:`tarfile`'s, so the bytes depend on nothing but the entries: not on
the Python version, the host's passwd database, umask or float timestamps. It refuses input that
breaks the canon (unsorted, duplicate, orphaned or dangling entries) instead of writing it.
``docs/canonical-tar.md`` documents the format byte for byte.
"""

from __future__ import annotations

import enum
import functools
import io
import posixpath
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, BinaryIO

BLOCK = 512
RECORD = 20 * BLOCK
PAX_NAME = b"././@PaxHeader"
COPY_CHUNK = 1 << 20


class Kind(enum.Enum):
    FILE = b"0"
    HARDLINK = b"1"
    SYMLINK = b"2"
    CHAR = b"3"
    BLOCK = b"4"
    DIR = b"5"
    FIFO = b"6"


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar entry's metadata. ``path`` is relative and normalised, with no trailing slash."""

    path: str
    kind: Kind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    records: tuple[tuple[str, str], ...] = ()  # extra pax records, e.g. provenance


class CanonError(ValueError):
    """The input would break the canon; a bug in the caller, or a hostile input it let through."""


def sort_key(path: str) -> bytes:
    """Component-wise bytewise order: parents sort before children, ``a/b`` before ``a-b``."""
    return encode(path).replace(b"/", b"\0")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def normalise(name: str) -> str:
    """A tar member name as a canonical relative path; ``..`` is clamped at the root.

    Returns ``""`` for the root itself.
    """
    return posixpath.normpath("/" + name).lstrip("/")


def _is_normal(path: str) -> bool:
    """``path == normalise(path)`` and not empty, without normalising the usual path (no
    ``.`` component: no ``/.`` in it and no leading dot)."""
    if not path or path[0] == "/" or path[-1] == "/" or "//" in path:
        return False
    if path[0] != "." and "/." not in path:
        return True
    return normalise(path) == path


def _octal(value: int, width: int) -> bytes | None:
    """``width``-byte NUL-terminated octal, or None if it does not fit."""
    if value < 0 or value >= 8 ** (width - 1):
        return None
    return b"%0*o\0" % (width - 1, value)


@functools.lru_cache(maxsize=4096)  # provenance records repeat for every entry of an image
def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + encode(key) + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


_ZERO8 = b"\0" * 8
_MAGIC_NAMES = b"ustar\x0000" + b"\0" * 64  # magic, version, empty uname and gname
_MAGIC_SUM = sum(_MAGIC_NAMES)
_PREFIX_PAD = b"\0" * 167  # prefix (never used: long names go to pax) and the block's tail


def _header(
    name: bytes, kind: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
    linkname: bytes, devmajor: int, devminor: int,
) -> bytes:
    """One ustar block. uid, gid, size and mtime must fit (header_bytes moves them to pax);
    a device number that does not fit is written as zeros."""
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    devices = (_octal(devmajor, 8) or _ZERO8) + (_octal(devminor, 8) or _ZERO8)
    # the checksum sums every byte with its own field as spaces; zero padding adds nothing
    checksum = b"%06o\0 " % (sum(name) + sum(numbers) + 8 * 32 + kind[0] + sum(linkname)
                              + _MAGIC_SUM + sum(devices))
    head = name.ljust(100, b"\0") + numbers
    tail = b"".join((kind, linkname.ljust(100, b"\0"), _MAGIC_NAMES, devices, _PREFIX_PAD))
    return head + checksum + tail


@functools.lru_cache(maxsize=1024)
def _pax_header(size: int) -> bytes:
    """The ustar block announcing ``size`` bytes of pax records (the same for equal sizes)."""
    return _header(PAX_NAME, b"x", 0o644, 0, 0, size, 0, b"", 0, 0)


_MAX8, _MAX12 = 8 ** 7, 8 ** 11  # what fits an 8- and a 12-byte octal field


def _pad(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


_DEVICES0 = b"0000000\0" * 2  # devmajor and devminor 0, as _octal writes them
_NUMBER_KEYS = frozenset(("path", "linkpath", "size", "mtime", "uid", "gid"))


@functools.lru_cache(maxsize=4096)  # an image's entries share a few sets of records
def _pax_block(xattrs: tuple[tuple[str, bytes], ...], extra: tuple[tuple[str, str], ...]
               ) -> bytes | None:
    """The pax header of an entry whose name, link and numbers fit the ustar header: its
    xattrs and extra records (the same bytes :func:`_header_slow` makes); None if a record
    would change the ustar fields, for the slow path to handle."""
    records: dict[str, bytes] = {}
    for xname, xvalue in xattrs:
        records["SCHILY.xattr." + xname] = xvalue
    for key, text in extra:
        records[key] = encode(text)
    if not records:
        return b""
    if not _NUMBER_KEYS.isdisjoint(records):
        return None
    payload = b"".join(_pax_record(k, records[k]) for k in sorted(records))
    return _pax_header(len(payload)) + payload + _pad(len(payload))


def header_bytes(entry: Entry) -> bytes:
    """The pax extended header (if needed) plus the ustar header of ``entry``."""
    kind = entry.kind
    path = entry.path
    name = encode(path + "/" if kind is Kind.DIR else path)
    link = encode(entry.linkname) if entry.linkname else b""
    size = entry.size if kind is Kind.FILE else 0
    mtime, uid, gid = entry.mtime, entry.uid, entry.gid
    if len(name) <= 100 and len(link) <= 100 and name.isascii() and link.isascii() \
            and 0 <= size < _MAX12 and 0 <= mtime < _MAX12 and 0 <= uid < _MAX8 \
            and 0 <= gid < _MAX8:
        # the usual entry: only its xattrs and extra records can need a pax header
        pax = _pax_block(entry.xattrs, entry.records) if entry.xattrs or entry.records \
            else b""
        if pax is not None:
            devmajor, devminor = entry.devmajor, entry.devminor
            devices = _DEVICES0 if not (devmajor or devminor) else (
                (_octal(devmajor, 8) or _ZERO8) + (_octal(devminor, 8) or _ZERO8))
            numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (entry.mode & 0o7777, uid, gid,
                                                              size, mtime)
            kind_byte = kind.value
            checksum = b"%06o\0 " % (sum(name) + sum(numbers) + 256 + kind_byte[0] + sum(link)
                                      + _MAGIC_SUM + sum(devices))
            return b"".join((pax, name, bytes(100 - len(name)), numbers, checksum, kind_byte,
                             link, bytes(100 - len(link)), _MAGIC_NAMES, devices, _PREFIX_PAD))
    return _header_slow(entry)


def _header_slow(entry: Entry) -> bytes:
    """:func:`header_bytes` for any entry: long or non-ASCII names, numbers that do not fit."""
    records: dict[str, bytes] = {}
    name = encode(entry.path + ("/" if entry.kind is Kind.DIR else ""))
    if len(name) > 100 or not name.isascii():
        records["path"] = name
        name = name[:99].decode("ascii", "replace").encode("ascii", "replace")
    link = encode(entry.linkname)
    if len(link) > 100 or not link.isascii():
        records["linkpath"] = link
        link = link[:99].decode("ascii", "replace").encode("ascii", "replace")
    size = entry.size if entry.kind is Kind.FILE else 0
    for key, value, limit in (
        ("size", size, _MAX12), ("mtime", entry.mtime, _MAX12), ("uid", entry.uid, _MAX8),
        ("gid", entry.gid, _MAX8),
    ):
        if not 0 <= value < limit:
            if value < 0:
                raise CanonError(f"{entry.path}: negative {key}")
            records[key] = str(value).encode()
    for xname, xvalue in entry.xattrs:
        records["SCHILY.xattr." + xname] = xvalue
    for key, text in entry.records:
        records[key] = encode(text)
    out = b""
    if records:
        payload = b"".join(_pax_record(k, records[k]) for k in sorted(records))
        out = _pax_header(len(payload)) + payload + _pad(len(payload))
    out += _header(
        name, entry.kind.value, entry.mode & 0o7777,
        entry.uid if "uid" not in records else 0,
        entry.gid if "gid" not in records else 0,
        size if "size" not in records else 0,
        entry.mtime if "mtime" not in records else 0,
        link, entry.devmajor, entry.devminor,
    )
    return out


class CanonicalTarWriter:
    """Writes entries that must arrive in canonical order; checks every rule as it goes.

    Only the set of directory paths is kept (to check parents exist), plus the set of
    non-directory paths that hard links may point to.
    """

    def __init__(self, out: BinaryIO):
        self._out = out
        self._last: bytes | None = None
        self._dirs: set[str] = {""}
        self._files: set[str] = set()
        self.written = 0

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.written += len(data)

    def add(self, entry: Entry, data: IO[bytes] | io.RawIOBase | bytes | None = None) -> None:
        """Append ``entry``; for a regular file, ``data`` supplies exactly ``entry.size`` bytes."""
        path = entry.path
        if not _is_normal(path):
            raise CanonError(f"not a canonical path: {path!r}")
        key = sort_key(path)
        if self._last is not None and key <= self._last:
            raise CanonError(f"{path}: out of order or duplicate")
        parent = path.rpartition("/")[0]  # posixpath.dirname, for a normal path
        if parent not in self._dirs:
            raise CanonError(f"{path}: parent directory {parent!r} has no entry before it")
        kind = entry.kind
        if kind is Kind.HARDLINK and entry.linkname not in self._files:
            raise CanonError(f"{path}: hard link to {entry.linkname!r}, not an earlier file")
        if entry.xattrs and list(entry.xattrs) != sorted(entry.xattrs):
            raise CanonError(f"{path}: xattrs not sorted")
        self._last = key
        header = header_bytes(entry)
        if kind is Kind.DIR:
            self._dirs.add(path)
        elif kind is not Kind.HARDLINK:
            self._files.add(path)
        if kind is not Kind.FILE:
            self._write(header)
        elif isinstance(data, bytes | bytearray):
            if len(data) != entry.size:
                raise CanonError(f"{entry.path}: {len(data)} bytes given, size {entry.size}")
            self._write(b"".join((header, data, _pad(entry.size))))  # one write, not three
        else:
            self._write(header)
            self._copy(entry, data)

    def _copy(self, entry: Entry, data: IO[bytes] | io.RawIOBase | bytes | None) -> None:
        if isinstance(data, bytes | bytearray):
            if len(data) != entry.size:
                raise CanonError(f"{entry.path}: {len(data)} bytes given, size {entry.size}")
            self._write(bytes(data))
        else:
            remaining = entry.size
            while remaining:
                chunk = data.read(min(COPY_CHUNK, remaining)) if data else b""
                if not chunk:
                    raise CanonError(f"{entry.path}: content ended {remaining} bytes short")
                self._write(chunk)
                remaining -= len(chunk)
        self._write(_pad(entry.size))

    def splice(self, source: BinaryIO, start: int, end: int, under: str, last: str) -> None:
        """Copy entries verbatim from an earlier canonical tar: bytes ``start``..``end`` of
        ``source`` hold whole entries, all strictly below the directory ``under`` (the last
        entry written here) and ending with ``last``. The caller vouches for the bytes (they
        are a verified earlier output); the order and parent rules are checked at the seams:
        entries after it may not refer into the range (its paths are not remembered)."""
        if self._last != sort_key(under) or under not in self._dirs:
            raise CanonError(f"{under}: a splice must follow its directory's entry")
        if not last.startswith(under + "/") or (end - start) % BLOCK or end < start:
            raise CanonError(f"{under}: not a splice of whole entries below it ({last!r})")
        source.seek(start)
        remaining = end - start
        while remaining:
            chunk = source.read(min(COPY_CHUNK, remaining))
            if not chunk:
                raise CanonError(f"{under}: spliced tar ended {remaining} bytes short")
            self._write(chunk)
            remaining -= len(chunk)
        self._last = sort_key(last)

    def close(self) -> None:
        """Two zero blocks, then zero padding to a whole 10240-byte record (as tar does)."""
        self._write(b"\0" * (2 * BLOCK))
        self._write(b"\0" * (-self.written % RECORD))


_KINDS = {
    tarfile.REGTYPE: Kind.FILE, tarfile.AREGTYPE: Kind.FILE, tarfile.CONTTYPE: Kind.FILE,
    tarfile.GNUTYPE_SPARSE: Kind.FILE,
    tarfile.LNKTYPE: Kind.HARDLINK, tarfile.SYMTYPE: Kind.SYMLINK, tarfile.CHRTYPE: Kind.CHAR,
    tarfile.BLKTYPE: Kind.BLOCK, tarfile.DIRTYPE: Kind.DIR, tarfile.FIFOTYPE: Kind.FIFO,
}
XATTR_PREFIX = "SCHILY.xattr."
_STANDARD_PAX = {"path", "linkpath", "size", "mtime", "uid", "gid", "uname", "gname",
                 "atime", "ctime"}


def entry_from_tarinfo(info: tarfile.TarInfo) -> Entry:
    """Our view of a member read by :mod:`tarfile` (which handles GNU, pax and v7 dialects)."""
    return entry_from_fields(info.name, info.type, info.mode, info.uid, info.gid, info.mtime,
                             info.size, info.linkname, info.devmajor, info.devminor,
                             info.pax_headers)


def entry_from_fields(name: str, type_: bytes, mode: int, uid: int, gid: int,
                      mtime: float, size: int, linkname: str, devmajor: int, devminor: int,
                      pax_headers: Mapping[str, str]) -> Entry:
    """An :class:`Entry` from a member's header fields as tarfile names them (the one place
    both tar readers, :mod:`tarfile` and :mod:`composer.tar.headers`, turn headers into entries)."""
    return entry_from_parts(name, type_, mode, uid, gid, mtime, size, linkname, devmajor,
                            devminor, pax_extras(pax_headers))


def pax_extras(pax_headers: Mapping[str, str]
               ) -> tuple[tuple[tuple[str, bytes], ...], tuple[tuple[str, str], ...]]:
    """The xattrs and the extra records an entry keeps of its pax headers, each sorted by key
    (separate from :func:`entry_from_parts` because pax headers repeat: readers may reuse it)."""
    xattrs = []
    records = []
    for key, value in sorted(pax_headers.items()):
        if key.startswith(XATTR_PREFIX):
            xattrs.append((key[len(XATTR_PREFIX):], encode(value)))
        elif key not in _STANDARD_PAX and not key.startswith("GNU.sparse"):
            records.append((key, value))
    return tuple(xattrs), tuple(records)


def _normalised(name: str) -> str:
    """:func:`normalise`, skipped for the usual name that is already normal (no empty, ``.`` or
    ``..`` component, no leading or trailing slash)."""
    framed = "/" + name + "/"
    if "//" in framed or "/./" in framed or "/../" in framed:
        return normalise(name)
    return name


def entry_from_parts(name: str, type_: bytes, mode: int, uid: int, gid: int, mtime: float,
                     size: int, linkname: str, devmajor: int, devminor: int,
                     extras: tuple[tuple[tuple[str, bytes], ...], tuple[tuple[str, str], ...]]
                     ) -> Entry:
    """:func:`entry_from_fields` with the pax headers already reduced by :func:`pax_extras`."""
    kind = _KINDS.get(type_)
    if kind is None:
        raise CanonError(f"{name}: unsupported tar entry type {type_!r}")
    return Entry(
        path=_normalised(name),
        kind=kind,
        mode=mode & 0o7777,
        uid=uid,
        gid=gid,
        mtime=int(mtime),
        size=size if kind is Kind.FILE else 0,
        linkname=_normalised(linkname) if kind is Kind.HARDLINK else linkname,
        devmajor=devmajor,
        devminor=devminor,
        xattrs=extras[0],
        records=extras[1],
    )
