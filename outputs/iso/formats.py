"""Formats ``iso-bios``, ``iso-efi``, ``iso-efi-initrd`` and ``iso-hybrid``: bootable ISOs.

Every ISO boots the rootfs's ``boot/kernel`` with an initrd made of everything outside ``boot/``
(the same bytes as ``kernel+initrd``'s ``NAME-initrd.img``, made by
:mod:`outputs.initrd.formats`) and the spec's command line (``boot/cmdline``). Layout (Rock Ridge
names; ISO 9660 names are the same in upper case)::

    boot/kernel, boot/initrd.img, boot/cmdline
    boot/image_id_<16 hex>          marker GRUB searches for to find this ISO
    boot/boot.cat                   El Torito boot catalog
    isolinux/isolinux.bin, ldlinux.c32, isolinux.cfg     (BIOS)
    boot/efi.img                    FAT12 ESP: EFI/BOOT/BOOTX64.EFI (GRUB) + grub.cfg   (UEFI;
                                    arm64: EFI/BOOT/BOOTAA64.EFI)
    boot/grub/grub.cfg              (UEFI)

=================  =======================  ===========================================
format             file                     boots
=================  =======================  ===========================================
iso-bios           NAME.iso                 BIOS: CD (El Torito) and disk (isohybrid MBR)
iso-efi            NAME-efi.iso             UEFI: CD (El Torito EFI entry)
iso-efi-initrd     NAME-efi-initrd.iso      same bytes as iso-efi
iso-hybrid         NAME-hybrid.iso          BIOS and UEFI, CD and disk (MBR + GPT)
=================  =======================  ===========================================

Identity: the image id, the MBR id, the GPT GUIDs and the FAT serial are derived from
:func:`seed`, a sha256 over the rootfs tar's sha256, the layout, the bootloader digests and the
options; every date is ``Options.mtime`` in UTC. ``docs/iso.md`` says why and how this differs
from linuxkit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from composer import canonjson
from composer.atomic import OutputSet
from composer.streams.digest import sha256_file
from outputs import bootloaders
from outputs.boot import boot_files, derive, derive_u32, grub_quote
from outputs.formats import FORMATS
from outputs.options import Options

CATALOG = "boot/boot.cat"
ESP = "boot/efi.img"
ISOLINUX_DIR = "isolinux"
SEED_VERSION = "image-composer iso 1"


@dataclass(frozen=True)
class Layout:
    """What an ISO format puts on the disc; ``name`` goes into :func:`seed`."""

    name: str
    bios: bool
    efi: bool
    isohybrid: bool  # an MBR (and with efi a GPT) so the image boots as a disk

    @property
    def roles(self) -> tuple[str, ...]:
        roles: tuple[str, ...] = ()
        if self.bios:
            roles += bootloaders.BIOS_ROLES
        if self.isohybrid:
            roles += bootloaders.HYBRID_ROLES
        if self.efi:
            roles += bootloaders.EFI_ROLES
        return roles


BIOS = Layout("bios", bios=True, efi=False, isohybrid=True)
EFI = Layout("efi", bios=False, efi=True, isohybrid=False)
HYBRID = Layout("hybrid", bios=True, efi=True, isohybrid=True)
LAYOUTS = {"iso-bios": BIOS, "iso-efi": EFI, "iso-efi-initrd": EFI, "iso-hybrid": HYBRID}
ISO_FILES = {"iso-bios": ("{name}.iso",), "iso-efi": ("{name}-efi.iso",),
             "iso-efi-initrd": ("{name}-efi-initrd.iso",), "iso-hybrid": ("{name}-hybrid.iso",)}


def bootloader_pins(fmt: str, options: Options) -> tuple[bootloaders.Pin, ...]:
    """The bootloader files (and digests) format ``fmt`` uses, for the build record."""
    roles = tuple(bootloaders.for_arch(role, options.arch) for role in LAYOUTS[fmt].roles)
    return bootloaders.resolve(roles, options.bootloaders)


def seed(rootfs_sha256: str, layout: Layout, pins: tuple[bootloaders.Pin, ...],
         options: Options) -> bytes:
    """The 32 bytes every derived id comes from: a function of the ISO's inputs only."""
    return hashlib.sha256(canonjson.compact({
        "version": SEED_VERSION, "rootfs": rootfs_sha256, "layout": layout.name,
        "bootloaders": {pin.role: pin.digest for pin in pins},
        "mtime": options.mtime, "gzip_level": options.gzip_level,
        **({"initrd_compression": options.initrd_compression}
           if options.initrd_compression != "gzip" else {}),
    })).digest()


