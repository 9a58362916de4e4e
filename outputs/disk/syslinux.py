"""syslinux on a FAT partition image, without root or a mount: Debian's mtools installer.

Debian ships ``ldlinux.sys`` and the FAT boot sector only inside ``/usr/bin/syslinux`` (the
installer that works on an image file through mtools, as linuxkit's raw-bios does), so that
binary is the pinned bootloader: role ``syslinux`` in :mod:`outputs.bootloaders`, checked by
digest, copied into the build's scratch directory and run from there (what runs is what was
pinned). It copies ``ldlinux.sys`` (with its sector list and checksum patched) and
``ldlinux.c32`` into the file system with ``mcopy`` and rewrites the boot sector's code,
keeping the BPB.

Determinism: ``mcopy`` stamps the new directory entries with ``SOURCE_DATE_EPOCH`` in local
time, so it runs with ``SOURCE_DATE_EPOCH`` = the build's mtime and ``TZ=UTC``
(:func:`composer.tools.run` fixes the locale and ``TZ``), and with ``HOME`` in the scratch
directory (no ``~/.mtoolsrc``). The installer writes its own mtools configuration
(``MTOOLSRC``). mtools decides where the two files go, so its version is pinned:
:data:`MTOOLS_VERSION` (Debian 12's), checked before it runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from composer import tools
from composer.errors import ComposerError
from outputs import fat

MTOOLS_VERSION = "4.0.32"  # Debian 12 (bookworm): mtools 4.0.33-1+really4.0.32-1
_VERSION = re.compile(rb"mcopy \(GNU mtools\) (\S+)")


def mtools_version() -> str:
    mcopy = tools.find_tool("mcopy", "the raw-bios and aws formats need mtools "
                                     "(apt-get install mtools)")
    out = tools.run([mcopy, "--version"], capture=True).stdout
    match = _VERSION.search(out)
    if not match:
        raise ComposerError(f"cannot tell the mtools version from {out[:80]!r}")
    return match.group(1).decode()


def install(image: Path, installer: bytes, *, mtime: int, scratch: Path) -> None:
    """Make the FAT file system in ``image`` boot syslinux (``installer``: the pinned bytes
    of ``/usr/bin/syslinux``)."""
    version = mtools_version()
    if version != MTOOLS_VERSION:
        raise ComposerError(f"mtools {version} is installed; syslinux disks are pinned to "
                            f"mtools {MTOOLS_VERSION} (Debian 12), which decides where "
                            "ldlinux.sys goes")
    binary = scratch / "syslinux"
    binary.write_bytes(installer)
    binary.chmod(0o755)
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    stamp = min(max(mtime, fat.FAT_MIN_EPOCH), fat.FAT_MAX_EPOCH)
    env = {"SOURCE_DATE_EPOCH": str(stamp), "HOME": str(home)}
    env.update({k: "" for k in os.environ if k.startswith("MTOOLS")})
    tools.run([binary, "--install", image], env=env, capture=True)
    fat.sync_backup_boot_sector(image)
