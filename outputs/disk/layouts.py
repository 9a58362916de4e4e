"""What each partitioned disk format holds, and :func:`build_raw_disk`, which writes one.

Every layout is one FAT partition starting at LBA 2048 (1 MiB), behind an MBR or a GPT:

=============  =====  ============================  =======================================
layout         table  boot chain                    partition
=============  =====  ============================  =======================================
``bios``       MBR    mbr.bin -> syslinux           content-sized; disk = partition + 4 MiB
``bios-sized`` MBR    mbr.bin -> syslinux           to the end of a ``--size`` disk
``efi-uki``    GPT    systemd-boot -> UKI           ESP, content-sized; disk = ESP + 4 MiB
``efi-grub``   GPT    GRUB (Debian's gcdx64.efi)    ESP, content-sized; disk = ESP + 4 MiB
=============  =====  ============================  =======================================

The FAT is FAT16 below 512 MiB and FAT32 from there (:func:`outputs.fat.fat_type_for`).
Identifiers (MBR disk signature, GPT disk and partition GUIDs, FAT volume serial) are derived
from :func:`seed`, a sha256 over the rootfs tar's digest, the layout, the bootloader digests,
the options and the disk size, exactly as the ISO formats derive theirs. Every date is the
build's ``mtime``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from composer import canonjson
from composer.errors import ComposerError
from outputs import bootloaders
from outputs.boot import derive, derive_u32, grub_quote
from outputs.disk import gpt, mbr
from outputs.options import parse_size_mib  # noqa: F401 - linuxkit's --size, shared

SEED_VERSION = "image-composer disk 1"
MIB = 1 << 20
PART_START = 2048  # LBA: 1 MiB alignment, as sfdisk and sgdisk choose
TAIL = 3 * MIB  # unpartitioned space after a content-sized partition (linuxkit: image = +4 MiB)
HEADROOM = MIB  # free space left in a content-sized partition (linuxkit's)
DEFAULT_SIZE_MIB = 1024  # linuxkit's -size default
UKI_PATH = "EFI/Linux/linuxkit.efi"
OS_RELEASE = b'NAME="image-composer"\n'


@dataclass(frozen=True)
class DiskLayout:
    """One partitioned disk layout; ``name`` goes into :func:`seed`."""

    name: str
    table: str  # "mbr" or "gpt"
    boot: str  # "syslinux", "systemd-boot" or "grub"
    sized: bool  # the partition fills a disk of the requested --size

    @property
    def roles(self) -> tuple[str, ...]:
        return {"syslinux": (bootloaders.MBR, bootloaders.SYSLINUX),
                "systemd-boot": (bootloaders.EFI_STUB, bootloaders.SYSTEMD_BOOT),
                "grub": (bootloaders.GRUB_EFI,)}[self.boot]

    def roles_for(self, arch: str) -> tuple[str, ...]:
        """:attr:`roles` as the architecture's builds (arm64: the aa64 EFI files)."""
        return tuple(bootloaders.for_arch(role, arch) for role in self.roles)


BIOS = DiskLayout("bios", "mbr", "syslinux", sized=False)
BIOS_SIZED = DiskLayout("bios-sized", "mbr", "syslinux", sized=True)
EFI_UKI = DiskLayout("efi-uki", "gpt", "systemd-boot", sized=False)
EFI_GRUB = DiskLayout("efi-grub", "gpt", "grub", sized=False)
LAYOUTS: Mapping[str, DiskLayout] = {
    "raw-bios": BIOS, "raw-efi": EFI_UKI, "aws": BIOS_SIZED,
    "qcow2-bios": BIOS_SIZED, "qcow2-efi": EFI_GRUB,  # raw layers for the container writers
}


def seed(rootfs_sha256: str, layout: DiskLayout, pins: tuple[bootloaders.Pin, ...], *,
         mtime: int, gzip_level: int, size_mib: int | None) -> bytes:
    """The 32 bytes every identifier of the disk comes from: a function of its inputs only."""
    return hashlib.sha256(canonjson.compact({
        "version": SEED_VERSION, "rootfs": rootfs_sha256, "layout": layout.name,
        "bootloaders": {pin.role: pin.digest for pin in pins},
        "mtime": mtime, "gzip_level": gzip_level,
        "size_mib": size_mib if layout.sized else None,
    })).digest()


