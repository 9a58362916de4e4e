"""MBR and GPT writers, read back by util-linux's sfdisk and gdisk's sgdisk (independent
readers), plus the fields those tools do not show."""

from __future__ import annotations

import json
import os
import shutil
import struct
import uuid
import zlib
from pathlib import Path

import pytest

from composer.tools import run
from outputs.disk import gpt, mbr

MIB = 1 << 20


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (apt-get install {package})")
        pytest.skip(f"{tool} not installed (apt-get install {package})")
    return path


def disk(tmp_path: Path, size: int, pieces: list[tuple[int, bytes]]) -> Path:
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces:
            f.seek(offset)
            f.write(data)
    return path


@pytest.mark.parametrize(("lba", "expected"), [
    (0, (0, 1, 0)),
    (62, (0, 63, 0)),
    (63, (1, 1, 0)),
    (2048, (32, 33, 0)),  # what sfdisk writes for a partition at 1 MiB
    (255 * 63 * 300, (0, 1 | 0x40, 300 & 0xFF)),  # cylinder 300: high bits in the sector byte
    (255 * 63 * 1024, (254, 0xFF, 0xFF)),  # past CHS: the 1023/254/63 marker
])
def test_chs(lba: int, expected: tuple[int, int, int]) -> None:
    assert tuple(mbr.chs(lba)) == expected


def test_mbr_read_by_sfdisk(tmp_path: Path) -> None:
    sfdisk = need("sfdisk", "fdisk")
    code = bytes(range(256)) + bytes(184)
    sector = mbr.mbr_sector(code, 0xDEADBEEF, [mbr.MbrPartition(2048, 30720, 0x0C, True)])
    assert len(sector) == 512 and sector[:440] == code and sector[510:] == b"\x55\xaa"
    path = disk(tmp_path, 16 * MIB, [(0, sector)])
    run([sfdisk, "-V", path])
    table = json.loads(run([sfdisk, "--json", path], capture=True).stdout)["partitiontable"]
    assert table["label"] == "dos" and table["id"] == "0xdeadbeef"
    [part] = table["partitions"]
    assert (part["start"], part["size"], part["type"], part.get("bootable")) == \
        (2048, 30720, "c", True)


def test_mbr_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="boot code"):
        mbr.mbr_sector(bytes(441), 1, [])
    with pytest.raises(ValueError, match="32-bit"):
        mbr.mbr_sector(b"", 1, [mbr.MbrPartition(2048, 1 << 32, 0x83)])


def gpt_disk(tmp_path: Path, size: int = 64 * MIB) -> tuple[Path, uuid.UUID, uuid.UUID]:
    disk_guid = gpt.guid_from(bytes(range(16)))
    part_guid = gpt.guid_from(bytes(range(16, 32)))
    sectors = size // 512
    pieces = gpt.gpt_regions(sectors, disk_guid, [gpt.GptPartition(
        2048, 40960, gpt.ESP_TYPE, part_guid, "EFI System", gpt.ATTR_LEGACY_BIOS_BOOTABLE)])
    return disk(tmp_path, size, pieces), disk_guid, part_guid


def test_gpt_read_by_sgdisk_and_sfdisk(tmp_path: Path) -> None:
    sgdisk = need("sgdisk", "gdisk")
    sfdisk = need("sfdisk", "fdisk")
    path, disk_guid, part_guid = gpt_disk(tmp_path)
    out = run([sgdisk, "-v", path], capture=True).stdout.decode()
    assert "No problems found" in out, out
    info = run([sgdisk, "-i", "1", path], capture=True).stdout.decode()
    assert f"Partition unique GUID: {str(part_guid).upper()}" in info
    assert "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" in info
    assert "Attribute flags: 0000000000000004" in info
    assert "Partition name: 'EFI System'" in info
    assert f"Disk identifier (GUID): {str(disk_guid).upper()}" in \
        run([sgdisk, "-p", path], capture=True).stdout.decode()
    table = json.loads(run([sfdisk, "--json", path], capture=True).stdout)["partitiontable"]
    assert table["label"] == "gpt" and table["id"] == str(disk_guid).upper()
    assert (table["firstlba"], table["lastlba"]) == (34, 64 * MIB // 512 - 34)
    [part] = table["partitions"]
    assert (part["start"], part["size"], part["uuid"]) == (2048, 40960, str(part_guid).upper())


def test_gpt_backup_mirrors_primary_and_crcs_hold(tmp_path: Path) -> None:
    path, _, _ = gpt_disk(tmp_path)
    data = path.read_bytes()
    last = len(data) // 512 - 1
    primary, backup = data[512:1024], data[last * 512:]
    for header, current, other, entries_lba in ((primary, 1, last, 2),
                                                (backup, last, 1, last - 32)):
        assert header[:8] == b"EFI PART"
        crc = struct.unpack_from("<I", header, 16)[0]
        assert zlib.crc32(header[:16] + bytes(4) + header[20:92]) == crc
        assert struct.unpack_from("<QQ", header, 24) == (current, other)
        assert struct.unpack_from("<Q", header, 72)[0] == entries_lba
        array = data[entries_lba * 512:(entries_lba + 32) * 512]
        assert zlib.crc32(array) == struct.unpack_from("<I", header, 88)[0]
    pmbr = data[:512]  # protective MBR: one 0xEE entry from LBA 1, signature 0
    assert pmbr[450] == 0xEE and struct.unpack_from("<II", pmbr, 454) == (1, last)
    assert pmbr[440:444] == bytes(4) and pmbr[510:] == b"\x55\xaa"


def test_gpt_partition_outside_usable_range_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        gpt.gpt_regions(2048 * 8, gpt.guid_from(bytes(16)), [gpt.GptPartition(
            2048, 2048 * 7, gpt.ESP_TYPE, gpt.guid_from(bytes(16)), "x")])


def test_guids_are_version_4_rfc4122() -> None:
    guid = gpt.guid_from(bytes(range(16)))
    assert guid.version == 4 and guid.variant == uuid.RFC_4122
    assert gpt.guid_from(bytes(range(1, 17))) != guid
