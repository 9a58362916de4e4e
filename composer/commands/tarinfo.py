"""``image-composer check-tar`` and ``explain``: inspect canonical rootfs tars."""

from __future__ import annotations

import argparse
from pathlib import Path

from composer.errors import ComposerError


def register(sub, common) -> None:
    c = sub.add_parser("check-tar", help="check that a tar is a canonical rootfs tar")
    c.add_argument("tar", type=Path)
    c.set_defaults(func=run_check)
    e = sub.add_parser("explain", help="say where a path in a rootfs tar came from")
    e.add_argument("tar", type=Path)
    e.add_argument("path")
    e.set_defaults(func=run_explain)


def _exists(path: Path) -> None:
    if not path.is_file():
        raise ComposerError(f"{path}: no such file")


def run_check(args: argparse.Namespace) -> int:
    from composer.tar.check import check_tar

    _exists(args.tar)
    problem = check_tar(args.tar)
    if problem is not None:
        raise ComposerError(f"{args.tar}: not canonical: {problem}")
    print(f"{args.tar}: canonical")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from composer.tar.check import explain

    _exists(args.tar)
    for line in explain(args.tar, args.path):
        print(line)
    return 0
