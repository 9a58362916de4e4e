"""``image-composer attest``: sign a build record as an in-toto statement (DSSE; ed25519 or
ECDSA P-256)."""

from __future__ import annotations

import argparse
from pathlib import Path

from composer.errors import ComposerError, UsageError


def register(sub, common) -> None:
    a = sub.add_parser("attest", help="sign a build record; signatures of several rebuilders "
                       "accumulate in one file")
    a.add_argument("record", type=Path, nargs="?", metavar="RECORD")
    a.add_argument("--key", type=Path, default=None, metavar="KEY",
                   help="private key (PEM, PKCS#8): ed25519 or ECDSA P-256")
    a.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="the signatures file (default: NAME.intoto.json next to the record)")
    a.add_argument("--generate-key", type=Path, default=None, metavar="KEY",
                   help="write a new key pair to KEY and KEY.pub, then exit")
    a.add_argument("--key-type", choices=("ed25519", "ecdsa-p256"), default="ed25519",
                   help="with --generate-key: the kind of key (default ed25519)")
    a.set_defaults(func=run)


def default_output(record: Path) -> Path:
    name = record.name.removesuffix(".build.json")
    return record.with_name(f"{name}.intoto.json")


def run(args: argparse.Namespace) -> int:
    from composer.repro import attest

    if args.generate_key is not None:
        if args.record or args.key:
            raise UsageError("--generate-key takes no RECORD or --key")
        _private, public = attest.generate_key(args.generate_key, args.key_type)
        print(public)
        return 0
    if args.record is None or args.key is None:
        raise UsageError("attest needs RECORD and --key KEY")
    if not args.record.is_file():
        raise ComposerError(f"{args.record}: no such file")
    out = args.output or default_output(args.record)
    kid = attest.sign(args.record.read_bytes(), args.key, out)
    print(f"{out}: signed by {kid}")
    return 0
