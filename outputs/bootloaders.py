"""Bootloader bytes are inputs of an ISO, pinned by sha256 like every image is.

An ISO's bytes depend on the bootloaders copied into it as much as on the rootfs, so each one is
a *pin*: a role (what it is used for), a file, and the sha256 that file must have. The default
pins are files of Debian 12 (bookworm) packages, listed in :mod:`outputs.bootloader_debs` (role,
package, exact version, sha256 of the .deb, path in it, sha256 of the file). They are fetched
from Debian's archive by :mod:`composer.debian.pool` once per machine and cached, whatever
distribution the host runs; the host's ``/usr/lib`` is never read (the disk formats of
:mod:`outputs.disk` also use the ``syslinux`` and ``systemd-boot-efi`` rows):

==============  =================================================  ============================
role            file in the package                                package
==============  =================================================  ============================
isolinux.bin    usr/lib/ISOLINUX/isolinux.bin                      isolinux
isohdpfx.bin    usr/lib/ISOLINUX/isohdpfx.bin (isohybrid MBR)      isolinux
ldlinux.c32     usr/lib/syslinux/modules/bios/ldlinux.c32          syslinux-common
bootx64.efi     usr/lib/grub/x86_64-efi/monolithic/gcdx64.efi      grub-efi-amd64-bin
syslinux        usr/bin/syslinux (mtools installer; carries         syslinux
                ldlinux.sys and ldlinux.c32)
mbr.bin         usr/lib/syslinux/mbr/mbr.bin (BIOS disk MBR code)  syslinux-common
sd-boot.efi     usr/lib/systemd/boot/efi/systemd-bootx64.efi       systemd-boot-efi
efi.stub        usr/lib/systemd/boot/efi/linuxx64.efi.stub         systemd-boot-efi
bootaa64.efi    usr/lib/grub/arm64-efi/monolithic/gcdaa64.efi      grub-efi-arm64-bin (arm64)
sd-bootaa64.efi usr/lib/systemd/boot/efi/systemd-bootaa64.efi      systemd-boot-efi (arm64)
efiaa64.stub    usr/lib/systemd/boot/efi/linuxaa64.efi.stub        systemd-boot-efi (arm64)
bootcode.bin,   usr/lib/raspi-firmware/ROLE (the Raspberry Pi's    raspi-firmware
start*.elf,     boot firmware; format ``rpi3``)                    (non-free-firmware)
fixup*.dat
LICENCE.        usr/share/doc/raspi-firmware/copyright             raspi-firmware
broadcom
u-boot.bin      usr/lib/u-boot/rpi_3/u-boot.bin                    u-boot-rpi (arm64)
==============  =================================================  ============================

The last three are the arm64 builds of the EFI roles: :func:`for_arch` maps a format's roles
to them when ``--arch arm64``, and :data:`EFI_BOOT_FILE` is the removable-media path each
architecture's firmware starts (``EFI/BOOT/BOOTX64.EFI``, ``EFI/BOOT/BOOTAA64.EFI``).

``gcdx64.efi`` is Debian's prebuilt GRUB for CDs (every module it needs built in, prefix
``/boot/grub``), so no ``grub-mkstandalone`` runs at build time (its memdisk tar would carry
the build's time). Other bootloader files can be pinned explicitly with an override
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
from outputs.bootloader_debs import FILES

ISOLINUX = "isolinux.bin"
ISOHDPFX = "isohdpfx.bin"
LDLINUX = "ldlinux.c32"
GRUB_EFI = "bootx64.efi"
SYSLINUX = "syslinux"
MBR = "mbr.bin"
SYSTEMD_BOOT = "sd-boot.efi"
EFI_STUB = "efi.stub"
GRUB_EFI_AA64 = "bootaa64.efi"
SYSTEMD_BOOT_AA64 = "sd-bootaa64.efi"
EFI_STUB_AA64 = "efiaa64.stub"
# rpi3: each role is the file's name on the SD card
RPI3_ROLES = ("LICENCE.broadcom", "bootcode.bin", "fixup.dat", "fixup_cd.dat", "fixup_x.dat",
              "start.elf", "start_cd.elf", "start_x.elf", "u-boot.bin")
ROLES = (GRUB_EFI, EFI_STUB, ISOHDPFX, ISOLINUX, LDLINUX, MBR, SYSTEMD_BOOT, SYSLINUX,
         GRUB_EFI_AA64, SYSTEMD_BOOT_AA64, EFI_STUB_AA64, *RPI3_ROLES)
# per architecture: the role that plays an (amd64-named) EFI role, and the file UEFI boots
ARCH_ROLES = {"arm64": {GRUB_EFI: GRUB_EFI_AA64, SYSTEMD_BOOT: SYSTEMD_BOOT_AA64,
                        EFI_STUB: EFI_STUB_AA64}}
EFI_BOOT_FILE = {"amd64": "EFI/BOOT/BOOTX64.EFI", "arm64": "EFI/BOOT/BOOTAA64.EFI"}
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


# the default pins, one per row of bootloader_debs.FILES; their "path" names the package file
DEFAULTS: dict[str, Pin] = {role: Pin(role, f"debian:{f.label}", f"sha256:{f.sha256}")
                            for role, f in sorted(FILES.items())}
_FROM_DEBS = {DEFAULTS[role]: f for role, f in FILES.items()}
PACKAGES = {role: f.deb.package for role, f in FILES.items()}
BIOS_ROLES = (ISOLINUX, LDLINUX)
HYBRID_ROLES = (ISOHDPFX,)
EFI_ROLES = (GRUB_EFI,)


def for_arch(role: str, arch: str) -> str:
    """The role that plays ``role`` (an amd64 EFI role's name) on ``arch``."""
    return ARCH_ROLES.get(arch.partition("/")[0], {}).get(role, role)


def efi_boot_file(arch: str) -> str:
    return EFI_BOOT_FILE[arch.partition("/")[0]]


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


def load_all(pins: tuple[Pin, ...]) -> dict[str, bytes]:
    """Every pin's bytes by role: default pins out of their pinned Debian packages, overrides
    from their files. Whatever is missing or different, for every pin, is one ComposerError."""
    from composer.debian.pool import extract

    problems = []
    got: dict[str, bytes] = {}
    from_debs = {pin.role: _FROM_DEBS[pin] for pin in pins if pin in _FROM_DEBS}
    if from_debs:
        try:
            got.update(extract(from_debs))
        except ComposerError as exc:
            problems.append(str(exc))
    for pin in pins:
        if pin not in _FROM_DEBS:
            try:
                got[pin.role] = load(pin)
            except ComposerError as exc:
                problems.append(str(exc))
    if problems:
        raise ComposerError("bootloaders: " + " | ".join(problems))
    return got


def load(pin: Pin) -> bytes:
    """An override's bytes, read from its file; a missing file or a different digest is a
    ComposerError."""
    if pin in _FROM_DEBS:
        return load_all((pin,))[pin.role]
    path = Path(pin.path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 (VerifyingReader closes it)
    except OSError as exc:
        raise ComposerError(f"bootloader {pin.role}: cannot read {path} "
                            f"({exc.strerror or exc})") from None
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


