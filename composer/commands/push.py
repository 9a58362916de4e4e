"""``image-composer push FILE... REF``: push ``docker``/``oci``/``oci-dir`` outputs to a registry.

One FILE is pushed as it is; several (one per ``--arch`` build) as one multi-platform index.
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
                       "(several files: one multi-platform index)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="NAME-docker.tar, NAME-oci.tar or the NAME-oci directory")
    p.add_argument("ref", metavar="REF", help="where to push, e.g. registry.example/name:tag")
    p.set_defaults(func=run)


def _pusher(log: Callable[[str], None]):
    from composer.images.auth import docker_credentials
    from composer.images.push import Pusher
    from composer.images.registry import RegistryClient

    # the same credentials pulling uses
    return Pusher(client=RegistryClient(credentials=docker_credentials()), log=log)


def push_files(files: list[Path], ref_text: str, log: Callable[[str], None] = log) -> str:
    """Push and return ``NAME@DIGEST``."""
    from composer.images.push import push
    from composer.oci.refs import Ref, parse_ref

    ref = parse_ref(ref_text)
    if not isinstance(ref, Ref):
        raise UsageError(f"push: {ref_text!r} is not a registry reference")
    for path in files:
        if not path.exists():
            raise ComposerError(f"{path}: no such file")
    return push(list(files), ref, _pusher(log)).pinned


def publish(outputs: list[list[Path]], *, push_ref: str | None = None, load: bool = False,
            log: Callable[[str], None] = log) -> list[str]:
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
        lines.append(push_files(found, push_ref, log))
    if load:
        [image] = found
        if not image.name.endswith("-docker.tar"):
            raise UsageError("--load needs the docker format (-f docker)")
        from composer.images.load import load_archive

        lines.extend(f"loaded {tag}" for tag in load_archive(image))
    return lines


def run(args: argparse.Namespace) -> int:
    print(push_files(args.files, args.ref))
    return 0
