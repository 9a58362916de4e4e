"""A lean cache: uncompressed layer copies dropped after a build (never under another build),
``cache gc --max-size`` evicting least-recently-used entries, and gc running beside builds in
other processes without breaking any of them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from composer.cache import gc
from composer.images.cache import Cache
from tests.unit.test_incremental import EPOCH, build, oci, spec  # noqa: F401 - shared fixture


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "composer", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_trim_leaves_the_layers_of_a_build_in_progress(tmp_path):
    cache = Cache(tmp_path / "c")
    plain = cache.uncompressed_path("sha256:" + "a" * 64)
    plain.parent.mkdir(parents=True)
    plain.write_bytes(b"layer")
    with cache.in_use():  # another build reads the cache
        assert gc.trim(cache) == 0
    assert plain.exists()
    assert gc.trim(cache) == 5 and not plain.exists()


def test_gc_evicts_the_least_recently_used_first(tmp_path, oci):  # noqa: F811
    build(tmp_path, spec(oci), "a")
    build(tmp_path, spec(oci, service="small2"), "b")
    root = tmp_path / "cache"
    entries = {e.key: e for e in gc.candidates(Cache(root)) if e.kind == "rootfs"}
    assert len(entries) == 2
    # the first build's rootfs was used last (set the touch files' times explicitly)
    keys = sorted(entries, key=lambda k: entries[k].last_use)
    older, newer = keys[1], keys[0]
    os.utime(root / "used" / f"rootfs-{older}", (1000, 1000))
    os.utime(root / "used" / f"rootfs-{newer}", (2000, 2000))
    size = gc.disk_size(root)
    tar = (root / "rootfs" / f"{older}.tar").stat().st_size
    proc = cli("cache", "gc", "--cache", str(root), "--max-size", str(size - tar // 2))
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert not (root / "rootfs" / f"{older}.tar").exists()
    assert (root / "rootfs" / f"{newer}.tar").exists()
    assert f"evicted rootfs {older}" in out
    assert gc.disk_size(root) <= size - tar // 2


def test_gc_to_zero_empties_the_cache_and_the_next_build_makes_the_same_bytes(tmp_path, oci):  # noqa: F811
    _, first = build(tmp_path, spec(oci), "a")
    evicted, _, after = gc.gc(Cache(tmp_path / "cache"), 0)
    assert {e.kind for e in evicted} == {"rootfs", "image"}
    assert not list((tmp_path / "cache" / "blobs" / "sha256").iterdir())
    assert after < 4096  # only the layout's small files are left
    assert not list((tmp_path / "cache" / "rootfs" / "regions").iterdir())
    _, again = build(tmp_path, spec(oci), "b")
    assert again == first


def test_gc_beside_concurrent_builds_breaks_none(tmp_path, oci):  # noqa: F811
    _, expected = build(tmp_path, spec(oci), "ref", cache="ref-cache")
    specs = []
    for n in range(3):
        path = tmp_path / f"s{n}" / "inc.yml"
        path.parent.mkdir()
        path.write_text(spec(oci))
        specs.append(path)
    root = str(tmp_path / "shared")
    builds = [cli("build", "-f", "tar", "--name", "inc", "-o", str(tmp_path / f"o{n}"),
                  "--cache", root, "--source-date-epoch", EPOCH, str(path))
              for n, path in enumerate(specs)]
    gcs = [cli("cache", "gc", "--cache", root, "--max-size", "0") for _ in range(3)]
    for proc in builds + gcs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for n in range(3):
        made = {p.name: p.read_bytes() for p in (tmp_path / f"o{n}").iterdir()
                if p.name in expected}
        assert made == expected


@pytest.mark.parametrize(("text", "size"), [("1024", 1024), ("500M", 500 << 20),
                                            ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("0", 0)])
def test_sizes(text, size):
    assert gc.parse_size(text) == size


def test_a_bad_size_is_one_error_line(tmp_path):
    proc = cli("cache", "gc", "--cache", str(tmp_path), "--max-size", "lots")
    _, err = proc.communicate()
    assert proc.returncode == 1 and err.startswith("error: --max-size: not a size")
