"""Reading .deb files: the ar container, each data.tar compression, pins, corrupt input.

``make_deb`` writes a real .deb (ar + control.tar + data.tar) with tarfile; ``dpkg-deb`` is the
oracle that it is one, where it is installed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from composer.debian import deb
from composer.errors import ComposerError
from composer.tar.canon import Kind, normalise
from composer.tools import run

MTIME = 1_700_000_000


def tar_bytes(members: list[tuple[str, bytes | None, dict]]) -> bytes:
    """A tar as dpkg-deb writes one: ``./``-prefixed names, GNU format, archive order as given.

    Each member is (name, data or None, tarinfo attributes); data None means a directory unless
    ``type`` says otherwise.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data, attrs in members:
            info = tarfile.TarInfo(name)
            info.mtime = attrs.pop("mtime", MTIME)
            info.uname = info.gname = "root"
            if data is None and "type" not in attrs:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            else:
                info.mode = 0o644
            for key, value in attrs.items():
                setattr(info, key, value)
            if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(data or b"")
                tf.addfile(info, io.BytesIO(data or b""))
            else:
                tf.addfile(info)
    return buf.getvalue()


def ar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    out = [deb.AR_MAGIC]
    for name, data in members:
        header = (name.ljust(16) + "0".ljust(12) + "0".ljust(6) + "0".ljust(6)
                  + "100644".ljust(8) + str(len(data)).ljust(10) + "`\n")
        out += [header.encode("ascii"), data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def compress(data: bytes, how: str) -> bytes:
    if how == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if how == "gz":
        return gzip.compress(data, mtime=0)
    if how == "zst":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


def make_deb(path: Path, members: list[tuple[str, bytes | None, dict]], *,
             package: str = "demo", version: str = "1.0-1", compression: str = "xz") -> str:
    """Write a .deb at ``path``; returns its sha256 hex."""
    control = (f"Package: {package}\nVersion: {version}\nArchitecture: amd64\n"
               "Maintainer: Nobody <nobody@example.org>\nDescription: test package\n"
               " with a continuation line\n").encode()
    control_tar = tar_bytes([("./", None, {}), ("./control", control, {})])
    suffix = "" if compression == "none" else f".{compression}"
    data = ar_bytes([
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", compress(control_tar, "xz")),
        (f"data.tar{suffix}", compress(tar_bytes(members), compression)),
    ])
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


HARD = {"type": tarfile.LNKTYPE}
SYM = {"type": tarfile.SYMTYPE}

SAMPLE = [
    ("./", None, {}),
    ("./bin/", None, {}),
    ("./bin/tool", b"#!/bin/sh\necho tool\n", {"mode": 0o755}),
    ("./bin/alias", None, {**SYM, "linkname": "tool"}),
    ("./bin/same", None, {**HARD, "linkname": "./bin/tool"}),
    ("./etc/", None, {}),
    ("./etc/conf", b"x = 1\n", {"uid": 3, "gid": 4, "mtime": 123}),
]


def copy(members: list[tuple[str, bytes | None, dict]]) -> list[tuple[str, bytes | None, dict]]:
    """``tar_bytes`` consumes the attribute dicts; give it fresh ones."""
    return [(name, data, dict(attrs)) for name, data, attrs in members]


def listing(path: Path, sha: str | None) -> list[tuple]:
    with deb.open_deb(path, sha) as pkg:
        return [(e.path, e.kind, e.mode, e.uid, e.gid, e.mtime, e.linkname,
                 reader.read() if reader else None) for e, reader in pkg.data_entries()]


@pytest.mark.parametrize("compression", ["xz", "gz", "zst", "none"])
def test_reads_data_entries_in_archive_order(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "demo.deb"
    sha = make_deb(path, copy(SAMPLE), compression=compression)
    got = listing(path, sha)
    assert got == [
        ("bin", Kind.DIR, 0o755, 0, 0, MTIME, "", None),
        ("bin/tool", Kind.FILE, 0o755, 0, 0, MTIME, "", b"#!/bin/sh\necho tool\n"),
        ("bin/alias", Kind.SYMLINK, 0o644, 0, 0, MTIME, "tool", None),
        ("bin/same", Kind.HARDLINK, 0o644, 0, 0, MTIME, "bin/tool", None),
        ("etc", Kind.DIR, 0o755, 0, 0, MTIME, "", None),
        ("etc/conf", Kind.FILE, 0o644, 3, 4, 123, "", b"x = 1\n"),
    ]


def test_control_fields(tmp_path: Path) -> None:
    path = tmp_path / "demo.deb"
    sha = make_deb(path, [("./", None, {})], package="hello", version="1:2.3-4")
    with deb.open_deb(path, sha) as pkg:
        fields = pkg.control()
        assert [m.name for m in pkg.members] == ["debian-binary", "control.tar.xz",
                                                 "data.tar.xz"]
    assert fields["Package"] == "hello"
    assert fields["Version"] == "1:2.3-4"
    assert fields["Description"] == "test package\nwith a continuation line"


def test_sha256_mismatch_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "demo.deb"
    sha = make_deb(path, [("./", None, {}), ("./f", b"data", {})])
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:]
    with pytest.raises(ComposerError, match=f"sha256 is {sha}, pinned {wrong}"), \
            deb.open_deb(path, wrong):
        pytest.fail("the body must not run")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ComposerError, match=r"no such \.deb"), \
            deb.open_deb(tmp_path / "nope.deb", None):
        pass


