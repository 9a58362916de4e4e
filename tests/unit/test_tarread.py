"""composer.tar.headers against tarfile: the same members, or it gives up and tarfile decides.

The properties: whenever the fast reader finishes an archive, tarfile reads the very same entries
(names, kinds, modes, owners, times, sizes, links, devices, xattrs, records) at the same content
offsets; ordinary archives (USTAR, GNU, PAX, v7, our canonical tars) do finish in the fast
reader; and the two callers, ``read_entries`` and ``apply_tar``, give the same results, content
and errors (type and message) with the fast reader as with tarfile alone, intact or damaged.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from composer.rootfs import flatten
from composer.rootfs.tree import Tree
from composer.tar import headers as tarread
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, entry_from_tarinfo, sort_key
from composer.tar.read import read_entries

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the two ways of reading ------------------------------------------------------------------

def tarfile_view(data: bytes) -> list[tuple]:
    """What tarfile itself sees: (entry, raw name, content offset) per member."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tf:
        for info in tf:
            out.append((entry_from_tarinfo(info), info.name, info.offset_data))
    return out


def fast_view(data: bytes, on_disk: bool = False) -> list[tuple] | None:
    """What the fast reader sees (from memory or from a real file), or None when it gives up."""
    with _opened(data, on_disk) as fh:
        try:
            return [(m.entry, m.name, m.offset_data) for m in tarread.members(fh)]
        except tarread.GiveUp:
            return None


@contextlib.contextmanager
def _opened(data: bytes, on_disk: bool) -> Iterator[io.BufferedIOBase]:
    if not on_disk:
        yield io.BytesIO(data)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.tar"
        path.write_bytes(data)
        with open(path, "rb") as fh:
            yield fh


@contextlib.contextmanager
def tarfile_only() -> Iterator[None]:
    """The callers as they were before the fast reader: it gives up at once, everywhere."""
    def never(fh):
        raise tarread.GiveUp("switched off by the test")
        yield

    saved = tarread.members, flatten.members
    tarread.members = flatten.members = never  # type: ignore[assignment]
    try:
        yield
    finally:
        tarread.members, flatten.members = saved


@contextlib.contextmanager
def no_tarfile() -> Iterator[None]:
    """Any use of tarfile fails the test: the fast reader must have done all the work."""
    def refuse(*args, **kwargs):
        raise AssertionError("tarfile.open was used")

    saved = tarfile.open
    tarfile.open = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        tarfile.open = saved  # type: ignore[assignment]


def outcome(run: Callable[[], object]) -> object:
    """A result, or the exception's type and message."""
    try:
        return run()
    except Exception as exc:  # the point is to compare any failure
        return ("raised", type(exc).__name__, str(exc))


def entries_of(data: bytes) -> object:
    """read_entries from a real file, every content read in full while it is current."""
    def run():
        with _opened(data, True) as fh:
            return [(e, r.read() if r is not None else None) for e, r in read_entries(fh)]
    return outcome(run)


def tree_of(data: bytes, whiteouts: bool = True) -> object:
    """apply_tar on a real file: every node, with hard links shown as the path they share."""
    def run():
        tree = Tree(0)
        with _opened(data, True) as fh:
            flatten.apply_tar(tree, fh, "layer.tar", 7, what="layer", source="s",
                              location="l", whiteouts=whiteouts)
        first: dict[int, str] = {}
        for path in sorted(tree.nodes):
            first.setdefault(id(tree.nodes[path]), path)
        return {path: (n.entry, n.content, n.source, n.location, first[id(n)])
                for path, n in tree.nodes.items()}
    return outcome(run)


def assert_callers_agree(data: bytes) -> None:
    """read_entries and apply_tar: the same with the fast reader as with tarfile alone."""
    fast = entries_of(data), tree_of(data), tree_of(data, whiteouts=False)
    with tarfile_only():
        slow = entries_of(data), tree_of(data), tree_of(data, whiteouts=False)
    assert fast == slow


# -- archives ---------------------------------------------------------------------------------

NAME_CHARS = st.sampled_from([*"abcxyz-._/", "é", "ü", "\udcff"])
COMPONENTS = st.text(NAME_CHARS, min_size=1, max_size=12) | st.sampled_from(
    [".wh.a", ".wh..wh..opq", "..", "."])
NAMES = st.lists(COMPONENTS, min_size=1, max_size=14).map("/".join).filter(
    lambda n: n.strip("/.") != "")
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE,
                         tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE,
                         tarfile.BLKTYPE])
