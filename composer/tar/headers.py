"""A fast reader of tar headers, for the scans that only need headers (flattening, phase two).

:mod:`tarfile` spends most of a header-only scan in Python-level parsing (``nti``, checksums, a
regex per pax record, a ``TarInfo`` per header), and our canonical tars carry a pax header per
entry, which doubles it. This reader parses the common dialects straight from the bytes:
ustar, GNU and v7 headers (octal or base-256 numbers, either checksum), pax extended and global
headers, GNU long names and links. Pax headers repeat (our provenance records are the same for
every entry of an image), so each distinct one is parsed once per scan.

It is not a second judge of what a tar means. It reproduces exactly what :mod:`tarfile` yields,
and anything it is not sure about (GNU sparse members, an unknown type, a bad checksum or
number, a truncated archive, ``hdrcharset``, a negative size, an entry tarfile's callers would
refuse) makes it raise :class:`GiveUp`; the caller then reads the archive again with
:mod:`tarfile` from the start, so every error message and corner case stays tarfile's.
``tests/unit/test_tarread.py`` holds the two readers to the same results.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from composer.tar.canon import Entry, entry_from_parts, pax_extras

BLOCK = 512
_NUL = b"\0"
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")
_BUILTIN = frozenset((b"0", b"\0", b"7", b"1", b"2", b"3", b"4", b"5", b"6"))
_EXTENDED = frozenset((b"x", b"X", b"L", b"K"))  # headers that extend the next one
_CACHE_LIMIT = 4096  # distinct pax headers remembered per scan (they repeat; names rarely do)


class GiveUp(Exception):
    """The fast reader met something only :mod:`tarfile` should judge."""


@dataclass(frozen=True, slots=True)
class Member:
    entry: Entry
    name: str  # TarInfo.name as tarfile gives it (before our normalisation), for messages
    offset_data: int  # where the content starts, in the file's own coordinates


class _Source:
    """Random access to the file's bytes: ``pread`` through a read-ahead buffer where the file
    is a plain file (a memory map would count every page it touched as this process's memory),
    else ``seek`` + ``read`` (``BytesIO``, a window on a nested tar).

    The read-ahead adapts: after content was skipped it covers one pax header, its records and
    the ustar header; while headers follow each other (small members) it doubles."""

    NEAR, FAR = 3 * BLOCK, 64 * 1024

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self._fd: int | None = None
        self._buf, self._at, self._ahead = b"", 0, self.NEAR
        if isinstance(fh, io.BufferedReader | io.FileIO) and \
                isinstance(getattr(fh, "raw", fh), io.FileIO):
            self._fd = fh.fileno()
            self.size = os.fstat(self._fd).st_size
        elif isinstance(fh, io.BytesIO) or getattr(fh, "random_access", False):
            self.size = fh.seek(0, os.SEEK_END)
        else:
            # a decompressor (GzipFile, LZMAFile) claims to seek, but backwards means starting
            # over, and its fileno() is the compressed file's: leave it to tarfile's stream
            raise GiveUp(f"not random access: {type(fh).__name__}")

    def read(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``pos`` (fewer only at the end of the file)."""
        if self._fd is None:
            self._fh.seek(pos)
            return self._fh.read(n)
        start = pos - self._at
        end = len(self._buf)
        if start < 0 or start + n > end:
            near = 0 <= start <= end  # the buffer ran out under our feet: read more at once
            self._ahead = min(2 * self._ahead, self.FAR) if near else self.NEAR
            self._buf, self._at, start = os.pread(self._fd, max(n, self._ahead), pos), pos, 0
        return self._buf[start:start + n]


# -- one 512-byte header ----------------------------------------------------------------------

# (start, end) of mode uid gid size mtime chksum devmajor devminor, the numbers frombuf parses
_NUMBER_FIELDS = ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156),
                  (329, 337), (337, 345))
_SIGNED = struct.Struct("148b8x356b")
_NO_DEVICE = bytes(16)  # devmajor and devminor left empty, as some writers do


def _number(field: bytes) -> int:
    """tarfile's ``nti``, with :class:`GiveUp` where it raises."""
    if field[0] in (0o200, 0o377):  # GNU base-256, big-endian after the marker byte
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0o377 else n
    cut = field.find(_NUL)
    try:
        text = (field[:cut] if cut != -1 else field).decode("ascii")
        return int(text.strip() or "0", 8)
    except ValueError:  # UnicodeDecodeError included
        raise GiveUp("invalid number") from None


def _numbers(b: bytes) -> tuple[int, ...]:
    """The eight numbers of a header. Usually each field is octal digits ended by a NUL (the
    device numbers may be all NULs): then ``int`` of the digits is nti's answer whenever it
    parses (it strips no more whitespace than ``str.strip`` does, and a NUL or anything else
    non-octal makes it fail). Anything else goes through :func:`_number`."""
    if not (b[107] or b[115] or b[123] or b[135] or b[147] or b[154]):
        try:
            head = (int(b[100:107], 8), int(b[108:115], 8), int(b[116:123], 8),
                    int(b[124:135], 8), int(b[136:147], 8), int(b[148:154], 8))
            devices = b[329:345]
            if devices == _NO_DEVICE:
                return (*head, 0, 0)
            if not (b[336] or b[344]):
                return (*head, int(b[329:336], 8), int(b[337:344], 8))
        except ValueError:
            pass
    return tuple(_number(b[start:end]) for start, end in _NUMBER_FIELDS)


