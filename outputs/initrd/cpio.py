"""A deterministic newc cpio writer, and the converter from canonical tar entries to newc records.

The format is the one the Linux initramfs unpacker reads (``init/initramfs.c``) and
``cpio -H newc`` writes. Each record is::

    "070701"  then 13 fields, each 8 uppercase hex digits:
      ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    name, NUL-terminated (namesize counts the NUL); header + name zero-padded to a multiple of 4
    data (filesize bytes), zero-padded to a multiple of 4

and the archive ends with a record named ``TRAILER!!!`` (all fields 0 except nlink 1 and
namesize), zero-padded to a multiple of 512 bytes like ``cpio`` and ``gen_init_cpio`` do.

What we put in the fields, so nothing of the host leaks and the bytes depend only on the input:

- ``ino``: 1, 2, 3, ... in order of appearance; all members of a hard-link group share one.
- ``mode``: permission bits (setuid, setgid, sticky kept) | file-type bits.
- ``uid``, ``gid``, ``mtime``: from the tar entry.
- ``nlink``: 2 for directories, 1 for other entries, the group size for hard-linked files.
- ``devmajor``/``devminor``: always 0 (never a host device number);
  ``rdevmajor``/``rdevminor``: the tar's device numbers for character and block devices, else 0.
- ``check``: 0. Symlink data is the link target (no NUL). Names are relative (no ``/``, no ``./``).

Hard links (GNU cpio's convention, which the kernel unpacker handles): every path of a group is
its own record with the shared ino and nlink = number of paths; the data travels with the LAST
record of the group and the earlier ones have filesize 0. The kernel creates the file at the first
record and links the later ones to it. Since a canonical tar stores the data with the target
(the first path), the converter spools it to an anonymous temporary file until the last link
arrives; counting group sizes needs a headers pass first (:func:`scan_links`). Hard links to
anything but a regular file (a symlink, device or fifo) become independent copies with their
own ino and nlink 1: the kernel would create separate nodes for them anyway.

Limits: every field is 32 bits, so a file of 4 GiB or more (or a uid, gid or mtime past 2**32-1)
is a :class:`ComposerError` naming the path, never a silently truncated archive. Extended
attributes cannot be stored in newc and are dropped (as linuxkit and ``cpio`` do).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.streams.types import Readable, Writable
from composer.tar.canon import COPY_CHUNK, Entry, Kind, encode
from composer.tar.read import read_entries

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
FIRST_INO = 1
MAX_FIELD = 0xFFFFFFFF
_TYPE_BITS = {
    Kind.FIFO: 0o010000, Kind.CHAR: 0o020000, Kind.DIR: 0o040000, Kind.BLOCK: 0o060000,
    Kind.FILE: 0o100000, Kind.SYMLINK: 0o120000,
}


@dataclass(frozen=True, slots=True)
class Header:
    """One newc record's fields (devmajor, devminor and check are always 0)."""

    name: str
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    filesize: int
    rdevmajor: int = 0
    rdevminor: int = 0


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def header_bytes(h: Header) -> bytes:
    """The header, name and padding of one record; refuses values newc cannot hold."""
    name = encode(h.name) + b"\0"
    fields = (
        ("ino", h.ino), ("mode", h.mode), ("uid", h.uid), ("gid", h.gid), ("nlink", h.nlink),
        ("mtime", h.mtime), ("size", h.filesize), ("devmajor", 0), ("devminor", 0),
        ("rdevmajor", h.rdevmajor), ("rdevminor", h.rdevminor), ("namesize", len(name)),
        ("check", 0),
    )
    for label, value in fields:
        if not 0 <= value <= MAX_FIELD:
            extra = " (files of 4 GiB or more do not fit)" if label == "size" else ""
            raise ComposerError(
                f"{h.name}: {label} {value} does not fit in a newc cpio (initrd) header{extra}")
    out = MAGIC + b"".join(b"%08X" % value for _, value in fields) + name
    return out + _pad4(len(out))


class NewcWriter:
    """Appends newc records to ``out``; ``close`` writes the trailer (``out`` stays open)."""

    def __init__(self, out: Writable):
        self._out = out
        self.written = 0

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.written += len(data)

    def add(self, h: Header, data: Readable | bytes | None = None) -> None:
        """One record; ``data`` supplies exactly ``h.filesize`` bytes (bytes or a reader)."""
        self._write(header_bytes(h))
        if isinstance(data, bytes | bytearray):
            if len(data) != h.filesize:
                raise ValueError(f"{h.name}: {len(data)} bytes given, size {h.filesize}")
            self._write(bytes(data))
        elif h.filesize:
            remaining = h.filesize
            while remaining:
                chunk = data.read(min(COPY_CHUNK, remaining)) if data else b""
                if not chunk:
                    raise ComposerError(f"{h.name}: content ended {remaining} bytes short")
                self._write(chunk)
                remaining -= len(chunk)
        self._write(_pad4(h.filesize))

    def close(self) -> None:
        self.add(Header(TRAILER, ino=0, mode=0, uid=0, gid=0, nlink=1, mtime=0, filesize=0))
        self._write(b"\0" * (-self.written % 512))


@dataclass
class HardLinks:
    """Per hard-link target: how many included links point at it, and the last such link."""

    count: dict[str, int] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)

    def note(self, entry: Entry) -> None:
        """Record ``entry`` (an entry that goes into the archive) if it is a hard link."""
        if entry.kind is Kind.HARDLINK:
            self.count[entry.linkname] = self.count.get(entry.linkname, 0) + 1
            self.last[entry.linkname] = entry.path


def everything(path: str) -> bool:
    return True


