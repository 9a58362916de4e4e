"""Formats that carry the rootfs as a filesystem image beside the kernel: ``kernel+squashfs``,
``kernel+erofs`` and ``kernel+iso`` (linuxkit's names and files).

Each writes ``NAME-kernel`` and ``NAME-cmdline`` exactly as ``kernel+initrd`` does (``boot/kernel``
and ``boot/cmdline`` verbatim; linuxkit's ``run qemu`` adds ``root=`` at boot, the file does not
carry it), so asking for several of them in one build is fine: those files are written once
(their rows' ``shared`` in :data:`outputs.formats.FORMATS`). Pycdlib is imported only when an
ISO is made.
"""

from __future__ import annotations

from outputs.fsimage import squashfs


def tool_versions(fmt: str) -> dict[str, str]:
    """The external programs (and versions) the format's bytes depend on, for the record."""
    if fmt == "kernel+squashfs":
        return {squashfs.TOOL: squashfs.tool_version()}
    return {}
