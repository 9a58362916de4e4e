"""``image-composer build``: spec files -> outputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from composer.defaults import default_cache_dir, host_arch, log, parse_arches
from composer.errors import UsageError


def register(sub, common) -> None:
    b = sub.add_parser("build", help="build outputs from spec files")
    b.add_argument("specs", nargs="+", type=Path, metavar="SPEC.yml")
    b.add_argument("-f", "--format", action="append", dest="formats", metavar="FORMAT",
                   help="output format; repeat or comma-separate (default: kernel+initrd)")
    b.add_argument("-o", "--output", "--dir", type=Path, default=None, metavar="DIR",
                   help="output directory (default: the current directory); --dir is "
                   "linuxkit's spelling")
    b.add_argument("--o", dest="output_file", default=None, metavar="FILE|-",
                   help="linuxkit's single output: write the one file of the one format "
                   "(default format: tar) to FILE, or to stdout with '-'; no record files")
    b.add_argument("--input-tar", type=Path, default=None, metavar="FILE",
                   help="linuxkit's incremental input: checked to be a tar and accepted; the "
                   "cache already reuses unchanged work, so it changes nothing")
    b.add_argument("--decompress-kernel", action="store_true",
                   help="boot/kernel decompressed, as linuxkit: a gzip'd kernel (Image.gz) "
                   "gunzipped, or a bzImage's gzip'd payload")
    b.add_argument("--name", default=None,
                   help="output base name (default: the last spec's stem, as linuxkit)")
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
    b.add_argument("--sign", type=Path, default=None, metavar="KEY",
                   help="sign the build with KEY (ed25519 or ECDSA P-256 PEM): write its SLSA "
                   "provenance NAME.provenance.intoto.json and NAME.SHA256SUMS.sig")
    from outputs.options import add_flags

    add_flags(b)
    b.add_argument("--push", default=None, metavar="REF",
                   help="push the image output (-f docker, oci or oci-dir) to a registry")
    b.add_argument("--load", action="store_true",
                   help="load the docker output (-f docker) into the local Docker engine "
                   "(several --arch: the first one's image, which must be this machine's)")
    from composer.commands.lock import add_fetch_options

    add_fetch_options(b)
    add_remote_cache_options(b)
    common(b)
    b.set_defaults(func=run)


def add_remote_cache_options(b: argparse.ArgumentParser) -> None:
    """--cache-to/--cache-from and their keys (docs/remote-cache.md)."""
    b.add_argument("--cache-to", action="append", metavar="REF",
                   help="publish phase-one and phase-two results to this registry repository "
                   "(repeatable; default: $IMAGE_COMPOSER_CACHE_TO, comma-separated)")
    b.add_argument("--cache-from", action="append", metavar="REF",
                   help="use results from this registry repository before doing the work "
                   "(repeatable; default: $IMAGE_COMPOSER_CACHE_FROM, comma-separated)")
    b.add_argument("--cache-key", type=Path, metavar="KEY",
                   help="private key (ed25519 or ECDSA P-256 PEM) signing what --cache-to "
                   "publishes (default: $IMAGE_COMPOSER_CACHE_KEY)")
    b.add_argument("--cache-trust", action="append", type=Path, metavar="PUBKEY",
                   help="public key (or directory of *.pub) whose entries --cache-from may "
                   "use (repeatable; default: $IMAGE_COMPOSER_CACHE_TRUST, comma-separated)")
    b.add_argument("--cache-from-required", action="store_true",
                   help="fail instead of building when a --cache-from cache cannot be read or "
                   "serves an entry that fails its checks")


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


def check_linuxkit_flags(args: argparse.Namespace) -> None:
    """linuxkit's flags that take no part in the build here: checked, refused with a reason."""
    for spec in args.specs:
        text = str(spec)
        if text == "-" or text.startswith(("http:", "https:")):
            where = "stdin" if text == "-" else "a URL"
            raise UsageError(f"{text}: a spec from {where} is not supported: the build record "
                             "names and hashes its spec files so `verify` can rebuild; save "
                             "the spec to a file and build that")
    if args.input_tar is not None:
        if args.pull:
            raise UsageError("cannot use --input-tar and --pull together")
        if args.output_file not in (None, "-") and \
                Path(args.output_file).absolute() == args.input_tar.absolute():
            raise UsageError("--input-tar and the --o output file cannot be the same")
        check_input_tar(args.input_tar)


def check_input_tar(path: Path) -> None:
    """``--input-tar`` must name a readable tar (its first header parses), as linuxkit's does."""
    from composer.errors import ComposerError
    from composer.tar.read import read_entries

    if not path.is_file():
        raise UsageError(f"--input-tar {path}: no such file")
    try:
        with open(path, "rb") as fh:
            next(iter(read_entries(fh)), None)
    except (ComposerError, OSError, ValueError, EOFError) as exc:
        raise UsageError(f"--input-tar {path}: not a tar file ({exc})") from None


def single_output(args: argparse.Namespace, chosen: list[str]) -> str:
    """The one format ``--o`` writes; linuxkit's rules (one format, not with --dir/--name)."""
    from outputs import FORMATS

    if args.output is not None:
        raise UsageError("--o cannot be used with --dir/-o DIR: it writes one file")
    if args.name is not None:
        raise UsageError("--o cannot be used with --name: the file is named by --o")
    if len(chosen) != 1:
        raise UsageError("--o writes one output: give one --format (default: tar)")
    if args.push or args.load:
        raise UsageError("--o cannot be used with --push or --load")
    fmt = FORMATS[chosen[0]]
    if len(fmt.files) != 1:
        ones = ", ".join(f for f, v in FORMATS.items() if len(v.files) == 1)
        raise UsageError(f"--o: format {fmt.name} makes {len(fmt.files)} files; --o takes a "
                         f"format that makes one ({ones})")
    return fmt.name


