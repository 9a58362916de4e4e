"""``run qemu``: boot ``NAME-kernel`` + ``NAME-initrd.img`` in qemu-system-x86_64 on the terminal.

The serial console is the user's terminal (``-nographic``: Ctrl-A X quits). ``-no-reboot`` with
``panic=-1`` makes a guest that powers off, reboots or panics end qemu, so a smoke test always
terminates; the exit status is qemu's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from composer import tools
from composer.errors import ComposerError, UsageError

QEMU = "qemu-system-x86_64"
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12
_MEMORY = re.compile(r"^[1-9][0-9]*[MG]?$")
_ACCEL = re.compile(r"^[a-z][a-z0-9_-]*$")


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


def kernel_cmdline(text: str) -> str:
    """The file's command line plus ``console=ttyS0`` (unless it names a console) and panic=-1."""
    words = text.split()
    if not any(w.startswith("console=") for w in words):
        words.append("console=ttyS0")
    if not any(w.startswith("panic=") for w in words):
        words.append("panic=-1")
    return " ".join(words)


def boot_files(prefix: Path) -> tuple[Path, Path, str]:
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
    return kernel, initrd, kernel_cmdline(text)


def qemu_argv(kernel: Path, initrd: Path, cmdline: str, *, memory: str,
              accel: str) -> list[str]:
    return [QEMU, "-accel", accel, "-m", memory, "-nographic", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]


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


def run_qemu(prefix: Path, *, memory: str, timeout: float, accel: str | None) -> int:
    """Boot the outputs at ``prefix``; returns qemu's exit status, or fails after ``timeout``."""
    memory = str(memory).strip()
    if not _MEMORY.match(memory):
        raise UsageError(f"--mem {memory!r}: give MiB, or a size ending in M or G")
    if accel is not None and not _ACCEL.match(accel):
        raise UsageError(f"--accel {accel!r}: not an accelerator name (kvm, tcg, ...)")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    kernel, initrd, cmdline = boot_files(Path(prefix))
    chosen = accel or ("kvm" if kvm_usable() else "tcg")
    argv = qemu_argv(kernel, initrd, cmdline, memory=memory, accel=chosen)
    tools.find_tool(QEMU, "install qemu-system-x86 (apt-get install qemu-system-x86)")
    with _terminal_restored():
        proc = tools.run(argv, check=False, timeout=timeout)
    return proc.returncode
