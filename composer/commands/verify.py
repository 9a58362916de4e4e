"""``image-composer verify``: rebuild a recorded build (a record, its SHA256SUMS, or a release in a
registry: ``verify REF [--attest --key K]``) and compare, or check attestations in a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from composer.defaults import log
from composer.errors import UsageError


def register(sub, common) -> None:
    v = sub.add_parser("verify", help="rebuild from a build record (or SHA256SUMS) in a fresh, "
                       "perturbed environment and compare every output")
    v.add_argument("target", metavar="RECORD|SHA256SUMS|REF",
                   help="a build record, its SHA256SUMS, or a release in a registry "
                   "(push --release): pulled, rebuilt and compared")
    v.add_argument("specs", type=Path, nargs="*", metavar="SPEC.yml",
                   help="the spec files (default: the copies in the record)")
    v.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="copy recorded images from this cache (read-only, digest-verified) "
                   "instead of fetching them from their registries")
    v.add_argument("--offline", action="store_true", help="never touch the network")
    v.add_argument("--bootloader", action="append", default=[], metavar="ROLE=PATH",
                   help="the file the build used for an overridden ISO bootloader role "
                   "(the record has only its digest); repeatable")
    v.add_argument("--keep", action="store_true", help="keep the rebuild directory")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.add_argument("--signatures", type=Path, default=None, metavar="FILE",
                   help="check the attestations in FILE instead of rebuilding")
    v.add_argument("--keys", type=Path, default=None, metavar="DIR",
                   help="trusted public keys (*.pub) for --signatures")
    v.add_argument("--threshold", type=int, default=1, metavar="N",
                   help="how many distinct trusted keys must have attested (default 1)")
    v.add_argument("--rebuild", action="store_true",
                   help="with --signatures: rebuild and compare as well")
    v.add_argument("--attest", action="store_true",
                   help="with REF: when every output was reproduced, sign that (--key) and "
                   "attach the attestation to the release")
    v.add_argument("--key", type=Path, default=None, metavar="KEY",
                   help="the private key for --attest (ed25519 or ECDSA P-256 PEM)")
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from composer import canonjson

    if args.signatures is None and (args.keys or args.threshold != 1):
        raise UsageError("--keys and --threshold go with --signatures")
    if args.attest != (args.key is not None):
        raise UsageError("--attest and --key go together")
    release = release_ref(args.target)
    if release is None and args.attest:
        raise UsageError("--attest needs a release REF (for a record: image-composer attest)")
    if release is not None and args.signatures is not None:
        raise UsageError("--signatures checks files; for a release: image-composer "
                         "attestations REF")
    args.target = Path(args.target) if release is None else args.target
    ok = True
    details: dict = {}
    lines: list[str] = []
    if args.signatures is not None:
        sig_ok, sig_lines, sig_details = check_signatures(args)
        ok, lines, details["signatures"] = sig_ok, sig_lines, sig_details
    if release is not None:
        from composer.images.resolve import default_client
        from composer.release.reproduce import verify_release

        outcome = verify_release(default_client(), release, args.specs, cache=args.cache,
                                 offline=args.offline, keep=args.keep, log=log,
                                 bootloaders=args.bootloader, attest_key=args.key)
        ok = outcome.ok
        lines += outcome.lines
        details["rebuild"] = {"ok": outcome.ok, **outcome.details}
    elif args.signatures is None or args.rebuild:
        from composer.repro.verify import verify_record

        outcome = verify_record(args.target, args.specs, cache=args.cache,
                                offline=args.offline, keep=args.keep, log=log,
                                bootloaders=args.bootloader)
        ok = ok and outcome.ok
        lines += outcome.lines
        details["rebuild"] = {"ok": outcome.ok, **outcome.details}
    lines.append("verified" if ok else "NOT verified")
    if args.json:
        sys.stdout.write(canonjson.pretty({"ok": ok, **details}).decode())
    else:
        print("\n".join(lines))
    return 0 if ok else 1


def release_ref(target: str):
    """The registry reference ``target`` names: not a file or a file's name, and its first
    component a registry (``HOST.DOMAIN``, ``HOST:PORT`` or ``localhost``), so a mistyped path
    never becomes a Docker Hub request."""
    from composer.oci.refs import Ref, RefError, parse_ref

    first = target.split("/", 1)[0]
    if Path(target).exists() or target.endswith((".json", "SHA256SUMS")) or "/" not in target \
            or not ("." in first or ":" in first or first == "localhost"):
        return None
    try:
        ref = parse_ref(target)
    except RefError:
        return None
    return ref if isinstance(ref, Ref) else None


def check_signatures(args: argparse.Namespace) -> tuple[bool, list[str], dict]:
    from composer.repro.attest import check_envelope, load_public_keys
    from composer.repro.verify import locate_record

    if args.keys is None:
        raise UsageError("--signatures needs --keys DIR")
    if args.threshold < 1:
        raise UsageError("--threshold must be at least 1")
    record_path, _ = locate_record(args.target)
    keys = load_public_keys(args.keys)
    check = check_envelope(record_path.read_bytes(), args.signatures, keys)
    ok = len(check.valid) >= args.threshold
    lines = [*check.lines(), f"{len(check.valid)} of {args.threshold} required independent "
             f"attestation(s) of {record_path.name}"]
    return ok, lines, {"ok": ok, "valid": list(check.valid), "rejected": list(check.rejected),
                       "threshold": args.threshold}
