"""``run qemu`` for kernel+squashfs, kernel+erofs and kernel+iso, by the image file.

``NAME-squashfs.img`` / ``NAME-erofs.img`` boot ``NAME-kernel`` with the image as the first
disk and ``root=/dev/sda`` (linuxkit's ``run qemu --squashfs``; erofs also gets
``rootfstype=erofs``); a ``NAME.iso`` without El Torito beside a ``NAME-kernel`` is a
kernel+iso image, booted with the image as a CD and ``root=/dev/sr0``. The kernel must have the
filesystem built in (linuxkit's has squashfs and isofs; Debian's has them as modules only).
``run qemu FILE`` finds the format by :func:`fsimage_format` and boots :func:`fsimage_argv`.
"""

from __future__ import annotations

from pathlib import Path

from composer.errors import ComposerError, UsageError
from composer.run.targets import TARGETS, Target
from composer.run.vmctl import QEMU, kernel_cmdline

SUFFIXES = {"-squashfs.img": "kernel+squashfs", "-erofs.img": "kernel+erofs",
            ".iso": "kernel+iso"}
ROOT = {"kernel+squashfs": "root=/dev/sda", "kernel+erofs": "root=/dev/sda rootfstype=erofs",
        "kernel+iso": "root=/dev/sr0"}
SECTOR = 2048
EL_TORITO = b"\x00CD001\x01EL TORITO SPECIFICATION"  # boot record volume descriptor


def _prefix(path: Path, suffix: str) -> Path:
    return path.with_name(path.name[: -len(suffix)])


def has_el_torito(iso: Path) -> bool:
    """Whether a volume descriptor (sector 16 on) is an El Torito boot record."""
    with open(iso, "rb") as f:
        for sector in range(16, 32):
            f.seek(sector * SECTOR)
            head = f.read(len(EL_TORITO))
            if head.startswith(EL_TORITO):
                return True
            if head[:1] == b"\xff" or len(head) < len(EL_TORITO):  # set terminator
                return False
    return False


def fsimage_format(path: Path) -> str | None:
    """The format ``path`` was built as, if it is one of the three (else None)."""
    for suffix, fmt in SUFFIXES.items():
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            if not Path(f"{_prefix(path, suffix)}-kernel").is_file() or not path.is_file():
                return None
            if fmt == "kernel+iso" and has_el_torito(path):
                return None  # a bootable ISO (iso-bios): booted as such
            return fmt
    return None


def fsimage_argv(image: Path, fmt: str, *, memory: str, accel: str,
                 target: Target = TARGETS["amd64"], head: list[str] | None = None) -> list[str]:
    suffix = next(s for s, f in SUFFIXES.items() if f == fmt)
    prefix = _prefix(image, suffix)
    kernel, cmdline_file = Path(f"{prefix}-kernel"), Path(f"{prefix}-cmdline")
    if "," in str(image):
        raise UsageError(f"{image}: qemu cannot take a file name with a comma")
    try:
        text = cmdline_file.read_text(encoding="utf-8") if cmdline_file.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposerError(f"{cmdline_file}: cannot read: {exc}") from None
    head = head or [QEMU, "-accel", accel, "-m", memory, "-nographic", "-no-reboot"]
    return [*head, "-kernel", str(kernel),
            "-append", f"{kernel_cmdline(text, target.console)} {ROOT[fmt]}",
            *target.drive(image, "raw", cdrom=fmt == "kernel+iso", readonly=True, index=0)]
