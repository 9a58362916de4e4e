"""``image-composer build``: spec files -> outputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from composer.defaults import default_cache_dir, host_arch, log
from composer.errors import UsageError


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
    b.add_argument("--no-sbom", action="store_true",
                   help="no SBOM: neither linuxkit's sbom.spdx.json in the rootfs (merged from "
                   "the images' attested SPDX SBOMs) nor NAME.spdx.json beside the outputs")
    b.add_argument("--sbom-output", default="sbom.spdx.json", metavar="PATH",
                   help="where the merged SBOM goes in the rootfs (default: sbom.spdx.json)")
    b.add_argument("--sbom-format", choices=("spdx", "cyclonedx"), default="spdx",
                   help="the SBOM beside the outputs: NAME.spdx.json (SPDX 2.3, default) or "
                   "NAME.cdx.json (CycloneDX 1.5)")
    b.add_argument("--sbom-current-time", action="store_true",
                   help="linuxkit's flag to date the SBOM by the clock: refused (it would make "
                   "the image differ at every build); set SOURCE_DATE_EPOCH instead")
    from outputs.options import add_flags

    add_flags(b)
    b.add_argument("--push", default=None, metavar="REF",
                   help="push the image output (-f docker, oci or oci-dir) to a registry")
    b.add_argument("--load", action="store_true",
                   help="load the docker output (-f docker) into the local Docker engine")
    from composer.commands.lock import add_fetch_options

    add_fetch_options(b)
    common(b)
    b.set_defaults(func=run)


def formats(values: list[str] | None) -> list[str]:
    from outputs import check_clashes, get_format

    out: list[str] = []
    for value in values or ["kernel+initrd"]:
        for fmt in filter(None, (v.strip() for v in value.split(","))):
            get_format(fmt)
            if fmt not in out:
                out.append(fmt)
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
    from outputs.options import from_args

    if args.dry_run:
        return dry_run(list(args.specs))
    if args.pull and args.offline:
        raise UsageError("--pull and --offline cannot be used together")
    if args.sbom_current_time:
        raise UsageError("--sbom-current-time puts the wall clock into the image's SBOM, so no "
                         "two builds would be the same; the SBOM is dated by the build's epoch: "
                         "set SOURCE_DATE_EPOCH (or --source-date-epoch) to choose that time")
    if not args.sbom_output.strip("/") and not args.no_sbom:
        raise UsageError("--sbom-output needs a path in the rootfs (or use --no-sbom)")
    from outputs import FORMATS

    chosen = formats(args.formats)
    if args.push and not any(FORMATS[f].pushable for f in chosen):
        names = ", ".join(f for f in FORMATS if FORMATS[f].pushable)
        raise UsageError(f"--push needs an image format: add -f one of {names}")
    if args.load and not any(FORMATS[f].loadable for f in chosen):
        names = ", ".join(f for f in FORMATS if FORMATS[f].loadable)
        raise UsageError(f"--load needs a docker-loadable format: add -f {names}")
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
        sbom_path="" if args.no_sbom else args.sbom_output,
        sbom_format=args.sbom_format,
        output_options=from_args(args),
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
