"""The cache under stress: concurrent builds sharing one empty cache, and ``kill -9`` mid-pull.

Builds run as real ``image-composer build`` processes pulling from Debian's docker-registry
through a slow proxy (so pulls overlap and kills land in the middle of downloads).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composer.cache.maintain import verify
from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from tests.integration.conftest import ProxyPlan
from tests.unit.test_build import module_tar, tar_of

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def noise(seed: int, size: int) -> bytes:
    """Incompressible, deterministic bytes (so layers are big on the wire)."""
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def pushed(registry, tmp_path_factory) -> dict[str, str]:
    """kernel, init (three ~1.5 MB layers) and a container image, pushed to the registry."""
    base = tmp_path_factory.mktemp("stress")
    store = Cache(base / "store")
    images = {
        "kernel": [tar_of({"kernel": b"not really a bzImage", "kernel.tar": module_tar()})],
        "init": [tar_of({"init": b"#!/bin/sh\necho hi\n", f"blob{n}": noise(n, 1_500_000)})
                 for n in range(3)],
        "hello": [tar_of({"bin/hello": b"#!/bin/sh\necho hello\n"})],
    }
    refs = {}
    for tag, layers in images.items():
        written = write_image(store, layers, config={"Cmd": ["/bin/hello"]})
        export_layout(store, written, base / tag, "1")
        refs[tag] = registry.push_layout(base / tag, "1", f"stress/{tag}")
    return refs


def write_spec(path: Path, host: str, refs: dict[str, str]) -> Path:
    def via(ref: str) -> str:
        return host + ref[ref.index("/"):]

    path.write_text(f"""\
kernel:
  image: {via(refs['kernel'])}
  cmdline: console=ttyS0
init:
  - {via(refs['init'])}
onboot:
  - name: hello
    image: {via(refs['hello'])}
""")
    return path


def build_argv(spec: Path, cache: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "composer", "build", "-f", "tar,kernel+initrd", "-o", str(out),
            "--cache", str(cache), str(spec)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "composer", *args], capture_output=True,
                          text=True, check=False, cwd=ROOT)


def outputs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_four_builds_at_once_on_one_empty_cache(registry, pushed, proxy_for, tmp_path):
    proxy = proxy_for(registry, ProxyPlan(delay=0.001))
    spec = write_spec(tmp_path / "s.yml", proxy.host, pushed)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen(build_argv(spec, cache, tmp_path / f"out{n}"), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    results = [(p.communicate(), p.returncode) for p in procs]
    for (_out, err), status in results:
        assert status == 0, err
    first = outputs(tmp_path / "out0")
    assert {"s-cmdline", "s-initrd.img", "s-kernel", "s.tar"} <= set(first)
    for n in range(1, 4):
        assert outputs(tmp_path / f"out{n}") == first
    assert verify(Cache(cache)) == []
    assert list((cache / "tmp").iterdir()) == []
    # the layers were really downloaded concurrently by several processes
    blob_gets = [p for p, _, status in proxy.plan.log if "/blobs/" in p and status == 200]
    assert len(blob_gets) > len(set(blob_gets))


def test_kill_9_during_pulls_never_corrupts_the_cache(registry, pushed, proxy_for, tmp_path):
    proxy = proxy_for(registry, ProxyPlan(delay=0.003))
    spec = write_spec(tmp_path / "s.yml", proxy.host, pushed)
    cache = tmp_path / "cache"
    rng = random.Random(20240229)  # fixed seed: the same kill points on every run
    killed_running = 0
    for n in range(20):
        proc = subprocess.Popen(build_argv(spec, cache, tmp_path / f"out{n}"), cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.5))
        if proc.poll() is None:  # poll() reaps a finished one: only kill a live pid
            killed_running += 1
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        checked = cli("cache", "verify", "--cache", str(cache))
        assert checked.returncode == 0, f"kill {n}: {checked.stderr}"
        # once a pull got all the way through, start again from nothing but the leftovers
        listed = cli("cache", "ls", "--cache", str(cache)).stdout
        if "stress/init:1" in listed and "(incomplete)" not in listed:
            for ref in listed.splitlines():
                assert cli("cache", "rm", "--cache", str(cache), ref.split("\t")[0]) \
                    .returncode == 0
            assert cli("cache", "clean", "--cache", str(cache)).returncode == 0
    assert killed_running > 0
    final = subprocess.run(build_argv(spec, cache, tmp_path / "final"), cwd=tmp_path,
                           capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr
    assert verify(Cache(cache)) == []
    clean = subprocess.run(build_argv(spec, tmp_path / "fresh", tmp_path / "clean"),
                           cwd=tmp_path, capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stderr
    assert outputs(tmp_path / "final") == outputs(tmp_path / "clean")
