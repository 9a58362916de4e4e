"""Deflate throughput of the candidate libraries on one input, single-threaded.

    python -m bench.deflate [--input FILE] [--mib 30] [--runs 3]

Rows: one raw deflate stream per library and level (the system zlib Python links, zlib-ng from
its wheel, ISA-L from its wheel: levels 0-3 only), then THE gzip writer
(:class:`composer.streams.gz.GzipWriter`, 256 KiB blocks primed with 32 KiB, one thread) with
its pinned library and, for comparison, with the pin pointed at the system zlib. MB/s is input
bytes per CPU second (process time, so other load on the machine matters little) of the best of
``--runs``; the ratio is compressed / input size. Without
``--input``, the input is the first ``--mib`` MiB of a tar of ``/usr/lib/python3*`` and
``/usr/bin`` (binaries and text, like a rootfs).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path


def sample(mib: int) -> bytes:
    paths = [str(p) for p in sorted(Path("/usr/lib").glob("python3*"))] + ["/usr/bin"]
    proc = subprocess.run(["tar", "cf", "-", "--sort=name", *paths], capture_output=True,
                          check=False)
    return proc.stdout[:mib << 20]


def best(fn: Callable[[], int], runs: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(runs):
        t = time.process_time()
        size = fn()
        times.append(time.process_time() - t)
    return min(times), size


def one_stream(lib, level: int, data: bytes) -> Callable[[], int]:
    def run() -> int:
        c = lib.compressobj(level, 8, -15, 8, 0)
        return len(c.compress(data) + c.flush())
    return run


def gzip_writer(data: bytes) -> Callable[[], int]:
    from composer.streams.gz import GzipWriter

    def run() -> int:
        buf = io.BytesIO()
        with GzipWriter(buf, 6, threads=1) as gz:
            gz.write(data)
        return len(buf.getvalue())
    return run


def main(argv: list[str] | None = None) -> int:
    from isal import isal_zlib
    from zlib_ng import zlib_ng

    from composer.streams import deflate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path)
    parser.add_argument("--mib", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    data = args.input.read_bytes()[:args.mib << 20] if args.input else sample(args.mib)
    rows: list[tuple[str, Callable[[], int]]] = []
    for level in (1, 6, 9):
        rows.append((f"system zlib {zlib.ZLIB_RUNTIME_VERSION} -{level}",
                     one_stream(zlib, level, data)))
        rows.append((f"zlib-ng {zlib_ng.ZLIBNG_VERSION} (wheel) -{level}",
                     one_stream(zlib_ng, level, data)))
    for level in (1, 2, 3):
        rows.append((f"isal (wheel) -{level}", one_stream(isal_zlib, level, data)))
    rows.append((f"GzipWriter -6, 1 thread, {deflate.library_id()}", gzip_writer(data)))
    print(f"input: {len(data)} bytes; best of {args.runs}; MB/s of CPU time")
    for label, fn in rows:
        seconds, size = best(fn, args.runs)
        print(f"{label:48} {len(data) / seconds / 1e6:7.1f} MB/s  ratio {size / len(data):.4f}")
    pinned = deflate._lib()
    deflate._LIB = zlib
    try:
        seconds, size = best(gzip_writer(data), args.runs)
    finally:
        deflate._LIB = pinned
    print(f"{'GzipWriter -6, 1 thread, system zlib (unpinned)':48} "
          f"{len(data) / seconds / 1e6:7.1f} MB/s  ratio {size / len(data):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
