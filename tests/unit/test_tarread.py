"""composer.tarread against tarfile: the same members, or it gives up and tarfile decides.

The property: whenever the fast reader finishes an archive, tarfile reads the very same entries
(names, kinds, modes, owners, times, sizes, links, devices, xattrs, records) at the same content
offsets, and raises nothing. Where the fast reader gives up, the callers fall back to tarfile.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from composer import tarread
from composer.tarcanon import CanonicalTarWriter, Entry, Kind, entry_from_tarinfo, read_entries

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ)


def tarfile_view(data: bytes) -> list[tuple]:
    """What the tarfile path sees: (entry, raw name, content offset) per member."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tf:
        for info in tf:
            out.append((entry_from_tarinfo(info), info.name, info.offset_data))
    return out


def fast_view(data: bytes) -> list[tuple] | None:
    """What the fast reader sees, or None when it gives up."""
    try:
        return [(m.entry, m.name, m.offset_data)
                for m in tarread.members(io.BytesIO(data))]
    except tarread.GiveUp:
        return None


def on_disk(tmp_path, data: bytes):
    path = tmp_path / "x.tar"
    path.write_bytes(data)
    return open(path, "rb")


NAME_CHARS = st.sampled_from([*"abcxyz-._/", "é", "ü", "\udcff"])
NAMES = st.lists(st.text(NAME_CHARS, min_size=1, max_size=12), min_size=1, max_size=14).map(
    "/".join).filter(lambda n: n.strip("/.") != "")
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])


@st.composite
def archives(draw) -> bytes:
    fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    big = fmt != tarfile.USTAR_FORMAT
    globals_ = draw(st.one_of(st.none(), st.dictionaries(
        st.sampled_from(["comment", "LINUXKIT.source", "mtime", "uid"]),
        st.sampled_from(["x", "12", "1600000000.5", "é"]), min_size=1)))
    if fmt != tarfile.PAX_FORMAT:
        globals_ = None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8",
                      errors="surrogateescape", pax_headers=globals_) as tf:
        for _ in range(draw(st.integers(1, 6))):
            info = tarfile.TarInfo(draw(NAMES))
            info.type = draw(KINDS)
            info.mode = draw(st.integers(0, 0o7777))
            info.uid = draw(st.integers(0, 2**24 if big else 8**7 - 1))
            info.gid = draw(st.integers(0, 70000))
            info.mtime = draw(st.one_of(st.integers(0, 2**33 if big else 8**11 - 1),
                                        st.floats(0, 2**31, allow_nan=False)
                                        if fmt == tarfile.PAX_FORMAT else st.just(5)))
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = draw(NAMES)
            if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = draw(st.integers(0, 4095)), draw(
                    st.integers(0, 255))
            if fmt == tarfile.PAX_FORMAT and draw(st.booleans()):
                info.pax_headers = {"SCHILY.xattr.user.a": "v", "LINUXKIT.location": "l é"}
            data = b""
            if info.type == tarfile.REGTYPE:
                data = draw(st.binary(max_size=1500))
                info.size = len(data)
            try:
                tf.addfile(info, io.BytesIO(data))
            except ValueError:  # too long or too big for this format
                assume(False)
    return buf.getvalue()


@settings(parent=FUZZ)
@given(data=archives())
def test_same_members_as_tarfile(data):
    fast = fast_view(data)
    if fast is not None:
        assert fast == tarfile_view(data)


@settings(parent=FUZZ)
@given(data=archives(), where=st.integers(0, 10**6), byte=st.integers(0, 255),
       cut=st.booleans())
def test_damaged_archives_agree_or_give_up(data, where, byte, cut):
    where %= len(data)
    damaged = data[:where] if cut else data[:where] + bytes([byte]) + data[where + 1:]
    assume(damaged != data)
    fast = fast_view(damaged)
    if fast is None:
        return
    assert fast == tarfile_view(damaged)  # finished: tarfile must agree and not raise


def test_ordinary_archives_take_the_fast_path():
    """USTAR, GNU and PAX archives of everyday members are read without tarfile."""
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            for name in ("etc", "etc/" + "long" * (20 if fmt == tarfile.USTAR_FORMAT else 40),
                         "usr/bin/x"):
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE if name == "etc" else tarfile.REGTYPE
                info.size = 3 if info.type == tarfile.REGTYPE else 0
                tf.addfile(info, io.BytesIO(b"abc"))
        fast = fast_view(buf.getvalue())
        assert fast is not None and fast == tarfile_view(buf.getvalue()), fmt


def test_canonical_tars_with_provenance_take_the_fast_path(tmp_path):
    buf = io.BytesIO()
    w = CanonicalTarWriter(buf)
    w.add(Entry("etc", Kind.DIR, 0o755))
    w.add(Entry("etc/x", Kind.FILE, 0o644, 5, 6, 7, size=4, xattrs=(("user.k", b"v"),),
                records=(("LINUXKIT.location", "layer 0"), ("LINUXKIT.source", "img"))), b"data")
    w.add(Entry("etc/y", Kind.HARDLINK, linkname="etc/x"))
    w.close()
    fast = fast_view(buf.getvalue())
    assert fast is not None and fast == tarfile_view(buf.getvalue())


