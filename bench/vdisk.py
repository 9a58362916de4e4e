"""Container writers vs ``qemu-img convert`` (and GNU tar + gzip for gcp) on a 1 GiB raw disk.

    python -m bench.vdisk [--runs N] [--work-dir DIR] [--results FILE]

The raw disk is generated deterministically (cached in the work dir): 1 GiB with 128 MiB of
text-like (compressible) data, 64 MiB of random (incompressible) data, 64 MiB of zeros written
out in full, and holes for the rest, in runs spread over the disk. Each contender runs as its
own process under ``/usr/bin/time`` (wall seconds, peak RSS); medians over ``--runs``. With two
or more runs the table also says whether each contender wrote the same bytes every time: that
is how qemu-img's own (non-)determinism is measured.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.__main__ import machine

HERE = Path(__file__).resolve().parent
MiB, GiB = 1 << 20, 1 << 30

OURS = ["qcow2", "vhd", "dynamic-vhd", "vmdk", "gcp"]
QEMU = {
    "qcow2": ["-O", "qcow2"],
    "vhd": ["-O", "vpc", "-o", "subformat=fixed,force_size"],
    "dynamic-vhd": ["-O", "vpc", "-o", "subformat=dynamic,force_size"],
    "vmdk": ["-O", "vmdk", "-o", "adapter_type=lsilogic,subformat=streamOptimized,compat6"],
}


def workload(path: Path) -> Path:
    if path.exists() and path.stat().st_size == GiB:
        return path
    rng = random.Random(16)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randrange(2, 10)))
             for _ in range(4096)]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(GiB)
        for run in range(64):  # 64 runs of 4 MiB, one per 16 MiB: 256 MiB in all
            f.seek(run * 16 * MiB + rng.randrange(0, 8 * MiB) // 4096 * 4096)
            kind = run % 4
            if kind in (0, 1):
                f.write(b" ".join(rng.choices(words, k=800_000))[:4 * MiB].ljust(4 * MiB))
            elif kind == 2:
                f.write(rng.randbytes(4 * MiB))
            else:
                f.write(bytes(4 * MiB))
    tmp.rename(path)
    return path


@dataclass
class Measure:
    seconds: float
    cpu: float  # user + system seconds: steadier than wall time on a shared machine
    rss_mb: float


def timed(argv: list[str], cwd: Path | None = None) -> Measure:
    with tempfile.NamedTemporaryFile("r") as out:
        proc = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name, *argv],
                              cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if proc.returncode != 0:
            sys.exit(f"bench: {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
        wall, user, system, kb = out.read().split()[-4:]
    return Measure(float(wall), float(user) + float(system), int(kb) / 1024)


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def run(argv: list[str], out: Path, n: int, cwd: Path | None = None) -> tuple[Measure, int, bool]:
    measures, digests = [], set()
    for _ in range(n):
        out.unlink(missing_ok=True)
        measures.append(timed(argv, cwd=cwd))
        digests.add(digest(out))
    median = Measure(statistics.median(m.seconds for m in measures),
                     statistics.median(m.cpu for m in measures),
                     statistics.median(m.rss_mb for m in measures))
    return median, out.stat().st_size, len(digests) == 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vdisk")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS-vdisk.md")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    raw = workload(args.work_dir / "vdisk-1g.raw")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        scratch = Path(tmp)
        for fmt in OURS:
            print(f"bench: {fmt} ...", file=sys.stderr)
            ours = run([sys.executable, "-m", "bench.vdisk_one", fmt, str(raw),
                        str(scratch / "ours")], scratch / "ours", args.runs, cwd=HERE.parent)
            if fmt == "gcp":
                link = scratch / "disk.raw"
                link.unlink(missing_ok=True)
                link.symlink_to(raw)
                theirs = run(["sh", "-c", "tar --format=oldgnu -S -h -cf - disk.raw | gzip -9 "
                              "> theirs"], scratch / "theirs", args.runs, cwd=scratch)
                what = "`tar --format=oldgnu -S \\| gzip -9`"
            else:
                theirs = run(["qemu-img", "convert", "-f", "raw", *QEMU[fmt], str(raw),
                              str(scratch / "theirs")], scratch / "theirs", args.runs)
                what = "`qemu-img convert " + " ".join(QEMU[fmt]) + "`"
            rows.append((fmt, what, ours, theirs))
    lines = ["# Virtual-disk containers: 1 GiB raw (256 MiB data, the rest holes)", "",
             machine(), "",
             "| format | ours wall s | ours CPU s | ours RSS MB | ours MiB | same bytes | tool | "
             "tool wall s | tool CPU s | tool RSS MB | tool MiB | same bytes | wall ratio | "
             "CPU ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for fmt, what, (m, size, same), (tm, tsize, tsame) in rows:
        lines.append(
            f"| {fmt} | {m.seconds:.2f} | {m.cpu:.2f} | {m.rss_mb:.0f} | {size / MiB:.1f} | "
            f"{'yes' if same else 'no'} | {what} | {tm.seconds:.2f} | {tm.cpu:.2f} | "
            f"{tm.rss_mb:.0f} | {tsize / MiB:.1f} | {'yes' if tsame else 'no'} | "
            f"{m.seconds / tm.seconds:.2f} | {m.cpu / max(tm.cpu, 0.01):.2f} |")
    lines += ["", f"`python -m bench.vdisk --runs {args.runs}`; medians; ratios = ours / tool "
              "(below 1 is faster); CPU = user + system seconds of the process tree; "
              "\"same bytes\": every run wrote identical bytes.",
              "", f"Load average when done: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(wall times on a shared machine are noisy)."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
