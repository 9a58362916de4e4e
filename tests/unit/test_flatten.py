"""Layer flattening rules (OCI image-spec) and the tree's overlay semantics.

Each case builds real layer tars with :mod:`tarfile`, stores them as an image in a cache, flattens
it and compares the final tree with one written by hand from the spec.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from composer import canonjson
from composer.epoch import Epoch
from composer.images.cache import Cache
from composer.images.model import Image, Layer
from composer.images.write import write_image
from composer.rootfs.assemble import write_tree
from composer.rootfs.flatten import LayerError, image_tree
from composer.tar.canon import Kind
from composer.tar.read import read_entries


def member(name, kind="file", data=b"", mode=None, link="", mtime=100, uid=0, gid=0):
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                 "link": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE,
                 "chr": tarfile.CHRTYPE}[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.linkname = link
    info.mtime = mtime
    info.uid, info.gid = uid, gid
    info.size = len(data) if kind == "file" else 0
    return info, (data if kind == "file" else None)


def layer(*members, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def make_image(cache: Cache, *layers: bytes) -> Image:
    written = write_image(cache, list(layers))
    manifest = canonjson.loads(written.manifest)
    config = canonjson.loads(written.config)
    return Image(
        ref="test/image:1", digest=written.digest, config=config,
        layers=tuple(Layer(d["digest"], d["size"], d["mediaType"], diff)
                     for d, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"],
                                        strict=True)),
    )


def flatten(tmp_path, *layers: bytes) -> dict[str, tuple]:
    """Final tree as {path: (kind, mode, content or link target)} read back from the tar."""
    cache = Cache(tmp_path / "cache")
    tree = image_tree(make_image(cache, *layers), cache, implicit_mtime=0, source="s",
                      location="l")
    buf = io.BytesIO()
    write_tree(tree, buf, Epoch(None))
    out = {}
    for entry, reader in read_entries(io.BytesIO(buf.getvalue())):
        detail = reader.read() if reader else entry.linkname
        out[entry.path] = (entry.kind.name.lower(), oct(entry.mode), detail)
    return out


def test_whiteout_hides_lower_only(tmp_path):
    got = flatten(
        tmp_path,
        layer(member("a", "dir"), member("a/x", data=b"1"), member("a/y", data=b"2")),
        # the whiteout comes after a re-creation in the same layer: still hides only lower
        layer(member("a/z", data=b"3"), member("a/.wh.x"), member("a/.wh.z")),
    )
    assert got == {"a": ("dir", "0o755", ""), "a/y": ("file", "0o644", b"2"),
                   "a/z": ("file", "0o644", b"3")}


def test_opaque_directory_keeps_itself_and_same_layer_children(tmp_path):
    got = flatten(
        tmp_path,
        layer(member("d", "dir"), member("d/old", data=b"o"), member("d/sub", "dir"),
              member("d/sub/deep", data=b"x"), member("keep", data=b"k")),
        layer(member("d", "dir", mode=0o700), member("d/new", data=b"n"),
              member("d/.wh..wh..opq")),
    )
    assert got == {"d": ("dir", "0o700", ""), "d/new": ("file", "0o644", b"n"),
                   "keep": ("file", "0o644", b"k")}


def test_replacement_rules(tmp_path):
    got = flatten(
        tmp_path,
        layer(member("dir2file", "dir"), member("dir2file/child", data=b"c"),
              member("file2dir", data=b"f"), member("merge", "dir", mode=0o755),
              member("merge/kept", data=b"k")),
        layer(member("dir2file", data=b"now a file"), member("file2dir", "dir"),
              member("file2dir/x", data=b"x"), member("merge", "dir", mode=0o711)),
    )
    assert got == {
        "dir2file": ("file", "0o644", b"now a file"),
        "file2dir": ("dir", "0o755", ""), "file2dir/x": ("file", "0o644", b"x"),
        "merge": ("dir", "0o711", ""), "merge/kept": ("file", "0o644", b"k"),
    }


def test_hard_links_keep_content_when_target_is_replaced(tmp_path):
    got = flatten(
        tmp_path,
        layer(member("t", data=b"old"), member("l1", "link", link="t"),
              member("l2", "link", link="/t"), member("l3", "link", link="./t")),
        layer(member("t", data=b"new"), member("l4", "link", link="t")),
        layer(member(".wh.l1")),
    )
    assert got == {
        # sorted: l2 is the first path of the old group, so it holds the data
        "l2": ("file", "0o644", b"old"), "l3": ("hardlink", "0o644", "l2"),
        "l4": ("file", "0o644", b"new"), "t": ("hardlink", "0o644", "l4"),
    }


def test_symlinked_parent_resolves_inside_root(tmp_path):
    got = flatten(
        tmp_path,
        layer(member("etc", "sym", link="/"), member("up", "sym", link="../../..")),
        layer(member("etc/passwd", data=b"root"), member("up/x/y", data=b"y")),
    )
    assert got["passwd"] == ("file", "0o644", b"root")
    assert got["x/y"] == ("file", "0o644", b"y")
    assert "etc/passwd" not in got


def test_dot_dot_and_absolute_names_stay_inside(tmp_path):
    got = flatten(tmp_path, layer(member("../../escape", data=b"e"),
                                  member("/abs/file", data=b"a")))
    assert got["escape"] == ("file", "0o644", b"e")
    assert got["abs/file"] == ("file", "0o644", b"a")
    assert got["abs"] == ("dir", "0o755", "")  # implicit parent


def test_special_files_and_modes(tmp_path):
    got = flatten(tmp_path, layer(member("p", "fifo", mode=0o600),
                                  member("s", data=b"#!", mode=0o4755),
                                  member("t", "dir", mode=0o1777)))
    assert got == {"p": ("fifo", "0o600", ""), "s": ("file", "0o4755", b"#!"),
                   "t": ("dir", "0o1777", "")}


def test_gnu_long_names(tmp_path):
    name = "x/" + "n" * 200
    got = flatten(tmp_path, layer(member(name, data=b"long"), fmt=tarfile.GNU_FORMAT))
    assert got[name] == ("file", "0o644", b"long")


@pytest.mark.parametrize("bad", [".wh.", ".wh..", "a/.wh..."])
def test_bad_whiteouts_are_rejected(tmp_path, bad):
    with pytest.raises(LayerError, match="invalid whiteout"):
        flatten(tmp_path, layer(member(bad)))


def test_dangling_hard_link_is_rejected(tmp_path):
    with pytest.raises(LayerError, match="hard link"):
        flatten(tmp_path, layer(member("l", "link", link="missing")))


def test_same_image_grafted_twice_does_not_share_inodes(tmp_path):
    from composer.rootfs.tree import Tree

    cache = Cache(tmp_path / "cache")
    img = make_image(cache, layer(member("f", data=b"1")))
    fs = image_tree(img, cache, implicit_mtime=0, source="s", location="l")
    root = Tree(0)
    root.graft(fs, "one")
    root.graft(fs, "two")
    kinds = {e.path: e.kind for e, _ in root.entries()}
    assert kinds["one/f"] is Kind.FILE and kinds["two/f"] is Kind.FILE


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_layer_compressions(tmp_path, compression):
    import hashlib

    import zstandard

    from composer.images.write import gzip_bytes

    plain = layer(member("f", data=b"payload" * 1000))
    blob, media = {
        "none": (plain, "application/vnd.oci.image.layer.v1.tar"),
        "gzip": (gzip_bytes(plain), "application/vnd.oci.image.layer.v1.tar+gzip"),
        "zstd": (zstandard.ZstdCompressor().compress(plain),
                 "application/vnd.oci.image.layer.v1.tar+zstd"),
    }[compression]
    cache = Cache(tmp_path / "cache")
    diff_id = "sha256:" + hashlib.sha256(plain).hexdigest()
    image = Image("test/z:1", "sha256:" + "0" * 64, {},
                  (Layer(cache.put_bytes(blob), len(blob), media, diff_id),))
    tree = image_tree(image, cache, implicit_mtime=0, source="s", location="l")
    buf = io.BytesIO()
    write_tree(tree, buf, Epoch(None))
    contents = [reader.read() for _, reader in read_entries(io.BytesIO(buf.getvalue()))]
    assert contents == [b"payload" * 1000]


def test_wrong_diff_id_is_rejected_and_not_cached(tmp_path):
    from composer.streams.digest import DigestMismatch

    plain = layer(member("f", data=b"x"))
    cache = Cache(tmp_path / "cache")
    image = Image("test/z:1", "sha256:" + "0" * 64, {},
                  (Layer(cache.put_bytes(plain), len(plain),
                         "application/vnd.oci.image.layer.v1.tar", "sha256:" + "1" * 64),))
    with pytest.raises(DigestMismatch, match="uncompressed"):
        image_tree(image, cache, implicit_mtime=0, source="s", location="l")
    assert not list((tmp_path / "cache" / "uncompressed" / "sha256").iterdir())
    assert not list((tmp_path / "cache" / "tmp").iterdir())


def test_xattrs_survive_flattening_in_sorted_order(tmp_path):
    info, data = member("ping", data=b"\x7fELF", mode=0o755)
    info.pax_headers = {"SCHILY.xattr.user.z": "last", "SCHILY.xattr.security.capability":
                        "\x01\x00\x00\x02"}
    cache = Cache(tmp_path / "cache")
    tree = image_tree(make_image(cache, layer((info, data))), cache, implicit_mtime=0,
                      source="s", location="l")
    buf = io.BytesIO()
    write_tree(tree, buf, Epoch(None))
    [(entry, _)] = [(e, r) for e, r in read_entries(io.BytesIO(buf.getvalue()))]
    assert entry.xattrs == (("security.capability", b"\x01\x00\x00\x02"), ("user.z", b"last"))


def test_prepare_layers_is_independent_of_worker_count(tmp_path):
    from composer.rootfs.flatten import prepare_layers

    layers = [layer(member(f"f{i}", data=bytes([i]) * 5000)) for i in range(6)]
    results = []
    for workers in (1, 4):
        cache = Cache(tmp_path / f"c{workers}")
        image = make_image(cache, *layers)
        prepare_layers([image, image], cache, workers=workers)
        results.append(sorted((p.name, p.read_bytes()) for p in
                              (tmp_path / f"c{workers}" / "uncompressed" / "sha256").iterdir()))
    assert results[0] == results[1] and len(results[0]) == 6


def test_prepare_layers_reports_a_bad_layer(tmp_path):
    from composer.rootfs.flatten import prepare_layers
    from composer.streams.digest import DigestMismatch

    cache = Cache(tmp_path / "c")
    good = make_image(cache, layer(member("a", data=b"a")))
    bad_layer = Layer(good.layers[0].digest, good.layers[0].size, good.layers[0].media_type,
                      "sha256:" + "2" * 64)
    bad = Image("test/bad:1", good.digest, {}, (bad_layer,))
    with pytest.raises(DigestMismatch, match="test/bad:1 layer 0"):
        prepare_layers([bad], cache, workers=2)


def _tar_of(tree) -> bytes:
    buf = io.BytesIO()
    write_tree(tree, buf, Epoch(None))
    return buf.getvalue()


def test_headers_read_ahead_by_the_storing_thread_give_the_same_tree(tmp_path):
    """Phase one reads each layer's headers as soon as the layer is stored (Cache.on_layer):
    the read-ahead must be used, used once, and give exactly the tree a fresh read gives."""
    from composer.rootfs import flatten as fl

    layers = (layer(member("etc", "dir"), member("etc/a", data=b"one"), member("etc/b")),
              layer(member("etc/.wh.b"), member("etc/c", data=b"three"),
                    member("etc/d", "link", link="etc/c")))
    fresh = Cache(tmp_path / "fresh")
    expected = _tar_of(image_tree(make_image(fresh, *layers), fresh, implicit_mtime=0,
                                  source="s", location="l"))
    cache = Cache(tmp_path / "ahead")
    stored: list = []
    cache.on_layer = lambda path: (stored.append(path), fl.prescan(path))
    image = make_image(cache, *layers)
    for number, lay in enumerate(image.layers):
        cache.uncompressed_layer(lay.digest, lay.size, lay.media_type, lay.diff_id, str(number))
    assert len(stored) == 2 and all(str(p) in fl._PRESCANNED for p in stored)
    try:
        tree = image_tree(image, cache, implicit_mtime=0, source="s", location="l")
        assert not any(str(p) in fl._PRESCANNED for p in stored)  # taken, not kept
        assert _tar_of(tree) == expected
    finally:
        fl.forget_prescans()


def test_a_bad_layer_is_not_read_ahead_and_fails_as_before(tmp_path):
    from composer.rootfs import flatten as fl

    cache = Cache(tmp_path / "cache")
    cache.on_layer = fl.prescan
    bad = layer(member("etc/.wh."))  # an invalid whiteout
    image = make_image(cache, bad)
    lay = image.layers[0]
    path = cache.uncompressed_layer(lay.digest, lay.size, lay.media_type, lay.diff_id, "bad")
    assert str(path) not in fl._PRESCANNED
    with pytest.raises(LayerError, match="invalid whiteout"):
        image_tree(image, cache, implicit_mtime=0, source="s", location="l")
