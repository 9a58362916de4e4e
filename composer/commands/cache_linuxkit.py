"""``image-composer cache ls|rm|clean|export|import|pull|push`` with linuxkit's arguments.

The subcommands linuxkit has (``src/cmd/linuxkit/cache_*.go``), each a superset of what this
cache offered before: ``ls [--format linuxkit]``, ``rm [--published-only] REF...``, ``clean
[--published-only | --all]``, ``export [--format oci|docker|filesystem] [--platform P]
[--name N] (--outfile FILE|- | -o FILE) REF``, ``import FILE|-``, ``pull REF...``, ``push
[--remote-name N] [--with-arch-tags] [--override] REF...``. Registered by
:mod:`composer.commands.cache` (``cache verify`` and the rest live there).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from composer.defaults import default_cache_dir, host_arch, log
from composer.errors import UsageError

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def _network(p: argparse.ArgumentParser) -> None:
    from composer.commands.lkflags import add_network_options

    add_network_options(p)
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="talk plain HTTP to this registry (loopback always may); repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def register(add: Add) -> None:
    ls = add("ls", "list the refs in the cache", run_ls)
    ls.add_argument("--format", choices=("table", "linuxkit"), default="table",
                    help="table: name, digest, size (default); linuxkit: as `linuxkit cache "
                    "ls` prints it")
    rm = add("rm", "forget refs (their blobs go at the next clean)", run_rm)
    rm.add_argument("refs", nargs="+", metavar="REF")
    rm.add_argument("--published-only", action="store_true",
                    help="only refs the registry has under the same digest (linuxkit's)")
    _network(rm)
    clean = add("clean", "delete every blob no ref reaches, and stray temporary files",
                run_clean)
    how = clean.add_mutually_exclusive_group()
    how.add_argument("--published-only", action="store_true",
                     help="forget the refs the registry has under the same digest, then clean")
    how.add_argument("--all", action="store_true",
                     help="empty the cache, as `linuxkit cache clean` does")
    _network(clean)
    imp = add("import", "add the tagged images of an OCI archive ('-': stdin)", run_import)
    imp.add_argument("file", metavar="FILE|-")
    export = add("export", "write a ref as an OCI archive, a docker archive or its filesystem",
                 run_export)
    export.add_argument("ref", metavar="REF")
    out = export.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", type=Path, metavar="FILE",
                     help="write the ref as cached (every platform in it), unless --platform "
                     "or --format docker|filesystem")
    out.add_argument("--outfile", metavar="FILE|-",
                     help="linuxkit's: write one platform's image to FILE, or stdout ('-')")
    export.add_argument("--format", choices=("oci", "docker", "filesystem"), default="oci",
                        help="oci: OCI archive (default); docker: `docker load` archive; "
                        "filesystem: the image's flattened files as a tar")
    export.add_argument("--platform", default=None, metavar="linux/ARCH[/VARIANT]",
                        help="the image to take from an index (default with --outfile: "
                        "the host's)")
    export.add_argument("--name", default=None, metavar="REF",
                        help="the name in the archive (oci, docker) instead of REF")
    pull = add("pull", "fetch images from their registries into the cache", run_pull)
    pull.add_argument("refs", nargs="+", metavar="REF")
    pull.add_argument("--platform", action="append", default=None, metavar="linux/ARCH",
                      help="platform to fetch from an index; repeatable (default: every linux "
                      "platform it lists, as linuxkit)")
    _network(pull)
    push = add("push", "push cached images to their registries", run_push)
    push.add_argument("refs", nargs="+", metavar="REF")
    push.add_argument("--remote-name", default=None, metavar="REF",
                      help="push under this name instead (one REF only)")
    push.add_argument("--with-arch-tags", action="store_true",
                      help="for an index, also tag each platform's image TAG-ARCH")
    push.add_argument("--override", action="store_true",
                      help="push even if the registry already has the tag")
    _network(push)


def cache_of(args: argparse.Namespace):
    from composer.images.cache import Cache

    return Cache(args.cache or default_cache_dir())


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    return (lambda _m: None) if getattr(args, "quiet", False) else log


def _client(args: argparse.Namespace):
    from composer.images.network import network_from_args
    from composer.images.resolve import default_client

    return default_client(network=network_from_args(args))


def run_ls(args: argparse.Namespace) -> int:
    from composer.cache.linuxkit import listing
    from composer.cache.maintain import list_refs
    from composer.progress import human

    cache = cache_of(args)
    if args.format == "linuxkit":
        for line in listing(cache):
            print(line)
        return 0
    for info in list_refs(cache):
        state = "" if info.complete else "  (incomplete)"
        print(f"{info.name}\t{info.digest}\t{human(info.size)}{state}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    from composer.cache.linuxkit import cache_name, remove

    cache = cache_of(args)
    names = [cache_name(cache, r) for r in args.refs]
    remove(cache, names, published_only=args.published_only,
           client=_client(args) if args.published_only else None, log=_say(args))
    return 0


def run_clean(args: argparse.Namespace) -> int:
    from composer.cache.linuxkit import empty, remove
    from composer.cache.maintain import clean
    from composer.progress import human

    cache = cache_of(args)
    if args.all:
        empty(cache)
        _say(args)(f"Cache emptied: {cache.root}")
        return 0
    if args.published_only and cache.root.is_dir():
        names = [name for name, _desc in cache.refs()]
        remove(cache, names, published_only=True, client=_client(args), log=_say(args))
    count, size = clean(cache)
    print(f"removed {count} files, {human(size)}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from composer.cache.linuxkit import spooled
    from composer.cache.maintain import import_archive

    cache = cache_of(args)
    if args.file == "-":
        with spooled(cache, sys.stdin.buffer) as path:
            names = import_archive(cache, path)
    else:
        names = import_archive(cache, Path(args.file))
    for name in names:
        print(name)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from composer.atomic import atomic_file
    from composer.cache import maintain
    from composer.cache.linuxkit import cache_name, export, parse_platform

    cache = cache_of(args)
    name = cache_name(cache, args.ref)
    whole = args.outfile is None and args.platform is None and args.format == "oci"
    if whole:  # the ref as cached, every platform in it (this tool's own export)
        if args.name:
            raise UsageError("--name needs --outfile or --platform (one platform's image)")
        maintain.export(cache, name, args.output)
        print(args.output)
        return 0
    arch = parse_platform(args.platform) if args.platform else host_arch()
    dest = args.outfile if args.outfile is not None else str(args.output)
    if dest == "-":
        export(cache, name, arch, args.format, sys.stdout.buffer, args.name)
        sys.stdout.buffer.flush()
        return 0
    path = Path(dest)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:
        export(cache, name, arch, args.format, fh, args.name)
    print(path)
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from composer.cache.linuxkit import parse_platform, pull

    arches = [parse_platform(p) for p in args.platform] if args.platform else None
    for name in pull(cache_of(args), args.refs, arches, _client(args), _say(args),
                     default_arch=host_arch()):
        print(name)
    return 0


def run_push(args: argparse.Namespace) -> int:
    from composer.cache.linuxkit import cache_name, push

    if args.remote_name and len(args.refs) > 1:
        raise UsageError("--remote-name takes one REF")
    cache = cache_of(args)
    client = _client(args)
    for ref in args.refs:
        pushed = push(cache, cache_name(cache, ref), remote_name=args.remote_name,
                      with_arch_tags=args.with_arch_tags, override=args.override,
                      client=client, log=_say(args))
        if pushed:
            print(pushed)
    return 0
