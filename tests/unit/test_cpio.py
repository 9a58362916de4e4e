"""The newc cpio writer: every header field, hard links, limits, determinism; GNU cpio as oracle."""

from __future__ import annotations

import io
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key
from composer.tools import run
from outputs.initrd.cpio import HardLinks, Header, TarToNewc, header_bytes, tar_to_cpio

LONG = "usr/share/" + "long-name-" * 12  # > 100 bytes: a pax path in the tar
UNICODE = "etc/h\u00e9llo-\u00fcn\u00efc\u00f6de.txt"
BUSYBOX = b"#!busybox\n" * 7  # 70 bytes: not a multiple of 4


def need_cpio() -> str:
    path = shutil.which("cpio")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("cpio is required in CI (apt-get install cpio)")
        pytest.skip("cpio not installed")
    return path


def gnu_cpio(*args: str | Path, cwd: Path | None = None) -> bytes:
    """Run GNU cpio on the archive given last (``--force-local``: a ``:`` is not a host)."""
    *opts, archive = args
    return run(["cpio", *opts, "--force-local", "-F", archive], cwd=cwd, capture=True).stdout


def canonical_tar(path: Path, entries: list[tuple[Entry, bytes | None]]) -> Path:
    """Write ``entries`` (any order) as a canonical tar at ``path``."""
    with open(path, "wb") as f:
        w = CanonicalTarWriter(f)
        for entry, data in sorted(entries, key=lambda e: sort_key(e[0].path)):
            w.add(entry, data)
        w.close()
    return path


def tree(devices: bool) -> list[tuple[Entry, bytes | None]]:
    d = Kind.DIR
    out: list[tuple[Entry, bytes | None]] = [
        (Entry("bin", d, 0o755, mtime=1000), None),
        (Entry("bin/busybox", Kind.FILE, 0o755, mtime=1001, size=len(BUSYBOX)), BUSYBOX),
        (Entry("bin/ls", Kind.SYMLINK, 0o777, mtime=1002, linkname="busybox"), None),
        (Entry("bin/sh", Kind.HARDLINK, 0o755, mtime=1001, linkname="bin/busybox"), None),
        (Entry("dev", d, 0o755, mtime=1000), None),
        (Entry("dev/initctl", Kind.FIFO, 0o600, mtime=1003), None),
        (Entry("etc", d, 0o755, uid=7, gid=8, mtime=1000), None),
        (Entry("etc/empty", Kind.FILE, 0o600, mtime=1004, size=0), b""),
        (Entry(UNICODE, Kind.FILE, 0o640, uid=4242, gid=4343, mtime=1700000000, size=2), b"ok"),
        (Entry("sbin", d, 0o700, mtime=1000), None),
        (Entry("sbin/init", Kind.HARDLINK, 0o755, mtime=1001, linkname="bin/busybox"), None),
        (Entry("usr", d, 0o755, mtime=1000), None),
        (Entry("usr/bin", d, 0o755, mtime=1000), None),
        (Entry("usr/bin/su", Kind.FILE, 0o4755, mtime=1005, size=3), b"su\n"),
        (Entry("usr/share", d, 0o1777, mtime=1000), None),
        (Entry(LONG, Kind.FILE, 0o644, mtime=1006, size=5), b"long\n"),
    ]
    if devices:
        out += [
            (Entry("dev/console", Kind.CHAR, 0o600, mtime=1007, devmajor=5, devminor=1), None),
            (Entry("dev/sda", Kind.BLOCK, 0o660, gid=6, mtime=1008, devmajor=8, devminor=16),
             None),
        ]
    return out


def parse_newc(data: bytes) -> list[dict]:
    """A from-scratch newc reader: every field of every record, checking padding on the way."""
    names = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
             "rdevmajor", "rdevminor", "namesize", "check")
    records = []
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        raw = data[pos + 6:pos + 110]
        assert raw == raw.upper()
        rec = {k: int(raw[i * 8:i * 8 + 8], 16) for i, k in enumerate(names)}
        name = data[pos + 110:pos + 110 + rec["namesize"]]
        assert name.endswith(b"\0") and b"\0" not in name[:-1]
        rec["name"] = name[:-1].decode("utf-8", "surrogateescape")
        pos += 110 + rec["namesize"]
        assert not any(data[pos:pos + (-pos % 4)])
        pos += -pos % 4
        rec["data"] = data[pos:pos + rec["filesize"]]
        pos += rec["filesize"]
        assert not any(data[pos:pos + (-pos % 4)])
        pos += -pos % 4
        records.append(rec)
        if rec["name"] == "TRAILER!!!":
            assert len(data) == pos + (-pos % 512) and not any(data[pos:])
            return records


