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
# (The tags changed when build.yml gained its arches: parts; no amd64 layer did.)
GOLDEN = {
    "hello": ("6312c2a605382d99ea80d30ed3c27f6edad56d6b",
              "sha256:cecad35175ba3928d68b9f44eebdf94ffa0bc83ef03b3e8b5275cd9ae1816896"),
    "init": ("63c28a3eb9263237c715c1b2d084e23943ab76f1",
             "sha256:5b4a46f95a3d747661ca72ad90c3fc3d4c6211a64eb3e23ac8a4a51af7586f13"),
    "kernel": ("808f2283184b0737b99e0e47a68c25e85c78daf1",
               "sha256:c249a837f3e46f31fbe858aca69d7fdd939a8a4f334ba56000bfd34f30f74826"),
}

# The arm64 layers (pkg build --arch amd64,arm64), cross-built here from Debian's arm64 debs:
# the same bytes an arm64 machine makes, as nothing in a package build runs its programs.
ARM64_GOLDEN = {
    "hello": "sha256:c59107bdbda490cad0e69933e4b5b23d8dd2127df04f87fe6c85c1727907390a",
    "kernel": "sha256:94da15733d5081ba7d8b22b7007f36b0126e2217a4588fe2167da09bdcf09212",
    "rcinit": "sha256:b8b67ab02685b9d8e73d7a9c59f2c60b3873e3253e69f67ee1dd3535ccf968e5",
    "runc": "sha256:d20a4cbabe9cb00534c4b1f3cecb6ca8806176296a557f0855cade0e239a753f",
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


def deb_files(debs_dir: Path, name: str, arch: str = "amd64") -> dict[str, bytes]:
    """sha256 of every regular file in a .deb, as dpkg-deb unpacks it."""
    [path] = debs_dir.glob(f"{name}_*_{arch}.deb")
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


def layer_of(cache: Cache, manifest_digest: str) -> tuple[dict, dict[str, tuple[Entry, bytes]]]:
    manifest = canonjson.loads(cache.read_blob(manifest_digest))
    config = canonjson.loads(cache.read_blob(manifest["config"]["digest"]))
    [layer] = manifest["layers"]
    tar = gzip.decompress(cache.read_blob(layer["digest"]))
    return config, {e.path: (e, r.read() if r else b"") for e, r in read_entries(io.BytesIO(tar))}


def test_two_arch_tags_are_indexes_and_amd64_is_unchanged(two_arch_packages, built) -> None:
    """Each tag names an index of exactly amd64 and arm64; its amd64 image is byte for byte the
    single-arch build's, and the arm64 layers are the committed ones."""
    arm64 = {}
    for name, (cache, result) in two_arch_packages.items():
        index = canonjson.loads(cache.read_blob(result.digest))
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert [m["platform"] for m in index["manifests"]] == [
            {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]
        assert cache.lookup(result.cache_name)["digest"] == result.digest
        assert result.ref == pkgdir.package_ref(EXAMPLES / "packages" / name)
        if name in built:
            assert index["manifests"][0]["digest"] == built[name][1].digest
        config, _ = layer_of(cache, index["manifests"][1]["digest"])
        assert config["architecture"] == "arm64"
        arm64[name] = config["rootfs"]["diff_ids"][0]
    assert arm64 == ARM64_GOLDEN


def test_arm64_kernel_image(two_arch_packages, debs_dir: Path) -> None:
    cache, result = two_arch_packages["kernel"]
    _, files = layer_of(cache, result.image_for("arm64").digest)
    assert list(files) == ["kernel", "kernel.tar"]
    version = "6.1.0-50-arm64"
    mods = f"lib/modules/{version}"
    oracle = deb_files(debs_dir, "linux-image-6.1.0-50-arm64", "arm64")
    kernel = files["kernel"][1]
    assert hashlib.sha256(kernel).digest() == oracle[f"boot/vmlinuz-{version}"]
    assert kernel[:2] == b"MZ" and kernel[0x38:0x3C] == b"ARMd"  # an uncompressed arm64 Image
    inner = {e.path: (e, r.read() if r else b"")
             for e, r in read_entries(io.BytesIO(files["kernel.tar"][1]))}
    kos = sorted(p for p in inner if p.endswith(".ko"))
    assert len(kos) == 22 and f"{mods}/kernel/drivers/input/keyboard/gpio_keys.ko" in kos
    for path in [*kos, f"{mods}/modules.order", f"{mods}/modules.builtin"]:
        assert hashlib.sha256(inner[path][1]).digest() == oracle[path], path
    named = set()
    for line in inner[f"{mods}/modules.dep"][1].decode().splitlines():
        module, _, deps = line.partition(":")
        named.update([module, *deps.split()])
    assert {f"{mods}/{m}" for m in named} == set(kos)
    assert not [p for p in inner if "amd64" in p]
    # the Pi 3 B/B+ device trees, where linuxkit's arm64 kernels have them (format rpi3)
    dtbs = sorted(p for p in inner if p.endswith(".dtb"))
    assert dtbs == ["boot/dtb/broadcom/bcm2837-rpi-3-b-plus.dtb",
                    "boot/dtb/broadcom/bcm2837-rpi-3-b.dtb"]
    for path in dtbs:
        deb_path = f"usr/lib/linux-image-{version}/broadcom/{path.rsplit('/', 1)[1]}"
        assert hashlib.sha256(inner[path][1]).digest() == oracle[deb_path], path
    assert not [p for p in inner if p.startswith("usr")]


def test_arm64_runc_and_busybox_are_aarch64(two_arch_packages) -> None:
    """ELF machine 183 (EM_AARCH64) for every binary, and runc finds its loader."""
    cache, result = two_arch_packages["runc"]
    _, runc = layer_of(cache, result.image_for("arm64").digest)
    loader = "aarch64-linux-gnu/ld-linux-aarch64.so.1"
    assert runc["lib/ld-linux-aarch64.so.1"][0].linkname == loader
    cache, result = two_arch_packages["hello"]
    _, hello = layer_of(cache, result.image_for("arm64").digest)
    for data in (runc["usr/sbin/runc"][1], runc["usr/bin/gojq"][1], hello["bin/busybox"][1],
                 runc["lib/aarch64-linux-gnu/libc.so.6"][1]):
        assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == 183
    assert not [p for p in runc if "x86_64" in p]
