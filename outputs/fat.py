"""The one place pyfatfs is used: a FAT12 EFI system partition image with pinned bytes.

pyfatfs 1.1 creates FAT file systems in-process, but it reads the host and leaves a few bytes
other tools reject (peers.md section 7, ``docs/iso.md``):

- **clock** (and, unless ``utc=True``, the **timezone**): the volume-label entry, every new file
  and directory, and the ``.``/``..`` entries get ``DosDateTime.now()``;
- **volume serial**: a falsy ``volume_id`` (0 included) means "derive one from
  ``time.localtime()``";
- **geometry**: it writes 0 sectors per track and 0 heads, which mtools refuses ("The devil is in
  the details: zero number of heads or sectors");
- **FAT12 entry 1**: it packs the reserved entry 1 as ``0xFF0``; mtools wants ``0xFFF``
  ("Initial bytes of fat is not 0xff").

While :func:`write_esp` runs, ``DosDateTime.now`` returns the build's time (UTC, clamped to what
FAT can store: 1980-01-01 to 2107-12-31, even seconds), and ``time`` in ``pyfatfs.PyFat`` raises
if asked for the local time (the serial is always given, never derived). Afterwards the
geometry (32 sectors per track, 64 heads, as ``mkfs.fat`` writes for images) and entry 1 of each
FAT are fixed in place. Directories and files are created in sorted order, so the ``~N`` short
names pyfatfs makes and the cluster layout depend on nothing else. :func:`patches` lists the
replacements by name for the tests.

:func:`write_fat` makes the FAT16/FAT32 file systems of the partitioned disk formats
(:mod:`outputs.disk`) the same way: any size, file contents streamed from files (a kernel and an
initrd do not go through memory), the hidden-sectors field set to the partition's start, and on
FAT32 the backup boot sector kept equal to the boot sector (``fsck.fat`` compares them).
"""

from __future__ import annotations

import datetime
import errno
import importlib.metadata
import shutil
import struct
import threading
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyfatfs.DosDateTime
import pyfatfs.PyFat
from pyfatfs import PyFATException
from pyfatfs.DosDateTime import DosDateTime
from pyfatfs.PyFat import PyFat

from composer.errors import ComposerError
from outputs.fatfs_shim import PyFatFS  # without pkg_resources

PYFATFS_VERSION = "1.1.0"
FAT_MIN_EPOCH = 315532800  # 1980-01-01T00:00:00Z: FAT dates start in 1980
FAT_MAX_EPOCH = 4354819198  # 2107-12-31T23:59:58Z: the last FAT date
SECTOR = 512
SECTORS_PER_TRACK = 32
HEADS = 64
MAX_SIZE = 31 << 20  # El Torito counts the image in 16 bits of 512-byte sectors: < 32 MiB
_SLACK = 512 << 10  # FATs, root directory and rounding
_CLUSTER_BOUND = 32 << 10  # no FAT12 cluster below MAX_SIZE is larger
_LOCK = threading.Lock()


def fat_time(mtime: int) -> DosDateTime:
    """``mtime`` as a FAT timestamp: UTC, clamped to 1980..2107, rounded down to even seconds."""
    clamped = min(max(mtime, FAT_MIN_EPOCH), FAT_MAX_EPOCH)
    clamped -= clamped % 2
    dt = datetime.datetime.fromtimestamp(clamped, datetime.UTC)
    return DosDateTime(*dt.timetuple()[:6])


class NoLocalTime:
    """Stands in for ``time`` in ``pyfatfs.PyFat``: the serial is never derived from the clock."""

    def localtime(self, *args: Any) -> Any:
        raise RuntimeError("pyfatfs asked for the local time: pass a non-zero volume_id")

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


@dataclass(frozen=True)
class Patch:
    target: ModuleType | type
    attr: str
    value: object


def patches(mtime: int) -> dict[str, list[Patch]]:
    """Every replacement :func:`write_esp` makes, by the leak it closes."""
    stamp = fat_time(mtime)

    def now(tz: datetime.tzinfo | None = None) -> DosDateTime:
        return stamp

    return {
        "clock": [Patch(DosDateTime, "now", staticmethod(now))],
        "volume_id": [Patch(pyfatfs.PyFat, "time", NoLocalTime())],
    }


def check_version() -> str:
    version = importlib.metadata.version("pyfatfs")
    if version != PYFATFS_VERSION:
        raise ComposerError(f"pyfatfs {version} is installed; ISO outputs are pinned to "
                            f"pyfatfs=={PYFATFS_VERSION} (pip install pyfatfs=={PYFATFS_VERSION})")
    return version