def convert(tmp_path: Path, entries, include=None) -> bytes:
    tar = canonical_tar(tmp_path / "rootfs.tar", entries)
    out = io.BytesIO()
    if include is None:
        tar_to_cpio(tar, out, spool_dir=tmp_path)
    else:
        tar_to_cpio(tar, out, include, spool_dir=tmp_path)
    return out.getvalue()


def test_every_header_field(tmp_path):
    recs = parse_newc(convert(tmp_path, tree(devices=True)))
    by = {r["name"]: r for r in recs}
    expected_order = [e.path for e, _ in sorted(tree(True), key=lambda e: sort_key(e[0].path))]
    assert [r["name"] for r in recs] == [*expected_order, "TRAILER!!!"]
    for r in recs:
        assert (r["devmajor"], r["devminor"], r["check"]) == (0, 0, 0)
        assert r["namesize"] == len(r["name"].encode()) + 1
    # inodes: 1, 2, 3, ... in order of appearance, hard links share the target's
    inos = [r["ino"] for r in recs[:-1]]
    assert inos[:2] == [1, 2]
    assert by["bin/sh"]["ino"] == by["sbin/init"]["ino"] == by["bin/busybox"]["ino"] == 2
    assert sorted(set(inos)) == list(range(1, len(expected_order) - 2 + 1))
    # hard-link group of 3: data with the last path only, nlink = 3 everywhere
    for name in ("bin/busybox", "bin/sh", "sbin/init"):
        r = by[name]
        assert (r["mode"], r["nlink"], r["mtime"], r["uid"], r["gid"]) == (
            0o100755, 3, 1001, 0, 0)
        assert (r["filesize"], r["data"]) == ((70, BUSYBOX) if name == "sbin/init" else (0, b""))
    assert by["bin"]["mode"] == 0o040755 and by["bin"]["nlink"] == 2
    assert (by["etc"]["uid"], by["etc"]["gid"], by["etc"]["mtime"]) == (7, 8, 1000)
    assert by["usr/share"]["mode"] == 0o041777
    assert by["sbin"]["mode"] == 0o040700
    ls = by["bin/ls"]
    assert (ls["mode"], ls["nlink"], ls["data"], ls["filesize"]) == (0o120777, 1, b"busybox", 7)
    assert by["dev/initctl"]["mode"] == 0o010600 and by["dev/initctl"]["filesize"] == 0
    con = by["dev/console"]
    assert (con["mode"], con["rdevmajor"], con["rdevminor"], con["filesize"]) == (
        0o020600, 5, 1, 0)
    sda = by["dev/sda"]
    assert (sda["mode"], sda["gid"], sda["rdevmajor"], sda["rdevminor"]) == (0o060660, 6, 8, 16)
    assert by["usr/bin/su"]["mode"] == 0o104755 and by["usr/bin/su"]["data"] == b"su\n"
    uni = by[UNICODE]
    assert (uni["uid"], uni["gid"], uni["mtime"], uni["data"]) == (4242, 4343, 1700000000, b"ok")
    assert by[LONG]["data"] == b"long\n" and len(LONG) > 100
    assert by["etc/empty"]["filesize"] == 0 and by["etc/empty"]["nlink"] == 1
    t = by["TRAILER!!!"]
    assert (t["ino"], t["mode"], t["nlink"], t["filesize"], t["mtime"]) == (0, 0, 1, 0, 0)


