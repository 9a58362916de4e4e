"""A unified kernel image (UKI), assembled in-process: the systemd EFI stub plus sections.

What ``ukify build`` does, without objcopy (binutils stamps the wall clock into the PE header)
and without reading the kernel or initrd into memory: the stub's bytes are kept as they are
(zero-padded to the file alignment), section headers are added after its own, and the contents
follow, each at the next file/section alignment boundary, in ukify's order: ``.osrel``,
``.cmdline``, ``.uname`` (the kernel's release from its bzImage header; left out, as ukify
does, when the kernel has none), ``.initrd``, ``.linux``. The stub's own ``.sbat`` section is
the UKI's ``.sbat`` (ukify would merge the kernel's SBAT into it; Debian's kernel has none).

The header's ``TimeDateStamp`` is the stub's (ukify keeps it too); ``CheckSum`` is the real PE
checksum of the result (ukify writes 0), computed while the sections stream past, so the
bytes depend on the inputs only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError

SECTION_HEADER = 40
DATA = 0x40000040  # IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
PE32_PLUS = 0x20B
CHUNK = 1 << 20
Source = bytes | Path


@dataclass(frozen=True)
class StubLayout:
    """Where the fields this module touches sit in the stub's headers."""

    coff: int  # offset of the COFF file header (after "PE\0\0")
    optional: int  # offset of the optional header
    sections: int  # number of sections
    section_table_end: int
    size_of_headers: int
    file_alignment: int
    section_alignment: int
    size_of_image: int


def align(value: int, to: int) -> int:
    return -(-value // to) * to


def parse_stub(stub: bytes) -> StubLayout:
    """The stub's PE32+ header fields; a ComposerError if it is not a PE32+ EFI image."""
    if stub[:2] != b"MZ" or len(stub) < 0x40:
        raise ComposerError("UKI stub is not a PE image (no MZ header)")
    (pe,) = struct.unpack_from("<I", stub, 0x3C)
    if stub[pe:pe + 4] != b"PE\0\0":
        raise ComposerError("UKI stub is not a PE image (no PE signature)")
    coff = pe + 4
    sections, opt_size = struct.unpack_from("<H12xH", stub, coff + 2)
    optional = coff + 20
    (magic,) = struct.unpack_from("<H", stub, optional)
    if magic != PE32_PLUS:
        raise ComposerError(f"UKI stub is not PE32+ (optional header magic {magic:#x})")
    section_alignment, file_alignment = struct.unpack_from("<II", stub, optional + 32)
    size_of_image, size_of_headers = struct.unpack_from("<II", stub, optional + 56)
    return StubLayout(coff, optional, sections, optional + opt_size + sections * SECTION_HEADER,
                      size_of_headers, file_alignment, section_alignment, size_of_image)


def kernel_release(kernel_head: bytes) -> str | None:
    """The release (``uname -r``) from an x86 bzImage's setup header, as ukify scrapes it;
    None if there is none (ukify then leaves ``.uname`` out, and so do we)."""
    if kernel_head[0x202:0x206] != b"HdrS" or len(kernel_head) < 0x210:
        return None
    (pointer,) = struct.unpack_from("<H", kernel_head, 0x20E)
    text = kernel_head[0x200 + pointer:0x200 + pointer + 256].split(b"\0", 1)[0]
    release = text.split(b" ", 1)[0].decode("ascii", "replace")
    return release if release.isprintable() and release else None


class Checksum:
    """The PE image checksum: the ones'-complement (end-around carry) sum of the file's 16-bit
    little-endian words, plus the file's length.

    Since 65536 = 1 (mod 65535), an even-length piece read as one little-endian integer is
    congruent to the sum of its words, so each piece costs one big-integer remainder instead of
    a Python-level loop; the end-around-carry sum is that residue, except that a non-zero sum
    divisible by 65535 folds to 0xFFFF."""

    def __init__(self) -> None:
        self.residue = 0
        self.nonzero = False
        self.length = 0
        self.odd = b""  # a byte left over from a piece of odd length

    def add(self, data: bytes) -> None:
        self.length += len(data)
        if self.odd:
            data = self.odd + data
        if len(data) % 2:
            self.odd, data = data[-1:], data[:-1]
        else:
            self.odd = b""
        value = int.from_bytes(data, "little")
        self.nonzero = self.nonzero or value != 0
        self.residue = (self.residue + value % 0xFFFF) % 0xFFFF

    def value(self) -> int:
        residue, nonzero = self.residue, self.nonzero
        if self.odd:
            residue = (residue + self.odd[0]) % 0xFFFF
            nonzero = nonzero or self.odd[0] != 0
        folded = 0xFFFF if residue == 0 and nonzero else residue
        return (folded + self.length) & 0xFFFFFFFF


def _chunks(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
        return
    with open(source, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _size(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else source.stat().st_size


def write_uki(out: BinaryIO, stub: bytes, *, osrel: bytes, cmdline: bytes, kernel: Path,
              initrd: Path) -> int:
    """Write the UKI to ``out`` (seekable, positioned at 0); returns its size."""
    layout = parse_stub(stub)
    with open(kernel, "rb") as f:
        release = kernel_release(f.read(0x10200))  # the string is in the setup code
    sections: list[tuple[bytes, Source]] = [
        (b".osrel", osrel), (b".cmdline", cmdline),
        *([(b".uname", release.encode())] if release else []),
        (b".initrd", initrd), (b".linux", kernel)]
    if layout.section_table_end + len(sections) * SECTION_HEADER > layout.size_of_headers:
        raise ComposerError("UKI stub has no room for more section headers")
    headers = bytearray()
    raw = align(len(stub), layout.file_alignment)
    virtual = align(layout.size_of_image, layout.section_alignment)
    placed = []
    for name, source in sections:
        size = _size(source)
        raw_size = align(size, layout.file_alignment)
        headers += struct.pack("<8sIIIIIIHHI", name, size, virtual, raw_size, raw, 0, 0, 0, 0,
                               DATA)
        placed.append((raw, source, raw_size - size))
        raw += raw_size
        virtual = align(virtual + size, layout.section_alignment)
    head = bytearray(stub.ljust(align(len(stub), layout.file_alignment), b"\0"))
    head[layout.section_table_end:layout.section_table_end + len(headers)] = headers
    struct.pack_into("<H", head, layout.coff + 2, layout.sections + len(sections))
    struct.pack_into("<I", head, layout.optional + 56, virtual)  # SizeOfImage
    struct.pack_into("<I", head, layout.optional + 64, 0)  # CheckSum: filled in below
    checksum = Checksum()
    checksum.add(bytes(head))
    out.write(head)
    for offset, source, pad in placed:
        if out.tell() != offset:
            raise AssertionError("UKI section offsets out of step")
        for chunk in _chunks(source):
            out.write(chunk)
            checksum.add(chunk)
        if pad:
            out.write(bytes(pad))
            checksum.add(bytes(pad))
    out.seek(layout.optional + 64)
    out.write(struct.pack("<I", checksum.value()))
    out.seek(0, 2)
    return raw