@dataclass(frozen=True)
class Identity:
    """The disk's identifiers, each derived from the seed for its own purpose."""

    mbr_signature: int
    fat_serial: int
    disk_guid: uuid.UUID
    esp_guid: uuid.UUID

    @classmethod
    def from_seed(cls, seed_bytes: bytes) -> Identity:
        return cls(derive_u32(seed_bytes, "mbr-signature"), derive_u32(seed_bytes, "fat-serial"),
                   gpt.guid_from(derive(seed_bytes, "gpt-disk-guid", 16)),
                   gpt.guid_from(derive(seed_bytes, "gpt-esp-guid", 16)))


def syslinux_cfg(cmdline: str) -> bytes:
    """linuxkit's syslinux.cfg, line for line."""
    return (f"DEFAULT linux\nLABEL linux\n    KERNEL /kernel\n    INITRD /initrd.img\n"
            f"    APPEND {cmdline}\n").encode()


def grub_cfg(cmdline: str) -> bytes:
    """linuxkit's qcow2-efi grub.cfg, but the command line is the spec's, its words quoted for
    GRUB (linuxkit appends ``text``; no format here adds to the command line)."""
    args = " ".join(grub_quote(w) for w in cmdline.split())
    return ("set timeout=0\nset gfxpayload=text\nmenuentry 'LinuxKit ISO Image' {\n"
            f"\tlinux /kernel {args}\n  initrd /initrd.img\n}}\n").encode()


def uki_cmdline(cmdline: str) -> bytes:
    """The spec's command line (linuxkit's make-efi appends ``text``; we add nothing)."""
    return cmdline.encode()


def partition_files(layout: DiskLayout, *, kernel: Path, initrd: Path, cmdline: str,
                    loaded: Mapping[str, bytes], scratch: Path,
                    arch: str = "amd64") -> dict[str, bytes | Path]:
    """The files of the layout's FAT partition (the UKI is written into ``scratch``)."""
    boot_file = bootloaders.efi_boot_file(arch) if layout.table == "gpt" else ""

    def role(name: str) -> bytes:
        return loaded[bootloaders.for_arch(name, arch)]

    if layout.boot == "syslinux":
        return {"syslinux.cfg": syslinux_cfg(cmdline), "kernel": kernel, "initrd.img": initrd}
    if layout.boot == "grub":
        cfg = grub_cfg(cmdline)
        return {boot_file: role(bootloaders.GRUB_EFI),
                "EFI/BOOT/grub.cfg": cfg,  # $cmdpath/grub.cfg
                "boot/grub/grub.cfg": cfg,  # gcdx64.efi's prefix on its own partition
                "kernel": kernel, "initrd.img": initrd}
    from outputs.disk.uki import write_uki

    uki = scratch / "linuxkit.efi"
    with open(uki, "w+b") as out:
        write_uki(out, role(bootloaders.EFI_STUB), osrel=OS_RELEASE,
                  cmdline=uki_cmdline(cmdline), kernel=kernel, initrd=initrd)
    return {boot_file: role(bootloaders.SYSTEMD_BOOT),
            "loader/loader.conf": b"timeout 0\n", UKI_PATH: uki}