def scan_links(stream: BinaryIO, include: Callable[[str], bool] = everything) -> HardLinks:
    """The headers pass: hard-link group sizes, which one record cannot know in advance."""
    links = HardLinks()
    for entry, _ in read_entries(stream):
        if include(entry.path):
            links.note(entry)
    return links


@dataclass
class _Group:
    """A hard-link target whose links are still to come."""

    entry: Entry
    nlink: int
    remaining: int  # included links not yet written
    ino: int | None = None
    spool_offset: int = 0


class TarToNewc:
    """Turns canonical tar entries, fed in tar order, into newc records.

    Entries for which ``include(path)`` is false produce no record, but a left-out file's data
    still reaches the included paths that hard-link to it. ``links`` must come from a pass over
    the same tar with the same ``include``. Spooled hard-link data lives in an anonymous file in
    ``spool_dir`` (default: the system temporary directory).
    """

    def __init__(self, out: Writable, links: HardLinks,
                 include: Callable[[str], bool] = everything, spool_dir: Path | None = None):
        self._cpio = NewcWriter(out)
        self._links = links
        self._include = include
        self._spool_dir = spool_dir
        self._spool: BinaryIO | None = None
        self._groups: dict[str, _Group] = {}
        self._next_ino = FIRST_INO

    def _ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def _header(self, name: str, entry: Entry, ino: int, nlink: int, size: int) -> Header:
        return Header(name=name, ino=ino, mode=_TYPE_BITS[entry.kind] | (entry.mode & 0o7777),
                      uid=entry.uid, gid=entry.gid, nlink=nlink, mtime=entry.mtime,
                      filesize=size, rdevmajor=entry.devmajor if entry.kind in
                      (Kind.CHAR, Kind.BLOCK) else 0,
                      rdevminor=entry.devminor if entry.kind in (Kind.CHAR, Kind.BLOCK) else 0)

    def _plain(self, name: str, entry: Entry, data: Readable | None) -> None:
        """A record of its own: a file, directory, symlink, device or fifo."""
        if entry.kind is Kind.SYMLINK:
            target = encode(entry.linkname)
            self._cpio.add(self._header(name, entry, self._ino(), 1, len(target)), target)
        elif entry.kind is Kind.FILE:
            self._cpio.add(self._header(name, entry, self._ino(), 1, entry.size), data)
        else:
            nlink = 2 if entry.kind is Kind.DIR else 1
            self._cpio.add(self._header(name, entry, self._ino(), nlink, 0))

    def add(self, entry: Entry, data: Readable | None) -> None:
        if entry.kind is Kind.FILE and entry.size > MAX_FIELD:
            raise ComposerError(f"{entry.path}: {entry.size} bytes; a newc cpio (initrd) "
                                "cannot hold files of 4 GiB or more")
        included = self._include(entry.path)
        if entry.kind is Kind.HARDLINK:
            if included:
                self._link(entry)
            return
        links = self._links.count.get(entry.path, 0)
        if links:
            group = _Group(entry, nlink=links + included, remaining=links)
            self._groups[entry.path] = group
            if entry.kind is Kind.FILE:
                self._spool_data(group, data)
                if included:
                    group.ino = self._ino()
                    self._cpio.add(self._header(entry.path, entry, group.ino, group.nlink, 0))
                return
        if included:
            self._plain(entry.path, entry, data)

    def _spool_data(self, group: _Group, data: Readable | None) -> None:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115
        self._spool.seek(0, 2)
        group.spool_offset = self._spool.tell()
        remaining = group.entry.size
        while remaining:
            chunk = data.read(min(COPY_CHUNK, remaining)) if data else b""
            if not chunk:
                raise ComposerError(f"{group.entry.path}: content ended {remaining} bytes short")
            self._spool.write(chunk)
            remaining -= len(chunk)

    def _link(self, entry: Entry) -> None:
        group = self._groups.get(entry.linkname)
        if group is None:
            raise ComposerError(f"{entry.path}: hard link to {entry.linkname!r}, "
                                "which is not an earlier entry of the tar")
        group.remaining -= 1
        target = group.entry
        if target.kind is not Kind.FILE:
            self._plain(entry.path, target, None)
        elif group.remaining:
            if group.ino is None:
                group.ino = self._ino()
            self._cpio.add(self._header(entry.path, target, group.ino, group.nlink, 0))
        else:
            if group.ino is None:
                group.ino = self._ino()
            assert self._spool is not None
            self._spool.seek(group.spool_offset)
            self._cpio.add(self._header(entry.path, target, group.ino, group.nlink, target.size),
                           self._spool)
        if not group.remaining:
            del self._groups[entry.linkname]
            if not self._groups and self._spool is not None:
                self._spool.seek(0)
                self._spool.truncate()

    def close(self) -> None:
        """Write the trailer and drop the spool; ``out`` stays open."""
        try:
            if self._groups:
                raise ComposerError(f"hard links to {sorted(self._groups)[0]!r} never arrived")
            self._cpio.close()
        finally:
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    def __enter__(self) -> TarToNewc:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._spool is not None:
            self._spool.close()
            self._spool = None


def tar_to_cpio(rootfs: Path, out: BinaryIO, include: Callable[[str], bool] = everything,
                spool_dir: Path | None = None) -> None:
    """Write the entries of the canonical tar ``rootfs`` for which ``include`` holds as newc.

    Two reads of the tar (headers for hard-link counts, then everything); memory stays flat.
    """
    with open(rootfs, "rb") as f:
        links = scan_links(f, include)
    with open(rootfs, "rb") as f, TarToNewc(out, links, include, spool_dir) as conv:
        for entry, data in read_entries(f):
            conv.add(entry, data)
