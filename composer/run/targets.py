"""The guest architectures ``run qemu`` boots, and how each one's machine is put together.

One row per architecture: the qemu binary (and the Debian package that has it), the machine and
CPU, the serial console's device name, the UEFI firmware (OVMF on amd64, AAVMF on arm64) and how
a boot disk or CD is attached. amd64 is a PC (SeaBIOS or OVMF, IDE); arm64 is QEMU's ``virt``
board with a Cortex-A57 (always TCG on an x86 host), which has no IDE: disks and CDs hang off
a virtio-scsi controller (``/dev/sda``, ``/dev/sr0`` as on the PC), and no BIOS: an ISO or disk
always boots under AAVMF (``--uefi`` is implied).

Which architecture an output is for: ``--arch``, else the build record beside it
(``NAME.build.json``), else the kernel's own header (an arm64 ``Image`` says ``ARMd`` at 0x38),
else the host's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from composer import canonjson
from composer.defaults import host_arch
from composer.errors import UsageError

ARM64_MAGIC = b"ARMd"  # arm64 Image header, offset 0x38 (Documentation/arch/arm64/booting)
BZIMAGE_MAGIC = b"HdrS"  # x86 boot protocol header, offset 0x202


@dataclass(frozen=True)
class Target:
    """How to boot one guest architecture under qemu."""

    arch: str
    qemu: str
    package: str  # Debian package with ``qemu``
    machine: tuple[str, ...]  # machine and CPU arguments
    console: str  # the serial console's kernel name
    firmware: tuple[Path, Path] | None  # UEFI (code, vars template), None: the table's OVMF
    firmware_package: str
    scsi: bool  # disks and CDs on virtio-scsi (no IDE on the board)
    bios: bool = True  # firmware that boots media without UEFI (SeaBIOS); else always UEFI

    def drive(self, path: Path, fmt: str, *, cdrom: bool, readonly: bool,
              index: int | None = None) -> list[str]:
        """A boot disk or CD from ``path`` (never written: read-only or a snapshot)."""
        if "," in str(path):
            raise UsageError(f"{path}: qemu cannot take a file name with a comma")
        media = "cdrom" if cdrom else "disk"
        guard = "readonly=on" if readonly else "snapshot=on"
        if not self.scsi:
            where = f"index={index}" if index is not None else "if=ide"
            return ["-drive", f"file={path},format={fmt},{where},media={media},{guard}"]
        return ["-device", "virtio-scsi-pci,id=scsi0",
                "-drive", f"file={path},format={fmt},if=none,id=boot0,media={media},{guard}",
                "-device", f"{'scsi-cd' if cdrom else 'scsi-hd'},drive=boot0,bootindex=0"]


TARGETS: dict[str, Target] = {t.arch: t for t in (
    Target("amd64", "qemu-system-x86_64", "qemu-system-x86", (), "ttyS0", None, "ovmf",
           scsi=False),
    Target("arm64", "qemu-system-aarch64", "qemu-system-arm",
           ("-M", "virt", "-cpu", "cortex-a57"), "ttyAMA0",
           (Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd")),
           "qemu-efi-aarch64", scsi=True, bios=False),
)}


def target(arch: str) -> Target:
    try:
        return TARGETS[arch.partition("/")[0]]
    except KeyError:
        raise UsageError(f"run qemu: cannot boot {arch} (can: {', '.join(TARGETS)})") from None


def kernel_arch(kernel: Path) -> str | None:
    """amd64 or arm64 from a kernel image's header, None if it is neither."""
    try:
        with open(kernel, "rb") as fh:
            head = fh.read(0x210)
    except OSError:
        return None
    if head[0x38:0x3C] == ARM64_MAGIC:
        return "arm64"
    if head[0x202:0x206] == BZIMAGE_MAGIC:
        return "amd64"
    return None


def record_arch(prefix: Path) -> str | None:
    """The architecture ``PREFIX.build.json`` was built for, if that record is there."""
    record = Path(f"{prefix}.build.json")
    try:
        arch = canonjson.loads(record.read_bytes())["build"]["arch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return arch if isinstance(arch, str) else None


def guess_arch(prefix: Path, kernel: Path | None) -> str:
    """The record's architecture, else the kernel's, else the host's."""
    return (record_arch(prefix) or (kernel_arch(kernel) if kernel is not None else None)
            or host_arch())
