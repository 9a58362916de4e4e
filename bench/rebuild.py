"""Rebuild benchmarks: what a change costs, what an unchanged rebuild costs, how big the cache is.

    python -m bench.rebuild [--workload large] [--runs N] [--formats kernel+initrd,...]

The spec: the workload's image as ``init``, three small generated images as one ``onboot`` and
two ``services`` containers, and ``files`` (the bench kernel, a command line, ``etc/motd``).
Rows, each a separate ``build`` process under ``/usr/bin/time``:

- cold ``-f tar`` into an empty cache (the yardstick of the next rows);
- one ``files:`` entry edited, and one service image changed, each rebuilt (``-f tar``) in the
  cache the cold build left, vs the cold build; the outputs are compared byte for byte with a
  from-scratch build of the changed spec (the bench fails if they differ);
- the cache's size right after the cold build vs its compressed blobs plus rootfs tars;
- per format: an unchanged rebuild (everything cached) vs the warm conversion (phase one cached,
  the phase-two output cache removed first).

Results go to stdout and bench/RESULTS-rebuild.md.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.__main__ import CMDLINE, EPOCH, ROOT, Measure, composer, load_line, machine, timed
from bench.workload import WORKLOADS, Workload, generate, kernel_file

HERE = Path(__file__).resolve().parent
FORMATS = ("kernel+initrd", "iso-bios", "raw-efi", "docker")
SERVICES = {n: Workload(n, 8 * 2**20, 800, 2) for n in ("svc1", "svc2", "svc3", "svc4")}


def spec_text(layout: Path, services: dict[str, Path], kernel: Path, *, beta: str = "svc2",
              motd: str = "hello") -> str:
    return f"""\
init:
  - oci:{layout}:bench
onboot:
  - name: setup
    image: oci:{services["svc3"]}:bench
    command: ["/bin/true"]
services:
  - name: alpha
    image: oci:{services["svc1"]}:bench
    command: ["/bin/true"]
  - name: beta
    image: oci:{services[beta]}:bench
    command: ["/bin/true"]
files:
  - path: boot/kernel
    source: {kernel}
  - path: boot/cmdline
    contents: "{CMDLINE}"
  - path: etc/motd
    contents: "{motd}\\n"
"""


def build(spec: Path, fmt: str, out: Path, cache: Path) -> Measure:
    return timed(composer("build", "-q", "-f", fmt, "--name", "bench", "-o", str(out),
                          "--cache", str(cache), "--source-date-epoch", EPOCH, str(spec)),
                 cwd=ROOT)


def same_outputs(a: Path, b: Path) -> None:
    for name in ("bench.tar", "bench.spdx.json"):
        if not filecmp.cmp(a / name, b / name, shallow=False):
            sys.exit(f"bench: {a / name} and {b / name} differ: an incremental build is wrong")


def cache_sizes(cache: Path) -> tuple[int, int]:
    """(the whole cache, its compressed blobs plus rootfs tars), inodes counted once."""
    seen: set[tuple[int, int]] = set()
    total = base = 0
    for path in sorted(p for p in cache.rglob("*") if p.is_file()):
        st = path.stat()
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_size
        rel = path.relative_to(cache).parts
        if rel[0] == "blobs" or (rel[0] == "rootfs" and path.suffix == ".tar"):
            base += st.st_size
    return total, base


def one_run(layout: Path, services: dict[str, Path], kernel: Path, scratch: Path,
            formats: tuple[str, ...]) -> dict[str, tuple[Measure, Measure]]:
    spec = scratch / "bench.yml"
    spec.write_text(spec_text(layout, services, kernel))
    cache = scratch / "cache"
    cold = build(spec, "tar", scratch / "cold", cache)
    total, base = cache_sizes(cache)
    rows: dict[str, tuple[Measure, Measure]] = {}
    sizes = (Measure(total / 1e6, 0), Measure(base / 1e6, 0))
    for what, text in (("one files: entry edited", spec_text(layout, services, kernel,
                                                             motd="hello again")),
                       ("one service image changed", spec_text(layout, services, kernel,
                                                               beta="svc4"))):
        changed = scratch / f"{what.split()[1]}.yml"
        changed.write_text(text)
        incremental = build(changed, "tar", scratch / f"inc-{what.split()[1]}", cache)
        build(changed, "tar", scratch / f"scratch-{what.split()[1]}",
              scratch / f"cache-{what.split()[1]}")
        same_outputs(scratch / f"inc-{what.split()[1]}", scratch / f"scratch-{what.split()[1]}")
        shutil.rmtree(scratch / f"cache-{what.split()[1]}")
        rows[f"{what}, rebuilt (-f tar) vs cold -f tar"] = (incremental, cold)
    for fmt in formats:
        shutil.rmtree(cache / "outputs", ignore_errors=True)
        warm = build(spec, fmt, scratch / f"warm-{fmt}", cache)
        unchanged = build(spec, fmt, scratch / f"again-{fmt}", cache)
        rows[f"{fmt}: unchanged rebuild vs warm conversion"] = (unchanged, warm)
        shutil.rmtree(scratch / f"warm-{fmt}")
        shutil.rmtree(scratch / f"again-{fmt}")
    rows["cold -f tar (the yardstick)"] = (cold, cold)
    rows["cache after the cold build, MB, vs blobs + rootfs tars"] = sizes
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild")
    parser.add_argument("--workload", default="large", choices=sorted(WORKLOADS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--work-dir", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS-rebuild.md")
    args = parser.parse_args()
    formats = tuple(f for f in args.formats.split(",") if f)
    work = WORKLOADS[args.workload]
    layout = generate(work, args.work_dir / work.key)
    services = {n: generate(w, args.work_dir / w.key) for n, w in SERVICES.items()}
    kernel = kernel_file(args.work_dir)
    rows: dict[str, list[tuple[Measure, Measure]]] = {}
    load_start = os.getloadavg()
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
            for key, pair in one_run(layout, services, kernel, Path(tmp), formats).items():
                rows.setdefault(key, []).append(pair)
        print(f"bench: run {n + 1}/{args.runs} done", file=sys.stderr)
    lines = [f"# Rebuild benchmarks ({work.name}: {work.total_bytes // 2**20} MiB, "
             f"{work.files} files, {work.layers} layers, as init; plus 3 small containers)",
             "", machine(), "",
             "| what | this s | against s | ratio | this CPU s | against CPU s | CPU ratio |",
             "|---|---|---|---|---|---|---|"]
    for key, pairs in rows.items():
        ours = statistics.median(p[0].seconds for p in pairs)
        theirs = statistics.median(p[1].seconds for p in pairs)
        cpu_o = statistics.median(p[0].cpu for p in pairs)
        cpu_t = statistics.median(p[1].cpu for p in pairs)
        if key.startswith("cache"):
            lines.append(f"| {key} | {ours:.0f} MB | {theirs:.0f} MB | {ours / theirs:.2f}x "
                         "| | | |")
            continue
        lines.append(f"| {key} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x | "
                     f"{cpu_o:.2f} | {cpu_t:.2f} | {cpu_o / max(cpu_t, 0.01):.2f}x |")
    lines += ["", f"Medians of {args.runs} runs; regenerate with `python -m bench.rebuild "
              f"--workload {work.name} --runs {args.runs}`. Every incremental output was "
              "compared byte for byte with a from-scratch build of the same spec.", "",
              load_line(load_start)]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
