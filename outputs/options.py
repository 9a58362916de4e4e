"""What a phase-two converter may be told besides the rootfs tar: nothing that varies per host."""

from __future__ import annotations

from dataclasses import dataclass

from composer.errors import ComposerError
from outputs.bootloaders import Pin, check_overrides
from outputs.gz import DEFAULT_LEVEL, check_level


@dataclass(frozen=True)
class Options:
    """``mtime``: the timestamp of entries a converter synthesises itself (the members of the
    ``tar-kernel-initrd`` wrapper tar); the build passes ``Epoch.generated``.

    ``gzip_level``: deflate level 1-9 for gzip'd outputs (the initrd). The default 6 is gzip's
    and zlib's own default; it is part of the output's identity, so it goes into the build
    record (see :func:`outputs.gz.compressor_id`).

    ``bootloaders``: pinned bootloader files that replace the defaults of the ISO formats, at
    most one per role (see :mod:`outputs.bootloaders`; the CLI's ``--bootloader``).

    ``disk_size_mib``: the disk size of the fixed-size disk formats (``aws`` and the raw layer of
    ``qcow2-bios``; the CLI's ``--size``, linuxkit's default 1024 MiB). Other formats ignore it.

    ``arch``, ``image_tag``, ``entrypoint``: for the image formats (:mod:`outputs.image`): the
    config's architecture (the build's ``--arch``), the repository tag (``--tag``; default
    ``NAME:latest``) and the entrypoint (default ``/bin/rc.init`` if the rootfs has it, else
    ``/init``).
    """

    mtime: int
    gzip_level: int = DEFAULT_LEVEL
    bootloaders: tuple[Pin, ...] = ()
    arch: str = "amd64"
    image_tag: str | None = None
    entrypoint: tuple[str, ...] | None = None
    disk_size_mib: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.mtime, int) or isinstance(self.mtime, bool) or self.mtime < 0:
            raise ComposerError(f"output mtime must be a non-negative integer, not {self.mtime!r}")
        check_level(self.gzip_level)
        check_overrides(self.bootloaders)
        if (not isinstance(self.disk_size_mib, int) or isinstance(self.disk_size_mib, bool)
                or not 0 < self.disk_size_mib <= 1 << 24):
            raise ComposerError(f"disk size must be 1 MiB to 16 TiB, not {self.disk_size_mib!r}")
        if self.entrypoint is not None and (
                not isinstance(self.entrypoint, tuple) or not self.entrypoint
                or not all(isinstance(a, str) for a in self.entrypoint)):
            raise ComposerError(f"entrypoint must be a non-empty tuple of strings, "
                                f"not {self.entrypoint!r}")
