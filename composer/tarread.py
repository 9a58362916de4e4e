"""A fast reader of tar headers, for the scans that only need headers (flattening, phase two).

:mod:`tarfile` spends most of a header-only scan in Python-level parsing (``nti``, checksums, a
regex per pax record, a ``TarInfo`` per header), and our canonical tars carry a pax header per
entry, which doubles it. This reader parses the common dialects straight from the bytes:
ustar, GNU and v7 headers, pax extended and global headers, GNU long names and links.

It is not a second judge of what a tar means. It reproduces exactly what :mod:`tarfile` yields,
and anything it is not sure about (GNU sparse members, an unknown type, a bad checksum or
number, a truncated archive, ``hdrcharset``, base-256 numbers) makes it raise :class:`GiveUp`;
the caller then reads the archive again with :mod:`tarfile` from the start, so every error
message and corner case stays tarfile's. ``tests/unit/test_tarread.py`` holds the two readers to
the same results.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from composer.tarcanon import Entry, entry_from_fields

BLOCK = 512
_NUL = b"\0"
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")
_BUILTIN = (b"0", b"\0", b"7", b"1", b"2", b"3", b"4", b"5", b"6")
_PAX_NUMBERS = {"mtime": float, "uid": int, "gid": int, "size": int}  # atime/ctime: unused


class GiveUp(Exception):
    """The fast reader met something only :mod:`tarfile` should judge."""


@dataclass(frozen=True, slots=True)
class Member:
    entry: Entry
    name: str  # TarInfo.name as tarfile gives it (before our normalisation), for messages
    offset_data: int  # where the content starts, in the file's own coordinates


class _Memory:
    """Random access to the file's bytes: ``pread`` through a small read-ahead buffer where the
    file is a plain file (a memory map would count every page it touched as this process's
    memory), else ``seek`` + ``read`` (``BytesIO``, a window on a nested tar)."""

    AHEAD = 16 * 1024  # one pax header, one ustar header, and often the next few small members

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self._fd: int | None = None
        self._buf, self._at = b"", 0
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
        if self._fd is None:
            self._fh.seek(pos)
            return self._fh.read(n)
        start = pos - self._at
        if start < 0 or start + n > len(self._buf):
            self._buf, self._at, start = os.pread(self._fd, max(n, self.AHEAD), pos), pos, 0
        return self._buf[start:start + n]

    def close(self) -> None:
        self._buf = b""


def _number(field: bytes) -> int:
    """tarfile's ``nti`` for octal fields; base-256 ones are left to tarfile."""
    try:
        return int(field.rstrip(b"\0 ") or b"0", 8)  # the usual "0000644\0"; exact if it parses
    except ValueError:
        pass
    if field[0] in (0o200, 0o377):
        raise GiveUp("base-256 number")
    cut = field.find(_NUL)
    if cut != -1:
        field = field[:cut]
    try:
        return int(field, 8) if field.strip() else 0
    except ValueError:
        raise GiveUp("invalid number") from None


def _text(field: bytes) -> str:
    cut = field.find(_NUL)
    return (field[:cut] if cut != -1 else field).decode("utf-8", "surrogateescape")


# name mode uid gid size mtime chksum type linkname magic+version uname gname devmajor devminor
# prefix (the last 12 bytes are padding)
_FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s8x32x32x8s8s155s")