FORMATS = st.sampled_from(["ustar", "v7", "gnu", "pax"])
TARFILE_FORMAT = {"ustar": tarfile.USTAR_FORMAT, "v7": tarfile.USTAR_FORMAT,
                  "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


def checksum(block: bytearray, signed: bool = False) -> None:
    """Write the checksum field of the header ``block`` starts with (unsigned, or the signed
    sum some old tars used)."""
    block[148:156] = b" " * 8
    total = sum(struct.unpack_from("512b", block)) if signed else sum(block[:512])
    block[148:156] = b"%06o\0 " % (total & 0o777777)


def as_v7(data: bytes) -> bytes:
    """A USTAR archive rewritten as a v7 one: no magic, owner names or prefix; directories as
    regular members whose name ends with a slash."""
    out = bytearray(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        offsets = [info.offset for info in tf]
    for at in offsets:
        block = out[at:at + 512]
        block[257:500] = bytes(243)
        if block[156:157] == tarfile.DIRTYPE:
            block[156:157] = tarfile.AREGTYPE
        checksum(block)
        out[at:at + 512] = block
    return bytes(out)


@st.composite
def archives(draw) -> bytes:
    """Archives tarfile writes, of every dialect the fast reader claims to read."""
    dialect = draw(FORMATS)
    fmt = TARFILE_FORMAT[dialect]
    big = fmt != tarfile.USTAR_FORMAT
    globals_ = None
    if fmt == tarfile.PAX_FORMAT:
        globals_ = draw(st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["comment", "LINUXKIT.source", "mtime", "uid", "gid", "linkpath",
                             "SCHILY.xattr.user.g", "uname"]),
            st.sampled_from(["x", "12", "1600000000.5", "é", "", "abc"]), min_size=1)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8",
                      errors="surrogateescape", pax_headers=globals_) as tf:
        for _ in range(draw(st.integers(1, 6))):
            info = tarfile.TarInfo(draw(NAMES))
            info.type = draw(KINDS)
            info.mode = draw(st.integers(0, 0o7777))
            info.uid = draw(st.integers(0, 2**40 if big else 8**7 - 1))
            info.gid = draw(st.integers(0, 70000))
            info.uname = draw(st.sampled_from(["", "root", "é"]))
            info.mtime = draw(st.one_of(
                st.integers(-2**40 if big else 0, 2**40 if big else 8**11 - 1),
                st.floats(-2**31, 2**33, allow_nan=False) if fmt == tarfile.PAX_FORMAT
                else st.just(5)))
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = draw(NAMES)
            if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor = draw(st.integers(0, 2**32 if dialect == "gnu" else 4095))
                info.devminor = draw(st.integers(0, 255))
            if fmt == tarfile.PAX_FORMAT and draw(st.booleans()):
                info.pax_headers = draw(st.dictionaries(
                    st.sampled_from(["SCHILY.xattr.user.a", "SCHILY.xattr.security.b",
                                     "LINUXKIT.location", "comment", "atime", "size"]),
                    st.sampled_from(["v", "l é", "", "12", "1.5", "\udcff"]), min_size=1))
            data = b""
            if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                data = draw(st.binary(max_size=1500))
                info.size = len(data)
            try:
                tf.addfile(info, io.BytesIO(data))
            except ValueError:  # too long or too big for this format
                assume(False)
    out = buf.getvalue()
    return as_v7(out) if dialect == "v7" else out


PROVENANCE = st.tuples(st.sampled_from(["LINUXKIT.location", "LINUXKIT.source"]),
                       st.sampled_from(["init[0]", "oci:/x/y:bench", "é", "a=b c\n"]))


