"""The ``image-composer`` command: parse arguments, run a command, report errors in one line.

Exit status: 0 success; 2 bad spec or usage (``FILE:LINE:COL: message``); 1 anything else
(``error: ...``). Tracebacks only with ``--debug``. Commands live in :mod:`composer.commands`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from composer import __version__, tools
from composer.commands import COMMANDS, lkflags
from composer.errors import ComposerError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting on its own."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def common_options(p: argparse.ArgumentParser) -> None:
    """Options every image-handling command shares."""
    p.add_argument("--cache", type=Path, help="image cache directory "
                   "(default: $IMAGE_COMPOSER_CACHE, else $LINUXKIT_CACHE, else "
                   "$XDG_CACHE_HOME/image-composer)")
    p.add_argument("--arch", default=None, help="target architecture (default: the host's)")
    p.add_argument("--source-date-epoch", type=int, default=None, metavar="N",
                   help="timestamp for generated entries and clamp for all (default: "
                   "$SOURCE_DATE_EPOCH, else 2017-04-18T16:30:00Z for generated entries)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="image-composer",
                     description="Compose reproducible system images from linuxkit-style YAML.")
    parser.add_argument("--version", action="version", version=f"image-composer {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    lkflags.add_root_options(parser)  # linuxkit's persistent flags: --cache, --mirror, ...
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"composer.commands.{name}").register(sub, common_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = lkflags.normalise(sys.argv[1:] if argv is None else argv)  # linuxkit's spellings
    debug = lkflags.debug_wanted(argv)
    tools.set_debug(debug)
    try:
        args = lkflags.merge_root_options(build_parser().parse_args(argv))
        return args.func(args)
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
