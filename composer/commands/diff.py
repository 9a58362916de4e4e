"""``image-composer diff A B``: what differs between two outputs of the same format, or between
two output directories, file by file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub, common) -> None:
    d = sub.add_parser("diff", help="say what differs between two outputs (tar, initrd, ISO, "
                       "docker archive, build record, ...) or two output directories")
    d.add_argument("a", type=Path, metavar="A")
    d.add_argument("b", type=Path, metavar="B")
    d.add_argument("--json", action="store_true", help="print the differences as JSON")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when identical, 1 when they differ (like diff(1))."""
    from composer import canonjson
    from composer.errors import ComposerError
    from composer.repro.diff import diff_files

    if args.a.is_dir() or args.b.is_dir():
        from composer.repro.dirdiff import diff_dirs

        if not (args.a.is_dir() and args.b.is_dir()):
            raise ComposerError(f"{args.a if args.b.is_dir() else args.b}: not a directory "
                                "(compare two files or two directories)")
        report = diff_dirs(args.a, args.b)
    else:
        report = diff_files(args.a, args.b)
    if args.json:
        sys.stdout.write(canonjson.pretty(report.as_json()).decode())
    else:
        print("\n".join(report.lines()))
    return 0 if report.identical else 1
