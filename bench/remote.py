"""Bench row for the remote build cache: builder B (empty local cache, ``--cache-from``) against
builder A's cold build (empty local cache), one registry, the same spec.

    python -m bench.remote [--workload large] [--runs 3] [--formats tar,kernel+initrd]

The workload's image is pushed once (skopeo) to a Debian ``docker-registry`` started here on a
free loopback port, so A pulls and flattens from a registry as a CI builder does. Per run, in
a fresh repository: A builds cold without a remote cache (the baseline), A' builds cold with
``--cache-to`` (what publishing costs), then B builds with ``--cache-from`` into another empty
cache. B's outputs must be byte-identical to A's. Rows per format set go to stdout and
bench/RESULTS-remote.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests

from bench.__main__ import CMDLINE, EPOCH, HERE, Measure, composer, load_line, machine, timed
from bench.workload import WORKLOADS, generate, kernel_file


@contextlib.contextmanager
def registry(base: Path) -> Iterator[str]:
    """A docker-registry on a free loopback port, storage under ``base``; stopped after."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (base / "storage").mkdir(parents=True)
    config = base / "config.yml"
    config.write_text("version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {base / 'storage'}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5).ok:
                    break
            except requests.ConnectionError:
                if proc.poll() is not None:
                    sys.exit("bench: docker-registry exited")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.endswith(".build-env.json")}


def one_run(spec: Path, host: str, formats: str, keys: tuple[Path, Path], scratch: Path,
            n: int) -> tuple[Measure, Measure, Measure]:
    repo = f"{host}/bench/cache{n}-{formats.replace(',', '-').replace('+', '_')}"

    def build(who: str, *extra: str) -> Measure:
        # not -q: its warnings (a failed publish, a rejected entry) go to LOG for the checks
        log = scratch / f"{who}.log"
        return timed(["sh", "-c", 'log="$1"; shift; exec "$@" 2>"$log"', "sh", str(log),
                      *composer("build", "-f", formats, "-o", str(scratch / f"out-{who}"),
                                "--cache", str(scratch / f"cache-{who}"),
                                "--source-date-epoch", EPOCH, *extra, str(spec))])

    cold = build("a")
    publish = build("a2", "--cache-to", repo, "--cache-key", str(keys[0]))
    b = build("b", "--cache-from", repo, "--cache-trust", str(keys[1]),
              "--cache-from-required")
    for who in ("a2", "b"):
        said = (scratch / f"{who}.log").read_text()
        if "warning" in said or ("published" if who == "a2" else "from the remote") not in said \
                or (who == "b" and formats == "kernel+initrd" and "tar not fetched" not in said):
            sys.exit(f"bench: builder {who}:\n{said}")
    if files(scratch / "out-a") != files(scratch / "out-b"):
        sys.exit("bench: builder B's outputs differ from A's")
    if any(p.is_file() for p in (scratch / "cache-b" / "uncompressed").rglob("*")):
        sys.exit("bench: builder B pulled image layers")
    for who in ("a", "a2", "b"):
        shutil.rmtree(scratch / f"cache-{who}", ignore_errors=True)
        shutil.rmtree(scratch / f"out-{who}", ignore_errors=True)
    return cold, publish, b


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.remote")
    parser.add_argument("--workload", default="large", choices=sorted(WORKLOADS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--formats", action="append",
                        help="format sets, one row group each (default: tar, kernel+initrd "
                        "and tar,kernel+initrd)")
    parser.add_argument("--work-dir", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS-remote.md")
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo", "/usr/bin/time"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is required (scripts/setup.sh --test installs it)")
    format_sets = args.formats or ["tar", "kernel+initrd", "tar,kernel+initrd"]
    work = WORKLOADS[args.workload]
    print(f"bench: generating workload {work} ...", file=sys.stderr)
    layout = generate(work, args.work_dir / work.key)
    kernel = kernel_file(args.work_dir)
    from composer.repro import attest

    rows: list[str] = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp, registry(Path(tmp) / "reg") \
            as host:
        scratch = Path(tmp)
        keys = attest.generate_key(scratch / "ci")
        subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet",
                        "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:bench",
                        f"docker://{host}/bench/work:bench"], check=True)
        spec = scratch / "bench.yml"
        spec.write_text(f"init:\n  - {host}/bench/work:bench\nfiles:\n  - path: boot/kernel\n"
                        f"    source: {kernel}\n  - path: boot/cmdline\n"
                        f"    contents: \"{CMDLINE}\"\n")
        for formats in format_sets:
            results = []
            for n in range(args.runs):
                results.append(one_run(spec, host, formats, keys, scratch, n))
                print(f"bench: -f {formats}: run {n + 1}/{args.runs} done", file=sys.stderr)
            cold = statistics.median(r[0].seconds for r in results)
            publish = statistics.median(r[1].seconds for r in results)
            b = statistics.median(r[2].seconds for r in results)
            rss = max(r[2].rss_mb for r in results)
            rows.append(f"| `-f {formats}`: B (empty cache, --cache-from) vs A cold | {b:.2f} | "
                        f"{cold:.2f} | {b / cold:.2f}x | {rss:.0f} |")
            rows.append(f"| `-f {formats}`: A cold with --cache-to (publishing) vs A cold | "
                        f"{publish:.2f} | {cold:.2f} | {publish / cold:.2f}x | "
                        f"{max(r[1].rss_mb for r in results):.0f} |")
    lines = [f"# Remote build cache ({work.name}: {work.total_bytes // 2**20} MiB, "
             f"{work.files} files, {work.layers} layers; image pulled from a loopback "
             "docker-registry)", "", machine(), "",
             "| what | seconds | A cold s | ratio | peak RSS MB |", "|---|---|---|---|---|",
             *rows, "", f"Medians of {args.runs} runs; regenerate with "
             f"`python -m bench.remote --workload {work.name} --runs {args.runs}`. "
             "B's outputs are checked byte-identical to A's, and B's cache to hold no layer.",
             "", load_line(load_start)]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
