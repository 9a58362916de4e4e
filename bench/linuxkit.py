"""Rows against the real ``linuxkit build``: what our users would otherwise run.

linuxkit pulls from a registry (without Docker it cannot read an OCI layout), so both tools get
the same spec naming the workload and a stand-in kernel by digest in a loopback
``docker-registry`` started here; each side has its own empty cache for the cold rows.

- cold ``-f tar`` (empty caches, pull + flatten + tar);
- warm ``-f kernel+initrd`` (images cached; our phase-two output cache removed first, so the
  conversion is really done);
- an unchanged ``-f kernel+initrd`` rebuild (our output cache kept) against linuxkit's warm
  build, which has no such cache;
- each ``--initrd-compression`` choice against linuxkit's (gzip) warm ``kernel+initrd``;
- and, as notes, both caches' size on disk after the cold build.

linuxkit is a benchmark anchor, never a dependency: without ``--linuxkit PATH`` these rows are
skipped with a note (``../shared/tools/build-linuxkit.sh GITDIR OUT`` builds one from source).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.workload import kernel_image
from composer.streams import compress

CMDLINE = "console=ttyS0"


@contextlib.contextmanager
def loopback_registry(base: Path) -> Iterator[str]:
    """Debian's ``docker-registry`` on a free loopback port; yields ``127.0.0.1:PORT``."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = base / "storage"
    storage.mkdir(parents=True)
    config = base / "config.yml"
    config.write_text("version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {storage}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\n")
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if proc.poll() is not None:
                raise SystemExit(f"bench: docker-registry exited with {proc.returncode}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def _push(layout: Path, tag: str, ref: str) -> str:
    """``skopeo copy`` the layout's ``tag`` to ``ref``; returns ``ref`` pinned by digest."""
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--preserve-digests",
                    "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{ref}"],
                   check=True)
    digest = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format",
                             "{{.Digest}}", f"docker://{ref}"], check=True, text=True,
                            capture_output=True).stdout.strip()
    return f"{ref.rsplit(':', 1)[0]}@{digest}"


def spec_text(kernel_ref: str, image_ref: str) -> str:
    """One spec both tools read unchanged."""
    return (f"kernel:\n  image: {kernel_ref}\n  cmdline: \"{CMDLINE}\"\n  tar: none\n"
            f"init:\n  - {image_ref}\n")


def du(path: Path) -> int:
    """Bytes the tree occupies on disk (``du -sb`` counts apparent sizes; blocks tell more)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], check=True, text=True,
                         capture_output=True).stdout
    return int(out.split()[0])


def _linuxkit(binary: Path, fmt: str, spec: Path, out: Path, cache: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    return [str(binary), "build", "--format", fmt, "--dir", str(out), "--name", "bench",
            "--cache", str(cache), str(spec)]


def rows(binary: Path, layout: Path, kernel: Path, scratch: Path, n: int, *, epoch: str,
         timed, composer) -> tuple[dict, list[str]]:
    """The linuxkit rows of one run and the notes (cache sizes, initrd sizes) under them."""
    home = scratch / "lk-home"  # linuxkit reads ~/.linuxkit/config.yml and ~/.docker
    home.mkdir(exist_ok=True)
    lk_env = {**os.environ, "HOME": str(home)}
    kernel_layout = kernel_image(kernel, scratch / "kernel-layout")
    with loopback_registry(scratch / f"registry{n}") as host:
        image_ref = _push(layout, "bench", f"{host}/bench:bench")
        kernel_ref = _push(kernel_layout, "kernel", f"{host}/kernel:bench")
        spec = scratch / "bench.yml"
        spec.write_text(spec_text(kernel_ref, image_ref))
        ours_cache, lk_cache = scratch / f"lk-ours-cache{n}", scratch / f"lk-cache{n}"

        def ours(fmt: str, out: str, *extra: str):
            return timed(composer("build", "-q", "-f", fmt, "-o", str(scratch / out), "--cache",
                                  str(ours_cache), "--source-date-epoch", epoch, *extra,
                                  str(spec)))

        def theirs(fmt: str, out: str):
            return timed(_linuxkit(binary, fmt, spec, scratch / out, lk_cache), env=lk_env)

        results = {}
        results["cold -f tar, empty caches, vs linuxkit build"] = (
            ours("tar", f"lk-ours-tar{n}"), theirs("tar", f"lk-tar{n}"))
        sizes = (du(ours_cache), du(lk_cache))
        theirs_warm = theirs("kernel+initrd", f"lk-ki{n}")
        shutil.rmtree(ours_cache / "outputs", ignore_errors=True)
        warm = ours("kernel+initrd", f"lk-ours-ki{n}")
        results["warm -f kernel+initrd vs linuxkit build"] = (warm, theirs_warm)
        results["unchanged -f kernel+initrd rebuild vs linuxkit's warm build"] = (
            ours("kernel+initrd", f"lk-ours-ki-again{n}"), theirs_warm)
        initrd_sizes = {}
        for name in compress.NAMES:
            shutil.rmtree(ours_cache / "outputs", ignore_errors=True)
            out = f"lk-ours-ki-{name}{n}"
            results[f"warm -f kernel+initrd --initrd-compression {name} vs linuxkit (gzip)"] = (
                ours("kernel+initrd", out, "--initrd-compression", name), theirs_warm)
            initrd_sizes[name] = (scratch / out / "bench-initrd.img").stat().st_size
    lk_initrd = (scratch / f"lk-ki{n}" / "bench-initrd.img").stat().st_size
    notes = [f"Cache on disk after the cold `-f tar` build: image-composer {sizes[0] / 2**20:.0f}"
             f" MiB, linuxkit {sizes[1] / 2**20:.0f} MiB ({sizes[0] / sizes[1]:.2f}x).",
             "initrd sizes: " + ", ".join(f"{k} {v / 2**20:.1f} MiB"
                                          for k, v in initrd_sizes.items())
             + f"; linuxkit's (gzip) {lk_initrd / 2**20:.1f} MiB."]
    return results, notes