@st.composite
def canonical_tars(draw) -> bytes:
    """Our own tars: a directory tree with provenance records on every entry."""
    names = draw(st.lists(st.text(st.sampled_from([*"abé", "\udcff"]), min_size=1,
                                  max_size=120), min_size=1, max_size=8, unique=True))
    records = tuple(sorted(dict(draw(st.lists(PROVENANCE, max_size=2))).items()))
    buf = io.BytesIO()
    w = CanonicalTarWriter(buf)
    w.add(Entry("d", Kind.DIR, 0o755, records=records))
    files: list[str] = []
    for name in sorted(names, key=lambda n: sort_key("d/" + n)):
        path = "d/" + name
        kind = draw(st.sampled_from([Kind.FILE, Kind.SYMLINK, Kind.CHAR, Kind.FIFO]
                                    + ([Kind.HARDLINK] if files else [])))
        size = draw(st.integers(0, 1100)) if kind is Kind.FILE else 0
        w.add(Entry(path, kind, draw(st.integers(0, 0o7777)),
                    uid=draw(st.integers(0, 2**32)), gid=draw(st.integers(0, 2**32)),
                    mtime=draw(st.integers(0, 2**40)), size=size,
                    linkname=draw(st.sampled_from(files)) if kind is Kind.HARDLINK
                    else "t/" + name if kind is Kind.SYMLINK else "",
                    devmajor=draw(st.integers(0, 300)) if kind is Kind.CHAR else 0,
                    xattrs=(("user.k", b"v"),) if draw(st.booleans()) else (),
                    records=records), b"z" * size)
        if kind is Kind.FILE:
            files.append(path)
    w.close()
    return buf.getvalue()


def damage(data: bytes, where: int, byte: int, how: str) -> bytes:
    where %= len(data)
    if how == "cut":
        return data[:where]
    if how == "zero-block":
        at = where // 512 * 512
        return data[:at] + bytes(512) + data[at + 512:]
    return data[:where] + bytes([byte]) + data[where + 1:]


DAMAGE = dict(where=st.integers(0, 10**6), byte=st.integers(0, 255),
              how=st.sampled_from(["cut", "flip", "zero-block"]))


# -- properties -------------------------------------------------------------------------------

@settings(parent=FUZZ)
@given(data=archives(), on_disk=st.booleans())
def test_same_members_as_tarfile_and_no_giving_up(data, on_disk):
    fast = fast_view(data, on_disk)
    if b"hdrcharset" in data:  # tarfile's pax for names that are not UTF-8: left to tarfile
        assert fast is None
        return
    assert fast is not None, "an ordinary archive must not need tarfile"
    assert fast == tarfile_view(data)


@settings(parent=FUZZ)
@given(data=canonical_tars())
def test_canonical_tars_take_the_fast_path(data):
    fast = fast_view(data, on_disk=True)
    assert fast is not None
    assert fast == tarfile_view(data)
    with no_tarfile():
        fast_callers = entries_of(data), tree_of(data)
    with tarfile_only():
        assert (entries_of(data), tree_of(data)) == fast_callers


@settings(parent=FUZZ)
@given(data=archives())
def test_callers_read_the_same_either_way(data):
    assert_callers_agree(data)


@settings(parent=FUZZ)
@given(data=archives(), **DAMAGE)
def test_damaged_archives_same_outcome(data, where, byte, how):
    damaged = damage(data, where, byte, how)
    assume(damaged != data)
    fast = fast_view(damaged)
    if fast is not None:  # finished: tarfile must agree and not raise
        assert fast == tarfile_view(damaged)
    assert_callers_agree(damaged)


@settings(parent=FUZZ)
@given(data=canonical_tars(), **DAMAGE)
def test_damaged_canonical_tars_same_outcome(data, where, byte, how):
    damaged = damage(data, where, byte, how)
    assume(damaged != data)
    fast = fast_view(damaged)
    if fast is not None:
        assert fast == tarfile_view(damaged)
    assert_callers_agree(damaged)


# -- the fast path is taken, and left where it should be --------------------------------------