def esp_size(files: Mapping[str, bytes]) -> int:
    """Bytes for a FAT12 image holding ``files``: content rounded up per cluster, plus slack,
    rounded up to whole MiB."""
    dirs = {p.rsplit("/", 1)[0] for p in files if "/" in p}
    dirs |= {d.rsplit("/", i)[0] for d in dirs for i in range(d.count("/") + 1)}
    need = sum(-(-len(data) // _CLUSTER_BOUND) * _CLUSTER_BOUND for data in files.values())
    need += len(dirs) * _CLUSTER_BOUND + _SLACK
    return -(-need // (1 << 20)) << 20


def write_esp(path: Path, files: Mapping[str, bytes], *, serial: int, mtime: int,
              label: str = "ESP") -> int:
    """Create FAT12 image ``path`` holding ``files`` (relative path -> content); its size."""
    check_version()
    if not 0 < serial <= 0xFFFFFFFF:
        raise ValueError(f"FAT volume serial must be 1..2**32-1, not {serial}")
    size = esp_size(files)
    if size > MAX_SIZE:
        raise ComposerError(f"the EFI system partition would need {size >> 20} MiB; El Torito "
                            f"allows less than 32 MiB (is the EFI bootloader that large?)")
    with _LOCK:
        saved = []
        try:
            for patch in (p for group in patches(mtime).values() for p in group):
                saved.append(Patch(patch.target, patch.attr, patch.target.__dict__[patch.attr]))
                setattr(patch.target, patch.attr, patch.value)
            _fill(path, files, size=size, serial=serial, label=label)
        finally:
            for patch in reversed(saved):
                setattr(patch.target, patch.attr, patch.value)
    _fix_header(path)
    return size


FAT16 = PyFat.FAT_TYPE_FAT16
FAT32 = PyFat.FAT_TYPE_FAT32
FAT16_MIN = 8 << 20  # below this pyfatfs's FAT16 has too few clusters
FAT32_MIN = 512 << 20  # mkfs.fat's choice: FAT32 from 512 MiB
FAT32_MAX = 32 << 30  # pyfatfs has no cluster size for larger FAT32 volumes
FAT_FILE_MAX = (4 << 30) - 1  # a FAT directory entry holds a 32-bit size
Source = bytes | Path


def fat_type_for(size: int) -> int:
    """FAT16 below 512 MiB, FAT32 from there (as ``mkfs.fat`` chooses for these sizes)."""
    return FAT32 if size >= FAT32_MIN else FAT16


def source_size(source: Source) -> int:
    return source.stat().st_size if isinstance(source, Path) else len(source)


def write_fat(path: Path, files: Mapping[str, Source], *, size: int, serial: int, mtime: int,
              label: str, hidden_sectors: int = 0) -> int:
    """Create the FAT16/FAT32 image ``path`` of ``size`` bytes (a whole number of sectors, at
    least 8 MiB, at most 32 GiB) holding ``files`` (relative path -> bytes, or a file whose
    content is streamed); returns the FAT type (16 or 32). A full file system or a file of 4 GiB
    or more is a ComposerError."""
    check_version()
    if not 0 < serial <= 0xFFFFFFFF:
        raise ValueError(f"FAT volume serial must be 1..2**32-1, not {serial}")
    if size % SECTOR or not FAT16_MIN <= size <= FAT32_MAX:
        raise ComposerError(f"a FAT partition of {size} bytes is not supported "
                            f"(whole sectors, {FAT16_MIN >> 20} MiB to {FAT32_MAX >> 30} GiB)")
    for name, source in files.items():
        if source_size(source) > FAT_FILE_MAX:
            raise ComposerError(f"{name}: {source_size(source)} bytes is larger than FAT allows "
                                f"for one file (4 GiB - 1)")
    fat_type = fat_type_for(size)
    with _LOCK:
        saved = []
        try:
            for patch in (p for group in patches(mtime).values() for p in group):
                saved.append(Patch(patch.target, patch.attr, patch.target.__dict__[patch.attr]))
                setattr(patch.target, patch.attr, patch.value)
            try:
                _fill(path, files, size=size, serial=serial, label=label, fat_type=fat_type)
            except PyFATException as exc:
                if exc.errno == errno.ENOSPC:
                    raise ComposerError(f"the {size >> 20} MiB FAT partition is too small for "
                                        "its files") from None
                raise
        finally:
            for patch in reversed(saved):
                setattr(patch.target, patch.attr, patch.value)
    _fix_header(path, hidden_sectors=hidden_sectors)
    return 32 if fat_type == FAT32 else 16


def fix_fsinfo(path: Path) -> None:
    """FAT32's FSInfo sector (and its backup) with the true free-cluster count and the first
    free cluster: pyfatfs leaves the count it had after mkfs (``fsck.fat`` reports it)."""
    with open(path, "r+b") as f:
        bpb = f.read(SECTOR)
        reserved, fats = struct.unpack_from("<HB", bpb, 14)
        fat_sectors_16, = struct.unpack_from("<H", bpb, 22)
        if fat_sectors_16:
            return  # FAT12/16: no FSInfo
        cluster_sectors = bpb[13]
        total, fat_sectors, _, _, _, fsinfo, backup = struct.unpack_from("<IIHHIHH", bpb, 32)
        clusters = (total - reserved - fats * fat_sectors) // cluster_sectors
        free = 0
        first = 0xFFFFFFFF
        f.seek(reserved * SECTOR)
        done = 0
        chunk = 1 << 18  # entries per read
        while done < clusters + 2:
            count = min(chunk, clusters + 2 - done)
            entries = memoryview(f.read(count * 4)).cast("I")
            for i in range(max(2 - done, 0), count):
                if not entries[i] & 0x0FFFFFFF:
                    free += 1
                    if first == 0xFFFFFFFF:
                        first = done + i
            done += count
        for sector in {fsinfo, backup + fsinfo if backup else fsinfo}:
            f.seek(sector * SECTOR + 488)
            f.write(struct.pack("<II", free, first))


def sync_backup_boot_sector(path: Path) -> None:
    """FAT32 keeps a copy of the boot sector (``BPB_BkBootSec``); make it equal sector 0 again
    after the boot sector was changed (geometry, hidden sectors, a boot loader's code)."""
    with open(path, "r+b") as f:
        bpb = f.read(SECTOR)
        fat_sectors_16, = struct.unpack_from("<H", bpb, 22)
        if fat_sectors_16:
            return  # FAT12/16: no backup
        backup, = struct.unpack_from("<H", bpb, 50)
        if backup:
            f.seek(backup * SECTOR)
            f.write(bpb)


def _write_source(out: Any, source: Source) -> None:
    if isinstance(source, Path):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
    else:
        out.write(source)


def _fill(path: Path, files: Mapping[str, Source], *, size: int, serial: int,
          label: str, fat_type: int = PyFat.FAT_TYPE_FAT12) -> None:
    with open(path, "wb"):
        pass  # mkfs wants an existing file
    pf = PyFat()
    try:
        pf.mkfs(str(path), fat_type=fat_type, size=size, label=label,
                volume_id=serial)
    except BaseException:
        pf.is_read_only = True  # a half-made file system cannot be marked clean: just close
        pf.close()
        raise
    pf.close()
    fs = PyFatFS(str(path), utc=True, preserve_case=True)
    try:
        made: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in made:
                    fs.makedir("/" + parent)
                    made.add(parent)
            with fs.openbin("/" + name, "wb") as out:
                _write_source(out, files[name])
    finally:
        fs.close()


def _fix_header(path: Path, hidden_sectors: int = 0) -> None:
    """Geometry mtools accepts, the hidden sectors (the partition's start), and FAT12 entry 1 =
    0xFFF in every FAT copy."""
    with open(path, "r+b") as f:
        bpb = f.read(SECTOR)
        bytes_per_sector, reserved, fats = struct.unpack_from("<HxHB", bpb, 11)
        (fat_sectors,) = struct.unpack_from("<H", bpb, 22)
        f.seek(24)
        f.write(struct.pack("<HHI", SECTORS_PER_TRACK, HEADS, hidden_sectors))
        if not fat_sectors:  # FAT32
            f.flush()
            sync_backup_boot_sector(path)
            fix_fsinfo(path)
            return
        if bpb[54:62] != b"FAT12   ":  # FAT16: entry 1 is already 0xFFFF
            return
        for i in range(fats):
            start = (reserved + i * fat_sectors) * bytes_per_sector
            f.seek(start)
            head = bytearray(f.read(3))
            head[1] |= 0xF0  # entry 1's low nibble
            head[2] = 0xFF  # entry 1's high byte
            f.seek(start)
            f.write(head)
