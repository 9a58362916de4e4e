"""The example packages, built from the real pinned Debian debs (fetched with apt-get download).

Checks what each image holds against dpkg-deb (the oracle for the .deb contents), that the
hand-made modules.dep matches the modules actually selected, and that a second build in another
process (other umask, TZ, hash seed, cwd, cache) gives the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from composer import canonjson
from composer.epoch import DEFAULT_EPOCH
from composer.images.cache import Cache
from composer.pkg import build as pkg
from composer.pkg import package as pkgdir
from composer.tar.canon import Entry, Kind
from composer.tar.read import read_entries
from tests.integration.conftest import require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NAMES = ("hello", "init", "kernel")
# Committed expectations: the tag (a hash of the package directory) and the uncompressed layer
# digest (independent of zlib) of each example package with the default epoch. Any machine must
# derive the same; update them when a package is changed on purpose.
GOLDEN = {
    "hello": ("0dfd86c7787cf6dd593a822c7d8a5276ac1b0a11",
              "sha256:cecad35175ba3928d68b9f44eebdf94ffa0bc83ef03b3e8b5275cd9ae1816896"),
    "init": ("f555cfcbd8b4f7a34206242a0e57871d27d7bf02",
             "sha256:5b4a46f95a3d747661ca72ad90c3fc3d4c6211a64eb3e23ac8a4a51af7586f13"),
    "kernel": ("d482880ab4d7824a4d994e9a527804f8674a2cce",
               "sha256:c249a837f3e46f31fbe858aca69d7fdd939a8a4f334ba56000bfd34f30f74826"),
}


@pytest.fixture(scope="session")
def built(example_packages) -> dict[str, tuple[Cache, pkg.PackageResult]]:
    return example_packages


def image(cache: Cache, result: pkg.PackageResult) -> tuple[dict, dict[str, tuple[Entry, bytes]]]:
    manifest = canonjson.loads(cache.read_blob(result.digest))
    config = canonjson.loads(cache.read_blob(manifest["config"]["digest"]))
    [layer] = manifest["layers"]
    tar = gzip.decompress(cache.read_blob(layer["digest"]))
    return config, {e.path: (e, r.read() if r else b"") for e, r in read_entries(io.BytesIO(tar))}


def deb_files(debs_dir: Path, name: str) -> dict[str, bytes]:
    """sha256 of every regular file in a .deb, as dpkg-deb unpacks it."""
    [path] = debs_dir.glob(f"{name}_*_amd64.deb")
    require_tool("dpkg-deb", "dpkg")
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(path)], stdout=subprocess.PIPE)
    out = {}
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
        for member in tf:
            if member.isfile():
                out[os.path.normpath(member.name)] = hashlib.sha256(
                    tf.extractfile(member).read()).digest()  # type: ignore[union-attr]
    assert proc.wait() == 0
    return out


def test_tags_match_show_tag(built) -> None:
    for name in NAMES:
        _, result = built[name]
        assert result.ref == pkgdir.package_ref(EXAMPLES / "packages" / name)
        assert result.ref.startswith(f"image-composer/{name}:")


def test_golden_tags_and_layers(built) -> None:
    got = {}
    for name in NAMES:
        cache, result = built[name]
        manifest = canonjson.loads(cache.read_blob(result.digest))
        config = canonjson.loads(cache.read_blob(manifest["config"]["digest"]))
        got[name] = (result.ref.rsplit(":", 1)[1], config["rootfs"]["diff_ids"][0])
    assert got == GOLDEN


def test_kernel_image(built, debs_dir: Path) -> None:
    config, files = image(*built["kernel"])
    assert list(files) == ["kernel", "kernel.tar"]
    assert config["config"] == {}
    inner = {e.path: (e, r.read() if r else b"")
             for e, r in read_entries(io.BytesIO(files["kernel.tar"][1]))}
    version = "6.1.0-50-amd64"
    mods = f"lib/modules/{version}"
    oracle = deb_files(debs_dir, "linux-image-6.1.0-50-amd64")
    assert hashlib.sha256(files["kernel"][1]).digest() == oracle[f"boot/vmlinuz-{version}"]
    kos = sorted(p for p in inner if p.endswith(".ko"))
    assert len(kos) == 24
    for path in [*kos, f"{mods}/modules.order", f"{mods}/modules.builtin"]:
        assert hashlib.sha256(inner[path][1]).digest() == oracle[path], path
    # modules.dep names exactly the selected modules, and every dependency is present
    dep = inner[f"{mods}/modules.dep"][1].decode()
    named = set()
    for line in dep.splitlines():
        module, _, deps = line.partition(":")
        named.add(module)
        named.update(deps.split())
    assert {f"{mods}/{m}" for m in named} == set(kos)
    assert sum(e.size for e, _ in inner.values()) < 4_000_000  # "a few MB", not 390
    assert {e.mtime for e, _ in inner.values()} == {DEFAULT_EPOCH}


def test_init_and_hello_images(built) -> None:
    config, init = image(*built["init"])
    assert init["init"][0].mode == 0o755 and init["init"][1].startswith(b"#!/bin/sh\n")
    assert init["bin/busybox"][0].kind is Kind.FILE and init["bin/busybox"][0].mode == 0o755
    for applet in ("sh", "awk", "chroot", "mount", "poweroff", "sed"):
        assert init[f"bin/{applet}"][0].linkname == "busybox"
    assert not [p for p in init if p.startswith("usr")]
    config, hello = image(*built["hello"])
    assert config["config"]["Cmd"] == ["/bin/echo", "hello from the onboot container"]
    assert sorted(hello) == ["bin", "bin/busybox", "bin/echo", "bin/sh"]
    assert hello["bin/busybox"][1] == init["bin/busybox"][1]


def test_rebuild_elsewhere_is_identical(built, debs_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "4242", "TZ": "Asia/Kathmandu", "LC_ALL": "C"}
    env.pop("SOURCE_DATE_EPOCH", None)
    code = ("import os, sys; os.umask(0o077); from composer.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "pkg", "build", "--debs", str(debs_dir),
                           "--cache", str(tmp_path / "cache"),
                           *(str(EXAMPLES / "packages" / n) for n in NAMES)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(built[n][1]) for n in NAMES]
