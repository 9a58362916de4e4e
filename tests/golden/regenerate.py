"""Build the golden inputs and write ``tests/golden/digests.json``.

Usage: ``python -m tests.golden.regenerate [--formats tar,...] [--arch arm64|amd64,arm64]``
from the repository root.

Run it only when an output's bytes are *meant* to change (a new format, a deliberate format
change, a new composer version, which the SBOM names) and say why in the commit; never to make a
failing golden test pass without knowing why it failed (docs/reproducibility.md).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import tempfile
from pathlib import Path

from composer import canonjson

HERE = Path(__file__).resolve().parent
DIGESTS = HERE / "digests.json"


# The arm64 goldens (the "arm64" entry of digests.json): every format that can be made for
# arm64 and shares one build, from the same inputs with arm64 configs, cross-built here.
ARM64_FORMATS = ("tar", "kernel+initrd", "tar-kernel-initrd", "iso-efi", "iso-efi-initrd",
                 "docker", "oci", "oci-dir", "docker-context", "raw-efi", "kernel+squashfs",
                 "kernel+erofs")
# rpi3 writes NAME.tar, as tar does: its golden is a build of its own (named RPI3_NAME), from the
# same arm64 inputs with a Pi 3 device tree in the spec (inputs.RPI3_FILES): the "rpi3" entry
# inside the "arm64" one
RPI3_FORMATS = ("rpi3",)
RPI3_NAME = "golden-rpi3"


# The two-architecture goldens (the "two-arch" entry): the one docker and oci file that
# ``build --arch amd64,arm64`` makes, over the amd64 and the arm64 builds' rootfs tars.
TWO_ARCH_FORMATS = ("oci", "docker")


def build_two_arch(workdir: Path, amd64_tar: Path, arm64_tar: Path) -> dict[str, Path]:
    """The two-architecture files from the two rootfs tars, through the converter the build
    runs for several ``--arch`` (with the build's options: the epoch's mtime, each arch)."""
    from composer.atomic import OutputSet
    from composer.epoch import resolve_epoch
    from outputs import FORMATS, Options
    from tests.golden.inputs import NAME, SOURCE_DATE_EPOCH

    mtime = resolve_epoch(SOURCE_DATE_EPOCH).generated
    parts = [(amd64_tar, Options(mtime=mtime, arch="amd64")),
             (arm64_tar, Options(mtime=mtime, arch="arm64"))]
    with OutputSet(workdir / "two-arch") as outs:
        for fmt in TWO_ARCH_FORMATS:
            FORMATS[fmt].convert_platforms(parts, NAME, outs)
        return {p.name: p for p in outs.commit()}


def build_golden(workdir: Path, formats: tuple[str, ...], arch: str = "amd64",
                 name: str | None = None) -> dict[str, Path]:
    """Generate the inputs in ``workdir`` and build ``formats``; returns name -> output path.
    The rpi3 build (``name`` RPI3_NAME) gets the rpi3 inputs."""
    from composer.build import BuildRequest, run_build
    from tests.golden.inputs import NAME, SOURCE_DATE_EPOCH, make_inputs

    spec = make_inputs(workdir / "inputs", arch, rpi3=name == RPI3_NAME)
    req = BuildRequest(specs=(spec,), formats=formats, output_dir=workdir / "out",
                       name=name or NAME,
                       arch=arch, cache_dir=workdir / "cache",
                       source_date_epoch=SOURCE_DATE_EPOCH)
    # not offline: the images are local OCI layouts (nothing to pull), but a fresh machine
    # has yet to fetch the pinned Debian packages (bootloaders, Pi firmware, tar2sqfs,
    # mtools), which are checked by sha256 whatever serves them
    return {p.name: p for p in run_build(req, log=lambda _m: None)}


def digests(outputs: dict[str, Path], formats: tuple[str, ...], name: str | None = None
            ) -> dict:
    """The golden document: every output file's sha256 as the build record lists it (files of
    directory outputs one by one), except the record and SHA256SUMS, which name the composer's
    library versions; the pinned compressor that made the deflate streams (the initrd, in the
    ISOs and disks too); the initrd's decompressed digest (to tell a compression change from a
    content change)."""
    from composer.repro.record import record_name
    from outputs import compressor_id
    from tests.golden.inputs import NAME

    name = name or NAME
    record = canonjson.loads(outputs[record_name(name)].read_bytes())
    doc: dict = {"compressor": compressor_id(), "formats": list(formats),
                 "outputs": {o["name"]: o["sha256"] for o in record["outputs"]},
                 "content": {}}
    initrd = outputs.get(f"{name}-initrd.img")
    if initrd is not None and initrd.read_bytes()[:2] == b"\x1f\x8b":
        data = gzip.decompress(initrd.read_bytes())
        doc["content"][initrd.name] = hashlib.sha256(data).hexdigest()
    return doc


def one_build(formats) -> list[str]:
    """The formats in order, leaving out any whose files clash with an earlier one's."""
    from composer.errors import UsageError
    from outputs import check_clashes

    chosen: list[str] = []
    for fmt in formats:
        try:
            check_clashes([*chosen, fmt])
        except UsageError:
            continue
        chosen.append(fmt)
    return chosen


def main(argv: list[str] | None = None) -> int:
    from outputs import FORMATS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(one_build(FORMATS)),
                        help="comma-separated formats (default: every registered format that "
                             "one build can make: kernel+iso and iso-bios both write NAME.iso)")
    parser.add_argument("--arch", choices=("amd64", "arm64", "amd64,arm64"), default="amd64",
                        help="which entries to rewrite: amd64 (the top level, the default), "
                        "arm64 (the \"arm64\" entry, ARM64_FORMATS) or amd64,arm64 (the "
                        "\"two-arch\" entry, TWO_ARCH_FORMATS); the others are kept")
    args = parser.parse_args(argv)
    formats = tuple(f for f in args.formats.split(",") if f)
    old = canonjson.loads(DIGESTS.read_bytes()) if DIGESTS.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.arch == "amd64,arm64":
            doc = dict(old)
            tars = [build_golden(Path(tmp) / arch, ("tar",), arch)["golden.tar"]
                    for arch in ("amd64", "arm64")]
            made = build_two_arch(Path(tmp), *tars)
            doc["two-arch"] = {"formats": list(TWO_ARCH_FORMATS), "outputs": {
                name: hashlib.sha256(path.read_bytes()).hexdigest()
                for name, path in sorted(made.items())}}
        elif args.arch == "arm64":
            doc = dict(old)
            doc["arm64"] = digests(build_golden(Path(tmp), ARM64_FORMATS, "arm64"),
                                   ARM64_FORMATS)
            del doc["arm64"]["compressor"]  # the top level's: one zlib makes both
            rpi3 = Path(tmp) / "rpi3"
            doc["arm64"]["rpi3"] = digests(
                build_golden(rpi3, RPI3_FORMATS, "arm64", RPI3_NAME), RPI3_FORMATS, RPI3_NAME)
            del doc["arm64"]["rpi3"]["compressor"]
        else:
            doc = digests(build_golden(Path(tmp), formats), formats)
            for kept in ("arm64", "two-arch"):
                if kept in old:
                    doc[kept] = old[kept]
    DIGESTS.write_bytes(canonjson.pretty(doc))
    print(f"wrote {DIGESTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
