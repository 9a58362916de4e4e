"""Check a tar against the canon, and explain where an entry came from.

The check is by construction: every entry is read back and re-written with the one canonical
writer; the tar is canonical exactly when the re-written bytes equal the original bytes. So the
checker can never disagree with the writer, and docs/canonical-tar.md describes both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError
from composer.tar.canon import BLOCK, CanonError, CanonicalTarWriter, Entry
from composer.tar.read import read_entries

USTAR_FIELDS = (
    (0, "name"), (100, "mode"), (108, "uid"), (116, "gid"), (124, "size"), (136, "mtime"),
    (148, "chksum"), (156, "typeflag"), (157, "linkname"), (257, "magic"), (263, "version"),
    (265, "uname"), (297, "gname"), (329, "devmajor"), (337, "devminor"), (345, "prefix"),
    (500, "padding"),
)


class _Comparer:
    """A write-only sink that compares what is written with the next bytes of ``original``."""

    def __init__(self, original: BinaryIO):
        self._original = original
        self.offset = 0
        self.mismatch: int | None = None
        self.chunks: tuple[bytes, bytes] = (b"", b"")  # (theirs, ours) of the mismatching write

    def write(self, data: bytes) -> int:
        if self.mismatch is None:
            theirs = self._original.read(len(data))
            if theirs != data:
                common = next((i for i, (a, b) in enumerate(zip(theirs, data, strict=False))
                               if a != b), min(len(theirs), len(data)))
                self.mismatch = self.offset + common
                self.chunks = (theirs, data)
        self.offset += len(data)
        return len(data)


@dataclass(frozen=True)
class Problem:
    offset: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"byte {self.offset}:{where} {self.message}"


def check_tar(path: Path) -> Problem | None:
    """None if ``path`` is a canonical rootfs tar, else the first problem found."""
    with open(path, "rb") as parsed, open(path, "rb") as original:
        sink = _Comparer(original)
        writer = CanonicalTarWriter(sink)  # type: ignore[arg-type]
        current = ""
        first: Problem | None = None  # the first byte difference; structural problems win
        try:
            for entry, reader in read_entries(parsed):
                current = entry.path
                start = sink.offset
                if not entry.path:
                    return Problem(start, "", "entry for the root directory (./)")
                writer.add(entry, reader)
                if sink.mismatch is not None and first is None:
                    first = _explain_mismatch(sink, start, entry)
            writer.close()
        except CanonError as exc:
            return Problem(sink.offset, current, str(exc).removeprefix(f"{current}: "))
        if first is not None:
            return first
        if sink.mismatch is not None:
            return Problem(sink.mismatch, "", "end of archive is not two zero blocks padded "
                                              "to 10240 bytes")
        if original.read(1):
            return Problem(sink.offset, "", "data after the end of the archive")
    return None


def _explain_mismatch(sink: _Comparer, start: int, entry: Entry) -> Problem:
    """Name the first differing ustar field (ignoring the checksum) when a header differs."""
    assert sink.mismatch is not None
    theirs, ours = sink.chunks
    if len(ours) >= BLOCK and len(ours) % BLOCK == 0 and sink.mismatch - start < len(ours):
        block = len(ours) - BLOCK  # the ustar header is the last block of a header write
        fields = [name for offset, name in USTAR_FIELDS
                  if name != "chksum" and theirs[block + offset: block + _end(offset)]
                  != ours[block + offset: block + _end(offset)]]
        if sink.mismatch - start < block:
            detail = "pax extended header differs"
        else:
            detail = f"ustar field {(fields or ['chksum'])[0]!r} differs"
    else:
        detail = "content or padding differs"
    return Problem(sink.mismatch, entry.path, f"not the canonical encoding: {detail}")


def _end(offset: int) -> int:
    ends = [start for start, _ in USTAR_FIELDS if start > offset]
    return ends[0] if ends else BLOCK


def find_entry(path: Path, name: str) -> Entry | None:
    from composer.tar.canon import normalise

    wanted = normalise(name)
    with open(path, "rb") as fh:
        for entry, _ in read_entries(fh):
            if entry.path == wanted:
                return entry
    return None


SOURCE_RECORD = "LINUXKIT.source"
LOCATION_RECORD = "LINUXKIT.location"
UNKNOWN = "(unknown)"


@dataclass(frozen=True)
class Origin:
    """Where an entry came from, as its provenance records say: the image (or ``linuxkit.files``
    and the like) and the spec entry (``kernel``, ``init[0]``, ``onboot[1]``, ``files[2]``)."""

    source: str
    location: str


def origin(records: dict[str, str] | tuple[tuple[str, str], ...]) -> Origin:
    """The :class:`Origin` an entry's pax records name (``(unknown)`` where one is missing)."""
    found = dict(records)
    return Origin(found.get(SOURCE_RECORD, UNKNOWN), found.get(LOCATION_RECORD, UNKNOWN))


def explain(path: Path, name: str) -> list[str]:
    entry = find_entry(path, name)
    if entry is None:
        raise ComposerError(f"{path}: no entry {name!r}")
    where = origin(entry.records)
    from composer.tar.sections import section_names, section_of  # the report's sections

    section = section_of(where, section_names([(entry.path, where)]))
    lines = [
        f"path:     {entry.path}",
        f"type:     {entry.kind.name.lower()}"
        + (f" -> {entry.linkname}" if entry.linkname else ""),
        f"mode:     {entry.mode:04o}",
        f"owner:    {entry.uid}:{entry.gid}",
        f"size:     {entry.size}",
        f"mtime:    {entry.mtime}",
        f"source:   {where.source}",
        f"location: {where.location}",
        f"section:  {section}",
    ]
    lines += [f"xattr:    {k}" for k, _ in entry.xattrs]
    return lines
