"""Format ``rpi3``: linuxkit's Raspberry Pi 3 tar, made anywhere, reproducibly.

``NAME.tar`` is extracted onto a FAT32 SD card. The Pi's GPU firmware (``bootcode.bin``,
``start*.elf``, ``fixup*.dat``) reads ``config.txt`` (64-bit mode, the UART, ``kernel=u-boot.bin``)
and starts u-boot, which runs ``boot.scr``: load ``kernel.uimg``, the device tree
``dtb/${fdtfile}`` and ``initrd.uimg`` from the card and ``bootm`` them. The members, as linuxkit's
``mkimage-rpi3`` writes them (its ``make-rpi3``), except where said:

- the firmware files and ``LICENCE.broadcom`` (Debian's ``raspi-firmware``) and ``u-boot.bin``
  (Debian's ``u-boot-rpi``, its ``rpi_3`` build: the 64-bit Pi 3 u-boot with the Pi 3's device
  tree built in, linuxkit's ``rpi_3_defconfig``) are pins of :mod:`outputs.bootloaders`, one
  role per file; linuxkit builds u-boot v2019.04 and downloads the firmware from GitHub.
- ``kernel.uimg``: the rootfs's ``boot/kernel`` gzip'd (THE gzip writer; kept as it is if it is
  gzip already, as linuxkit's ``Image.gz`` kernels are) in a kernel uImage (arm64, Linux, gzip,
  load and entry 0x80000).
- ``initrd.uimg``: the initrd every initrd format boots (the rootfs outside ``boot/``,
  :func:`outputs.initrd.formats.write_initrd`) in a ramdisk uImage (load and entry 0;
  compression gzip, mkimage's default, or what ``--initrd-compression`` chose: u-boot passes
  a ramdisk on as it is, the kernel unpacks it).
- ``boot.script`` and ``boot.scr`` (its script uImage, named ``RPi3``): linuxkit's script, but
  ``bootargs`` is the spec's command line when it has one (linuxkit always sets its own
  ``dwc_otg.lpm_enable=0 earlyprintk console=tty1 console=ttyS0,115200 root=/dev/ram0 rw``,
  which stays the default).
- ``dtb/broadcom/bcm2837-rpi-3-b*.dtb``: from the rootfs's ``boot/dtb/`` (where a linuxkit
  kernel image's ``kernel.tar`` puts the device trees); none there is an error.
- no ``uboot.log`` (linuxkit's captures mkimage's output, which names the build's time).
- the kernel is loaded at 0x10000000, not linuxkit's 0x01000000: u-boot unpacks it to 0x80000,
  and a kernel over ~15 MiB uncompressed (Debian's arm64 one is 33 MB) would overwrite its own
  compressed copy there (``inflate() returned -3``). ``boot/ucode.cpio`` (x86 microcode) is
  not used.

Every uImage's time is the epoch; the tar is the canonical one (sorted, 0:0, mode 0644/0755,
mtime the epoch), so two builds are byte-identical. Everything larger than the firmware goes
through files in the build's scratch directory, so memory does not grow with the image.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from pathlib import Path
from typing import BinaryIO, cast

from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.streams.gz import GzipWriter
from composer.tar.canon import COPY_CHUNK, CanonicalTarWriter, Entry, Kind, sort_key
from outputs import bootloaders
from outputs.boot import command_line
from outputs.initrd.formats import CMDLINE, KERNEL, split_boot, write_initrd
from outputs.options import Options
from outputs.rpi3 import uimage

FORMAT = "rpi3"
DTB_DIR = "boot/dtb/broadcom"
DTB_PREFIX = "bcm2837-rpi-3-b"  # the Pi 3 B and B+ (linuxkit's bcm2837-rpi-3-b*.dtb)
KERNEL_LOAD = 0x80000  # where the arm64 Image runs (TEXT_OFFSET); linuxkit's -a and -e
SCRIPT_NAME = "RPi3"
LINUXKIT_BOOTARGS = ("dwc_otg.lpm_enable=0 earlyprintk console=tty1 console=ttyS0,115200 "
                     "root=/dev/ram0 rw")
# linuxkit's tools/mkimage-rpi3/config.txt
CONFIG_TXT = b"""avoid_warnings=2
# 64bit mode, serial and kernel
arm_control=0x200
enable_uart=1
kernel=u-boot.bin
"""
# linuxkit's tools/mkimage-rpi3/boot.script, with the command line filled in
BOOT_SCRIPT = """setenv bootargs "{bootargs}"
setenv loadaddr 0x10000000
setenv machid 0x00000c42
saveenv

