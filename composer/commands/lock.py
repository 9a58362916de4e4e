"""``image-composer lock SPEC...``: pin every image ref of the specs in ``SPEC.lock``.

Also home of the fetch options build shares (``--docker``, ``--insecure-registry``, ``--quiet``,
and linuxkit's ``--mirror``, ``--cert-file``, ``--verbose``)
and :func:`resolver_from_args`, so both commands resolve images the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from composer.defaults import default_cache_dir, host_arch, log


def add_fetch_options(p: argparse.ArgumentParser) -> None:
    """Options for commands that fetch images (build, lock)."""
    p.add_argument("--docker", action="store_true",
                   help="try the local Docker engine before registries")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="talk plain HTTP to this registry (loopback always does); repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    from composer.commands.lkflags import add_network_options, add_verbose

    add_network_options(p)
    add_verbose(p)


def resolver_from_args(args: argparse.Namespace, cache, arch: str):
    """A :class:`composer.images.lock.Resolver` for parsed arguments (build's and lock's)."""
    from composer.images.lock import Resolver
    from composer.images.network import network_from_args
    from composer.images.resolve import default_client
    from composer.progress import for_stream

    quiet = getattr(args, "quiet", False)
    offline = getattr(args, "offline", False)
    client = None if offline else default_client(network=network_from_args(args))
    return Resolver(cache=cache, arch=arch, pull=getattr(args, "pull", False), offline=offline,
                    docker=getattr(args, "docker", False), client=client,
                    progress=for_stream(sys.stderr, quiet),
                    log=(lambda _m: None) if quiet else log)


def register(sub, common) -> None:
    p = sub.add_parser("lock", help="pin every image ref of the specs in SPEC.lock")
    p.add_argument("specs", nargs="+", type=Path, metavar="SPEC.yml")
    p.add_argument("--update", action="store_true",
                   help="re-resolve every tag from its registry (default: keep existing pins)")
    p.add_argument("--arch", action="append", default=None,
                   help="architecture to pin; repeatable or comma-separated (default: the "
                   "host's, plus any "
                   "the lock already has)")
    p.add_argument("--cache", type=Path, help="image cache directory "
                   "(default: $IMAGE_COMPOSER_CACHE, else $LINUXKIT_CACHE, else "
                   "$XDG_CACHE_HOME/image-composer)")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    add_fetch_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from composer.errors import UsageError
    from composer.images.cache import Cache
    from composer.images.lock import update_lock, wanted_from_spec
    from composer.spec import load_spec

    if args.update and args.offline:
        raise UsageError("--update and --offline cannot be used together")
    spec = load_spec(list(args.specs))
    cache = Cache(args.cache or default_cache_dir())
    from composer.defaults import parse_arches

    arches = [a for text in args.arch for a in parse_arches(text)] if args.arch else [host_arch()]
    resolver = resolver_from_args(args, cache, arches[0])
    with cache.in_use():
        path, lock = update_lock(wanted_from_spec(spec), args.specs, arches, resolver,
                                 update=args.update)
    if not args.quiet:
        pins = sum(len(a) for a in lock.images.values())
        log(f"{path}: {len(lock.images)} refs, {pins} pins")
    print(path)
    return 0