def _byte_sum(block: bytes) -> int:
    """``sum(block)`` of a 512-byte block, in C: Adler-32's first half is 1 + the byte sum
    modulo 65521, and the sum of 256 bytes (at most 65280) never wraps."""
    view = memoryview(block)
    return (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2


def _text(field: bytes) -> str:
    cut = field.find(_NUL)
    return (field[:cut] if cut != -1 else field).decode("utf-8", "surrogateescape")


# tarfile's 2025 security fixes (in Debian's 3.11.2-6+deb12u8 and 3.13.5, and newer CPythons) no
# longer read an old-style directory (type "\0", name ending in "/") in a header that follows a
# GNU long name or link or a pax header: like tarfile here, whichever this Python's is
_FOLLOWUP_DIRCHECK = not hasattr(tarfile.TarInfo, "_frombuf")


def _header(block: bytes, dircheck: bool = True) -> tuple:
    """tarfile's ``frombuf`` for one block that is neither short nor all zeros:
    (name, type, mode, uid, gid, size, mtime, linkname, devmajor, devminor)."""
    mode, uid, gid, size, mtime, chksum, devmajor, devminor = _numbers(block)
    unsigned = 256 + _byte_sum(block) - sum(block[148:156])
    if chksum != unsigned and chksum != 256 + sum(_SIGNED.unpack_from(block)):
        raise GiveUp("bad checksum")
    kind = block[156:157]
    name = _text(block[:100])
    if dircheck and kind == b"\0" and name.endswith("/"):
        kind = b"5"  # v7 spelling of a directory
    if kind == b"5":
        name = name.rstrip("/")
    if block[345] and kind not in (b"L", b"K", b"S"):
        prefix = _text(block[345:500])
        if prefix:
            name = prefix + "/" + name
            if kind == b"5":
                name = name.rstrip("/")  # as _proc_builtin does again, after the prefix
    linkname = _text(block[157:257]) if block[157] else ""
    return name, kind, mode, uid, gid, size, mtime, linkname, devmajor, devminor


# -- pax records ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Pax:
    """What one set of pax records (globals plus a member's own) does to a member."""

    records: dict[str, str]  # TarInfo.pax_headers; never modified
    overrides: bool  # any of the six below is not None
    path: str | None
    linkpath: str | None
    size: int | None
    mtime: float | None
    uid: int | None
    gid: int | None
    extras: tuple  # composer.tar.canon.pax_extras of the records


def _pax(records: dict[str, str]) -> _Pax:
    """tarfile's ``_apply_pax_info``, worked out once for a set of records."""
    def number(key: str, kind: type) -> int | float | None:
        if key not in records:
            return None
        try:
            return kind(records[key])
        except ValueError:
            return 0

    path = records.get("path")
    fields = (path.rstrip("/") if path is not None else None, records.get("linkpath"),
              number("size", int), number("mtime", float), number("uid", int),
              number("gid", int))
    return _Pax(records, fields != (None,) * 6, *fields, pax_extras(records))  # type: ignore[arg-type]


def _pax_records(data: bytes) -> dict[str, str]:
    """The records of a pax header (its blocks, padding included), parsed as tarfile does for
    well-formed input; the decoding (strict UTF-8, else UTF-8 with surrogateescape) is the one
    tarfile applies to keywords and values alike when there is no ``hdrcharset``."""
    if b"hdrcharset" in data:
        raise GiveUp("pax header needs tarfile")
    records: dict[str, str] = {}
    pos, limit = 0, len(data)
    while pos < limit and data[pos]:  # the records end where the NUL padding starts
        space = data.find(b" ", pos, pos + 24)
        digits = data[pos:space]
        if space == -1 or not digits.isdigit():
            raise GiveUp("pax record")
        end = pos + int(digits)
        equals = data.find(b"=", space + 1, end)
        if end > limit or data[end - 1] != 0x0A or equals <= space + 1:
            raise GiveUp("pax record")  # also a length of 0, which tarfile rejects
        key = data[space + 1:equals].decode("utf-8", "surrogateescape")
        if key.startswith("GNU.sparse"):
            raise GiveUp("sparse member")
        records[key] = data[equals + 1:end - 1].decode("utf-8", "surrogateescape")
        pos = end
    if data[pos:].strip(_NUL):
        raise GiveUp("pax header padding")
    return records


# -- the walk ---------------------------------------------------------------------------------

def members(fh: BinaryIO) -> Iterator[Member]:
    """Every member of the tar at ``fh``'s position, as tarfile's ``r:`` mode would list them.

    Raises :class:`GiveUp` (possibly after yielding some members: tarfile yields the same ones
    first) when the rest is for tarfile to read.
    """
    start = fh.tell()  # before _Source, which seeks to the end to learn the size
    yield from _walk(_Source(fh), start)


def _walk(src: _Source, pos: int) -> Iterator[Member]:
    read, size_of_file = src.read, src.size
    heads: dict[bytes, int] = {}  # extended header block -> its size, once checked
    parsed: dict[bytes, _Pax] = {}  # pax data -> its effect with the current globals
    globals_: dict[str, str] = {}
    plain = _pax({})  # the globals' effect on a member without its own pax header

    def extension(block: bytes, data_at: int) -> tuple[bytes, bytes]:
        """The data of the extended header ``block`` and the header block after it."""
        size = heads.get(block)
        if size is None:
            size = _header(block)[5]
            if size < 0:
                raise GiveUp("negative size")
            if len(heads) < _CACHE_LIMIT:
                heads[block] = size
        padded = -(-size // BLOCK) * BLOCK
        chunk = read(data_at, padded + BLOCK)
        data, block = chunk[:padded], chunk[padded:]
        if len(block) != BLOCK or block == _ZERO_BLOCK:
            raise GiveUp("no header after an extended header")  # tarfile: an error
        return data, block

    followup = False  # the header follows an extended one (g, x, X, L, K)
    while True:
        if pos >= size_of_file:
            if pos == size_of_file and pos:
                return  # tarfile ends quietly on an empty header (but "empty file" at 0)
            raise GiveUp("unexpected end of data")
        block = read(pos, BLOCK)
        if len(block) != BLOCK:
            raise GiveUp("truncated header")
        if block == _ZERO_BLOCK:
            return
        data_at = pos + BLOCK
        pax = plain
        longs = None  # GNU long names and links, outermost first
        kind = block[156:157]
        if kind == b"g":  # new globals, then the next header is read as usual
            data, block = extension(block, data_at)
            globals_.update(_pax_records(data))
            if "size" in globals_:  # tarfile skips by the header's size, then applies it
                raise GiveUp("global size record")
            plain, pos = _pax(dict(globals_)), data_at + len(data)
            parsed.clear()
            followup = True
            continue
        if kind in _EXTENDED:  # x, X, L, K: tarfile applies them innermost first
            followup = True
            while True:
                data, block = extension(block, data_at)
                data_at += len(data) + BLOCK
                if kind == b"L" or kind == b"K":
                    if pax is not plain:
                        raise GiveUp("long name inside a pax header")
                    longs = [*(longs or ()), (kind, _text(data))]
                else:
                    if pax is not plain or longs:
                        raise GiveUp("pax header inside another extended header")
                    pax = parsed.get(data)  # type: ignore[assignment]
                    if pax is None:
                        pax = _pax({**globals_, **_pax_records(data)})
                        if len(parsed) >= _CACHE_LIMIT:
                            parsed.clear()
                        parsed[data] = pax
                kind = block[156:157]
                if kind not in _EXTENDED:
                    break
                if kind == b"g":
                    raise GiveUp("global header inside a member")
        name, kind, mode, uid, gid, size, mtime, linkname, devmajor, devminor = _header(
            block, dircheck=_FOLLOWUP_DIRCHECK or not followup)
        followup = False
        if kind not in _BUILTIN:
            raise GiveUp(f"type {kind!r}")
        if pax.overrides:  # pax paths come without trailing slashes, like directory names
            if pax.path is not None:
                name = pax.path
            if pax.linkpath is not None:
                linkname = pax.linkpath
            if pax.size is not None:
                size = pax.size
            if pax.mtime is not None:
                mtime = pax.mtime
            if pax.uid is not None:
                uid = pax.uid
            if pax.gid is not None:
                gid = pax.gid
        if longs:
            for long_kind, text in reversed(longs):
                if long_kind == b"L":
                    name = text
                else:
                    linkname = text
                if kind == b"5":
                    name = name.removesuffix("/")
        if size < 0:
            raise GiveUp("negative size")  # tarfile's reading would go backwards
        try:
            entry = entry_from_parts(name, kind, mode, uid, gid, mtime, size, linkname,
                                     devmajor, devminor, pax.extras)
        except (ValueError, OverflowError):
            raise GiveUp("an entry the tarfile path words the error for") from None
        yield Member(entry, name, data_at)
        pos = data_at + -(-size // BLOCK) * BLOCK if kind in _REGULAR else data_at


class Content(io.RawIOBase):
    """Exactly ``size`` bytes of ``fh`` at ``offset``: a member's content, read in place.

    Reads are whole (``read(n)`` gives ``n`` bytes unless the member ends first), and a file
    that ends before the member does raises tarfile's own error, as ``extractfile`` would."""

    def __init__(self, fh: BinaryIO, offset: int, size: int):
        super().__init__()
        self._fh, self._pos, self._left = fh, offset, size

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        n = self._left if size is None or size < 0 else min(size, self._left)
        if n <= 0:
            return b""
        self._fh.seek(self._pos)
        data = self._fh.read(n)
        if len(data) != n:
            raise tarfile.ReadError("unexpected end of data")
        self._pos += n
        self._left -= n
        return data

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)