def ordinary(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name in ("etc", "etc/" + "long" * (20 if fmt == tarfile.USTAR_FORMAT else 40),
                     "usr/bin/x", "etc/.wh.gone"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE if name == "etc" else tarfile.REGTYPE
            info.size = 3 if info.type == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_ordinary_archives_never_open_tarfile(fmt):
    data = ordinary(fmt)
    with no_tarfile():
        got = entries_of(data), tree_of(data)
    assert [e.path for e, _ in got[0]] == ["etc", "etc/" + "long" * (
        20 if fmt == tarfile.USTAR_FORMAT else 40), "usr/bin/x", "etc/.wh.gone"]
    assert "usr/bin/x" in got[1] and "etc/.wh.gone" not in got[1]
    with tarfile_only():
        assert (entries_of(data), tree_of(data)) == got


def test_a_layer_with_a_nested_window_reads_in_place(tmp_path):
    """A kernel.tar inside a layer: read through the Window, offsets in the outer file."""
    inner = ordinary(tarfile.PAX_FORMAT)
    outer = b"\x01" * 1000 + inner + b"\x02" * 100
    path = tmp_path / "outer"
    path.write_bytes(outer)
    trees = []
    for switch in (no_tarfile, tarfile_only):
        tree = Tree(0)
        with switch(), open(path, "rb") as fh:
            flatten.apply_tar(tree, flatten.Window(fh, 1000, len(inner)), str(path), 1000,
                              what="k", source="s", location="l", whiteouts=False)
        trees.append({p: (n.entry, n.content) for p, n in tree.nodes.items()})
    assert trees[0] == trees[1]
    span = trees[0]["usr/bin/x"][1]
    assert outer[span.offset:span.offset + span.size] == b"abc"


def add_sparse(tf: tarfile.TarFile, name: str) -> None:
    """A GNU sparse 1.0 member (pax records + a map block): 2 zero bytes, then b"data"."""
    info = tarfile.TarInfo("GNUSparseFile.0/" + name)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": name, "GNU.sparse.realsize": "6"}
    body = b"1\n2\n4\n".ljust(512, b"\0") + b"data"
    info.size = len(body)
    tf.addfile(info, io.BytesIO(body))


def one_member(fmt: int, **fields) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        info = tarfile.TarInfo(fields.pop("name", "v"))
        for key, value in fields.items():
            setattr(info, key, value)
        tf.addfile(info)
    return buf.getvalue()


def test_sparse_and_unknown_members_are_left_to_tarfile():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        add_sparse(tf, "s")
    sparse_pax = buf.getvalue()
    old_sparse = one_member(tarfile.GNU_FORMAT, type=tarfile.GNUTYPE_SPARSE)
    unknown = one_member(tarfile.USTAR_FORMAT, type=b"V")
    for data in (sparse_pax, old_sparse, unknown):
        assert fast_view(data) is None
        assert_callers_agree(data)
    assert [e.path for e, _ in entries_of(sparse_pax)] == ["s"]  # type: ignore[union-attr]
    assert entries_of(unknown) == ("raised", "CanonError",
                                   "v: unsupported tar entry type b'V'")


def test_numbers_and_checksums_of_other_writers():
    """Base-256 numbers (GNU), a signed checksum (old Sun tars), fields ended by a space:
    all read in place, as tarfile reads them."""
    gnu = one_member(tarfile.GNU_FORMAT, uid=2**40, mtime=-5, size=0, devmajor=2**33,
                     type=tarfile.CHRTYPE)
    assert b"\x80" in gnu[:512] and b"\xff" in gnu[:512]
    named = bytearray(one_member(tarfile.USTAR_FORMAT, name="é/ü", mode=0o640))
    checksum(named, signed=True)
    spaced = bytearray(one_member(tarfile.USTAR_FORMAT, mode=0o755))
    spaced[100:108] = b"   755 \0"
    spaced[329:345] = b" " * 16
    checksum(spaced)
    for data in (gnu, bytes(named), bytes(spaced)):
        fast = fast_view(data)
        assert fast is not None and fast == tarfile_view(data)
    assert fast_view(gnu)[0][0].uid == 2**40  # type: ignore[index]
    assert fast_view(gnu)[0][0].mtime == -5  # type: ignore[index]
    assert fast_view(bytes(spaced))[0][0].mode == 0o755  # type: ignore[index]


def pax_archive(records: bytes) -> bytes:
    """A pax header with exactly ``records`` (raw bytes), then a regular empty member."""
    out = bytearray()
    for blk_name, kind, size in ((b"././@PaxHeader", b"x", len(records)), (b"a", b"0", 0)):
        block = bytearray(512)
        block[:len(blk_name)] = blk_name
        block[100:157] = b"0000644\x000000000\x000000000\x00%011o\x00%011o\x00        " % (
            size, 7) + kind
        block[257:265] = b"ustar\x0000"
        checksum(block)
        out += block
        if kind == b"x":
            out += records + bytes(-len(records) % 512)
    return bytes(out + bytes(1024))


def record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def test_pax_values_that_are_not_utf8_are_decoded_as_tarfile_does():
    data = pax_archive(record(b"LINUXKIT.source", b"\xff\xfeok") + record(b"path", b"d/\xe9\xff"))
    fast = fast_view(data)
    assert fast is not None and fast == tarfile_view(data)
    assert fast[0][0].path == "d/\udce9\udcff"
    assert fast[0][0].records == (("LINUXKIT.source", "\udcff\udcfeok"),)


@pytest.mark.parametrize("records", [
    b"0 path=x\n",  # a zero length: tarfile's error
    b"13 path=abc\n",  # a length that does not end at a newline
    b"30 hdrcharset=BINARY\n9 path=\xff\n",
    b"x path=a\n",
])
def test_odd_pax_records_are_left_to_tarfile(records):
    data = pax_archive(records)
    assert fast_view(data) is None
    assert_callers_agree(data)


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
    got = entries_of(buf.getvalue())
    assert [(e.path, data) for e, data in got] == [  # type: ignore[union-attr]
        ("a", b"x"), ("b", b"x"), ("c", b"\0\0data")]


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


def test_non_seekable_streams_still_go_through_tarfile():
    data = ordinary(tarfile.PAX_FORMAT)
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    with open(r, "rb") as pipe:
        got = [(e, d.read() if d else None) for e, d in read_entries(pipe)]
    assert got == entries_of(data)


# -- hostile input: clean errors, the same either way -----------------------------------------

def test_a_negative_size_is_an_error_not_an_endless_loop():
    """A pax size that points back to an earlier header made tarfile (and a reader copying
    it) read the same members forever."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(tarfile.TarInfo("first"))
        info = tarfile.TarInfo("a")
        info.pax_headers = {"size": "-1536"}
        tf.addfile(info)
    data = buf.getvalue()
    assert fast_view(data) is None
    assert entries_of(data) == ("raised", "CanonError", "unreadable tar: a: negative size (the "
                                "next header would not come after this one)")
    assert tree_of(data)[:2] == ("raised", "LayerError")  # type: ignore[index]
    assert_callers_agree(data)


@pytest.mark.parametrize("mtime", ["nan", "inf", "-1e400"])
def test_impossible_pax_times_are_clean_errors(mtime):
    data = one_member(tarfile.PAX_FORMAT, name="a", pax_headers={"mtime": mtime})
    assert fast_view(data) is None
    assert entries_of(data)[:2] == ("raised", "CanonError")  # type: ignore[index]
    assert tree_of(data)[:2] == ("raised", "LayerError")  # type: ignore[index]
    assert_callers_agree(data)


def mapless_sparse() -> bytes:
    """A sparse 1.0 member whose map is missing."""
    return one_member(tarfile.PAX_FORMAT, name="s",
                      pax_headers={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"})


def test_a_malformed_sparse_map_is_a_clean_error():
    """tarfile raises a bare ValueError on a sparse 1.0 member without a map; we word it."""
    assert entries_of(mapless_sparse())[:2] == ("raised", "CanonError")  # type: ignore[index]
    assert tree_of(mapless_sparse())[:2] == ("raised", "LayerError")  # type: ignore[index]


def test_content_of_a_truncated_member_fails_as_tarfile_does(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("a")
        info.size = 5000
        tf.addfile(info, io.BytesIO(b"q" * 5000))
    data = buf.getvalue()[:512 + 3000]
    assert entries_of(data) == ("raised", "ReadError", "unexpected end of data")
    assert_callers_agree(data)


def test_content_reads_are_whole(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("a")
        info.size = 3000
        tf.addfile(info, io.BytesIO(bytes(range(250)) * 12))
    data = buf.getvalue()
    path = tmp_path / "x.tar"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        [(_, reader)] = list(read_entries(fh))
        assert isinstance(reader, tarread.Content)
        assert reader.read(1000) == data[512:1512]
        chunk = bytearray(1500)
        assert reader.readinto(chunk) == 1500 and bytes(chunk) == data[1512:3012]
        assert reader.read() == data[3012:3512]
        assert reader.read(10) == b""


def test_a_big_canonical_tar_scans_in_order(tmp_path):
    """Many members of a real file, small and large, through the fast reader: all found."""
    path = tmp_path / "big.tar"
    with open(path, "wb") as out:
        w = CanonicalTarWriter(out)
        w.add(Entry("d", Kind.DIR, 0o755))
        for i in range(3000):
            size = (i * 7919) % 70000 if i % 10 == 0 else i % 700
            w.add(Entry(f"d/f{i:05d}", Kind.FILE, size=size,
                        records=(("LINUXKIT.source", "img"),)), b"z" * size)
        w.close()
    with open(path, "rb") as fh:
        seen = [m.entry.path for m in tarread.members(fh)]
    assert seen == ["d"] + [f"d/f{i:05d}" for i in range(3000)]
    with no_tarfile():
        fast = entries_of(path.read_bytes())
    with tarfile_only():
        assert entries_of(path.read_bytes()) == fast
