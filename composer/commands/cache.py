"""``image-composer cache ls|rm|clean|verify|import|export``: look after the image cache."""

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
                       "(default: $IMAGE_COMPOSER_CACHE, else $XDG_CACHE_HOME/image-composer)")
        p.set_defaults(func=func)
        return p

    add("ls", "list the refs in the cache", run_ls)
    add("rm", "forget refs (their blobs go at the next clean)", run_rm).add_argument(
        "refs", nargs="+", metavar="REF")
    add("clean", "delete every blob no ref reaches, and stray temporary files", run_clean)
    add("verify", "re-hash every blob; fail if any is corrupt", run_verify)
    add("import", "add the tagged images of an OCI archive", run_import).add_argument(
        "file", type=Path, metavar="FILE")
    from composer.commands.cache_remote import register as register_remote

    register_remote(cache)
    export = add("export", "write a ref and its blobs as an OCI archive", run_export)
    export.add_argument("ref", metavar="REF")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")


def _cache(args: argparse.Namespace):
    from composer.images.cache import Cache

    return Cache(args.cache or default_cache_dir())


def _name(cache, text: str) -> str:
    """A ref as the user typed it -> the name the cache keeps it under."""
    from composer.oci.refs import Ref, RefError, parse_ref

    if cache.lookup(text) is not None:
        return text
    try:
        ref = parse_ref(text)
    except RefError:
        return text
    if isinstance(ref, Ref):
        return ref.cache_name if ref.tag else f"{ref.name}@{ref.digest}"
    return text


def run_ls(args: argparse.Namespace) -> int:
    from composer.cache.maintain import list_refs
    from composer.progress import human

    for info in list_refs(_cache(args)):
        state = "" if info.complete else "  (incomplete)"
        print(f"{info.name}\t{info.digest}\t{human(info.size)}{state}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    from composer.cache.maintain import remove

    cache = _cache(args)
    remove(cache, [_name(cache, r) for r in args.refs])
    return 0


def run_clean(args: argparse.Namespace) -> int:
    from composer.cache.maintain import clean
    from composer.progress import human

    count, size = clean(_cache(args))
    print(f"removed {count} files, {human(size)}")
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


def run_import(args: argparse.Namespace) -> int:
    from composer.cache.maintain import import_archive

    for name in import_archive(_cache(args), args.file):
        print(name)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from composer.cache.maintain import export

    cache = _cache(args)
    export(cache, _name(cache, args.ref), args.output)
    print(args.output)
    return 0
