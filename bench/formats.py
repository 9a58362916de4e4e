"""Per-format build time, output size and peak RSS for the disk, cloud and fsimage formats.

    python -m bench.formats [--workload large] [--formats raw-bios,raw-efi,...] [--results FILE]

The workload's image plus a stand-in kernel and a command line (the spec of ``python -m bench``'s
iso and disk rows) is built once as ``-f tar`` (phase one, untimed); then each format is one
``image-composer build -f FORMAT`` into a fresh output dir with phase one cached and the
phase-two output cache (CACHE/outputs) removed first, as its own process under
``/usr/bin/time`` (wall and user + system seconds, peak RSS). One run per format; the table
gives the format's files' apparent size and the blocks they occupy (raw images are sparse).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.__main__ import EPOCH, boot_spec, composer, load_line, machine
from bench.vdisk import timed
from bench.workload import WORKLOADS, generate, kernel_file
from outputs import FORMATS

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
RSS_LIMIT_MB = 250  # issue 16: every format under 250 MB peak RSS on the 1 GiB workload
ISSUE_16 = ("raw-bios", "raw-efi", "qcow2-efi", "qcow2-bios", "aws", "vhd", "dynamic-vhd",
            "vmdk", "gcp", "kernel+squashfs", "kernel+erofs", "kernel+iso")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.formats")
    parser.add_argument("--workload", default="large", choices=sorted(WORKLOADS))
    parser.add_argument("--formats", default=",".join(ISSUE_16))
    parser.add_argument("--work-dir", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS-formats.md")
    args = parser.parse_args()
    formats = args.formats.split(",")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        sys.exit(f"bench: unknown format(s): {', '.join(unknown)}")
    work = WORKLOADS[args.workload]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    layout = generate(work, args.work_dir / work.key)
    kernel = kernel_file(args.work_dir)
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        scratch = Path(tmp)
        spec = boot_spec(layout, kernel, scratch, "bench")
        cache = scratch / "cache"
        subprocess.run(composer("build", "-q", "-f", "tar", "-o", str(scratch / "root"),
                                "--cache", str(cache), "--source-date-epoch", EPOCH, str(spec)),
                       check=True, stdout=subprocess.DEVNULL)
        for fmt in formats:
            print(f"bench: {fmt} ...", file=sys.stderr)
            out = scratch / "out"
            shutil.rmtree(cache / "outputs", ignore_errors=True)
            m = timed(composer("build", "-q", "-f", fmt, "-o", str(out), "--cache", str(cache),
                               "--source-date-epoch", EPOCH, str(spec)), cwd=HERE.parent)
            names = FORMATS[fmt].output_files("bench")
            stats = [(out / n).stat() for n in names]
            size = sum(s.st_size for s in stats)
            used = sum(s.st_blocks * 512 for s in stats)
            rows.append((fmt, names, m, size, used))
            shutil.rmtree(out)
            print(f"bench: {fmt}: {m.seconds:.1f} s, {m.rss_mb:.0f} MB", file=sys.stderr)
    load_end = os.getloadavg()
    lines = [f"# Per-format builds ({work.name}: {work.total_bytes // MiB} MiB, {work.files} "
             f"files, {work.layers} layers; phase one cached, phase-two cache cleared)", "",
             machine(), "",
             "| format | files | wall s | CPU s | peak RSS MB | size MiB | allocated MiB | "
             f"RSS < {RSS_LIMIT_MB} MB |", "|---|---|---|---|---|---|---|---|"]
    for fmt, names, m, size, used in rows:
        lines.append(f"| {fmt} | {', '.join(names)} | {m.seconds:.2f} | {m.cpu:.2f} | "
                     f"{m.rss_mb:.0f} | {size / MiB:.1f} | {used / MiB:.1f} | "
                     f"{'yes' if m.rss_mb < RSS_LIMIT_MB else 'NO'} |")
    lines += ["", f"One run each: `python -m bench.formats --workload {work.name}"
              + (f" --formats {args.formats}" if tuple(formats) != ISSUE_16 else "") + "`. "
              "Wall and CPU (user + system) seconds of the whole `build` process, phase-one "
              "cache lookup included; \"size\" is the files' length, \"allocated\" the blocks "
              "they occupy (sparse raw images).", "",
              load_line(load_start, load_end)
              + " Shared with other jobs: wall times are noisy, CPU times steadier."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
