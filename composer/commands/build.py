"""``image-composer build``: spec files -> outputs."""

from __future__ import annotations

import argparse
import sys
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
    b.add_argument("--dry-run", action="store_true",
                   help="print the merged spec (YAML, refs normalised) and exit; build nothing")
    b.add_argument("--locked", action="store_true",
                   help="fail unless SPEC.lock pins every image and the specs are unchanged")
    b.add_argument("--no-sbom", action="store_true", help="do not write NAME.spdx.json")
    b.add_argument("--tag", default=None, metavar="NAME:TAG",
                   help="docker/oci formats: the image's repo tag (default: NAME:latest)")
    b.add_argument("--entrypoint", default=None, metavar="JSON|PATH",
                   help='docker/oci formats: entrypoint, e.g. \'["/init"]\' (default: '
                        "/bin/rc.init if present, else /init)")
    b.add_argument("--bootloader", action="append", default=[], metavar="ROLE=PATH@sha256:HEX",
                   help="ISO formats: use this bootloader file, pinned by digest (repeatable; "
                        "see docs/iso.md)")
    b.add_argument("--push", default=None, metavar="REF",
                   help="push the image output (-f docker, oci or oci-dir) to a registry")
    b.add_argument("--load", action="store_true",
                   help="load the docker output (-f docker) into the local Docker engine")
    from composer.commands.lock import add_fetch_options

    add_fetch_options(b)
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
    from outputs import check_clashes

    check_clashes(out)
    return out


def dry_run(specs: list[Path]) -> int:
    """Load and merge the specs, print them as one spec, touch no image and write no file."""
    from composer.spec import load_spec
    from composer.spec.document import spec_yaml

    spec = load_spec(specs)
    for pos, message in spec.warnings:
        log(f"{pos}: warning: {message}" if pos else f"warning: {message}")
    sys.stdout.write(spec_yaml(spec).decode("ascii"))
    return 0


def run(args: argparse.Namespace) -> int:
    from composer.build import BuildRequest, run_build

    if args.dry_run:
        return dry_run(list(args.specs))
    if args.pull and args.offline:
        raise UsageError("--pull and --offline cannot be used together")
    chosen = formats(args.formats)
    if args.push and not {"docker", "oci", "oci-dir"} & set(chosen):
        raise UsageError("--push needs an image format: add -f docker, oci or oci-dir")
    if args.load and "docker" not in chosen:
        raise UsageError("--load needs the docker format: add -f docker")
    request = BuildRequest(
        specs=tuple(args.specs),
        formats=tuple(chosen),
        output_dir=args.output or Path.cwd(),
        name=args.name or args.specs[0].stem,
        arch=args.arch or host_arch(),
        cache_dir=args.cache or default_cache_dir(),
        pull=args.pull,
        offline=args.offline,
        source_date_epoch=args.source_date_epoch,
        locked=args.locked,
        docker=args.docker,
        quiet=args.quiet,
        insecure=tuple(args.insecure_registry),
        sbom=not args.no_sbom,
        image_tag=args.tag,
        entrypoint=entrypoint(args.entrypoint),
        bootloaders=bootloader_pins(args.bootloader),
    )
    quiet_log = (lambda _m: None) if args.quiet else log
    paths = run_build(request, log=quiet_log)
    for path in paths:
        print(path)
    if args.push or args.load:
        from composer.commands.push import publish

        for line in publish(paths, push_ref=args.push, load=args.load, log=quiet_log):
            print(line)
    return 0


def bootloader_pins(values: list[str]) -> tuple:
    if not values:
        return ()
    from outputs.bootloaders import parse_pin

    return tuple(parse_pin(v) for v in values)


def entrypoint(value: str | None) -> tuple[str, ...] | None:
    """``--entrypoint``: a JSON list of strings, or a single path."""
    if value is None:
        return None
    if value.lstrip().startswith("["):
        import json

        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise UsageError(f"--entrypoint: not a JSON list: {exc}") from None
        if not (isinstance(parsed, list) and parsed and all(isinstance(v, str) for v in parsed)):
            raise UsageError("--entrypoint: must be a non-empty JSON list of strings")
        return tuple(parsed)
    return (value,)
