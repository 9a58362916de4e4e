"""``image-composer run qemu``: boot outputs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub, common) -> None:
    run_p = sub.add_parser("run", help="boot outputs").add_subparsers(
        dest="run_command", required=True, parser_class=sub._parser_class)
    q = run_p.add_parser("qemu", help="boot NAME-kernel + NAME-initrd.img, or an ISO, in "
                         "qemu-system-x86_64")
    q.add_argument("name", help="path prefix of the outputs, e.g. out/hello, or an ISO file "
                   "(NAME.iso)")
    fw = q.add_mutually_exclusive_group()
    fw.add_argument("--bios", dest="uefi", action="store_false", default=False,
                    help="boot with SeaBIOS (the default)")
    fw.add_argument("--uefi", dest="uefi", action="store_true", default=False,
                    help="boot with OVMF (UEFI; apt-get install ovmf)")
    media = q.add_mutually_exclusive_group()
    media.add_argument("--cdrom", dest="disk", action="store_false", default=None,
                       help="attach the ISO as a CD-ROM (the default for .iso)")
    media.add_argument("--disk", dest="disk", action="store_true", default=None,
                       help="attach the ISO as a hard disk, as if written to a USB stick")
    q.add_argument("--mem", default="512", help="memory in MiB (default 512)")
    q.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    q.add_argument("--accel", default=None,
                   help="qemu accelerator (default: kvm if usable, else tcg)")
    q.set_defaults(func=run_qemu)


def run_qemu(args: argparse.Namespace) -> int:
    from composer.run import qemu

    return qemu.run_qemu(Path(args.name), memory=args.mem, timeout=args.timeout,
                         accel=args.accel, uefi=args.uefi, disk=args.disk)
