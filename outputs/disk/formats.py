"""Partitioned, bootable raw disk images, built in-process: no root, loop mount, Docker or VM.

Formats (rows of :data:`outputs.formats.FORMATS`) (linuxkit's names and file names):

============  ================  ==============================================================
format        file              layout (:mod:`outputs.disk.layouts`)
============  ================  ==============================================================
raw-bios      NAME-bios.img     MBR + FAT + syslinux, kernel + initrd; sized to content
raw-efi       NAME-efi.img      GPT + ESP: systemd-boot + a UKI (:mod:`outputs.disk.uki`)
aws           NAME.raw          MBR + FAT + syslinux filling a ``--size`` disk (1024M default)
============  ================  ==============================================================

Contract for the container writers (qcow2-bios, qcow2-efi, vhd, vmdk, gcp): they call
:func:`raw_layer` (``qcow2-bios``: the aws layout at ``--size``; ``qcow2-efi``: GPT + ESP with
GRUB), which yields the path of a finished, sparse raw disk file in the build's scratch space;
or, given kernel/initrd/cmdline already split off, :func:`outputs.disk.layouts.build_raw_disk`
with a :class:`~outputs.disk.layouts.DiskLayout` from ``LAYOUTS``. The raw file is read-only
to them and deleted with the scratch directory.

Every disk boots the rootfs's ``boot/kernel`` with an initrd of everything outside ``boot/``
(the bytes ``kernel+initrd`` writes, microcode first) and the spec's command line. Identifiers
come from :func:`outputs.disk.layouts.seed`; the bootloaders are pins of
:mod:`outputs.bootloaders` (``--bootloader`` overrides them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from composer.atomic import OutputSet
from composer.streams.digest import sha256_file
from outputs import bootloaders
from outputs.disk.layouts import LAYOUTS, build_raw_disk, seed
from outputs.formats import FORMATS
from outputs.options import Options

# the raw layer inside each container format: linuxkit's "mkimage" formats are all MBR +
# syslinux (qcow2-bios at --size; vhd, vmdk, gcp at 1 GiB; dynamic-vhd at 25 GiB), qcow2-efi
# is GPT + ESP with GRUB
LAYER = {"qcow2-bios": "qcow2-bios", "qcow2-efi": "qcow2-efi", "vhd": "qcow2-bios",
         "dynamic-vhd": "qcow2-bios", "vmdk": "qcow2-bios", "gcp": "qcow2-bios"}
CONTAINER = {"qcow2-bios": "qcow2", "qcow2-efi": "qcow2", "vhd": "vhd",
             "dynamic-vhd": "dynamic-vhd", "vmdk": "vmdk", "gcp": "gcp"}


def bootloader_pins(fmt: str, options: Options) -> tuple[bootloaders.Pin, ...]:
    """The bootloader files (and digests) format ``fmt`` (or its raw layer) uses."""
    return bootloaders.resolve(LAYOUTS[LAYER.get(fmt, fmt)].roles_for(options.arch),
                               options.bootloaders)


def tool_versions(fmt: str) -> dict[str, str]:
    """The pinned external programs the format's bytes depend on, for the record: the
    syslinux disks' ``mcopy``."""
    if LAYOUTS[LAYER.get(fmt, fmt)].boot == "syslinux":
        from outputs.disk.syslinux import tool_version

        return {"mcopy": tool_version()}
    return {}


def size_mib(options: Options) -> int:
    return options.disk_size_mib


def _write(rootfs: Path, name: str, outset: OutputSet, options: Options, fmt: str,
           tmp: Path, out) -> int:
    from outputs.boot import boot_files

    layout = LAYOUTS[fmt]
    pins = bootloader_pins(fmt, options)
    loaded = {pin.role: bootloaders.load(pin) for pin in pins}
    rootfs_sha256 = (outset.known_digest(rootfs) or sha256_file(rootfs))[0]
    seed_bytes = seed(rootfs_sha256, layout, pins, mtime=options.mtime,
                      gzip_level=options.gzip_level, size_mib=size_mib(options))
    cmdline = boot_files(rootfs, tmp, name, fmt, options.gzip_level)
    return build_raw_disk(layout, kernel=tmp / "kernel", initrd=tmp / "initrd.img",
                          cmdline=cmdline, out=out, seed_bytes=seed_bytes, mtime=options.mtime,
                          loaded=loaded, scratch=tmp, size_mib=size_mib(options),
                          arch=options.arch)


def write_disk(rootfs: Path, name: str, outset: OutputSet, options: Options, fmt: str) -> None:
    outset.directory.mkdir(parents=True, exist_ok=True)
    with outset.scratch(f"{name}-{fmt}") as t, \
            outset.create(FORMATS[fmt].output_files(name)[0]) as out:
        _write(rootfs, name, outset, options, fmt, Path(t), out)


@contextlib.contextmanager
def raw_layer(rootfs: Path, name: str, outset: OutputSet, options: Options,
              fmt: str) -> Iterator[Path]:
    """The raw disk of format ``fmt`` (a key of ``LAYOUTS``) as a scratch file, for a writer
    that wraps it in a container format."""
    outset.directory.mkdir(parents=True, exist_ok=True)
    with outset.scratch(f"{name}-{fmt}-raw") as t:
        tmp = Path(t)
        (tmp / "work").mkdir()
        with open(tmp / "disk.raw", "w+b") as out:
            _write(rootfs, name, outset, options, fmt, tmp / "work", out)
        yield tmp / "disk.raw"


def write_container(rootfs: Path, name: str, outset: OutputSet, options: Options,
                    fmt: str) -> None:
    """A container format: its raw layer (at linuxkit's fixed size, or ``--size``), grown to
    the container's virtual size with a hole, then written by the container's writer."""
    import dataclasses
    import hashlib

    from outputs.disk.containers import CONTAINERS, fit

    container = CONTAINERS[CONTAINER[fmt]]
    if container.fixed_size is not None:
        options = dataclasses.replace(options, disk_size_mib=container.fixed_size >> 20)
    rootfs_sha256 = (outset.known_digest(rootfs) or sha256_file(rootfs))[0]
    seed_bytes = hashlib.sha256(f"image-composer container 1:{fmt}:{rootfs_sha256}:"
                                f"{options.mtime}:{options.disk_size_mib}".encode()).digest()
    with raw_layer(rootfs, name, outset, options, LAYER[fmt]) as raw:
        fit(raw, container)
        with outset.create(FORMATS[fmt].output_files(name)[0]) as out:
            container.write(raw, out, options.mtime, seed_bytes)
