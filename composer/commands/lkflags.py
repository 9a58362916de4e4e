"""linuxkit's command-line spellings, so a linuxkit command line works unchanged.

linuxkit (cobra, and Go's flag package before it) accepts ``-format tar`` as well as
``--format tar``; argparse would read ``-format`` as ``-f ormat``. :func:`normalise` rewrites a
single-dash long flag that linuxkit has into its double-dash form, and ``-v``/``--verbose``
(linuxkit's verbosity level, ``-v 2``) into ``--verbose=N`` so the level is never mistaken for
a spec file. Nothing else is touched, and nothing after ``--``.

linuxkit's persistent flags (``--cache``, ``--mirror``, ``--cert-file``, ``-q``, ``-v``) may come
before the command (``linuxkit --cache DIR build ...``): :func:`add_root_options` puts them on the
top-level parser and :func:`merge_root_options` hands them to the command, which ignores the
ones it has no use for, as linuxkit does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# every long flag of linuxkit's build, cache and persistent options (src/cmd/linuxkit/*.go)
LINUXKIT_LONG_FLAGS = frozenset({
    "format", "name", "dir", "size", "pull", "docker", "decompress-kernel", "arch", "input-tar",
    "cache", "no-sbom", "sbom-current-time", "sbom-output", "dry-run", "mirror", "cert-file",
    "quiet", "verbose", "published-only", "platform", "outfile", "remote-name",
    "with-arch-tags", "override",
})
VERBOSITY = {0: "quiet", 1: "info", 2: "debug", 3: "trace"}
_VERBOSE = ("-v", "--verbose")


def normalise(argv: list[str]) -> list[str]:
    """``-format X`` -> ``--format X``, ``-v 2`` -> ``--verbose=2``; the rest unchanged."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            out += argv[i - 1:]
            break
        if token in _VERBOSE:
            if i < len(argv) and argv[i].isdigit():
                out.append(f"--verbose={argv[i]}")
                i += 1
            else:
                out.append("--verbose=2")  # a bare -v: more than the default (info)
            continue
        if token.startswith("-v=") or token.startswith("-verbose="):
            out.append("--verbose=" + token.split("=", 1)[1])
            continue
        if token.startswith("-") and not token.startswith("--") and len(token) > 2:
            name = token[1:].split("=", 1)[0]
            if name in LINUXKIT_LONG_FLAGS:
                token = "-" + token
        out.append(token)
    return out


def verbosity(text: str) -> int:
    """linuxkit's ``--verbose`` level: 0 quiet, 1 info (default), 2 debug, 3 trace."""
    if not text.isdigit() or int(text) not in VERBOSITY:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 (quiet), 1 (info), 2 (debug) "
                                         "or 3 (trace)")
    return int(text)


def add_verbose(p: argparse.ArgumentParser, dest: str = "verbose") -> None:
    p.add_argument("-v", "--verbose", type=verbosity, default=None, dest=dest, metavar="N",
                   help="linuxkit's verbosity: 0 quiet, 1 info (default), 2 and 3 debug "
                   "(the commands external tools run, tracebacks)")


def add_network_options(p: argparse.ArgumentParser, dest_prefix: str = "") -> None:
    """``--mirror`` and ``--cert-file``, as linuxkit spells them."""
    p.add_argument("--mirror", action="append", default=None, dest=f"{dest_prefix}mirror",
                   metavar="[REGISTRY=]URL",
                   help="pull REGISTRY's images from URL (http:// or https://, may have a path); "
                   "a bare URL mirrors every registry; repeatable; also $LINUXKIT_MIRROR "
                   "(comma- or space-separated, the command line wins)")
    p.add_argument("--cert-file", action="append", default=None, dest=f"{dest_prefix}cert_file",
                   metavar="FILE", help="PEM CA certificates to trust for registries besides "
                   "the default ones; repeatable")


def add_root_options(parser: argparse.ArgumentParser) -> None:
    """linuxkit's persistent flags, accepted before the command too."""
    parser.add_argument("--cache", type=Path, default=None, dest="root_cache", metavar="DIR",
                        help="image cache directory, for every command")
    add_network_options(parser, "root_")
    parser.add_argument("-q", "--quiet", action="store_true", dest="root_quiet",
                        help="print nothing but errors")
    add_verbose(parser, "root_verbose")


def merge_root_options(args: argparse.Namespace) -> argparse.Namespace:
    """The top-level flags, given to the command that has a use for each (its own win)."""
    root = {k: v for k, v in vars(args).items() if k.startswith("root_")}
    for key in root:
        delattr(args, key)
    if root.get("root_cache") is not None and getattr(args, "cache", "absent") is None:
        args.cache = root["root_cache"]
    for name in ("mirror", "cert_file"):
        if root.get(f"root_{name}") and hasattr(args, name):
            setattr(args, name, [*root[f"root_{name}"], *(getattr(args, name) or [])])
    verbose = getattr(args, "verbose", None)
    if verbose is None:
        verbose = root.get("root_verbose")
    if hasattr(args, "verbose"):
        args.verbose = verbose
    if (root.get("root_quiet") or verbose == 0) and hasattr(args, "quiet"):
        args.quiet = True
    return args


def debug_wanted(argv: list[str]) -> bool:
    """``--debug``, or linuxkit's ``-v 2``/``-v 3`` (after :func:`normalise`)."""
    if "--debug" in argv:
        return True
    head = argv[: argv.index("--")] if "--" in argv else argv
    return any(t in ("--verbose=2", "--verbose=3") for t in head)