def content_size(files: Mapping[str, bytes | Path], extra: int = 0) -> int:
    """A partition size for ``files``: their clusters (8 KiB, the largest FAT16 cluster used
    below 512 MiB), directories, the FATs, ``extra`` bytes and 1 MiB of headroom, in whole
    MiB, at least the 8 MiB FAT16 minimum."""
    from outputs.fat import FAT16_MIN, source_size

    cluster = 8 << 10
    dirs = {name.rsplit("/", i)[0] for name in files for i in range(1, name.count("/") + 1)}
    need = sum(-(-source_size(s) // cluster) * cluster for s in files.values())
    need += (len(dirs) + 2) * cluster + extra
    need += need // 256 + HEADROOM  # FAT tables: at most 4 bytes per 1 KiB cluster, twice
    return max(-(-need // MIB) * MIB, FAT16_MIN)


def disk_geometry(layout: DiskLayout, part_bytes: int | None,
                  size_mib: int | None) -> tuple[int, int]:
    """(disk bytes, partition bytes). A sized disk's partition runs to its end, up to the
    32 GiB this project's FAT32 writer makes (it holds only the kernel and initrd: the
    system runs from the initrd); the rest of a larger disk is left unpartitioned."""
    from outputs.fat import FAT32_MAX

    if layout.sized:
        disk = (size_mib or DEFAULT_SIZE_MIB) * MIB
        return disk, min(disk - PART_START * mbr.SECTOR, FAT32_MAX)
    assert part_bytes is not None
    return PART_START * mbr.SECTOR + part_bytes + TAIL, part_bytes


def build_raw_disk(layout: DiskLayout, *, kernel: Path, initrd: Path, cmdline: str,
                   out: BinaryIO, seed_bytes: bytes, mtime: int,
                   loaded: Mapping[str, bytes], scratch: Path,
                   size_mib: int | None = None, arch: str = "amd64") -> int:
    """Write the disk image of ``layout`` to ``out`` (a seekable, empty file; zero runs are
    left as holes) and return its size. ``loaded``: the bytes of the layout's bootloader
    roles. ``size_mib``: the disk size for sized layouts (default 1024)."""
    from outputs import fat

    ident = Identity.from_seed(seed_bytes)
    files = partition_files(layout, kernel=kernel, initrd=initrd, cmdline=cmdline,
                            loaded=loaded, scratch=scratch, arch=arch)
    syslinux_room = 256 << 10 if layout.boot == "syslinux" else 0  # ldlinux.sys + .c32
    disk_bytes, part_bytes = disk_geometry(
        layout, None if layout.sized else content_size(files, syslinux_room), size_mib)
    if layout.sized and part_bytes < content_size(files, syslinux_room) - HEADROOM:
        raise ComposerError(f"--size {disk_bytes // MIB}M is too small: the kernel and initrd "
                            f"need a disk of at least "
                            f"{(content_size(files, syslinux_room) - HEADROOM) // MIB + 1} MiB")
    if part_bytes > fat.FAT32_MAX:  # a content-sized partition of more than 32 GiB
        raise ComposerError(f"a {part_bytes >> 20} MiB FAT partition is larger than this "
                            f"project's FAT writer allows ({fat.FAT32_MAX >> 30} GiB)")
    part = scratch / "partition.img"
    fat_bits = fat.write_fat(part, files, size=part_bytes, serial=ident.fat_serial, mtime=mtime,
                             label="ESP" if layout.table == "gpt" else "BOOT",
                             hidden_sectors=PART_START)
    if layout.boot == "syslinux":
        from outputs.disk.syslinux import install

        install(part, loaded[bootloaders.SYSLINUX], mtime=mtime, scratch=scratch)
    sectors = part_bytes // mbr.SECTOR
    if layout.table == "mbr":
        ptype = mbr.TYPE_FAT32_LBA if fat_bits == 32 else mbr.TYPE_FAT16
        table = [(0, mbr.mbr_sector(loaded[bootloaders.MBR], ident.mbr_signature,
                                    [mbr.MbrPartition(PART_START, sectors, ptype, True)]))]
    else:
        table = gpt.gpt_regions(disk_bytes // mbr.SECTOR, ident.disk_guid, [gpt.GptPartition(
            PART_START, sectors, gpt.ESP_TYPE, ident.esp_guid, "EFI System",
            gpt.ATTR_LEGACY_BIOS_BOOTABLE)])
    out.truncate(disk_bytes)
    copy_sparse(part, out, PART_START * mbr.SECTOR)
    for offset, data in table:
        out.seek(offset)
        out.write(data)
    out.seek(0, os.SEEK_END)
    return disk_bytes


def copy_sparse(src_path: Path, out: BinaryIO, offset: int, chunk: int = MIB) -> None:
    """Copy ``src_path`` into ``out`` at ``offset``, skipping its holes and all-zero blocks
    (``out`` already has the final length, so a skipped block reads as zeros)."""
    zero = bytes(chunk)
    with open(src_path, "rb") as src:
        fd = src.fileno()
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                break  # only a hole is left
            end = size
            with contextlib.suppress(OSError):
                end = os.lseek(fd, start, os.SEEK_HOLE)
            src.seek(start)
            pos = start
            while pos < end:
                data = src.read(min(chunk, end - pos))
                if data != zero[:len(data)]:
                    out.seek(offset + pos)
                    out.write(data)
                pos += len(data)
