"""The canonical tar writer: byte layout, order rules, and agreement with real tar readers."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.tar.canon import CanonError, CanonicalTarWriter, Entry, Kind, normalise, sort_key
from composer.tar.read import read_entries


def write(entries: list[tuple[Entry, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    w = CanonicalTarWriter(buf)
    for entry, data in entries:
        w.add(entry, data)
    w.close()
    return buf.getvalue()


SAMPLE = [
    (Entry("bin", Kind.DIR, mode=0o755, mtime=10), None),
    (Entry("bin/a", Kind.FILE, mode=0o4755, uid=1000, gid=50, mtime=11, size=3), b"abc"),
    (Entry("bin/b", Kind.HARDLINK, mode=0o4755, mtime=11, linkname="bin/a"), None),
    (Entry("bin/c", Kind.SYMLINK, mode=0o777, mtime=12, linkname="/bin/a"), None),
    (Entry("dev", Kind.DIR, mode=0o755), None),
    (Entry("dev/null", Kind.CHAR, mode=0o666, devmajor=1, devminor=3), None),
    (Entry("dev/pipe", Kind.FIFO, mode=0o600), None),
    (Entry("d" * 150, Kind.FILE, size=1, xattrs=(("security.capability", b"\x01\x00\xff"),
                                                 ("user.a", b"b"))), b"x"),
    (Entry("\u00e9t\u00e9", Kind.FILE, size=0, records=(("LINUXKIT.source", "img"),)), b""),
]


def test_python_tarfile_reads_back_every_field():
    data = write(sorted(SAMPLE, key=lambda e: sort_key(e[0].path)))
    assert len(data) % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = {m.name: m for m in tf.getmembers()}
        a = members["bin/a"]
        assert (a.mode, a.uid, a.gid, a.mtime, a.uname, a.gname) == (0o4755, 1000, 50, 11, "", "")
        assert tf.extractfile(a).read() == b"abc"
        assert members["bin/b"].islnk() and members["bin/b"].linkname == "bin/a"
        assert members["bin/c"].issym() and members["bin/c"].linkname == "/bin/a"
        null = members["dev/null"]
        assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
        assert members["dev/pipe"].isfifo()
        long = members["d" * 150]
        assert long.pax_headers["SCHILY.xattr.security.capability"].encode(
            "utf-8", "surrogateescape") == b"\x01\x00\xff"
        assert members["\u00e9t\u00e9"].pax_headers["LINUXKIT.source"] == "img"


def test_gnu_tar_lists_it():
    if shutil.which("tar") is None:
        pytest.skip("no tar")
    data = write(sorted(SAMPLE, key=lambda e: sort_key(e[0].path)))
    out = subprocess.run(["tar", "-tvf", "-", "--numeric-owner"], input=data,
                         capture_output=True, check=True).stdout.decode()
    assert "bin/b link to bin/a" in out
    assert "1000/50" in out
    assert "d" * 150 in out


def test_round_trip_through_our_reader():
    entries = sorted(SAMPLE, key=lambda e: sort_key(e[0].path))
    got = []
    for entry, reader in read_entries(io.BytesIO(write(entries))):
        got.append((entry, reader.read() if reader else None))
    assert [e for e, _ in got] == [e for e, _ in entries]
    assert got[1][1] == b"abc"


def test_bytes_are_fixed():
    """Same entries, same bytes; the pax record order is sorted, not insertion order."""
    e1 = Entry("x", Kind.FILE, records=(("b", "1"), ("a", "2")))
    e2 = Entry("x", Kind.FILE, records=(("a", "2"), ("b", "1")))
    assert write([(e1, b"")]) == write([(e2, b"")])


@pytest.mark.parametrize("entries, message", [
    ([(Entry("b", Kind.DIR), None), (Entry("a", Kind.DIR), None)], "out of order"),
    ([(Entry("a", Kind.DIR), None), (Entry("a", Kind.DIR), None)], "duplicate"),
    ([(Entry("a/b", Kind.FILE), b"")], "parent"),
    ([(Entry("a", Kind.HARDLINK, linkname="z"), None)], "hard link"),
    ([(Entry("../a", Kind.FILE), b"")], "canonical"),
    ([(Entry("/a", Kind.FILE), b"")], "canonical"),
    ([(Entry("a", Kind.FILE, size=5), b"abc")], "bytes given"),
    ([(Entry("a", Kind.FILE, size=5), io.BytesIO(b"abc"))], "short"),
    ([(Entry("a", Kind.FILE, xattrs=(("b", b""), ("a", b""))), b"")], "xattrs"),
])
def test_refuses_non_canonical_input(entries, message):
    with pytest.raises(CanonError, match=message):
        write(entries)


def test_sort_order_is_component_wise():
    paths = ["a-b", "a/b", "a", "a/b/c", "a.b", "B", "a/a"]
    assert sorted(paths, key=sort_key) == ["B", "a", "a/a", "a/b", "a/b/c", "a-b", "a.b"]


@pytest.mark.parametrize("name, expected", [
    ("./a/b/", "a/b"), ("/etc/passwd", "etc/passwd"), ("a/../../b", "b"), ("../../x", "x"),
    (".", ""), ("a//b/./c", "a/b/c"),
])
def test_normalise(name, expected):
    assert normalise(name) == expected


def test_large_values_go_to_pax():
    entry = Entry("big", Kind.FILE, uid=2**24, gid=3, mtime=2**40, size=0)
    with tarfile.open(fileobj=io.BytesIO(write([(entry, b"")]))) as tf:
        m = tf.getmembers()[0]
        assert (m.uid, m.mtime) == (2**24, 2**40)


def _plain_header(name, kind, mode, uid, gid, size, mtime, linkname, devmajor, devminor):
    """The ustar block spelled out field by field, checksum summed over the whole block: the
    oracle for the optimised ``composer.tar.canon._header``."""
    def octal(value, width):
        return b"%0*o\0" % (width - 1, value) if 0 <= value < 8 ** (width - 1) else b"\0" * 8

    block = b"".join([
        name.ljust(100, b"\0"), octal(mode, 8), octal(uid, 8), octal(gid, 8), octal(size, 12),
        octal(mtime, 12), b" " * 8, kind, linkname.ljust(100, b"\0"), b"ustar\x0000",
        b"\0" * 64, octal(devmajor, 8), octal(devminor, 8), b"\0" * 155,
    ]).ljust(512, b"\0")
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(name=st.binary(max_size=100), kind=st.sampled_from([k.value for k in Kind] + [b"x"]),
       mode=st.integers(0, 0o7777), ids=st.tuples(st.integers(0, 8 ** 7 - 1),
                                                    st.integers(0, 8 ** 7 - 1)),
       size=st.integers(0, 8 ** 11 - 1), mtime=st.integers(0, 8 ** 11 - 1),
       link=st.binary(max_size=100), dev=st.tuples(st.integers(0, 8 ** 9),
                                                   st.integers(0, 8 ** 9)))
def test_optimised_header_equals_the_plain_encoding(name, kind, mode, ids, size, mtime, link,
                                                      dev):
    from composer.tar.canon import _header

    args = (name, kind, mode, *ids, size, mtime, link, *dev)
    assert _header(*args) == _plain_header(*args)


_record_keys = st.sampled_from(["LINUXKIT.source", "LINUXKIT.location", "comment", "mtime",
                                "size", "path", "SCHILY.xattr.user.a"])


_ascii = st.text("abc/._-", min_size=1, max_size=110)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(path=st.one_of(_ascii, st.text(min_size=1, max_size=120)),
       kind=st.sampled_from(list(Kind)),
       mode=st.integers(0, 0o17777), uid=st.integers(0, 8 ** 7 + 9),
       gid=st.integers(0, 8 ** 7 + 9), size=st.integers(0, 8 ** 11 + 9),
       mtime=st.integers(0, 8 ** 11 + 9),
       link=st.one_of(st.just(""), _ascii, st.text(max_size=120)),
       dev=st.tuples(st.integers(0, 8 ** 8), st.integers(0, 8 ** 8)),
       xattrs=st.lists(st.tuples(st.sampled_from(["user.a", "user.b", "security.c"]),
                                 st.binary(max_size=20)), max_size=2),
       records=st.lists(st.tuples(_record_keys, st.text(max_size=30)), max_size=3))
def test_header_fast_path_equals_the_general_one(path, kind, mode, uid, gid, size, mtime, link,
                                                 dev, xattrs, records):
    """header_bytes' shortcut for the usual entry (short ASCII names, numbers that fit, cached
    pax blocks) makes exactly the bytes of the general encoding, for any entry."""
    from composer.tar.canon import _header_slow, header_bytes

    entry = Entry(path, kind, mode, uid, gid, mtime, size, link, *dev, tuple(xattrs),
                  tuple(records))
    assert header_bytes(entry) == _header_slow(entry)
    assert header_bytes(entry) == _header_slow(entry)  # and again, from the cache