def remote_settings(args: argparse.Namespace):
    from composer.cache.remote.use import settings_from

    return settings_from(args.cache_to, args.cache_from, args.cache_key, args.cache_trust,
                         args.cache_from_required, tuple(args.insecure_registry))


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from composer.atomic import Held
    from composer.build import BuildRequest, Platform, run_build, run_platforms_build
    from composer.images.network import network_from_args
    from outputs.options import from_args

    if args.output is not None and str(args.output) == "-":  # linuxkit's old -o -: stdout
        args.output, args.output_file = None, "-"
    check_linuxkit_flags(args)
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

    if args.output_file is not None and not args.formats:
        args.formats = ["tar"]  # linuxkit's default with -o
    chosen = formats(args.formats)
    one = single_output(args, chosen) if args.output_file is not None else None
    if args.push and not any(FORMATS[f].pushable for f in chosen):
        names = ", ".join(f for f in FORMATS if FORMATS[f].pushable)
        raise UsageError(f"--push needs an image format: add -f one of {names}")
    if args.load and not any(FORMATS[f].loadable for f in chosen):
        names = ", ".join(f for f in FORMATS if FORMATS[f].loadable)
        raise UsageError(f"--load needs a docker-loadable format: add -f {names}")
    if args.sign is not None:  # a bad key fails now, not after the whole build
        from composer.repro.attest import load_private_key

        load_private_key(args.sign)
    arches = parse_arches(args.arch) if args.arch else (host_arch(),)
    from outputs import check_arch

    for arch in arches:
        check_arch(chosen, arch)
    # several architectures: docker and oci make ONE file (a multi-platform index), the
    # other formats one per architecture (docs/architectures.md)
    several = [f for f in chosen if FORMATS[f].platforms] if len(arches) > 1 else []
    per_arch = tuple(f for f in chosen if f not in several)
    if args.load and len(arches) > 1 and arches[0].partition("/")[0] != host_arch():
        raise UsageError(f"--load with several architectures loads the first one's image "
                         f"({arches[0]}; docker load's classic store keeps one image per tag), "
                         f"which this {host_arch()} machine cannot run: give {host_arch()} "
                         "first in --arch")
    if one is not None and len(arches) > 1:
        raise UsageError("--o writes one output: give one --arch")
    name = args.name or args.specs[-1].stem  # linuxkit names outputs after the last spec
    cache_dir = args.cache or default_cache_dir()
    staging = _staging_dir(args.output_file, cache_dir) if one is not None else None
    network = network_from_args(args)
    remote = remote_settings(args)
    quiet_log = (lambda _m: None) if args.quiet else log
    built: list[list[Path]] = []
    parts: list[Platform] = []
    # several architectures: every one's files or none, committed together at the end
    held = Held() if len(arches) > 1 else None
    try:
        for arch in arches:
            # one arch: linuxkit's names; several: NAME-ARCH-kernel, NAME-ARCH.tar, ...
            request = BuildRequest(
                specs=tuple(args.specs),
                formats=per_arch,
                output_dir=staging or args.output or Path.cwd(),
                name=name if len(arches) == 1 else f"{name}-{arch.replace('/', '-')}",
                arch=arch,
                cache_dir=cache_dir,
                pull=args.pull,
                offline=args.offline,
                source_date_epoch=args.source_date_epoch,
                locked=args.locked,
                docker=args.docker,
                quiet=args.quiet,
                insecure=tuple(args.insecure_registry),
                network=network,
                sbom=not args.no_sbom,
                sbom_path="" if args.no_sbom else args.sbom_output,
                sbom_format=args.sbom_format,
                sign_key=args.sign,
                decompress_kernel=args.decompress_kernel,
                output_options=from_args(args),
                remote=remote,
            )
            if staging is not None and one is not None:
                return _build_one(request, staging, one, args.output_file, quiet_log)
            built.append(run_build(request, log=quiet_log,
                                   platforms=parts if several else None, held=held))
        if several:
            built.append(run_platforms_build(replace(request, name=name, arch=",".join(arches),
                                                     formats=tuple(several)), parts,
                                             log=quiet_log, held=held))
        if held is not None:
            built = held.commit()
    except BaseException:
        if held is not None:
            held.abort()
        raise
    for paths in built:
        for path in paths:
            print(path)
    if several:
        built = built[-1:]  # the one multi-platform file is what --push sends, --load loads
    if args.push or args.load:
        from composer.commands.push import publish

        for line in publish(built, push_ref=args.push, load=args.load, log=quiet_log,
                            network=network):
            print(line)
    return 0


def _staging_dir(output_file: str, cache_dir: Path) -> Path:
    """Where a ``--o`` build writes before its one file moves: beside FILE (so the move is a
    rename), or in the cache for stdout (so rootfs files are placed as links, not copies)."""
    import tempfile

    where = cache_dir / "tmp" if output_file == "-" else Path(output_file).absolute().parent
    where.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".image-composer-o-", dir=where))


def _build_one(request, staging: Path, fmt_name: str, output_file: str, say) -> int:
    """Build into ``staging``, then move the one file to ``output_file`` or stream it to stdout;
    the record files go with the staging directory (linuxkit writes none)."""
    import os
    import shutil

    from composer.build import run_build
    from outputs import FORMATS

    try:
        run_build(request, log=say)
        made = staging / FORMATS[fmt_name].output_files(request.name)[0]
        if output_file == "-":
            with open(made, "rb") as fh:
                shutil.copyfileobj(fh, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        else:
            if made.is_dir():
                raise UsageError(f"--o: format {fmt_name} makes a directory")
            os.replace(made, output_file)
            print(output_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return 0
