"""The ``image-composer`` command: parse arguments, call the pipeline, report errors in one line.

Exit status: 0 success; 2 bad spec or usage (``FILE:LINE:COL: message``); 1 anything else
(``error: ...``). Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import traceback
from pathlib import Path

from composer import __version__
from composer.errors import ComposerError, UsageError

_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "s390x": "s390x", "riscv64": "riscv64", "ppc64le": "ppc64le"}


def host_arch() -> str:
    return _ARCHES.get(platform.machine().lower(), platform.machine().lower())


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("IMAGE_COMPOSER_CACHE"):
        return Path(env["IMAGE_COMPOSER_CACHE"])
    xdg = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(xdg) / "image-composer"


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting on its own."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _formats(values: list[str] | None) -> list[str]:
    from outputs import FORMATS

    out: list[str] = []
    for value in values or ["kernel+initrd"]:
        for fmt in filter(None, (v.strip() for v in value.split(","))):
            if fmt not in FORMATS:
                raise UsageError(f"unknown format {fmt!r} (known: {', '.join(sorted(FORMATS))})")
            if fmt not in out:
                out.append(fmt)
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", type=Path, help="image cache directory "
                   "(default: $IMAGE_COMPOSER_CACHE, else $XDG_CACHE_HOME/image-composer)")
    p.add_argument("--arch", default=None, help="target architecture (default: the host's)")
    p.add_argument("--source-date-epoch", type=int, default=None, metavar="N",
                   help="timestamp for generated entries and clamp for all (default: "
                   "$SOURCE_DATE_EPOCH, else 2017-04-18T16:30:00Z for generated entries)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="image-composer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"image-composer {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("build", help="build outputs from spec files")
    b.add_argument("specs", nargs="+", type=Path, metavar="SPEC.yml")
    b.add_argument("-f", "--format", action="append", dest="formats", metavar="FORMAT",
                   help="output format; repeat or comma-separate (default: kernel+initrd)")
    b.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help="output directory (default: the current directory)")
    b.add_argument("--name", default=None, help="output base name (default: first spec's stem)")
    b.add_argument("--pull", action="store_true", help="re-resolve tags from the registry")
    b.add_argument("--offline", action="store_true", help="never touch the network")
    _common(b)

    pkg = sub.add_parser("pkg", help="package images").add_subparsers(
        dest="pkg_command", required=True, parser_class=_Parser)
    pb = pkg.add_parser("build", help="build a package directory into an image in the cache")
    pb.add_argument("directory", type=Path, nargs="+")
    pb.add_argument("--debs", type=Path, default=None, metavar="DIR",
                    help="where the pinned .deb files are (default: DIRECTORY/../../debs)")
    pb.add_argument("--layout", type=Path, default=None, metavar="DIR",
                    help="also write the image into this OCI image layout directory")
    _common(pb)
    ps = pkg.add_parser("show-tag", help="print the ref a package directory builds")
    ps.add_argument("directory", type=Path, nargs="+")

    run = sub.add_parser("run", help="boot outputs").add_subparsers(
        dest="run_command", required=True, parser_class=_Parser)
    q = run.add_parser("qemu", help="boot NAME-kernel + NAME-initrd.img in qemu-system-x86_64")
    q.add_argument("name", help="path prefix of the outputs, e.g. out/hello")
    q.add_argument("--mem", default="512", help="memory in MiB (default 512)")
    q.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    q.add_argument("--accel", default=None,
                   help="qemu accelerator (default: kvm if usable, else tcg)")
    return parser


def cmd_build(args: argparse.Namespace) -> int:
    from composer.build import BuildRequest, run_build

    request = BuildRequest(
        specs=tuple(args.specs),
        formats=tuple(_formats(args.formats)),
        output_dir=args.output or Path.cwd(),
        name=args.name or args.specs[0].stem,
        arch=args.arch or host_arch(),
        cache_dir=args.cache or default_cache_dir(),
        pull=args.pull,
        offline=args.offline,
        source_date_epoch=args.source_date_epoch,
    )
    if request.pull and request.offline:
        raise UsageError("--pull and --offline cannot be used together")
    for path in run_build(request, log=_log):
        print(path)
    return 0


def cmd_pkg(args: argparse.Namespace) -> int:
    from composer import pkg
    from composer.epoch import resolve_epoch
    from composer.images.cache import Cache

    if args.pkg_command == "show-tag":
        for directory in args.directory:
            print(pkg.package_ref(directory))
        return 0
    cache = Cache(args.cache or default_cache_dir())
    epoch = resolve_epoch(args.source_date_epoch)
    for directory in args.directory:
        result = pkg.build_package(directory, cache, epoch=epoch, arch=args.arch or host_arch(),
                                   debs_dir=args.debs, layout=args.layout)
        print(result)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from composer import qemu

    return qemu.run_qemu(Path(args.name), memory=args.mem, timeout=args.timeout,
                         accel=args.accel)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        handler = {"build": cmd_build, "pkg": cmd_pkg, "run": cmd_run}[args.command]
        return handler(args)
    except ComposerError as exc:
        if debug:
            traceback.print_exc()
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
                  file=sys.stderr)
        return 1
