"""``image-composer report RECORD [RECORD]``: one self-contained HTML page about a build."""

from __future__ import annotations

import argparse
from pathlib import Path

from composer.errors import UsageError


def register(sub, common) -> None:
    r = sub.add_parser("report", help="write an HTML page of what is in a build and why (with "
                       "two records: what changed from the first to the second)")
    r.add_argument("records", type=Path, nargs="+", metavar="NAME.build.json",
                   help="the build record; with two, A then B: the page for B, changes from A")
    r.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="the HTML file (default: NAME.report.html beside the record; with two "
                   "records NAME.diff.html beside B)")
    r.add_argument("--tar", type=Path, action="append", default=[], metavar="NAME.tar",
                   help="the rootfs tar of a record (repeat for A and B); default: the tar "
                   "output beside it, else the one the cache keeps")
    r.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="the image cache, for the rootfs tar and for layers (default: "
                   "$IMAGE_COMPOSER_CACHE or ~/.cache/image-composer)")
    r.add_argument("--keys", type=Path, default=None, metavar="DIR",
                   help="trusted public keys (*.pub) to check NAME.intoto.json with")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from composer.defaults import default_cache_dir
    from composer.report import render

    if len(args.records) > 2:
        raise UsageError("report takes one build record, or two to compare")
    if len(args.tar) > len(args.records):
        raise UsageError("--tar: at most one per record")
    tars: list[Path | None] = [*args.tar, *[None] * (len(args.records) - len(args.tar))]
    cache = args.cache or default_cache_dir()
    builds = [render.read_build(path, tar=tar, cache=cache)
              for path, tar in zip(args.records, tars, strict=True)]
    b = builds[-1]
    a = builds[0] if len(builds) == 2 else None
    html = render.render(render.context(b, a, args.keys))
    suffix = ".diff.html" if a is not None else ".report.html"
    out = args.output or b.path.with_name(b.record["build"]["name"] + suffix)
    render.write_report(out, html)
    print(out)
    return 0
