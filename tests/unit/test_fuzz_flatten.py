"""Fuzz the layer reader and flattener with random member lists (whiteouts, links, ``..``,
absolute names, duplicates, devices): either a clean LayerError/ComposerError, or a tree whose
canonical tar passes :func:`composer.tar.check.check_tar` with every path inside the root.

Bounded for CI; ``FUZZ_EXAMPLES`` raises the count for a longer run.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer import canonjson
from composer.epoch import Epoch
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.model import Image, Layer
from composer.images.write import write_image
from composer.rootfs.assemble import write_tree
from composer.rootfs.flatten import image_tree
from composer.tar.check import check_tar
from composer.tar.read import read_entries

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PARTS = ["a", "b", "etc", "..", ".", "", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh.", ".wh..",
         ".wh...", "é", "x" * 120]
NAMES = st.lists(st.sampled_from(PARTS), min_size=1, max_size=4).map("/".join) | st.sampled_from(
    ["/", "/a", "./a", "a/", "../../a", "/etc/passwd", "a/../../../b", ".wh.", ".."])
TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
         "link": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE,
         "blk": tarfile.BLKTYPE}


@st.composite
def member(draw) -> tuple[tarfile.TarInfo, bytes | None]:
    kind = draw(st.sampled_from(sorted(TYPES)))
    info = tarfile.TarInfo(draw(NAMES))
    info.type = TYPES[kind]
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o1777, 0o000, 0o7777]))
    info.mtime = draw(st.integers(0, 2**33))
    info.uid, info.gid = draw(st.integers(0, 2**21)), draw(st.integers(0, 70000))
    if kind in ("sym", "link"):
        info.linkname = draw(NAMES)
    if kind in ("chr", "blk"):
        info.devmajor, info.devminor = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    data = draw(st.binary(max_size=64)) if kind == "file" else None
    info.size = len(data) if data is not None else 0
    return info, data


def layer(members, fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


LAYERS = st.lists(st.tuples(st.lists(member(), max_size=8),
                            st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])),
                  min_size=1, max_size=3)


def flatten_to_tar(cache: Cache, layers: list[bytes], out: Path) -> None:
    written = write_image(cache, layers)
    manifest = canonjson.loads(written.manifest)
    config = canonjson.loads(written.config)
    image = Image("fuzz/image:1", written.digest, config,
                  tuple(Layer(d["digest"], d["size"], d["mediaType"], diff)
                        for d, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"],
                                           strict=True)))
    tree = image_tree(image, cache, implicit_mtime=0, source="s", location="l")
    with open(out, "wb") as fh:
        write_tree(tree, fh, Epoch(None))


@FUZZ
@given(LAYERS)
def test_random_layers_flatten_to_a_canonical_tar_or_fail_cleanly(layers) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rootfs.tar"
        try:
            flatten_to_tar(Cache(Path(tmp) / "cache"), [layer(ms, f) for ms, f in layers], out)
        except ComposerError as exc:  # LayerError, TreeError, DigestMismatch...
            assert str(exc) and "\n" not in str(exc)
            return
        assert check_tar(out) is None
        with open(out, "rb") as fh:
            for entry, _ in read_entries(fh):
                parts = entry.path.split("/")
                assert entry.path and not entry.path.startswith("/")
                assert ".." not in parts and "." not in parts and "" not in parts
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["cache", "rootfs.tar"]


@FUZZ
@given(st.binary(min_size=1, max_size=3000), st.integers(0, 2))
def test_random_bytes_as_a_layer_fail_cleanly(junk: bytes, where: int) -> None:
    """Junk after, inside or instead of a valid tar: an error, or (trailing junk) a tree."""
    valid = layer([(tarfile.TarInfo("a"), b"")], tarfile.PAX_FORMAT)
    data = [junk, valid[:512] + junk, valid[:1024] + junk][where]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            flatten_to_tar(Cache(Path(tmp) / "cache"), [data], Path(tmp) / "r.tar")
        except ComposerError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
        assert check_tar(Path(tmp) / "r.tar") is None
