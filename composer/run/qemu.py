"""``run qemu``: boot ``NAME-kernel`` + ``NAME-initrd.img``, or an ISO, in qemu-system-x86_64.

The serial console is the user's terminal (``-nographic``: Ctrl-A X quits), its output passed
through :mod:`composer.run.console` so the firmware cannot reset the terminal or leave line wrapping
off. ``-no-reboot`` with
``panic=-1`` makes a guest that powers off, reboots or panics end qemu, so a smoke test always
terminates; the exit status is qemu's own.

An argument ending in ``.iso`` is booted as a CD (``--cdrom``, the default) or as a hard disk
(``--disk``, what ``dd`` to a USB stick gives), under SeaBIOS (``--bios``, the default) or OVMF
(``--uefi``: ``OVMF_CODE_4M.fd`` read-only, with a throwaway copy of ``OVMF_VARS_4M.fd``). The
ISO's own bootloader passes the command line, so ``panic=-1`` is only what the spec says. The
disk is attached with ``snapshot=on``: the guest can never write to the ISO.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from composer import tools
from composer.errors import ComposerError, UsageError
from composer.run import fsimage, targets, vmctl
from composer.run.targets import TARGETS, Target
from composer.run.vmctl import kernel_cmdline

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12
_MEMORY = re.compile(r"^[1-9][0-9]*[MG]?$")
_ACCEL = re.compile(r"^[a-z][a-z0-9_-]*$")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


def kvm_usable(device: str = "/dev/kvm", sys_module: Path = Path("/sys/module")) -> bool:
    """True if ``/dev/kvm`` opens read-write, creates a VM, and is backed by VMX or SVM.

    Opening is not enough: some sandboxes serve ``/dev/kvm`` from ``kvm_pvm``, which runs only
    paravirtualised (PVM) guests; an ordinary kernel hangs there at 100% CPU. So when the
    kernel's module list is visible, it must show ``kvm_intel`` or ``kvm_amd`` (present even
    when built in, as they have parameters).
    """
    if sys_module.is_dir() and not any((sys_module / m).is_dir()
                                       for m in ("kvm_intel", "kvm_amd")):
        return False
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION:
            return False
        os.close(fcntl.ioctl(fd, KVM_CREATE_VM, 0))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def boot_files(prefix: Path, console: str = "ttyS0") -> tuple[Path, Path, str]:
    """``PREFIX-kernel``, ``PREFIX-initrd.img`` and the command line (``PREFIX-cmdline``)."""
    kernel = Path(f"{prefix}-kernel")
    initrd = Path(f"{prefix}-initrd.img")
    cmdline = Path(f"{prefix}-cmdline")
    missing = [str(p) for p in (kernel, initrd, cmdline) if not p.is_file()]
    if missing:
        raise ComposerError(f"cannot boot {prefix}: missing {', '.join(missing)} "
                            "(build with -f kernel+initrd)")
    try:
        text = cmdline.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposerError(f"{cmdline}: cannot read: {exc}") from None
    return kernel, initrd, kernel_cmdline(text, console)


def head_argv(target: Target, memory: str, accel: str) -> list[str]:
    """qemu, its board and CPU, and what every boot has."""
    return [target.qemu, *target.machine, "-accel", accel, "-m", memory, "-nographic",
            "-no-reboot"]


def qemu_argv(kernel: Path, initrd: Path, cmdline: str, *, memory: str,
              accel: str, ovmf_vars: Path | None = None,
              target: Target = TARGETS["amd64"]) -> list[str]:
    return [*head_argv(target, memory, accel), *firmware_args(ovmf_vars, target),
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]


def firmware_code(target: Target) -> tuple[Path, Path]:
    """The UEFI firmware and its variable store template for ``target``."""
    return target.firmware or (OVMF_CODE, OVMF_VARS)


def firmware_args(ovmf_vars: Path | None, target: Target = TARGETS["amd64"]) -> list[str]:
    """The board's default (SeaBIOS on a PC; on arm64 virt, none: direct kernel boot) when
    ``ovmf_vars`` is None, else UEFI (OVMF, AAVMF) with that vars file."""
    if ovmf_vars is None:
        return []
    code = firmware_code(target)[0]
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={ovmf_vars}"]


def iso_argv(iso: Path, *, memory: str, accel: str, disk: bool,
             ovmf_vars: Path | None = None, target: Target = TARGETS["amd64"]) -> list[str]:
    """Boot ``iso`` as a CD-ROM or as a (never written) hard disk."""
    return [*head_argv(target, memory, accel), *firmware_args(ovmf_vars, target),
            *target.drive(iso, "raw", cdrom=not disk, readonly=not disk)]


def is_iso(path: Path) -> bool:
    return path.suffix == ".iso"


# disk formats by their file names: (suffix, qemu's driver, boots under UEFI)
DISKS = (("-efi.qcow2", "qcow2", True), (".qcow2", "qcow2", False), ("-efi.img", "raw", True),
         ("-bios.img", "raw", False), (".raw", "raw", False), (".vhd", "vpc", False),
         (".vmdk", "vmdk", False))


def disk_image(path: Path) -> tuple[str, bool] | None:
    """(qemu's driver, UEFI?) for a disk format's file (``NAME-efi.qcow2``, ``NAME.vhd``, ...)."""
    if path.name.endswith(".img.tar.gz"):
        raise UsageError(f"{path}: a gcp image; boot the disk.raw inside it "
                         f"(tar -xzf {path.name} disk.raw)")
    for suffix, driver, uefi in DISKS:
        if path.name.endswith(suffix):
            return driver, uefi
    return None


def disk_argv(image: Path, driver: str, *, memory: str, accel: str,
              ovmf_vars: Path | None = None, target: Target = TARGETS["amd64"]) -> list[str]:
    """Boot a disk image from its own file, through qemu's driver for its container; never
    written (``snapshot=on``)."""
    return [*head_argv(target, memory, accel), *firmware_args(ovmf_vars, target),
            *target.drive(image, driver, cdrom=False, readonly=False)]


@contextlib.contextmanager
def ovmf_vars_copy(uefi: bool, target: Target = TARGETS["amd64"]) -> Iterator[Path | None]:
    """A fresh writable copy of the UEFI variable store (the firmware writes to it), or None."""
    if not uefi:
        yield None
        return
    code, template = firmware_code(target)
    missing = [str(p) for p in (code, template) if not p.is_file()]
    if missing:
        raise ComposerError(f"--uefi needs UEFI firmware: missing {', '.join(missing)} "
                            f"(apt-get install {target.firmware_package})")
    with tempfile.TemporaryDirectory(prefix="image-composer-ovmf.") as tmp:
        copy = Path(tmp) / template.name
        shutil.copyfile(template, copy)
        yield copy


_RECORD_SUFFIXES = sorted({*(s for s, _, _ in DISKS), *fsimage.SUFFIXES, "-efi.iso",
                           "-efi-initrd.iso", "-hybrid.iso", ".iso"}, key=len, reverse=True)


def output_prefix(path: Path) -> Path:
    """``out/NAME`` for an output file ``out/NAME-efi.img`` (or a prefix given as such)."""
    for suffix in _RECORD_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


@contextlib.contextmanager
def _terminal_restored() -> Iterator[None]:
    """qemu puts the terminal in raw mode; a killed qemu would leave it so. Put it back."""
    import termios

    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError, AttributeError):  # not a terminal
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_qemu(prefix: Path, *, memory: str, timeout: float, accel: str | None,
             uefi: bool = False, disk: bool | None = None,
             machine: vmctl.Machine | None = None, arch: str | None = None) -> int:
    """Boot the outputs at ``prefix`` (or the ISO file ``prefix``); returns qemu's exit
    status, or fails after ``timeout``. ``disk`` (ISOs only): as a hard disk, not a CD.
    ``machine``: CPUs, port forwards, disks, console log, shutdown (:mod:`composer.run.vmctl`).
    ``arch``: the guest's (default: :func:`composer.run.targets.guess_arch`)."""
    machine = machine or vmctl.Machine()
    memory = str(memory).strip()
    if not _MEMORY.match(memory):
        raise UsageError(f"--mem {memory!r}: give MiB, or a size ending in M or G")
    if accel is not None and not _ACCEL.match(accel):
        raise UsageError(f"--accel {accel!r}: not an accelerator name (kvm, tcg, ...)")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    if machine.shutdown_after is not None and machine.shutdown_after <= 0:
        raise UsageError("--shutdown-after must be positive")
    prefix = Path(prefix)
    base = output_prefix(prefix)
    kernel_file = Path(f"{base}-kernel")
    target = targets.target(arch or targets.guess_arch(base, kernel_file))
    fs_format = fsimage.fsimage_format(prefix) if prefix.is_file() else None
    disk_format = disk_image(prefix)
    if disk_format is not None or fs_format is not None:
        if not prefix.is_file():
            raise ComposerError(f"cannot boot {prefix}: no such file")
        if disk is not None:
            raise UsageError("--cdrom and --disk are for ISO files (NAME.iso)")
        uefi = uefi or bool(disk_format and disk_format[1])  # implied by an EFI disk format
        return _boot(prefix, memory=memory, timeout=timeout, accel=accel, uefi=uefi,
                     machine=machine, disk_format=disk_format, fs_format=fs_format,
                     target=target)
    iso = is_iso(prefix)
    if iso and not prefix.is_file():
        raise ComposerError(f"cannot boot {prefix}: no such file (build with -f iso-bios, "
                            "iso-efi or iso-hybrid)")
    if disk is not None and not iso:
        raise UsageError("--cdrom and --disk are for ISO files (NAME.iso)")
    if not iso:
        kernel, initrd, cmdline = boot_files(prefix, target.console)
    return _boot(prefix, memory=memory, timeout=timeout, accel=accel, uefi=uefi,
                 machine=machine, iso=iso, as_disk=bool(disk),
                 files=None if iso else (kernel, initrd, cmdline), target=target)


def _boot(prefix: Path, *, memory: str, timeout: float, accel: str | None, uefi: bool,
          machine: vmctl.Machine, iso: bool = False, as_disk: bool = False,
          files: tuple[Path, Path, str] | None = None,
          disk_format: tuple[str, bool] | None = None, fs_format: str | None = None,
          target: Target = TARGETS["amd64"]) -> int:
    if (iso or disk_format is not None) and not target.bios:
        uefi = True  # media on a board with no BIOS: its UEFI (AAVMF) is the only firmware
    native = target.arch == targets.host_arch()
    chosen = accel or ("kvm" if native and kvm_usable() else "tcg")
    tools.find_tool(target.qemu, f"install {target.package} (apt-get install {target.package})")
    with ovmf_vars_copy(uefi, target) as ovmf_vars:
        if fs_format is not None:
            argv = fsimage.fsimage_argv(prefix.resolve(), fs_format, memory=memory, accel=chosen,
                                        target=target, head=head_argv(target, memory, chosen))
        elif disk_format is not None:
            argv = disk_argv(prefix.resolve(), disk_format[0], memory=memory, accel=chosen,
                             ovmf_vars=ovmf_vars, target=target)
        elif iso:
            argv = iso_argv(prefix.resolve(), memory=memory, accel=chosen, disk=as_disk,
                            ovmf_vars=ovmf_vars, target=target)
        else:
            assert files is not None
            kernel, initrd, cmdline = files
            argv = qemu_argv(kernel, initrd, cmdline, memory=memory, accel=chosen,
                             ovmf_vars=ovmf_vars, target=target)
        with vmctl.qmp_path() as qmp, _terminal_restored():
            # the console through a filter: no terminal reset, line wrapping left on
            argv += vmctl.machine_args(machine, qmp)
            return vmctl.supervise(argv, timeout=timeout, shutdown_after=machine.shutdown_after,
                                   qmp=qmp)
