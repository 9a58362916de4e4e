"""``image-composer cache remote ls|rm|prune REF``: look after a remote build cache
(:mod:`composer.cache.remote.housekeeping`)."""

from __future__ import annotations

import argparse


def register(cache_sub) -> None:
    """Add ``remote`` under ``cache`` (called by :mod:`composer.commands.cache`)."""
    remote = cache_sub.add_parser(
        "remote", help="list, remove and prune entries of a remote cache (a registry "
        "repository)").add_subparsers(dest="remote_command", required=True,
                                      parser_class=cache_sub._parser_class)

    def add(name: str, helptext: str, func) -> argparse.ArgumentParser:
        p = remote.add_parser(name, help=helptext)
        p.add_argument("ref", metavar="REF", help="the cache repository (REGISTRY/NAME)")
        p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                       help="talk plain HTTP to HOST")
        p.set_defaults(func=func)
        return p

    add("ls", "list the entries: tag, format, size, published, signer", run_ls)
    add("rm", "remove the entries of a cache key (or one entry by tag)", run_rm).add_argument(
        "keys", nargs="+", metavar="KEY")
    prune = add("prune", "remove entries older than a duration, then the oldest beyond a size",
                run_prune)
    prune.add_argument("--older-than", metavar="DURATION", help="e.g. 12h, 7d, 2w")
    prune.add_argument("--max-size", metavar="SIZE", help="e.g. 500M, 20G")
    prune.add_argument("--dry-run", action="store_true", help="print what would go")


def _repo(args: argparse.Namespace):
    from composer.cache.remote.transport import Repo, default_client, repository

    return Repo(repository(args.ref), default_client(tuple(args.insecure_registry)))


def run_ls(args: argparse.Namespace) -> int:
    from composer.cache.remote.housekeeping import list_entries

    for item in list_entries(_repo(args)):
        print(item.line())
    return 0


def run_rm(args: argparse.Namespace) -> int:
    from composer.cache.remote.housekeeping import remove

    repo = _repo(args)
    for key in args.keys:
        for tag in remove(repo, key):
            print(f"removed {tag}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from composer.cache.remote.housekeeping import parse_duration, parse_size, prune

    doomed = prune(_repo(args),
                   parse_duration(args.older_than) if args.older_than else None,
                   parse_size(args.max_size) if args.max_size else None, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for item in doomed:
        print(f"{verb} {item.tag}\t{item.size}\t{item.created or '-'}")
    return 0
