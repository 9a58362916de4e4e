"""``image-composer cache ...``: look after the image cache (``verify`` and ``gc`` here; linuxkit's
``ls``, ``rm``, ``clean``, ``import``, ``export``, ``pull``, ``push`` in :mod:`.cache_linuxkit`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from composer.defaults import default_cache_dir
from composer.errors import ComposerError


def register(sub, common) -> None:
    cache = sub.add_parser("cache", help="list, check and prune the image cache").add_subparsers(
        dest="cache_command", required=True, parser_class=sub._parser_class)

    def add(name: str, helptext: str, func) -> argparse.ArgumentParser:
        p = cache.add_parser(name, help=helptext)
        p.add_argument("--cache", type=Path, help="image cache directory "
                       "(default: $IMAGE_COMPOSER_CACHE, else $LINUXKIT_CACHE, else "
                       "$XDG_CACHE_HOME/image-composer)")
        p.set_defaults(func=func)
        return p

    add("gc", "evict least-recently-used entries until the cache fits a size "
        "(waits for running builds)", run_gc).add_argument(
        "--max-size", required=True, metavar="SIZE", help="e.g. 500M, 2G")
    add("verify", "re-hash every blob; fail if any is corrupt", run_verify)
    from composer.commands import cache_linuxkit

    cache_linuxkit.register(add)  # ls, rm, clean, import, export, pull, push: linuxkit's args
    from composer.commands.cache_remote import register as register_remote

    register_remote(cache)


def _cache(args: argparse.Namespace):
    from composer.images.cache import Cache

    return Cache(args.cache or default_cache_dir())


def run_gc(args: argparse.Namespace) -> int:
    from composer.cache.gc import gc, parse_size
    from composer.progress import human

    try:
        limit = parse_size(args.max_size)
    except ValueError as exc:
        raise ComposerError(f"--max-size: {exc}") from None
    evicted, before, after = gc(_cache(args), limit)
    for entry in evicted:
        print(f"evicted {entry.kind} {entry.key}")
    print(f"{human(before)} -> {human(after)}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from composer.cache.maintain import verify

    cache = _cache(args)
    problems = verify(cache)
    if problems:
        for line in problems[:-1]:
            print(f"error: {line}", flush=True, file=sys.stderr)
        raise ComposerError(problems[-1] + f" ({len(problems)} problems in {cache.root})")
    print(f"{cache.root}: ok")
    return 0


