"""``image-composer attestations REF``: the attestations of a release, and whether enough
distinct trusted keys vouch for its outputs (:mod:`composer.release.trust`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from composer.errors import UsageError


def register(sub, common) -> None:
    a = sub.add_parser("attestations", help="list a release's attestations; exit 0 only when "
                       "--threshold distinct --trust keys attest to its output digests")
    a.add_argument("ref", metavar="REF", help="the release (push --release), by tag or digest")
    a.add_argument("--trust", type=Path, action="append", default=[], metavar="KEY.pub",
                   help="a trusted public key (PEM: ed25519 or ECDSA P-256); repeatable")
    a.add_argument("--threshold", type=int, default=1, metavar="N",
                   help="how many distinct trusted keys must attest (default 1)")
    a.add_argument("--json", action="store_true", help="print the result as JSON")
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from composer import canonjson
    from composer.images.resolve import default_client
    from composer.oci.refs import Ref, parse_ref
    from composer.release.trust import check
    from composer.repro.attest import trusted_keys

    if not args.trust:
        raise UsageError("attestations needs at least one --trust KEY.pub")
    if args.threshold < 1:
        raise UsageError("--threshold must be at least 1")
    ref = parse_ref(args.ref)
    if not isinstance(ref, Ref):
        raise UsageError(f"attestations: {args.ref!r} is not a registry reference")
    keys = trusted_keys(list(args.trust))
    report = check(default_client(), ref, keys)
    ok = len(report.trusted) >= args.threshold
    if args.json:
        sys.stdout.write(canonjson.pretty(report.as_json(args.threshold)).decode())
    else:
        lines = [f"release {report.release}", *report.lines,
                 *(f"rejected: {r}" for r in report.rejected),
                 f"{len(report.trusted)} of {args.threshold} required distinct trusted key(s) "
                 "attest to these outputs", "trusted" if ok else "NOT trusted"]
        print("\n".join(lines))
    return 0 if ok else 1