def isolinux_cfg(cmdline: str) -> bytes:
    """Boot straight into the kernel: no prompt, no menu."""
    lines = ["# image-composer: boot the kernel and initrd of this ISO", "DEFAULT linux",
             "PROMPT 0", "TIMEOUT 0", "LABEL linux", "  LINUX /boot/kernel",
             "  INITRD /boot/initrd.img", f"  APPEND {cmdline}".rstrip()]
    return ("\n".join(lines) + "\n").encode()


def grub_cfg(cmdline: str, image_id: str) -> bytes:
    """Find this ISO by its marker file (GRUB may start on the ESP), then boot."""
    args = " ".join(grub_quote(w) for w in cmdline.split())
    lines = ["# image-composer: boot the kernel and initrd of this ISO",
             f"search --no-floppy --set=root --file /boot/image_id_{image_id}",
             f"linux /boot/kernel {args}".rstrip(), "initrd /boot/initrd.img", "boot"]
    return ("\n".join(lines) + "\n").encode()


def write_iso(rootfs: Path, name: str, outset: OutputSet, options: Options, fmt: str) -> None:
    layout = LAYOUTS[fmt]
    pins = bootloader_pins(fmt, options)
    loaded = bootloaders.load_all(pins)
    rootfs_sha256 = (outset.known_digest(rootfs) or sha256_file(rootfs))[0]
    seed_bytes = seed(rootfs_sha256, layout, pins, options)
    image_id = derive(seed_bytes, "image-id", 8).hex()
    outset.directory.mkdir(parents=True, exist_ok=True)
    with outset.scratch(f"{name}-{fmt}") as t:
        tmp = Path(t)
        cmdline = boot_files(rootfs, tmp, name, fmt, options.gzip_level,
                             options.initrd_compression)
        small = {f"boot/image_id_{image_id}": f"{image_id}\n".encode()}
        if layout.bios:
            small[f"{ISOLINUX_DIR}/isolinux.bin"] = loaded[bootloaders.ISOLINUX]
            small[f"{ISOLINUX_DIR}/ldlinux.c32"] = loaded[bootloaders.LDLINUX]
            small[f"{ISOLINUX_DIR}/isolinux.cfg"] = isolinux_cfg(cmdline)
        if layout.efi:
            small["boot/grub/grub.cfg"] = cfg = grub_cfg(cmdline, image_id)
            from outputs.fat import write_esp  # pyfatfs: imported only when an ESP is made

            write_esp(tmp / "efi.img", {
                bootloaders.efi_boot_file(options.arch):
                    loaded[bootloaders.for_arch(bootloaders.GRUB_EFI, options.arch)],
                "EFI/BOOT/grub.cfg": cfg,  # for a GRUB that reads $cmdpath/grub.cfg
                "boot/grub/grub.cfg": cfg,  # GRUB's prefix when it starts on the ESP partition
            }, serial=derive_u32(seed_bytes, "fat-serial"), mtime=options.mtime)
        with contextlib.ExitStack() as stack:
            entries: dict[str, tuple[BinaryIO, int]] = {
                path: (io.BytesIO(data), len(data)) for path, data in small.items()}
            for path in ("boot/kernel", "boot/initrd.img", "boot/cmdline") + \
                    ((ESP,) if layout.efi else ()):
                f = stack.enter_context(open(tmp / path.rsplit("/", 1)[-1], "rb"))
                entries[path] = (f, os.fstat(f.fileno()).st_size)
            with outset.create(FORMATS[fmt].output_files(name)[0]) as out:
                assemble(out, entries, layout, loaded, seed_bytes, options.mtime)


def assemble(out: BinaryIO, entries: dict[str, tuple[BinaryIO, int]], layout: Layout,
             loaded: dict[str, bytes], seed_bytes: bytes, mtime: int) -> None:
    """The ISO image of ``entries`` (path -> open file and size) with the layout's boot
    records: the part ``xorriso -as mkisofs`` would do (``python -m bench`` times it so)."""
    from outputs.iso.iso9660 import PinnedIso  # pycdlib: imported only when an ISO is made

    with PinnedIso(mtime=mtime, seed=seed_bytes) as iso:
        for directory in parents(entries):
            iso.add_directory(directory)
        for path in sorted(entries):
            iso.add_file(path, *entries[path])
        if layout.bios:
            iso.add_bios_boot(f"{ISOLINUX_DIR}/isolinux.bin", CATALOG)
        if layout.efi:
            iso.add_efi_boot(ESP, CATALOG)
        if layout.isohybrid:
            iso.make_hybrid(loaded[bootloaders.ISOHDPFX], derive_u32(seed_bytes, "mbr-id"),
                            efi=layout.efi)
        iso.write(out)


def parents(paths: Iterable[str]) -> list[str]:
    """Every directory above ``paths``, parents first."""
    out: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(out)
