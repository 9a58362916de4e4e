"""The MBR partition table: one 512-byte sector, written in-process.

:func:`mbr_sector` is the sector of a BIOS disk (boot code, a content-derived disk signature,
the partitions); :func:`protective_mbr` is the one a GPT disk starts with (one entry of type
0xEE over the whole disk, signature 0, as the UEFI specification says and ``sgdisk`` writes).
CHS fields use the 255-head, 63-sector geometry ``sfdisk`` uses, and the ``1023/254/63``
"beyond CHS" marker past cylinder 1023.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SECTOR = 512
BOOT_CODE_MAX = 440  # the disk signature follows
HEADS = 255
SECTORS_PER_TRACK = 63
TYPE_LINUX = 0x83
TYPE_FAT16 = 0x06  # FAT16 with 65536 or more sectors (FAT16B), CHS or LBA
TYPE_FAT32_LBA = 0x0C
TYPE_GPT_PROTECTIVE = 0xEE
MAX_LBA = 0xFFFFFFFF


@dataclass(frozen=True)
class MbrPartition:
    start: int  # first sector (LBA)
    sectors: int
    type: int
    bootable: bool = False


def chs(lba: int) -> bytes:
    """The 3-byte CHS address of ``lba`` (head, sector | cylinder high bits, cylinder low)."""
    cylinder, rest = divmod(lba, HEADS * SECTORS_PER_TRACK)
    if cylinder > 1023:
        return bytes((254, 0xFF, 0xFF))
    head, sector = divmod(rest, SECTORS_PER_TRACK)
    sector += 1
    return bytes((head, sector | ((cylinder >> 2) & 0xC0), cylinder & 0xFF))


def entry(part: MbrPartition) -> bytes:
    if not (0 < part.start <= MAX_LBA and 0 < part.sectors <= MAX_LBA
            and part.start + part.sectors - 1 <= MAX_LBA):
        raise ValueError(f"MBR partition {part} does not fit 32-bit sector numbers")
    return (bytes((0x80 if part.bootable else 0,)) + chs(part.start) + bytes((part.type,))
            + chs(part.start + part.sectors - 1)
            + struct.pack("<II", part.start, part.sectors))


def mbr_sector(boot_code: bytes, signature: int, partitions: list[MbrPartition]) -> bytes:
    """Boot code (at most 440 bytes), disk signature, up to four partitions, 0x55AA."""
    if len(boot_code) > BOOT_CODE_MAX:
        raise ValueError(f"MBR boot code is {len(boot_code)} bytes; at most {BOOT_CODE_MAX}")
    if len(partitions) > 4:
        raise ValueError("an MBR holds at most four primary partitions")
    table = b"".join(entry(p) for p in partitions).ljust(64, b"\0")
    return (boot_code.ljust(BOOT_CODE_MAX, b"\0") + struct.pack("<IH", signature, 0) + table
            + b"\x55\xaa")


def protective_mbr(total_sectors: int) -> bytes:
    """The protective MBR of a GPT disk of ``total_sectors`` sectors."""
    size = min(total_sectors - 1, MAX_LBA)
    part = (bytes((0, 0, 2, 0, TYPE_GPT_PROTECTIVE)) + chs(size)
            + struct.pack("<II", 1, size))
    return bytes(BOOT_CODE_MAX) + bytes(6) + part.ljust(64, b"\0") + b"\x55\xaa"