def add_sparse(tf: tarfile.TarFile, name: str) -> None:
    """A GNU sparse 1.0 member (pax records + a map block): 2 zero bytes, then b"data"."""
    info = tarfile.TarInfo("GNUSparseFile.0/" + name)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": name, "GNU.sparse.realsize": "6"}
    body = b"1\n2\n4\n".ljust(512, b"\0") + b"data"
    info.size = len(body)
    tf.addfile(info, io.BytesIO(body))


def test_sparse_and_unknown_members_are_left_to_tarfile():
    # GNU sparse via pax records
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        add_sparse(tf, "s")
    assert fast_view(buf.getvalue()) is None
    assert [e.path for e, _, _ in tarfile_view(buf.getvalue())] == ["s"]
    # an unknown type flag
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo("v")
        info.type = b"V"
        tf.addfile(info)
    assert fast_view(buf.getvalue()) is None


def test_compressed_streams_are_never_read_in_place(tmp_path):
    """GzipFile says it can seek and has a fileno (the compressed file's): not for us."""
    import gzip

    path = tmp_path / "x.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.addfile(tarfile.TarInfo("a"))
    path.write_bytes(gzip.compress(buf.getvalue()))
    with gzip.open(path, "rb") as fh, pytest.raises(tarread.GiveUp):
        list(tarread.members(fh))
    with gzip.open(path, "rb") as fh:
        assert [e.path for e, _ in read_entries(fh)] == ["a"]


@settings(parent=FUZZ)
@given(data=archives())
def test_read_entries_content_is_the_same_either_way(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("re")
    with on_disk(tmp, data) as fh:
        fast = [(e, r.read() if r else None) for e, r in read_entries(fh)]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tf:
        slow = [(entry_from_tarinfo(i), tf.extractfile(i).read() if i.isreg() else None)
                for i in tf]
    assert fast == slow


def test_read_entries_falls_back_midway_without_repeating(tmp_path):
    """The fast reader yields the first members, then gives up at a sparse one: tarfile goes on
    from there, and no member comes twice."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in ("a", "b"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
        add_sparse(tf, "c")
    with on_disk(tmp_path, buf.getvalue()) as fh:
        got = [(e.path, r.read() if r else None) for e, r in read_entries(fh)]
    assert got == [("a", b"x"), ("b", b"x"), ("c", b"\0\0data")]


def test_a_big_canonical_tar_scans_fast_and_bounded(tmp_path):
    """Many members through the fast reader from a real file: all found, in order."""
    path = tmp_path / "big.tar"
    with open(path, "wb") as out:
        w = CanonicalTarWriter(out)
        w.add(Entry("d", Kind.DIR, 0o755))
        for i in range(3000):
            w.add(Entry(f"d/f{i:05d}", Kind.FILE, size=i % 700,
                        records=(("LINUXKIT.source", "img"),)), b"z" * (i % 700))
        w.close()
    with open(path, "rb") as fh:
        seen = [m.entry.path for m in tarread.members(fh)]
    assert seen == ["d"] + [f"d/f{i:05d}" for i in range(3000)]


def mapless_sparse() -> bytes:
    """A sparse 1.0 member whose map is missing."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("s")
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
        tf.addfile(info)
    return buf.getvalue()


def test_a_malformed_sparse_map_is_a_clean_error(tmp_path):
    """tarfile raises a bare ValueError on a sparse 1.0 member without a map; we word it."""
    from composer.tarcanon import CanonError

    with on_disk(tmp_path, mapless_sparse()) as fh, pytest.raises(CanonError, match="unreadable"):
        list(read_entries(fh))


def test_flattening_a_malformed_sparse_layer_is_a_layer_error(tmp_path):
    from composer.rootfs.flatten import LayerError, apply_tar
    from composer.rootfs.tree import Tree

    with on_disk(tmp_path, mapless_sparse()) as fh, pytest.raises(LayerError, match="unreadable"):
        apply_tar(Tree(0), fh, str(tmp_path / "x.tar"), 0, what="layer", source="s",
                  location="l")


def test_flattening_reads_the_same_tree_either_way(tmp_path, monkeypatch):
    """apply_tar through the fast reader and through tarfile: the same nodes and spans."""
    from composer.rootfs import flatten
    from composer.rootfs.tree import Tree

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind in (("etc", tarfile.DIRTYPE), ("etc/a", tarfile.REGTYPE),
                           ("etc/.wh.gone", tarfile.REGTYPE), ("bin", tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "usr/bin" if kind == tarfile.SYMTYPE else ""
            info.size = 2 if name == "etc/a" else 0
            tf.addfile(info, io.BytesIO(b"hi"))
    path = tmp_path / "x.tar"
    path.write_bytes(buf.getvalue())

    def flatten_with(fast: bool) -> dict:
        if not fast:
            def never(fh):
                raise tarread.GiveUp("off")
                yield
            monkeypatch.setattr(flatten, "members", never)
        tree = Tree(0)
        with open(path, "rb") as fh:
            flatten.apply_tar(tree, fh, str(path), 0, what="l", source="s", location="l")
        return {p: (n.entry, n.content) for p, n in tree.nodes.items()}

    assert flatten_with(True) == flatten_with(False)
