"""The one place pycdlib is used: an ISO 9660 writer whose bytes depend only on its inputs.

pycdlib 1.22 builds ISO 9660 images in-process (Rock Ridge, El Torito, isohybrid), but it reads
the host in several places (``docs/iso.md`` and peers.md section 7):

- **clock**: ``time.time()`` for the volume descriptor dates (creation, effective and, at
  write time, modification), the root directory record and every file and directory record
  (``pycdlib.pycdlib``, ``headervd``, ``inplaceeditor``, ``udf``);
- **timezone**: every date goes through ``time.localtime()`` and stores the local GMT offset
  (``pycdlib.dates``, ``udf``);
- **uuid4**: the isohybrid GPT's disk GUID and partition GUIDs (``pycdlib.isohybrid``);
- **random**: ``random.getrandbits`` for the isohybrid MBR id when none is given, and UDF ids.

While a :class:`PinnedIso` is open, those modules see a clock fixed at the build's ``mtime``
whose ``localtime`` is UTC, a ``uuid4`` that derives GUIDs from the build's ``seed``, and a
``random`` that raises (we always pass the MBR id and never use UDF, so randomness reaching
pycdlib is a bug, not a value). The patches replace module attributes, so nothing else in the
process is affected, and a lock keeps two ISOs in one process from interleaving. :func:`patches`
lists them by name (the tests remove each in turn to show that it matters).

Names: callers give Rock Ridge paths made of ``[a-z0-9_]`` (files may have a ``.ext`` of up to
three such characters, directories at most 8 characters); the ISO 9660 name is the same in
upper case, so ISOLINUX (which matches ISO 9660 names case-insensitively) and GRUB (which reads
Rock Ridge) see the same tree. Every file and directory is read-only (``0444``/``0555``), owned
by root and dated ``mtime``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import threading
import time as _time
import uuid as _uuid
from dataclasses import dataclass
from types import ModuleType
from typing import Any, BinaryIO

import pycdlib
import pycdlib.dates
import pycdlib.headervd
import pycdlib.inplaceeditor
import pycdlib.isohybrid
import pycdlib.pycdlib
import pycdlib.udf

from composer.errors import ComposerError

PYCDLIB_VERSION = "1.22.0"  # the bytes below were checked against this version only
VOLUME_ID = "IMAGE_COMPOSER"
APPLICATION_ID = "IMAGE_COMPOSER"
INTERCHANGE_LEVEL = 3
FILE_MODE = 0o100444
DIR_MODE = 0o040555
MBR_CODE_SIZE = 432
GPT_ENTRY_SIZE = 128
_LOCK = threading.Lock()
_FILE = re.compile(r"[a-z0-9_]{1,27}(\.[a-z0-9_]{1,3})?")  # ISO 9660: name + ext <= 30
_DIR = re.compile(r"[a-z0-9_]{1,8}")


class PinnedClock:
    """Stands in for the ``time`` module: ``time()`` is fixed, ``localtime`` is UTC."""

    def __init__(self, epoch: int):
        self._epoch = epoch

    def time(self) -> float:
        return float(self._epoch)

    def set(self, epoch: int) -> None:
        """Date what is added next (a record's own mtime); restored for the volume dates."""
        self._epoch = epoch

    def localtime(self, secs: float | None = None) -> _time.struct_time:
        return _time.gmtime(self._epoch if secs is None else secs)

    def __getattr__(self, name: str) -> Any:  # strftime, strptime, struct_time, gmtime
        return getattr(_time, name)


class DerivedUuid:
    """Stands in for the ``uuid`` module: ``uuid4()`` returns GUIDs derived from a seed."""

    UUID = _uuid.UUID

    def __init__(self, seed: bytes):
        self._seed = seed
        self._count = 0

    def uuid4(self) -> _uuid.UUID:
        self._count += 1
        digest = hashlib.sha256(self._seed + b"\0gpt-guid\0%d" % self._count).digest()
        return _uuid.UUID(bytes=digest[:16], version=4)


class NoRandom:
    """Stands in for the ``random`` module: any use is a determinism bug."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"pycdlib asked for random.{name}: its input must be pinned instead")


@dataclass(frozen=True)
class Patch:
    module: ModuleType
    attr: str
    value: object


def patches(mtime: int, seed: bytes) -> dict[str, list[Patch]]:
    """Every replacement :class:`PinnedIso` makes, by the leak it closes."""
    clock = PinnedClock(mtime)
    return {
        "clock": [Patch(m, "time", clock) for m in (
            pycdlib.pycdlib, pycdlib.headervd, pycdlib.inplaceeditor, pycdlib.udf)],
        "timezone": [Patch(pycdlib.dates, "time", clock)],
        "uuid4": [Patch(pycdlib.isohybrid, "uuid", DerivedUuid(seed))],
        "random": [Patch(pycdlib.isohybrid, "random", NoRandom()),
                   Patch(pycdlib.udf, "random", NoRandom())],
    }


def check_version() -> str:
    version = importlib.metadata.version("pycdlib")
    if version != PYCDLIB_VERSION:
        raise ComposerError(f"pycdlib {version} is installed; ISO outputs are pinned to "
                            f"pycdlib=={PYCDLIB_VERSION} (pip install pycdlib=={PYCDLIB_VERSION})")
    return version


def iso_path(path: str, *, directory: bool = False) -> str:
    """The ISO 9660 path of a Rock Ridge path: ``boot/initrd.img`` -> ``/BOOT/INITRD.IMG;1``."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        last_file = i == len(parts) - 1 and not directory
        if not (_FILE if last_file else _DIR).fullmatch(part):
            raise ValueError(f"{path!r}: {part!r} is not a name this ISO writer accepts")
    name = "/" + "/".join(parts).upper()
    if directory:
        return name
    return name + ("" if "." in parts[-1] else ".") + ";1"


class PinnedIso:
    """An ISO being built, with pycdlib's host inputs pinned until the context exits.

    ``mtime`` dates every record and the volume; ``seed`` (bytes from the content) derives the
    GPT GUIDs. Add directories before their contents; add files in sorted order.
    """

    def __init__(self, *, mtime: int, seed: bytes, volume_id: str = VOLUME_ID,
                 interchange_level: int = INTERCHANGE_LEVEL, joliet: int | None = None):
        self.mtime = mtime
        self.seed = seed
        self.volume_id = volume_id
        self.interchange_level = interchange_level
        self.joliet = joliet
        self.clock = PinnedClock(mtime)
        self._iso: pycdlib.PyCdlib | None = None
        self._saved: list[Patch] = []
        self._locked = False
        self._catalog: str | None = None

    @property
    def iso(self) -> pycdlib.PyCdlib:
        if self._iso is None:
            raise RuntimeError("PinnedIso used outside its with block")
        return self._iso

    def __enter__(self) -> PinnedIso:
        check_version()
        _LOCK.acquire()
        self._locked = True
        try:
            chosen = [p for group in patches(self.mtime, self.seed).values() for p in group]
            self.clock = next((p.value for p in chosen if isinstance(p.value, PinnedClock)),
                              self.clock)
            for patch in chosen:
                self._saved.append(Patch(patch.module, patch.attr,
                                         getattr(patch.module, patch.attr)))
                setattr(patch.module, patch.attr, patch.value)
            self._iso = pycdlib.PyCdlib()
            self._iso.new(interchange_level=self.interchange_level, vol_ident=self.volume_id,
                          app_ident_str=APPLICATION_ID, rock_ridge="1.09", joliet=self.joliet)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._iso is not None:
                self._iso.close()
                self._iso = None
        finally:
            self._restore()

    def _restore(self) -> None:
        for saved in reversed(self._saved):
            setattr(saved.module, saved.attr, saved.value)
        self._saved.clear()
        if self._locked:
            self._locked = False
            _LOCK.release()

    def add_directory(self, path: str) -> None:
        self.iso.add_directory(iso_path(path, directory=True), rr_name=path.rsplit("/", 1)[-1],
                               file_mode=DIR_MODE, creation_time=self.mtime)

    def add_file(self, path: str, data: BinaryIO, size: int) -> None:
        """A file whose ``size`` bytes ``data`` yields when the ISO is written (kept open)."""
        self.iso.add_fp(data, size, iso_path(path), rr_name=path.rsplit("/", 1)[-1],
                        file_mode=FILE_MODE, creation_time=self.mtime)

    def add_bios_boot(self, path: str, catalog: str) -> None:
        """El Torito entry for ISOLINUX: platform 0, no emulation, 4 sectors, boot info table."""
        self.iso.add_eltorito(iso_path(path), bootcatfile=iso_path(catalog),
                              rr_bootcatname=catalog.rsplit("/", 1)[-1], boot_load_size=4,
                              platform_id=0, boot_info_table=True)
        self._catalog = catalog

    def add_efi_boot(self, path: str, catalog: str) -> None:
        """El Torito entry (platform 0xEF, no emulation) for the FAT image at ``path``."""
        if self._catalog not in (None, catalog):
            raise ValueError(f"one boot catalog per ISO, not {self._catalog} and {catalog}")
        self.iso.add_eltorito(iso_path(path), bootcatfile=iso_path(catalog),
                              rr_bootcatname=catalog.rsplit("/", 1)[-1], platform_id=0xEF,
                              efi=True)
        self._catalog = catalog

    def make_hybrid(self, mbr_code: bytes, mbr_id: int, *, efi: bool) -> None:
        """isohybrid: an MBR (and, with ``efi``, a GPT and a partition on the EFI image).

        ``mbr_code`` is the 432-byte isohybrid MBR boot code (syslinux's ``isohdpfx.bin``),
        used instead of the older copy built into pycdlib, so the MBR matches the pinned
        isolinux.
        """
        header = pycdlib.isohybrid.IsoHybrid.ORIG_HEADER
        if len(mbr_code) != MBR_CODE_SIZE or not mbr_code.startswith(header):
            raise ComposerError(f"isohybrid MBR code must be {MBR_CODE_SIZE} bytes starting "
                                f"with {header[:4].hex()}..., like syslinux's isohdpfx.bin")
        if not 0 <= mbr_id <= 0xFFFFFFFF:
            raise ValueError(f"MBR id {mbr_id} is not 32 bits")
        self.iso.add_isohybrid(mbr_id=mbr_id, efi=efi)
        hybrid = self.iso.isohybrid_mbr
        assert hybrid is not None  # add_isohybrid just made it
        hybrid.mbr = mbr_code[len(header):]
        if efi:
            _fix_gpt(hybrid)

    def write(self, out: BinaryIO) -> None:
        """Write the ISO to ``out`` (seekable; written from offset 0)."""
        self.clock.set(self.mtime)
        self.iso.write_fp(out)



class _EmptyGptEntry(pycdlib.isohybrid.GPTPartHeader):
    """An unused GPT partition entry, so pycdlib's CRC covers the whole entry array."""

    __slots__ = ()

    def record(self) -> bytes:
        return bytes(GPT_ENTRY_SIZE)


def _fix_gpt(hybrid: pycdlib.isohybrid.IsoHybrid) -> None:
    """Two pycdlib GPT bugs: the backup GPT got GUIDs of its own (UEFI wants it to repeat the
    primary's), and the entry array CRC covered only the used entries instead of all 128."""
    primary, backup = hybrid.primary_gpt, hybrid.secondary_gpt
    backup.header.disk_guid = primary.header.disk_guid
    for mine, theirs in zip(backup.parts, primary.parts, strict=True):
        mine.part_guid = theirs.part_guid
    for gpt in (primary, backup):
        gpt.parts.extend(_EmptyGptEntry() for _ in range(gpt.header.num_parts - len(gpt.parts)))