def test_not_an_ar_archive(tmp_path: Path) -> None:
    path = tmp_path / "x.deb"
    path.write_bytes(b"PK\x03\x04 not a deb at all")
    with pytest.raises(ComposerError, match="not a Debian package"), deb.open_deb(path, None):
        pass


def test_corrupt_member_header(tmp_path: Path) -> None:
    path = tmp_path / "x.deb"
    make_deb(path, [("./", None, {})])
    data = bytearray(path.read_bytes())
    data[8 + 58] = ord("X")  # first member's "`\n" terminator
    path.write_bytes(bytes(data))
    with pytest.raises(ComposerError, match="corrupt ar member header"), deb.open_deb(path, None):
        pass


def test_truncated_data_member(tmp_path: Path) -> None:
    path = tmp_path / "x.deb"
    make_deb(path, [("./", None, {}), ("./big", os.urandom(50_000), {})])
    path.write_bytes(path.read_bytes()[:-20_000])
    with pytest.raises(ComposerError, match=r"x\.deb"), deb.open_deb(path, None) as pkg:
        for _entry, reader in pkg.data_entries():
            if reader:
                reader.read()


def test_no_data_member(tmp_path: Path) -> None:
    path = tmp_path / "x.deb"
    path.write_bytes(ar_bytes([("debian-binary", b"2.0\n")]))
    with pytest.raises(ComposerError, match=r"expected one data\.tar"), \
            deb.open_deb(path, None) as pkg:
        list(pkg.data_entries())


def test_unknown_compression(tmp_path: Path) -> None:
    path = tmp_path / "x.deb"
    path.write_bytes(ar_bytes([("debian-binary", b"2.0\n"), ("data.tar.lz4", b"xxxx")]))
    with pytest.raises(ComposerError, match="unsupported compression"), \
            deb.open_deb(path, None) as pkg:
        list(pkg.data_entries())


def test_deb_filename_like_apt_get_download() -> None:
    assert deb.deb_filename("busybox-static", "1:1.35.0-4+deb12u1+b1", "amd64") == \
        "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
    assert deb.deb_filename("linux-image-6.1.0-50-amd64", "6.1.176-1", "amd64") == \
        "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb"


def test_dpkg_deb_agrees(tmp_path: Path) -> None:
    """Oracle: dpkg-deb reads the test .deb and lists the same paths we do."""
    if shutil.which("dpkg-deb") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dpkg-deb is required in CI")
        pytest.skip("dpkg-deb not installed")
    path = tmp_path / "demo.deb"
    sha = make_deb(path, copy(SAMPLE))
    out = run(["dpkg-deb", "--fsys-tarfile", path], capture=True).stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        names = tf.getnames()
    ours = [e[0] for e in listing(path, sha)]
    assert [normalise(n) for n in names if normalise(n)] == ours
    fields = run(["dpkg-deb", "-f", path, "Package", "Version"], capture=True).stdout
    assert fields == b"Package: demo\nVersion: 1.0-1\n"
