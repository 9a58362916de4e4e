"""U-Boot's legacy image format ("uImage"), written by us: the 64-byte header ``mkimage`` puts
before a kernel, a ramdisk or a boot script, so the build needs no u-boot-tools.

The header (``include/image.h``, all numbers big-endian)::

    0  magic 0x27051956      4  header CRC-32 (of these 64 bytes with this field 0)
    8  time (seconds)       12  data size       16  load address      20  entry point
    24 data CRC-32   28 os   29 arch   30 type   31 compression   32 name (32 bytes, NUL-padded)

The time is the build's epoch (``SOURCE_DATE_EPOCH``; mkimage uses it too), so the bytes are
the same on every run. A script image's data is mkimage's "multi-file" list with one file: its
size (4 bytes), a 0 terminator (4 bytes), then the script. The CRCs come from the pinned
zlib-ng (:func:`composer.streams.deflate.crc32`), like every CRC in a gzip stream.

:func:`write` streams the data: a placeholder header first, the data through a CRC-and-size
counting writer, then the real header over the placeholder (``out`` must be seekable: a file
in the build's scratch space), so memory does not grow with the kernel or the initrd.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

from composer.errors import ComposerError
from composer.streams import deflate

MAGIC = 0x27051956
HEADER_SIZE = 64
NAME_SIZE = 32
OS_LINUX = 5
ARCH_ARM64 = 22
TYPE_KERNEL = 2
TYPE_RAMDISK = 3
TYPE_SCRIPT = 6
# image.h's IH_COMP_*, by the names of composer.streams.compress
COMPRESSION = {"none": 0, "gzip": 1, "lz4": 5, "zstd": 6}
_FORMAT = ">IIIIIIIBBBB32s"


class Counting:
    """A writer that passes bytes on to ``out`` and keeps their CRC-32 and count."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self.crc = 0
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._out.write(data)
        self.crc = deflate.crc32(data, self.crc)
        self.size += len(data)
        return len(data)


def header(*, size: int, data_crc: int, time: int, load: int, entry: int, image_type: int,
           compression: str, name: str = "", arch: int = ARCH_ARM64) -> bytes:
    """The 64-byte header of an image whose data is ``size`` bytes with CRC-32 ``data_crc``."""
    raw_name = name.encode("ascii")
    if len(raw_name) > NAME_SIZE:
        raise ComposerError(f"uImage name {name!r} is longer than {NAME_SIZE} bytes")
    for what, value in (("size", size), ("time", time), ("load address", load),
                        ("entry point", entry)):
        if not 0 <= value <= 0xFFFFFFFF:
            raise ComposerError(f"uImage {what} {value} does not fit the header's 32 bits")
    fields = (MAGIC, 0, time, size, load, entry, data_crc, OS_LINUX, arch, image_type,
              COMPRESSION[compression], raw_name)
    unsummed = struct.pack(_FORMAT, *fields)
    return struct.pack(_FORMAT, fields[0], deflate.crc32(unsummed), *fields[2:])


def write(out: BinaryIO, fill: Callable[[Counting], None], *, time: int, load: int, entry: int,
          image_type: int, compression: str, name: str = "") -> None:
    """An image at ``out``'s current position: ``fill`` writes the data to the writer it gets."""
    start = out.tell()
    out.write(b"\0" * HEADER_SIZE)
    counting = Counting(out)
    fill(counting)
    end = out.tell()
    out.seek(start)
    out.write(header(size=counting.size, data_crc=counting.crc, time=time, load=load,
                     entry=entry, image_type=image_type, compression=compression, name=name))
    out.seek(end)


def script(text: bytes, *, time: int, name: str = "") -> bytes:
    """A boot script image (``mkimage -T script -C none -a 0 -e 0``) of ``text``."""
    data = struct.pack(">II", len(text), 0) + text
    return header(size=len(data), data_crc=deflate.crc32(data), time=time, load=0, entry=0,
                  image_type=TYPE_SCRIPT, compression="none", name=name) + data
