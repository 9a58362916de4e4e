"""THE table of output formats: one row per format, everything the rest of the code asks of it.

The CLI, the build, the record and ``verify`` ask a :class:`Format` (its files, whether it is an
image that ``--push``/``--load`` can take, which bootloaders it pins) instead of testing format
names as strings, so a new format is one new row. Converters are named ``module:function`` and
imported only when their format is built: ``import outputs`` loads no family module, and so
neither pycdlib nor pyfatfs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.errors import UsageError

if TYPE_CHECKING:
    from composer.atomic import OutputSet
    from outputs.options import Options

Converter = Callable[[Path, str, "OutputSet", "Options"], None]


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Format:
    """One output format.

    ``files``: the names it always writes, as ``str.format`` patterns over ``name``.
    ``converter``: ``module:function`` with the signature of :data:`Converter`, or, with
    ``by_format``, a family's writer that is also told the format's name (``fmt=``).
    ``family``: the ``outputs`` sub-package that holds it (``initrd``, ``iso``, ``image``, ...).
    ``pushable``: an OCI image ``--push`` can send to a registry; ``loadable``: ``docker load``.
    ``pins``: ``module:function(fmt, options)`` giving the bootloader pins it uses (recorded).
    ``shared``: file patterns whose bytes are the same whichever format writes them, so two
    formats may both name them (``NAME-kernel``); any other common file is a clash.
    ``kept``: its files are kept in the cache for unchanged rebuilds (not ``tar``, which is
    the phase-one result itself, nor directory outputs).
    ``tools``: ``module:function(fmt)`` naming the external programs (and versions) its bytes
    depend on, for the record.
    ``arches``: the architectures (OCI names) it can be built for; None: any (it only
    assembles files; whether the kernel boots is the kernel's business).
    ``platforms``: ``module:function(parts, name, outset)`` writing its ONE file for several
    architectures (``--arch amd64,arm64``: one multi-platform index); ``parts`` is each
    architecture's (rootfs tar, options) in ``--arch`` order. None: one file per architecture.
    """

    name: str
    files: tuple[str, ...]
    converter: str
    family: str
    help: str
    pushable: bool = False
    loadable: bool = False
    pins: str | None = None
    shared: frozenset[str] = frozenset()
    kept: bool = True
    tools: str | None = None
    by_format: bool = False
    arches: frozenset[str] | None = None
    platforms: str | None = None

    def supports(self, arch: str) -> bool:
        return self.arches is None or arch.partition("/")[0] in self.arches

    def output_files(self, name: str) -> tuple[str, ...]:
        return tuple(pattern.format(name=name) for pattern in self.files)

    def convert(self, rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
        if self.by_format:
            _load(self.converter)(rootfs, name, outset, options, fmt=self.name)
        else:
            _load(self.converter)(rootfs, name, outset, options)

    def convert_platforms(self, parts: list[tuple[Path, Options]], name: str,
                          outset: OutputSet) -> None:
        assert self.platforms is not None, f"{self.name}: one file per architecture"
        _load(self.platforms)(parts, name, outset)

    def tool_versions(self) -> dict[str, str]:
        return dict(_load(self.tools)(self.name)) if self.tools else {}

    def bootloader_pins(self, options: Options) -> tuple:
        """The pinned bootloader files this format reads (for the record), or ()."""
        return tuple(_load(self.pins)(self.name, options)) if self.pins else ()


_KI = ("{name}-kernel", "{name}-initrd.img", "{name}-cmdline")
# boot/kernel and boot/cmdline verbatim: the same bytes whichever format writes them
_SHARED = frozenset({"{name}-kernel", "{name}-cmdline"})
_ISO_PINS = "outputs.iso.formats:bootloader_pins"
_DISK_PINS = "outputs.disk.formats:bootloader_pins"
_ISO: dict[str, Any] = {"pins": _ISO_PINS, "by_format": True}  # the iso family's write_iso
_DISK: dict[str, Any] = {"pins": _DISK_PINS, "by_format": True,  # the disk family's writers
                         "tools": "outputs.disk.formats:tool_versions"}
# BIOS boot (syslinux, isolinux, SeaBIOS) exists on x86 only; the EFI formats need a
# bootloader pinned for the architecture (outputs/bootloader_debs.py)
_X86 = frozenset({"amd64"})
_EFI = frozenset({"amd64", "arm64"})

FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("kernel+initrd", _KI, "outputs.initrd.formats:write_kernel_initrd", "initrd",
           "kernel, gzip'd newc initrd and command line (the default)", shared=_SHARED),
    Format("kernel+squashfs", ("{name}-kernel", "{name}-cmdline", "{name}-squashfs.img"),
           "outputs.fsimage.squashfs:write_kernel_squashfs", "fsimage",
           "kernel, command line and the rootfs as squashfs (root=/dev/sda)", shared=_SHARED,
           tools="outputs.fsimage:tool_versions"),
    Format("kernel+erofs", ("{name}-kernel", "{name}-cmdline", "{name}-erofs.img"),
           "outputs.fsimage.erofs:write_kernel_erofs", "fsimage",
           "kernel, command line and the rootfs as erofs", shared=_SHARED),
    Format("kernel+iso", ("{name}-kernel", "{name}-cmdline", "{name}.iso"),
           "outputs.fsimage.isofs:write_kernel_iso", "fsimage",
           "kernel, command line and the rootfs as ISO 9660 + Rock Ridge + Joliet "
           "(root=/dev/sr0)", shared=_SHARED),
    Format("tar", ("{name}.tar",), "outputs.tar:write_tar", "tar",
           "the canonical rootfs tar", kept=False),
    Format("tar-kernel-initrd", ("{name}-initrd.tar",),
           "outputs.initrd.formats:write_tar_kernel_initrd", "initrd",
           "one tar holding kernel, initrd.img and cmdline"),
    Format("iso-bios", ("{name}.iso",), "outputs.iso.formats:write_iso", "iso",
           "ISO booting with isolinux (BIOS); a hybrid disk image too", **_ISO, arches=_X86),

    Format("iso-efi", ("{name}-efi.iso",), "outputs.iso.formats:write_iso", "iso",
           "ISO booting with GRUB (UEFI)", **_ISO, arches=_EFI),

    Format("iso-efi-initrd", ("{name}-efi-initrd.iso",),
           "outputs.iso.formats:write_iso", "iso",
           "ISO booting with GRUB (UEFI), linuxkit's initrd variant", **_ISO, arches=_EFI),

    Format("iso-hybrid", ("{name}-hybrid.iso",), "outputs.iso.formats:write_iso", "iso",
           "ISO booting under BIOS and UEFI, from a CD or as a disk", **_ISO, arches=_X86),

    Format("docker", ("{name}-docker.tar",), "outputs.image.formats:write_docker", "image",
           "docker load-able image (manifest.json + OCI layout)", pushable=True, loadable=True,
           platforms="outputs.image.formats:write_docker_platforms"),
    Format("oci", ("{name}-oci.tar",), "outputs.image.formats:write_oci", "image",
           "OCI image layout in a tar", pushable=True,
           platforms="outputs.image.formats:write_oci_platforms"),
    Format("oci-dir", ("{name}-oci",), "outputs.image.formats:write_oci_dir", "image",
           "OCI image layout in a directory", pushable=True, kept=False),
    Format("docker-context", ("{name}.docker",), "outputs.image.formats:write_docker_context",
           "image", "linuxkit's docker build context (rootfs + Dockerfile)"),
    Format("raw-bios", ("{name}-bios.img",), "outputs.disk.formats:write_disk", "disk",
           "raw disk: MBR, FAT and syslinux (BIOS), sized to its content", **_DISK, arches=_X86),

    Format("raw-efi", ("{name}-efi.img",), "outputs.disk.formats:write_disk", "disk",
           "raw disk: GPT and an ESP with systemd-boot and a unified kernel image (UEFI)",
           **_DISK, arches=_EFI),

    Format("aws", ("{name}.raw",), "outputs.disk.formats:write_disk", "disk",
           "raw disk AWS imports: MBR, FAT and syslinux filling --size", **_DISK, arches=_X86),

    Format("qcow2-bios", ("{name}.qcow2",), "outputs.disk.formats:write_container", "disk",
           "qcow2 of an MBR, FAT and syslinux disk of --size (BIOS)", **_DISK, arches=_X86),

    Format("qcow2-efi", ("{name}-efi.qcow2",), "outputs.disk.formats:write_container", "disk",
           "qcow2 of a GPT disk with an ESP and GRUB (UEFI)", **_DISK, arches=_EFI),

    Format("vhd", ("{name}.vhd",), "outputs.disk.formats:write_container", "disk",
           "fixed VHD, 1 GiB, 1 MiB-aligned (Azure): MBR, FAT and syslinux", **_DISK, arches=_X86),

    Format("dynamic-vhd", ("{name}.vhd",), "outputs.disk.formats:write_container", "disk",
           "dynamic VHD, 25 GiB: MBR, FAT and syslinux", **_DISK, arches=_X86),

    Format("vmdk", ("{name}.vmdk",), "outputs.disk.formats:write_container", "disk",
           "streamOptimized VMDK, 1 GiB (vSphere): MBR, FAT and syslinux", **_DISK, arches=_X86),

    Format("gcp", ("{name}.img.tar.gz",), "outputs.disk.formats:write_container", "disk",
           "GCE image: gzip'd tar of disk.raw, 1 GiB: MBR, FAT and syslinux", **_DISK, arches=_X86),

    Format("rpi3", ("{name}.tar",), "outputs.rpi3.formats:write_rpi3", "rpi3",
           "Raspberry Pi 3 SD card tar: firmware, u-boot, config.txt, boot script, uImage "
           "kernel and initrd, device trees", pins="outputs.rpi3.formats:bootloader_pins",
           arches=frozenset({"arm64"})),
)}


def get_format(name: str) -> Format:
    """The row for ``name``; an unknown name is a usage error listing the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise UsageError(f"unknown format {name!r} (known: {', '.join(sorted(FORMATS))})"
                         ) from None


def check_arch(names: Iterable[str], arch: str) -> None:
    """A format that cannot be made for ``arch`` is a usage error naming the ones that can."""
    for name in names:
        if not FORMATS[name].supports(arch):
            can = ", ".join(f for f, row in FORMATS.items() if row.supports(arch))
            only = ", ".join(sorted(FORMATS[name].arches or ()))
            raise UsageError(f"format {name} is for {only} only, not {arch}; for {arch}: {can}")


def output_files(fmt: str, name: str) -> tuple[str, ...]:
    """The file names format ``fmt`` writes for base name ``name``."""
    return FORMATS[fmt].output_files(name)


def check_clashes(names: Iterable[str]) -> None:
    """Two formats that would write the same file with different bytes cannot be built
    together (linuxkit silently lets the last one win)."""
    seen: dict[str, str] = {}
    for name in names:
        fmt = FORMATS[name]
        for pattern in fmt.files:
            other = seen.get(pattern)
            if other is not None and not (pattern in fmt.shared
                                          and pattern in FORMATS[other].shared):
                raise UsageError(f"formats {other} and {name} both write "
                                 f"{pattern.format(name='NAME')}; build them separately")
            seen.setdefault(pattern, name)
