"""``image-composer run qemu``: boot outputs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub, common) -> None:
    run_p = sub.add_parser("run", help="boot outputs").add_subparsers(
        dest="run_command", required=True, parser_class=sub._parser_class)
    q = run_p.add_parser("qemu", help="boot NAME-kernel + NAME-initrd.img, or an ISO, in "
                         "qemu-system-x86_64 (or qemu-system-aarch64)")
    q.add_argument("name", help="path prefix of the outputs, e.g. out/hello, or an ISO file "
                   "(NAME.iso)")
    fw = q.add_mutually_exclusive_group()
    fw.add_argument("--bios", dest="uefi", action="store_false", default=False,
                    help="boot with SeaBIOS (the default)")
    fw.add_argument("--uefi", dest="uefi", action="store_true", default=False,
                    help="boot with OVMF (UEFI; apt-get install ovmf)")
    q.add_argument("--cdrom", dest="cdrom", action="store_true", default=False,
                   help="attach the ISO as a CD-ROM (the default for .iso)")
    q.add_argument("--disk", dest="disks", action="append", nargs="?", const="", default=[],
                   metavar="FILE[,format=F]",
                   help="with no value: attach the ISO as a hard disk, as if written to a USB "
                   "stick; with FILE: also attach that disk image (virtio; format raw, or "
                   "qcow2 for *.qcow2, unless given); repeatable")
    q.add_argument("--mem", default="512", help="memory in MiB (default 512)")
    q.add_argument("--cpus", type=int, default=1, help="virtual CPUs (default 1)")
    q.add_argument("--publish", action="append", default=[], metavar="HOST:GUEST[/tcp|udp]",
                   help="forward 127.0.0.1:HOST on this machine to the guest's port GUEST "
                   "(QEMU user networking; loopback only); repeatable")
    q.add_argument("--console-log", type=Path, default=None, metavar="FILE",
                   help="also write the serial console to FILE")
    q.add_argument("--timeout", type=float, default=600.0,
                   help="seconds before qemu is killed and the run fails (default 600)")
    q.add_argument("--shutdown-after", type=float, default=None, metavar="S",
                   help="after S seconds press the guest's ACPI power button (a clean "
                   "power-off, as SIGTERM to image-composer does)")
    q.add_argument("--arch", default=None, choices=("amd64", "arm64"),
                   help="the guest's architecture (default: from NAME.build.json beside the "
                   "outputs, else the kernel's header, else the host's); arm64 boots "
                   "qemu-system-aarch64 -M virt -cpu cortex-a57, under AAVMF for EFI formats")
    q.add_argument("--accel", default=None,
                   help="qemu accelerator (default: kvm if usable, else tcg)")
    q.set_defaults(func=run_qemu)


def run_qemu(args: argparse.Namespace) -> int:
    from composer.errors import UsageError
    from composer.run import qemu, vmctl

    iso_as_disk = "" in args.disks
    if args.cdrom and iso_as_disk:
        raise UsageError("--cdrom and --disk (with no file) exclude each other")
    disk = True if iso_as_disk else (False if args.cdrom else None)
    machine = vmctl.Machine(
        cpus=args.cpus, publish=tuple(vmctl.parse_publish(p) for p in args.publish),
        disks=tuple(vmctl.parse_disk(d) for d in args.disks if d),
        console_log=args.console_log, shutdown_after=args.shutdown_after)
    return qemu.run_qemu(Path(args.name), memory=args.mem, timeout=args.timeout,
                         accel=args.accel, uefi=args.uefi, disk=disk, machine=machine,
                         arch=args.arch)