def test_gnu_cpio_listing(tmp_path):
    need_cpio()
    archive = tmp_path / "out.cpio"
    archive.write_bytes(convert(tmp_path, tree(devices=True)))
    out = gnu_cpio("-itvn", archive).decode("utf-8")
    rows = {}
    for line in out.splitlines():
        f = line.split(None, 8)
        if f[0][0] in "bc":  # "crw-------  1 0 0  5,   1 Jan  1  1970 dev/console"
            f = line.split(None, 9)
            rows[f[9]] = (f[0], int(f[1]), int(f[2]), int(f[3]), f[4] + f[5])
        else:
            rows[f[8]] = (f[0], int(f[1]), int(f[2]), int(f[3]), f[4])
    assert rows == {
        "bin": ("drwxr-xr-x", 2, 0, 0, "0"),
        "bin/busybox": ("-rwxr-xr-x", 3, 0, 0, "0"),
        "bin/ls -> busybox": ("lrwxrwxrwx", 1, 0, 0, "7"),
        "bin/sh": ("-rwxr-xr-x", 3, 0, 0, "0"),
        "dev": ("drwxr-xr-x", 2, 0, 0, "0"),
        "dev/console": ("crw-------", 1, 0, 0, "5,1"),
        "dev/initctl": ("prw-------", 1, 0, 0, "0"),
        "dev/sda": ("brw-rw----", 1, 0, 6, "8,16"),
        "etc": ("drwxr-xr-x", 2, 7, 8, "0"),
        "etc/empty": ("-rw-------", 1, 0, 0, "0"),
        UNICODE: ("-rw-r-----", 1, 4242, 4343, "2"),
        "sbin": ("drwx------", 2, 0, 0, "0"),
        "sbin/init": ("-rwxr-xr-x", 3, 0, 0, "70"),
        "usr": ("drwxr-xr-x", 2, 0, 0, "0"),
        "usr/bin": ("drwxr-xr-x", 2, 0, 0, "0"),
        "usr/bin/su": ("-rwsr-xr-x", 1, 0, 0, "3"),
        "usr/share": ("drwxrwxrwt", 2, 0, 0, "0"),
        LONG: ("-rw-r--r--", 1, 0, 0, "5"),
    }