def _byte_sum(block: bytes) -> int:
    """``sum(block)`` of a 512-byte block, in C: Adler-32's first half is 1 + the byte sum
    modulo 65521, and the sum of 256 bytes (at most 65280) never wraps."""
    view = memoryview(block)
    return (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2


def _header(block: bytes) -> dict:
    """tarfile's ``frombuf`` for one 512-byte block (its caller handles the zero block)."""
    if len(block) != BLOCK:
        raise GiveUp("truncated header")
    (name, *numbers, kind, linkname, devmajor, devminor, prefix) = _FIELDS.unpack_from(block)
    numbers += (devmajor, devminor)
    try:  # the usual "0000644\0" fields, in one go; exact whenever they all parse
        mode, uid, gid, size, mtime, chksum, devmajor, devminor = [
            int(f.rstrip(b"\0 ") or b"0", 8) for f in numbers]
    except ValueError:
        mode, uid, gid, size, mtime, chksum, devmajor, devminor = map(_number, numbers)
    if chksum != 256 + _byte_sum(block) - sum(numbers[5]):
        raise GiveUp("checksum (bad, or signed)")
    text = _text(name)
    if kind == b"\0" and text.endswith("/"):
        kind = b"5"
    if kind == b"5":
        text = text.rstrip("/")
    if prefix[0] and kind not in (b"L", b"K", b"S"):
        prefix_text = _text(prefix)
        if prefix_text:
            text = prefix_text + "/" + text
    return {
        "name": text, "mode": mode, "uid": uid, "gid": gid, "size": size, "mtime": mtime,
        "type": kind, "linkname": _text(linkname) if linkname[0] else "",
        "devmajor": devmajor, "devminor": devminor,
    }


def _pax_records(data: bytes, padding: bytes) -> dict[str, str]:
    """The records of a pax header, parsed the way tarfile does for well-formed input."""
    if padding.strip(_NUL) or b"hdrcharset" in data:
        raise GiveUp("pax header needs tarfile")
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        digits = data[pos:space]
        if space == -1 or not digits.isdigit():
            raise GiveUp("pax record")
        length = int(digits)
        end = pos + length
        equals = data.find(b"=", space + 1, end)
        if length == 0 or end > len(data) or data[end - 1:end] != b"\n" or equals <= space + 1:
            raise GiveUp("pax record")
        key = data[space + 1:equals].decode("utf-8", "surrogateescape")
        if key.startswith("GNU.sparse"):
            raise GiveUp("sparse member")
        records[key] = data[equals + 1:end - 1].decode("utf-8", "surrogateescape")
        pos = end
    return records


def _apply_pax(fields: dict, pax: dict[str, str]) -> None:
    """tarfile's ``_apply_pax_info``: pax records override header fields."""
    for key, value in pax.items():
        if key in ("path", "linkpath", "size", "mtime", "uid", "gid"):
            if key in _PAX_NUMBERS:
                try:
                    value = _PAX_NUMBERS[key](value)
                except ValueError:
                    value = 0
            if key == "path":
                fields["name"] = value.rstrip("/")
            elif key == "linkpath":
                fields["linkname"] = value
            else:
                fields[key] = value


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def members(fh: BinaryIO) -> Iterator[Member]:
    """Every member of the tar at ``fh``'s position, as tarfile's ``r:`` mode would list them.

    Raises :class:`GiveUp` (possibly after yielding some members: tarfile yields the same ones
    first) when the rest is for tarfile to read.
    """
    start = fh.tell()
    memory = _Memory(fh)
    try:
        yield from _walk(memory, start)
    finally:
        memory.close()


def _walk(memory: _Memory, pos: int) -> Iterator[Member]:
    globals_: dict[str, str] = {}
    while True:
        if pos > memory.size:
            raise GiveUp("unexpected end of data")
        block = memory.read(pos, BLOCK)
        if block == _ZERO_BLOCK:
            return
        fields = _header(block)
        data_at = pos + BLOCK
        kind = fields["type"]
        local: dict[str, str] | None = None
        long_name = long_link = None
        if kind in (b"x", b"X", b"g"):
            size = fields["size"]
            padded = memory.read(data_at, _padded(size))
            if len(padded) != _padded(size):
                raise GiveUp("truncated pax header")
            records = _pax_records(padded[:size], padded[size:])
            if kind == b"g":
                globals_.update(records)
                if "size" in globals_:  # tarfile skips by the header's size, then applies it
                    raise GiveUp("global size record")
                pos = data_at + _padded(size)
                if memory.read(pos, BLOCK) == _ZERO_BLOCK:
                    raise GiveUp("archive ends after a global header")  # tarfile: an error
                continue
            local = {**globals_, **records}
            data_at += _padded(size)
            fields = _header(memory.read(data_at, BLOCK))
            data_at += BLOCK
        elif kind in (b"L", b"K"):
            size = fields["size"]
            text = _text(memory.read(data_at, _padded(size)))
            long_name, long_link = (text, None) if kind == b"L" else (None, text)
            data_at += _padded(size)
            fields = _header(memory.read(data_at, BLOCK))
            data_at += BLOCK
        kind = fields["type"]
        if kind not in _BUILTIN:
            raise GiveUp(f"type {kind!r}")
        pax = local if local is not None else dict(globals_)
        _apply_pax(fields, pax)
        if kind == b"5":
            fields["name"] = fields["name"].rstrip("/")
        if long_name is not None:
            fields["name"] = long_name.removesuffix("/") if kind == b"5" else long_name
        if long_link is not None:
            fields["linkname"] = long_link
        pos = data_at + (_padded(fields["size"]) if kind in _REGULAR else 0)
        entry = entry_from_fields(
            fields["name"], kind, fields["mode"], fields["uid"], fields["gid"],
            fields["mtime"], fields["size"], fields["linkname"], fields["devmajor"],
            fields["devminor"], pax)
        yield Member(entry, fields["name"], data_at)


class Content(io.RawIOBase):
    """Exactly ``size`` bytes of ``fh`` at ``offset``: a member's content, read in place."""

    def __init__(self, fh: BinaryIO, offset: int, size: int):
        super().__init__()
        self._fh, self._pos, self._left = fh, offset, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        if n <= 0:
            return 0
        self._fh.seek(self._pos)
        got = self._fh.readinto(memoryview(buffer)[:n])
        if not got:
            raise EOFError("tar member content ends early")
        self._pos += got
        self._left -= got
        return got
