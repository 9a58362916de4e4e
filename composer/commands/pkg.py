"""``image-composer pkg build|show-tag``: package directories -> images in the cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from composer.defaults import default_cache_dir, host_arch, parse_arches


def register(sub, common) -> None:
    pkg = sub.add_parser("pkg", help="package images").add_subparsers(
        dest="pkg_command", required=True, parser_class=sub._parser_class)
    pb = pkg.add_parser("build", help="build a package directory into an image in the cache")
    pb.add_argument("directory", type=Path, nargs="+")
    pb.add_argument("--debs", type=Path, default=None, metavar="DIR",
                    help="where the pinned .deb files are (default: DIRECTORY/../../debs)")
    pb.epilog = ("--arch amd64,arm64 builds an image per architecture and tags a "
                 "multi-platform index over them")
    pb.add_argument("--layout", type=Path, default=None, metavar="DIR",
                    help="also write the image into this OCI image layout directory")
    common(pb)
    pb.set_defaults(func=run_build)
    ps = pkg.add_parser("show-tag", help="print the ref a package directory builds")
    ps.add_argument("directory", type=Path, nargs="+")
    ps.set_defaults(func=run_show_tag)


def run_show_tag(args: argparse.Namespace) -> int:
    from composer.pkg import package as pkg

    for directory in args.directory:
        print(pkg.package_ref(directory))
    return 0


def run_build(args: argparse.Namespace) -> int:
    from composer.epoch import resolve_epoch
    from composer.images.cache import Cache
    from composer.pkg import build as pkg

    cache = Cache(args.cache or default_cache_dir())
    arches = parse_arches(args.arch) if args.arch else (host_arch(),)
    epoch = resolve_epoch(args.source_date_epoch)
    for directory in args.directory:
        result = pkg.build_package(directory, cache, epoch=epoch, arch=arches,
                                   debs_dir=args.debs, layout=args.layout)
        print(result)
    return 0
