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
(``MTOOLSRC``). mtools decides where the two files go, so the ``mcopy`` it finds first on
``PATH`` is Debian 12's mtools 4.0.32, unpacked from its pinned .deb
(:data:`outputs.tool_debs.MCOPY`) into the scratch directory, never the host's (Debian 13 has
4.0.48); recorded in the build record as ``tools``.
"""

from __future__ import annotations

import os
from pathlib import Path

from composer import tools
from outputs import fat


def tool_version() -> str:
    """The pinned packages ``mcopy`` runs from, for the build record."""
    from outputs.tool_debs import MCOPY

    return MCOPY.record()


def install(image: Path, installer: bytes, *, mtime: int, scratch: Path) -> None:
    """Make the FAT file system in ``image`` boot syslinux (``installer``: the pinned bytes
    of ``/usr/bin/syslinux``)."""
    from composer.debian.unpack import bin_path, unpack
    from outputs.tool_debs import MCOPY

    mtools = unpack(MCOPY, scratch / "mtools")
    binary = scratch / "syslinux"
    binary.write_bytes(installer)
    binary.chmod(0o755)
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    stamp = min(max(mtime, fat.FAT_MIN_EPOCH), fat.FAT_MAX_EPOCH)
    env = {"SOURCE_DATE_EPOCH": str(stamp), "HOME": str(home), **mtools.env,
           "PATH": bin_path([mtools])}
    env.update({k: "" for k in os.environ if k.startswith("MTOOLS")})
    tools.run([binary, "--install", image], env=env, capture=True)
    fat.sync_backup_boot_sector(image)
