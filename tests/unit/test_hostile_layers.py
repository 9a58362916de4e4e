"""Hostile layers: each gives a clear one-line error or a result confined to the rootfs, nothing
is written outside the output directory and the cache, and memory does not follow the input size.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from composer.images.cache import Cache
from composer.images.model import Image, Layer
from composer.images.write import export_layout, write_image
from composer.rootfs.flatten import LayerError, image_tree
from composer.streams.digest import DigestMismatch
from tests.fixtures.conformance import D, L, S, m, tar

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def raw_image(cache: Cache, blob: bytes, plain: bytes, media: str = GZ,
              size: int | None = None) -> Image:
    diff_id = "sha256:" + hashlib.sha256(plain).hexdigest()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    path = cache.blob_path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)  # planted directly: the cache is what is being tested
    return Image("evil/layer:1", "sha256:" + "0" * 64, {},
                 (Layer(digest, len(blob) if size is None else size, media, diff_id),))


def flatten(cache: Cache, image: Image):
    return image_tree(image, cache, implicit_mtime=0, source="s", location="l")


def test_corrupt_tar_is_a_clear_error(tmp_path):
    junk = b"\x89PNG not a tar" * 100
    cache = Cache(tmp_path)
    with pytest.raises(LayerError, match=r"evil/layer:1 layer 0 .*unreadable tar"):
        flatten(cache, raw_image(cache, gzip.compress(junk), junk))


def test_truncated_gzip_is_a_clear_error_and_not_cached(tmp_path):
    plain = tar(m("f", data=os.urandom(100_000)))
    blob = gzip.compress(plain)[:-5000]
    cache = Cache(tmp_path)
    with pytest.raises(Exception, match="evil/layer:1") as info:
        flatten(cache, raw_image(cache, blob, plain))
    assert "Traceback" not in str(info.value)
    assert not list((tmp_path / "uncompressed" / "sha256").iterdir())


def test_blob_shorter_than_its_descriptor_is_rejected(tmp_path):
    plain = tar(m("f", data=b"x"))
    blob = gzip.compress(plain)
    cache = Cache(tmp_path)
    with pytest.raises(DigestMismatch, match="expected"):
        flatten(cache, raw_image(cache, blob, plain, size=len(blob) + 10))


def test_gzip_bomb_streams_in_bounded_memory(tmp_path):
    """256 MiB of zeros in a ~250 KiB gzip: decompressed to the cache in constant memory."""
    buf = io.BytesIO()
    info = tarfile.TarInfo("zeros")
    info.size = 256 * 2**20
    hasher = hashlib.sha256()

    class Zeros(io.RawIOBase):
        left = info.size

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    class Tee(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            hasher.update(data)
            gz.write(data)
            return len(data)

    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=Tee(), mode="w|") as tf:
        tf.addfile(info, io.BufferedReader(Zeros()))
    blob = buf.getvalue()
    assert len(blob) < 2**20
    cache = Cache(tmp_path)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    cache.blob_path(digest).parent.mkdir(parents=True)
    cache.blob_path(digest).write_bytes(blob)
    image = Image("evil/bomb:1", "sha256:" + "0" * 64, {},
                  (Layer(digest, len(blob), GZ, "sha256:" + hasher.hexdigest()),))
    tracemalloc.start()
    tree = flatten(cache, image)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert tree.get("zeros").entry.size == 256 * 2**20
    assert peak < 16 * 2**20, f"peak {peak} bytes"


@pytest.mark.parametrize("members, expect", [
    ([m("../../../../etc/passwd", data=b"x")], {"etc": "dir", "etc/passwd": "file"}),
    ([m("/abs/../../x", data=b"x")], {"x": "file"}),
    ([m("t", data=b"x"), m("h", L, link="../../../../t")], {"h": "file", "t": "hardlink"}),
    ([m("up", S, link="../../../.."), m("up/esc", data=b"x")], {"up": "symlink",
                                                                 "esc": "file"}),
    # an init image's etc becomes a real directory again (linuxkit's fixed etc/hosts etc.)
    ([m("etc", S, link="/"), m("etc/shadow", data=b"x")], {"etc": "dir", "shadow": "file"}),
    ([m("d", D), m("d/../../../x", data=b"x")], {"d": "dir", "x": "file"}),
])
def test_escapes_are_confined_to_the_rootfs(tmp_path, members, expect):
    cache = Cache(tmp_path / "cache")
    written = write_image(cache, [tar(*members)])
    export_layout(cache, written, tmp_path / "oci", "evil")
    spec = tmp_path / "evil.yml"
    spec.write_text(f"init:\n  - oci:{tmp_path / 'oci'}:evil\n")
    before = set(Path(tmp_path).rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "composer", "build", "-f", "tar", "-o",
                           str(tmp_path / "out"), "--cache", str(tmp_path / "c2"), str(spec)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    created = set(Path(tmp_path).rglob("*")) - before
    assert all(p.is_relative_to(tmp_path / "out") or p.is_relative_to(tmp_path / "c2")
               for p in created), created
    with tarfile.open(tmp_path / "out" / "evil.tar") as tf:
        kinds = {t.name: ("dir" if t.isdir() else "symlink" if t.issym() else
                          "hardlink" if t.islnk() else "file") for t in tf}
    for path, kind in expect.items():
        assert kinds.get(path) == kind, (path, kinds)
    assert all(not n.startswith(("/", "..")) for n in kinds)


def test_hostile_layer_through_the_cli_is_one_line(tmp_path):
    cache = Cache(tmp_path / "cache")
    written = write_image(cache, [tar(m("a", L, link="missing"))])
    export_layout(cache, written, tmp_path / "oci", "evil")
    spec = tmp_path / "evil.yml"
    spec.write_text(f"init:\n  - oci:{tmp_path / 'oci'}:evil\n")
    proc = subprocess.run([sys.executable, "-m", "composer", "build", "-f", "tar", "-o",
                           str(tmp_path / "out"), "--cache", str(tmp_path / "c2"), str(spec)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "missing" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
