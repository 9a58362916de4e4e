"""``image-composer push FILE... REF``: push ``docker``/``oci``/``oci-dir`` outputs to a registry.

One FILE is pushed as it is (``build --arch amd64,arm64``'s one ``NAME-oci.tar``: its index);
several (one per ``--arch`` build) as one multi-platform index, the same bytes.
``push --release REF NAME.build.json`` pushes a whole build as a release (:mod:`composer.release`).
The pushed manifest's digest is printed as ``NAME@DIGEST``. :func:`publish` is what
``build --push/--load`` calls once the outputs are committed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from composer.defaults import log
from composer.errors import ComposerError, UsageError


def register(sub, common) -> None:
    p = sub.add_parser("push", help="push docker/oci outputs to a registry "
                       "(several files: one multi-platform index), or a build as a release",
                       usage="image-composer push FILE... REF\n"
                       "       image-composer push --release REF NAME.build.json [--key KEY]")
    p.add_argument("args", nargs="+", metavar="ARG",
                   help="NAME-docker.tar, NAME-oci.tar or the NAME-oci directory, then where "
                   "to push, e.g. registry.example/name:tag; with --release: NAME.build.json")
    p.add_argument("--release", default=None, metavar="REF",
                   help="push every output of the build NAME.build.json describes as one OCI "
                   "artifact at REF, with its record, SBOM and signed SHA256SUMS as referrers")
    p.add_argument("--key", type=Path, default=None, metavar="KEY",
                   help="with --release: sign SHA256SUMS and the SLSA provenance with KEY "
                   "(ed25519 or ECDSA P-256 PEM)")
    from composer.commands.lkflags import add_network_options

    add_network_options(p)  # --cert-file counts for pushes; --mirror only for pulls
    p.set_defaults(func=run)


def _pusher(log: Callable[[str], None], network=None):
    from composer.images.push import Pusher
    from composer.images.resolve import default_client

    # the same credentials (and --cert-file CAs) pulling uses
    return Pusher(client=default_client(network=network), log=log)


def push_files(files: list[Path], ref_text: str, log: Callable[[str], None] = log,
               network=None) -> str:
    """Push and return ``NAME@DIGEST``."""
    from composer.images.push import push
    from composer.oci.refs import Ref, parse_ref

    ref = parse_ref(ref_text)
    if not isinstance(ref, Ref):
        raise UsageError(f"push: {ref_text!r} is not a registry reference")
    for path in files:
        if not path.exists():
            raise ComposerError(f"{path}: no such file")
    return push(list(files), ref, _pusher(log, network)).pinned


def publish(outputs: list[list[Path]], *, push_ref: str | None = None, load: bool = False,
            log: Callable[[str], None] = log, network=None) -> list[str]:
    """After a build committed ``outputs`` (one list per architecture): push its image
    outputs (several architectures: one multi-platform index) and/or load the image.

    Returns the lines to print (``NAME@DIGEST`` for a push, the loaded tags for a load).
    """
    from composer.images.push import image_output

    if not push_ref and not load:
        return []
    images = [image_output(paths) for paths in outputs]
    if any(image is None for image in images):
        raise UsageError("--push and --load need an image output: add -f docker "
                         "(or oci / oci-dir for --push)")
    found = [image for image in images if image is not None]
    lines = []
    if push_ref:
        lines.append(push_files(found, push_ref, log, network))
    if load:
        [image] = found
        if not image.name.endswith("-docker.tar"):
            raise UsageError("--load needs the docker format (-f docker)")
        from composer.images.load import load_archive

        lines.extend(f"loaded {tag}" for tag in load_archive(image))
    return lines


def push_release(record: Path, ref_text: str, key: Path | None,
                 log: Callable[[str], None] = log, network=None) -> list[str]:
    """``push --release``: the lines to print (``NAME@DIGEST``, then each referrer)."""
    from composer.oci.refs import Ref, parse_ref
    from composer.release.publish import push_release as publish_release

    ref = parse_ref(ref_text)
    if not isinstance(ref, Ref):
        raise UsageError(f"push --release: {ref_text!r} is not a registry reference")
    if not record.is_file():
        raise ComposerError(f"{record}: no such file")
    done = publish_release(record, ref, _pusher(log, network), key)
    return [done.pinned, *(f"  {line}" for line in done.referrers)]


def run(args: argparse.Namespace) -> int:
    from composer.images.network import network_from_args

    network = network_from_args(args)
    if args.release is not None:
        if len(args.args) != 1 or not args.args[0].endswith(".build.json"):
            raise UsageError("push --release REF takes one NAME.build.json")
        print("\n".join(push_release(Path(args.args[0]), args.release, args.key,
                                     network=network)))
        return 0
    if args.key is not None:
        raise UsageError("--key goes with --release")
    if len(args.args) < 2:
        raise UsageError("push needs FILE... REF")
    *files, ref = args.args
    print(push_files([Path(f) for f in files], ref, network=network))
    return 0