def test_gnu_cpio_extraction(tmp_path):
    need_cpio()
    archive = tmp_path / "out.cpio"
    archive.write_bytes(convert(tmp_path, tree(devices=False)))
    root = tmp_path / "x"
    root.mkdir()
    gnu_cpio("-idm", "--no-absolute-filenames", archive, cwd=root)
    links = [os.lstat(root / p) for p in ("bin/busybox", "bin/sh", "sbin/init")]
    assert len({s.st_ino for s in links}) == 1 and links[0].st_nlink == 3
    assert stat.S_IMODE(links[0].st_mode) == 0o755 and links[0].st_mtime == 1001
    for p in ("bin/busybox", "bin/sh", "sbin/init"):
        assert (root / p).read_bytes() == BUSYBOX
    assert os.readlink(root / "bin/ls") == "busybox"
    assert stat.S_ISFIFO(os.lstat(root / "dev/initctl").st_mode)
    su = os.lstat(root / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and (root / "usr/bin/su").read_bytes() == b"su\n"
    uni = os.lstat(root / UNICODE)
    assert uni.st_mtime == 1700000000
    if os.geteuid() == 0:  # only root's cpio restores owners
        assert (uni.st_uid, uni.st_gid) == (4242, 4343)
    assert (root / UNICODE).read_bytes() == b"ok"
    assert (root / LONG).read_bytes() == b"long\n"
    assert stat.S_IMODE(os.lstat(root / "usr/share").st_mode) == 0o1777
    assert (root / "etc/empty").read_bytes() == b""


def test_excluded_target_still_gives_its_data_to_included_links(tmp_path):
    entries = [
        (Entry("boot", Kind.DIR, 0o755), None),
        (Entry("boot/a", Kind.FILE, 0o600, mtime=5, size=4), b"AAAA"),
        (Entry("boot/b", Kind.HARDLINK, 0o600, linkname="boot/a"), None),
        (Entry("lib", Kind.DIR, 0o755), None),
        (Entry("lib/x", Kind.HARDLINK, 0o600, linkname="boot/a"), None),
        (Entry("lib/y", Kind.HARDLINK, 0o600, linkname="boot/a"), None),
    ]
    recs = parse_newc(convert(tmp_path, entries, lambda p: not p.startswith("boot")))
    assert [(r["name"], r["ino"], r["nlink"], r["data"]) for r in recs[:-1]] == [
        ("lib", 1, 2, b""), ("lib/x", 2, 2, b""), ("lib/y", 2, 2, b"AAAA")]


def test_single_included_link_to_excluded_target_is_a_plain_file(tmp_path):
    entries = [
        (Entry("boot", Kind.DIR, 0o755), None),
        (Entry("boot/k", Kind.FILE, 0o644, mtime=9, size=2), b"KK"),
        (Entry("k", Kind.HARDLINK, 0o644, linkname="boot/k"), None),
    ]
    recs = parse_newc(convert(tmp_path, entries, lambda p: not p.startswith("boot")))
    assert [(r["name"], r["mode"], r["nlink"], r["mtime"], r["data"]) for r in recs[:-1]] == [
        ("k", 0o100644, 1, 9, b"KK")]


def test_hard_links_to_non_files_become_independent_copies(tmp_path):
    entries = [
        (Entry("a", Kind.SYMLINK, 0o777, linkname="target"), None),
        (Entry("b", Kind.HARDLINK, 0o777, linkname="a"), None),
        (Entry("c", Kind.FIFO, 0o600), None),
        (Entry("d", Kind.HARDLINK, 0o600, linkname="c"), None),
    ]
    recs = parse_newc(convert(tmp_path, entries))
    assert [(r["name"], r["ino"], r["mode"], r["nlink"], r["data"]) for r in recs[:-1]] == [
        ("a", 1, 0o120777, 1, b"target"), ("b", 2, 0o120777, 1, b"target"),
        ("c", 3, 0o010600, 1, b""), ("d", 4, 0o010600, 1, b"")]


def test_interleaved_groups_and_large_spooled_data(tmp_path):
    big = bytes(range(256)) * 9000  # > 1 MiB copy chunk, spooled
    entries = [
        (Entry("a", Kind.FILE, size=len(big)), big),
        (Entry("b", Kind.FILE, size=3), b"bbb"),
        (Entry("c", Kind.HARDLINK, linkname="b"), None),
        (Entry("d", Kind.HARDLINK, linkname="a"), None),
        (Entry("e", Kind.FILE, size=1), b"e"),
        (Entry("f", Kind.HARDLINK, linkname="a"), None),
    ]
    recs = parse_newc(convert(tmp_path, entries))
    assert [(r["name"], r["ino"], r["nlink"], r["filesize"]) for r in recs[:-1]] == [
        ("a", 1, 3, 0), ("b", 2, 2, 0), ("c", 2, 2, 3), ("d", 1, 3, 0), ("e", 3, 1, 1),
        ("f", 1, 3, len(big))]
    assert recs[2]["data"] == b"bbb" and recs[5]["data"] == big


def test_file_of_4_gib_is_refused_by_name(tmp_path):
    conv = TarToNewc(io.BytesIO(), HardLinks())
    with pytest.raises(ComposerError, match=r"^huge: .*4 GiB"):
        conv.add(Entry("huge", Kind.FILE, size=1 << 32), None)
    # one byte less fits in the header
    assert b"FFFFFFFF" in header_bytes(Header("ok", 1, 0o100644, 0, 0, 1, 0, (1 << 32) - 1))


@pytest.mark.parametrize("field", ["uid", "gid", "mtime"])
def test_fields_past_32_bits_are_refused(tmp_path, field):
    entry = Entry("f", Kind.FILE, size=0, **{field: 1 << 32})
    with pytest.raises(ComposerError, match=rf"^f: {field} 4294967296 does not fit"):
        convert(tmp_path, [(entry, b"")])


def test_trailer_only_for_empty_input(tmp_path):
    data = convert(tmp_path, [])
    assert len(data) == 512
    assert [r["name"] for r in parse_newc(data)] == ["TRAILER!!!"]


def test_same_input_same_bytes_whatever_tz_and_umask(tmp_path, monkeypatch):
    first = convert(tmp_path, tree(devices=True))
    assert convert(tmp_path, tree(devices=True)) == first
    old = os.umask(0o077)
    try:
        monkeypatch.setenv("TZ", "Pacific/Chatham")
        time.tzset()
        assert convert(tmp_path, tree(devices=True)) == first
    finally:
        os.umask(old)
        monkeypatch.undo()
        time.tzset()
