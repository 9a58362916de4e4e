"""Bootloader bytes are inputs of an ISO, pinned by sha256 like every image is.

An ISO's bytes depend on the bootloaders copied into it as much as on the rootfs, so each one is
a *pin*: a role (what it is used for), a file, and the sha256 that file must have. The default
pins are the files Debian 12 (bookworm) installs, so ISO builds work offline on a Debian host
with ``apt-get install isolinux syslinux-common grub-efi-amd64-bin`` (the disk formats of
:mod:`outputs.disk` also use ``syslinux`` and ``systemd-boot-efi``):

==============  =================================================  ============================
role            default file                                       package
==============  =================================================  ============================
isolinux.bin    /usr/lib/ISOLINUX/isolinux.bin                     isolinux
isohdpfx.bin    /usr/lib/ISOLINUX/isohdpfx.bin (isohybrid MBR)     isolinux
ldlinux.c32     /usr/lib/syslinux/modules/bios/ldlinux.c32         syslinux-common
bootx64.efi     /usr/lib/grub/x86_64-efi/monolithic/gcdx64.efi     grub-efi-amd64-bin
syslinux        /usr/bin/syslinux (mtools installer; carries        syslinux
                ldlinux.sys and ldlinux.c32)
mbr.bin         /usr/lib/syslinux/mbr/mbr.bin (BIOS disk MBR code)  syslinux-common
sd-boot.efi     /usr/lib/systemd/boot/efi/systemd-bootx64.efi       systemd-boot-efi
efi.stub        /usr/lib/systemd/boot/efi/linuxx64.efi.stub         systemd-boot-efi
==============  =================================================  ============================

``gcdx64.efi`` is Debian's prebuilt GRUB for CDs (every module it needs built in, prefix
``/boot/grub``), so no ``grub-mkstandalone`` runs at build time (its memdisk tar would carry
the build's time). A host whose files differ (another release, a security update, Ubuntu) gets
an error naming the file's actual digest; it can then pin it explicitly with an override
(:func:`parse_pin`, the CLI's ``--bootloader ROLE=PATH@sha256:HEX``). An override must carry its
digest: a bootloader is never taken unpinned.

:func:`resolve` says which files and digests a format uses, for the build record; :func:`load`
reads one through the project's digest-verifying reader.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from composer.errors import ComposerError, UsageError
from composer.streams.digest import DigestMismatch, VerifyingReader, check_digest, sha256_file

ISOLINUX = "isolinux.bin"
ISOHDPFX = "isohdpfx.bin"
LDLINUX = "ldlinux.c32"
GRUB_EFI = "bootx64.efi"
SYSLINUX = "syslinux"
MBR = "mbr.bin"
SYSTEMD_BOOT = "sd-boot.efi"
EFI_STUB = "efi.stub"
ROLES = (GRUB_EFI, EFI_STUB, ISOHDPFX, ISOLINUX, LDLINUX, MBR, SYSTEMD_BOOT, SYSLINUX)
MAX_SIZE = 64 << 20  # bootloaders are small; refuse to read a huge file by mistake


@dataclass(frozen=True)
class Pin:
    """One bootloader input: ``role`` is taken from ``path``, whose content is ``digest``."""

    role: str
    path: str
    digest: str  # sha256:<64 hex>

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise UsageError(f"unknown bootloader role {self.role!r} (known: {', '.join(ROLES)})")
        check_digest(self.digest)


DEFAULTS: dict[str, Pin] = {pin.role: pin for pin in (
    Pin(ISOLINUX, "/usr/lib/ISOLINUX/isolinux.bin",
        "sha256:f3e2c1786564e148fb394e2321666ddccccedc18f7cf9db3e2416d45d13ea492"),
    Pin(ISOHDPFX, "/usr/lib/ISOLINUX/isohdpfx.bin",
        "sha256:7b43a4dd2061e95da55af51d57a2385c257d64444ee2a62264bcf634a1d0945b"),
    Pin(LDLINUX, "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        "sha256:26cbd44c3a3dacbf3971cfbc04db539da07767fa00797f505044e2f68dcfae89"),
    Pin(GRUB_EFI, "/usr/lib/grub/x86_64-efi/monolithic/gcdx64.efi",
        "sha256:737a90c9e0e71ff8d1da67d38b47f9a616e02c004c8f30b5c95fb2efbef5f3be"),
    Pin(SYSLINUX, "/usr/bin/syslinux",
        "sha256:18e7f81692f20f3f849bbb5230d52fa4bbe915bb0200d8c5bf2b22180e1650c7"),
    Pin(MBR, "/usr/lib/syslinux/mbr/mbr.bin",
        "sha256:4746f74bc9b9d3d579c41988a4a29bb7ac932ad1c70470ea779ea161eb799b64"),
    Pin(SYSTEMD_BOOT, "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
        "sha256:10288fece5e90ce3ba3e7160f49695b022d648f7ef41774678db8c77774db167"),
    Pin(EFI_STUB, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "sha256:c62ae56ffaf49d1a61de4434f4f531dd1d4ed3b5aee46c934c56e3f809b22cc4"),
)}
PACKAGES = {ISOLINUX: "isolinux", ISOHDPFX: "isolinux", LDLINUX: "syslinux-common",
            GRUB_EFI: "grub-efi-amd64-bin", SYSLINUX: "syslinux", MBR: "syslinux-common",
            SYSTEMD_BOOT: "systemd-boot-efi", EFI_STUB: "systemd-boot-efi"}
BIOS_ROLES = (ISOLINUX, LDLINUX)
HYBRID_ROLES = (ISOHDPFX,)
EFI_ROLES = (GRUB_EFI,)


def parse_pin(text: str) -> Pin:
    """``ROLE=PATH@sha256:HEX`` (the CLI's ``--bootloader`` value) as a :class:`Pin`."""
    role, eq, rest = text.partition("=")
    path, at, digest = rest.rpartition("@")
    if not eq or not at or not path:
        raise UsageError(f"--bootloader {text!r}: expected ROLE=PATH@sha256:HEX "
                         f"(roles: {', '.join(ROLES)})")
    try:
        return Pin(role.strip(), path, digest.strip())
    except ComposerError as exc:
        raise UsageError(f"--bootloader {text!r}: {exc}") from None


def check_overrides(pins: tuple[Pin, ...]) -> None:
    """Each role may be overridden once."""
    seen: set[str] = set()
    for pin in pins:
        if not isinstance(pin, Pin):
            raise ComposerError(f"bootloader override must be a Pin, not {pin!r}")
        if pin.role in seen:
            raise UsageError(f"bootloader {pin.role} is overridden more than once")
        seen.add(pin.role)


def resolve(roles: tuple[str, ...], overrides: tuple[Pin, ...] = ()) -> tuple[Pin, ...]:
    """The pins used for ``roles`` (sorted by role): the overrides, else the defaults."""
    chosen = {pin.role: pin for pin in overrides}
    return tuple(chosen.get(role, DEFAULTS[role]) for role in sorted(roles))


def load(pin: Pin) -> bytes:
    """The pinned file's bytes; a missing file or a different digest is a ComposerError."""
    path = Path(pin.path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 (VerifyingReader closes it)
    except OSError as exc:
        hint = (f": apt-get install {PACKAGES[pin.role]}" if pin == DEFAULTS.get(pin.role)
                else "")
        raise ComposerError(f"bootloader {pin.role}: cannot read {path} "
                            f"({exc.strerror or exc}){hint}") from None
    with VerifyingReader(raw, pin.digest, None, f"bootloader {pin.role} {path}") as reader:
        buf = io.BytesIO()
        try:
            while chunk := reader.read(1 << 20):
                buf.write(chunk)
                if buf.tell() > MAX_SIZE:
                    raise ComposerError(f"bootloader {pin.role}: {path} is larger than "
                                        f"{MAX_SIZE >> 20} MiB")
        except DigestMismatch:
            actual = "sha256:" + sha256_file(path)[0]
            raise ComposerError(
                f"bootloader {pin.role}: {path} has {actual}, not the pinned {pin.digest}; "
                f"if this file is what you want, pin it: "
                f"--bootloader {pin.role}={path}@{actual}") from None
    return buf.getvalue()