fatload mmc 0:1 ${{loadaddr}} kernel.uimg
fatload mmc 0:1 ${{fdt_addr_r}} dtb/${{fdtfile}}
fatload mmc 0:1 ${{ramdisk_addr_r}} initrd.uimg
bootm ${{loadaddr}} ${{ramdisk_addr_r}} ${{fdt_addr_r}}
"""
_UNQUOTABLE = ('"', "$", "\\")  # hush would expand or end the double-quoted bootargs at these


def bootloader_pins(fmt: str, options: Options) -> tuple[bootloaders.Pin, ...]:
    """The firmware and u-boot files (pinned) the card gets."""
    return bootloaders.resolve(bootloaders.RPI3_ROLES, options.bootloaders)


def is_dtb(path: str) -> bool:
    """A Raspberry Pi 3 device tree of the kernel (``boot/dtb/broadcom/bcm2837-rpi-3-b*.dtb``)."""
    directory, base = posixpath.split(path)
    return directory == DTB_DIR and base.startswith(DTB_PREFIX) and base.endswith(".dtb")


def boot_script(cmdline: str) -> bytes:
    """``boot.script`` for the spec's command line (linuxkit's own line if it has none)."""
    bad = sorted({c for c in cmdline if c in _UNQUOTABLE})
    if bad:
        raise ComposerError(f"format {FORMAT}: the kernel command line has {' '.join(bad)}, "
                            f"which u-boot's script would not pass on as written")
    return BOOT_SCRIPT.format(bootargs=cmdline or LINUXKIT_BOOTARGS).encode()


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _write_kernel(kernel: Path, out: BinaryIO, options: Options) -> None:
    def fill(sink: uimage.Counting) -> None:
        with open(kernel, "rb") as src:
            if _is_gzip(kernel):
                while chunk := src.read(COPY_CHUNK):
                    sink.write(chunk)
            else:
                with GzipWriter(sink, options.gzip_level) as gz:
                    while chunk := src.read(COPY_CHUNK):
                        gz.write(chunk)

    uimage.write(out, fill, time=options.mtime, load=KERNEL_LOAD, entry=KERNEL_LOAD,
                 image_type=uimage.TYPE_KERNEL, compression="gzip")


def write_rpi3(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    pins = bootloader_pins(FORMAT, options)
    firmware = bootloaders.load_all(pins)
    outset.directory.mkdir(parents=True, exist_ok=True)
    with outset.scratch(f"{name}-{FORMAT}") as t:
        tmp = Path(t)
        taken: dict[str, Path] = {}  # rootfs path -> its copy in tmp
        with contextlib.ExitStack() as stack:
            def sink(path: str) -> BinaryIO:
                taken[path] = tmp / f"in-{len(taken)}"
                return stack.enter_context(open(taken[path], "wb"))

            links = split_boot(rootfs, sink, name, FORMAT, also=is_dtb)
        dtbs = sorted(p for p in taken if is_dtb(p))
        if not dtbs:
            raise ComposerError(
                f"{name}: format {FORMAT} needs the Raspberry Pi 3 device trees "
                f"{DTB_DIR}/{DTB_PREFIX}*.dtb in the root filesystem (a kernel image that "
                f"carries them, as linuxkit's arm64 kernels do in kernel.tar); this one has none")
        cmdline = command_line(taken[CMDLINE].read_bytes()) if CMDLINE in taken else ""
        script = boot_script(cmdline)
        members: dict[str, Path | bytes] = {
            "boot.script": script,
            "boot.scr": uimage.script(script, time=options.mtime, name=SCRIPT_NAME),
            "config.txt": CONFIG_TXT,
            "kernel.uimg": tmp / "kernel.uimg",
            "initrd.uimg": tmp / "initrd.uimg",
            **{pin.role: firmware[pin.role] for pin in pins},
            **{"dtb/broadcom/" + posixpath.basename(p): taken[p] for p in dtbs},
        }
        with open(tmp / "kernel.uimg", "wb") as kernel:
            _write_kernel(taken[KERNEL], kernel, options)
        with open(tmp / "initrd.uimg", "wb") as initrd:
            uimage.write(initrd, lambda sink: write_initrd(
                rootfs, links, cast(BinaryIO, sink), options.gzip_level, tmp,
                options.initrd_compression),
                time=options.mtime, load=0, entry=0, image_type=uimage.TYPE_RAMDISK,
                compression=options.initrd_compression)
        with outset.create(f"{name}.tar") as out:
            _write_tar(out, members, options.mtime)


def _write_tar(out: BinaryIO, members: dict[str, Path | bytes], mtime: int) -> None:
    tar = CanonicalTarWriter(out)
    for path in sorted({*members, "dtb", "dtb/broadcom"}, key=sort_key):
        value = members.get(path)
        if value is None:
            tar.add(Entry(path, Kind.DIR, mode=0o755, mtime=mtime))
        elif isinstance(value, bytes):
            tar.add(Entry(path, Kind.FILE, mode=0o644, mtime=mtime, size=len(value)), value)
        else:
            with open(value, "rb") as src:
                size = os.fstat(src.fileno()).st_size
                tar.add(Entry(path, Kind.FILE, mode=0o644, mtime=mtime, size=size), src)
    tar.close()
