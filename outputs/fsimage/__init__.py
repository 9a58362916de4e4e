"""Formats that carry the rootfs as a filesystem image beside the kernel: ``kernel+squashfs``,
``kernel+erofs`` and ``kernel+iso`` (linuxkit's names and files).

Each writes ``NAME-kernel`` and ``NAME-cmdline`` exactly as ``kernel+initrd`` does (``boot/kernel``
and ``boot/cmdline`` verbatim; linuxkit's ``run qemu`` adds ``root=`` at boot, the file does not
carry it), so asking for several of them in one build is fine: those files are written once
(:data:`outputs.SHARED_FILES`). Pycdlib is imported only when an ISO is made.
"""

from __future__ import annotations

from pathlib import Path

from composer.atomic import OutputSet
from outputs.fsimage import erofs, squashfs
from outputs.options import Options

ISO_FILES = ("{name}-kernel", "{name}-cmdline", "{name}.iso")  # root=: composer.qemu_fsimage


def write_kernel_iso(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    from outputs.fsimage.isofs import write_kernel_iso as write

    write(rootfs, name, outset, options)


CONVERTERS = {
    "kernel+squashfs": squashfs.write_kernel_squashfs,
    "kernel+erofs": erofs.write_kernel_erofs,
    "kernel+iso": write_kernel_iso,
}
FS_FILES = {
    "kernel+squashfs": squashfs.FILES,
    "kernel+erofs": erofs.FILES,
    "kernel+iso": ISO_FILES,
}


def tool_versions(formats: tuple[str, ...]) -> dict[str, str]:
    """The external programs (and versions) the formats' bytes depend on, for the record."""
    if "kernel+squashfs" in formats:
        return {squashfs.TOOL: squashfs.tool_version()}
    return {}
