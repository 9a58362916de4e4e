"""The GUID partition table (UEFI 2.x, chapter 5), written in-process.

:func:`gpt_regions` returns what goes where: the protective MBR at LBA 0, the primary header at
LBA 1 and its 128 entries at LBA 2-33, the backup entries in the 32 sectors before the last one
and the backup header in the last sector. The disk and partition GUIDs come from the caller
(derived from content by :mod:`outputs.disk.layouts`); both headers carry CRC32s of themselves
and of the entry array.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

from outputs.disk.mbr import SECTOR, protective_mbr

ENTRIES = 128
ENTRY_SIZE = 128
ENTRY_SECTORS = ENTRIES * ENTRY_SIZE // SECTOR  # 32
FIRST_USABLE = 2 + ENTRY_SECTORS  # 34
REVISION = 0x00010000
HEADER_SIZE = 92
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
ATTR_LEGACY_BIOS_BOOTABLE = 1 << 2


@dataclass(frozen=True)
class GptPartition:
    start: int  # first LBA
    sectors: int
    type: uuid.UUID
    guid: uuid.UUID
    name: str
    attributes: int = 0


def guid_from(raw: bytes) -> uuid.UUID:
    """A random-style (version 4, RFC 4122 variant) GUID from 16 derived bytes."""
    return uuid.UUID(bytes=raw[:16], version=4)


def _entry(part: GptPartition) -> bytes:
    name = part.name.encode("utf-16-le")
    if len(name) > 72:
        raise ValueError(f"GPT partition name {part.name!r} is longer than 36 UTF-16 units")
    return (part.type.bytes_le + part.guid.bytes_le
            + struct.pack("<QQQ", part.start, part.start + part.sectors - 1, part.attributes)
            + name.ljust(72, b"\0"))


def _header(*, current: int, backup: int, last_usable: int, disk_guid: uuid.UUID,
            entries_lba: int, entries_crc: int) -> bytes:
    def pack(crc: int) -> bytes:
        return struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", REVISION, HEADER_SIZE, crc, 0,
                           current, backup, FIRST_USABLE, last_usable, disk_guid.bytes_le,
                           entries_lba, ENTRIES, ENTRY_SIZE, entries_crc)

    return pack(zlib.crc32(pack(0))).ljust(SECTOR, b"\0")


def gpt_regions(total_sectors: int, disk_guid: uuid.UUID,
                partitions: list[GptPartition]) -> list[tuple[int, bytes]]:
    """``(byte offset, bytes)`` pieces of a GPT disk of ``total_sectors`` sectors; everything
    else on the disk is the partitions' content (or zeros)."""
    last = total_sectors - 1
    last_usable = last - 1 - ENTRY_SECTORS
    for part in partitions:
        if part.start < FIRST_USABLE or part.start + part.sectors - 1 > last_usable:
            raise ValueError(f"GPT partition {part.name!r} lies outside LBA "
                             f"{FIRST_USABLE}..{last_usable}")
    array = b"".join(_entry(p) for p in partitions).ljust(ENTRIES * ENTRY_SIZE, b"\0")
    crc = zlib.crc32(array)
    backup_entries = last - ENTRY_SECTORS
    primary = _header(current=1, backup=last, last_usable=last_usable, disk_guid=disk_guid,
                      entries_lba=2, entries_crc=crc)
    secondary = _header(current=last, backup=1, last_usable=last_usable, disk_guid=disk_guid,
                        entries_lba=backup_entries, entries_crc=crc)
    return [(0, protective_mbr(total_sectors)), (SECTOR, primary), (2 * SECTOR, array),
            (backup_entries * SECTOR, array), (last * SECTOR, secondary)]
