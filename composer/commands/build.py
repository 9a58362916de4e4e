"""``image-composer build``: spec files -> outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from composer.errors import UsageError
from composer.options import default_cache_dir, host_arch, log


def register(sub, common) -> None:
    b = sub.add_parser("build", help="build outputs from spec files")
    b.add_argument("specs", nargs="+", type=Path, metavar="SPEC.yml")
    b.add_argument("-f", "--format", action="append", dest="formats", metavar="FORMAT",
                   help="output format; repeat or comma-separate (default: kernel+initrd)")
    b.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help="output directory (default: the current directory)")
    b.add_argument("--name", default=None, help="output base name (default: first spec's stem)")
    b.add_argument("--pull", action="store_true", help="re-resolve tags from the registry")
    b.add_argument("--offline", action="store_true", help="never touch the network")
    common(b)
    b.set_defaults(func=run)


def formats(values: list[str] | None) -> list[str]:
    from outputs import FORMATS

    out: list[str] = []
    for value in values or ["kernel+initrd"]:
        for fmt in filter(None, (v.strip() for v in value.split(","))):
            if fmt not in FORMATS:
                raise UsageError(f"unknown format {fmt!r} (known: {', '.join(sorted(FORMATS))})")
            if fmt not in out:
                out.append(fmt)
    return out


def run(args: argparse.Namespace) -> int:
    from composer.build import BuildRequest, run_build

    if args.pull and args.offline:
        raise UsageError("--pull and --offline cannot be used together")
    request = BuildRequest(
        specs=tuple(args.specs),
        formats=tuple(formats(args.formats)),
        output_dir=args.output or Path.cwd(),
        name=args.name or args.specs[0].stem,
        arch=args.arch or host_arch(),
        cache_dir=args.cache or default_cache_dir(),
        pull=args.pull,
        offline=args.offline,
        source_date_epoch=args.source_date_epoch,
    )
    for path in run_build(request, log=log):
        print(path)
    return 0
