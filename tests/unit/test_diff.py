"""``diff``: which paths, header fields, bytes and JSON keys differ, per format."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from composer import canonjson
from composer.cli import main
from composer.repro.diff import diff_files, diff_json
from composer.streams.gz import GzipWriter
from composer.tar.canon import CanonicalTarWriter, Entry, Kind
from outputs.initrd.cpio import tar_to_cpio


def canon_tar(entries: list[tuple[Entry, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    w = CanonicalTarWriter(buf)
    for e, data in entries:
        w.add(e, data)
    w.close()
    return buf.getvalue()


BASE = [
    (Entry("bin", Kind.DIR, mode=0o755), None),
    (Entry("bin/sh", Kind.FILE, mode=0o755, size=5, mtime=10), b"shell"),
    (Entry("bin/sh2", Kind.SYMLINK, mode=0o777, linkname="sh"), None),
    (Entry("etc", Kind.DIR, mode=0o755), None),
    (Entry("etc/motd", Kind.FILE, size=5, xattrs=(("user.a", b"1"),)), b"hello"),
]


def changed() -> list[tuple[Entry, bytes | None]]:
    return [
        (Entry("bin", Kind.DIR, mode=0o700), None),  # mode
        (Entry("bin/sh", Kind.FILE, mode=0o755, size=5, mtime=11, uid=1), b"shelL"),
        (Entry("bin/sh2", Kind.SYMLINK, mode=0o777, linkname="busybox"), None),
        (Entry("etc", Kind.DIR, mode=0o755), None),
        (Entry("etc/issue", Kind.FILE, size=1), b"x"),  # added; etc/motd missing
    ]


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def whats(report) -> set[tuple[str, str]]:
    return {(d.where, d.what) for d in report.differences}


def test_tar_names_paths_fields_and_bytes(tmp_path):
    a = write(tmp_path, "a.tar", canon_tar(BASE))
    b = write(tmp_path, "b.tar", canon_tar(changed()))
    report = diff_files(a, b)
    assert report.format == "tar" and not report.identical
    got = whats(report)
    assert {("bin", "mode"), ("bin/sh", "mtime"), ("bin/sh", "uid"), ("bin/sh", "sha256"),
            ("bin/sh2", "link"), ("etc/motd", "missing"), ("etc/issue", "added"),
            ("bin/sh", "first differing byte at offset 4")} <= got
    assert ("etc", "mode") not in got
    sh = next(d for d in report.differences if d.where == "bin/sh" and d.what == "mtime")
    assert (sh.a, sh.b) == (10, 11)
    text = "\n".join(report.lines())
    assert "etc/motd: only in A" in text and "bin/sh2: link: sh -> busybox" in text


def test_tar_xattrs_and_order_of_a_non_canonical_tar(tmp_path):
    a = write(tmp_path, "a.tar", canon_tar(BASE))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry, data in reversed(BASE):  # children before parents: not canonical
            info = tarfile.TarInfo(entry.path)
            info.type = {Kind.DIR: tarfile.DIRTYPE, Kind.FILE: tarfile.REGTYPE,
                         Kind.SYMLINK: tarfile.SYMTYPE}[entry.kind]
            info.mode, info.mtime, info.linkname = entry.mode, entry.mtime, entry.linkname
            info.size = entry.size
            tf.addfile(info, io.BytesIO(data) if data else None)
    b = write(tmp_path, "b.tar", buf.getvalue())
    got = whats(diff_files(a, b))
    assert ("etc/motd", "xattrs") in got
    assert any(what == "order" for _, what in got)
    assert not any(what == "sha256" for _, what in got)


def test_identical_files_and_cli_exit_codes(tmp_path, capsys):
    a = write(tmp_path, "a.tar", canon_tar(BASE))
    b = write(tmp_path, "b.tar", canon_tar(BASE))
    c = write(tmp_path, "c.tar", canon_tar(changed()))
    assert diff_files(a, b).identical
    assert main(["diff", str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip() == "tar: identical"
    assert main(["diff", "--json", str(a), str(c)]) == 1
    doc = canonjson.loads(capsys.readouterr().out)
    assert doc["format"] == "tar" and doc["identical"] is False
    assert {"where": "bin", "what": "mode", "a": "0o755", "b": "0o700"} in doc["differences"]
    assert main(["diff", str(a), str(tmp_path / "nope")]) == 1
    assert "no such file" in capsys.readouterr().err


def gz(data: bytes, level: int = 6) -> bytes:
    buf = io.BytesIO()
    with GzipWriter(buf, level) as w:
        w.write(data)
    return buf.getvalue()


def cpio_of(tmp_path, entries, name: str) -> bytes:
    src = write(tmp_path, f"{name}.src.tar", canon_tar(entries))
    out = io.BytesIO()
    tar_to_cpio(src, out)
    return out.getvalue()


def test_gzip_only_compression_differs(tmp_path):
    cpio = cpio_of(tmp_path, BASE, "a")
    a = write(tmp_path, "a.img", gz(cpio, 6))
    b = write(tmp_path, "b.img", gz(cpio, 1))
    report = diff_files(a, b)
    assert report.note == "only the compression differs"
    assert ("", "compression") in whats(report)
    assert ("", "gzip XFL (level hint)") in whats(report)
    assert not any(d.where for d in report.differences)


def test_gzip_cpio_content_differs(tmp_path):
    a = write(tmp_path, "a.img", gz(cpio_of(tmp_path, BASE, "a")))
    b = write(tmp_path, "b.img", gz(cpio_of(tmp_path, changed(), "b")))
    report = diff_files(a, b)
    assert report.format == "gzip(cpio)" and report.note == "the content differs"
    got = whats(report)
    assert {("bin", "mode"), ("bin/sh", "mtime"), ("bin/sh", "sha256"), ("etc/motd", "missing"),
            ("etc/issue", "added")} <= got


def test_initrd_with_early_microcode_prefix(tmp_path):
    ucode = cpio_of(tmp_path, [(Entry("kernel", Kind.DIR, mode=0o755), None)], "u")
    a = write(tmp_path, "a.img", ucode + gz(cpio_of(tmp_path, BASE, "a")))
    b = write(tmp_path, "b.img", ucode + gz(cpio_of(tmp_path, changed(), "b")))
    report = diff_files(a, b)
    assert report.format == "cpio"
    assert ("bin/sh", "sha256") in whats(report) and ("kernel", "mode") not in whats(report)


def test_corrupt_gzip_is_an_error_not_a_traceback(tmp_path, capsys):
    a = write(tmp_path, "a.gz", gz(b"x" * 100))
    b = write(tmp_path, "b.gz", gz(b"y" * 100)[:15])
    assert main(["diff", str(a), str(b)]) == 1
    assert capsys.readouterr().err.startswith("error: cannot decompress")


def test_json_key_paths():
    a = {"build": {"name": "x", "formats": ["tar"]}, "outputs": [{"sha256": "1"}], "gone": 1}
    b = {"build": {"name": "y", "formats": ["tar", "iso"]}, "outputs": [{"sha256": "2"}],
         "new": True}
    got = {(d.where, d.what, canonjson.compact([d.a, d.b]).decode()) for d in diff_json(a, b)}
    assert got == {("build.name", "value", '["x","y"]'), ("build.formats[1]", "added",
                                                         "[null,null]"),
                   ("outputs[0].sha256", "value", '["1","2"]'), ("gone", "missing", "[null,null]"),
                   ("new", "added", "[null,null]")}


def test_docker_archive_json_members_compared_by_key(tmp_path):
    def archive(tag: str) -> bytes:
        manifest = canonjson.compact([{"Config": "c.json", "RepoTags": [tag]}])
        return canon_tar([(Entry("manifest.json", Kind.FILE, size=len(manifest)), manifest)])

    a = write(tmp_path, "a.tar", archive("x:1"))
    b = write(tmp_path, "b.tar", archive("x:2"))
    got = whats(diff_files(a, b))
    assert ("manifest.json:[0].RepoTags[0]", "value") in got


def test_plain_bytes_and_format_mismatch(tmp_path):
    a = write(tmp_path, "a.bin", b"abcdef")
    b = write(tmp_path, "b.bin", b"abcXefgh")
    report = diff_files(a, b)
    assert report.format == "bytes"
    assert [d.text() for d in report.differences] == [
        "first differing byte at offset 3: 646566 -> 5865666768", "size: 6 -> 8"]
    c = write(tmp_path, "c.tar", canon_tar(BASE))
    assert whats(diff_files(a, c)) == {("", "format")}


def test_iso_by_rock_ridge_path(tmp_path):
    pycdlib = pytest.importorskip("pycdlib")

    def iso(content: bytes) -> bytes:
        image = pycdlib.PyCdlib()
        image.new(rock_ridge="1.09")
        image.add_directory("/BOOT", rr_name="boot")
        image.add_fp(io.BytesIO(content), len(content), "/BOOT/CMDLINE.;1",
                     rr_name="cmdline")
        out = io.BytesIO()
        image.write_fp(out)
        image.close()
        return out.getvalue()

    a = write(tmp_path, "a.iso", iso(b"quiet"))
    b = write(tmp_path, "b.iso", iso(b"quieT"))
    report = diff_files(a, b)
    assert report.format == "iso"
    assert {("boot/cmdline", "sha256"), ("boot/cmdline", "first differing byte at offset 4")} \
        <= whats(report)


def test_archives_inside_archives_are_diffed_inside(tmp_path):
    def wrapper(entries, name: str) -> bytes:
        initrd = gz(cpio_of(tmp_path, entries, name))
        return canon_tar([(Entry("initrd.img", Kind.FILE, size=len(initrd)), initrd)])

    a = write(tmp_path, "a.tar", wrapper(BASE, "wa"))
    b = write(tmp_path, "b.tar", wrapper(changed(), "wb"))
    report = diff_files(a, b)
    got = whats(report)
    assert ("initrd.img", "sha256") in got
    assert ("initrd.img", "gzip(cpio): the content differs") in got
    assert {("initrd.img:bin/sh", "mtime"), ("initrd.img:etc/motd", "missing")} <= got


def test_docker_archive_layers_paired_through_manifest(tmp_path):
    def archive(entries) -> bytes:
        layer_tar = canon_tar(entries)
        digest = hashlib.sha256(layer_tar).hexdigest()
        config = canonjson.compact({"rootfs": {"diff_ids": [f"sha256:{digest}"]}})
        cdigest = hashlib.sha256(config).hexdigest()
        manifest = canonjson.compact([{"Config": f"blobs/sha256/{cdigest}",
                                       "Layers": [f"blobs/sha256/{digest}"]}])
        members = sorted([(f"blobs/sha256/{cdigest}", config), (f"blobs/sha256/{digest}",
                                                                layer_tar),
                          ("manifest.json", manifest)])
        return canon_tar([(Entry("blobs", Kind.DIR, mode=0o755), None),
                          (Entry("blobs/sha256", Kind.DIR, mode=0o755), None),
                          *[(Entry(n, Kind.FILE, size=len(d)), d) for n, d in members]])

    a = write(tmp_path, "a.tar", archive(BASE))
    b = write(tmp_path, "b.tar", archive(changed()))
    got = whats(diff_files(a, b))
    assert ("manifest.json:[0].Layers[0]:bin/sh", "mtime") in got
    assert ("manifest.json:[0].Config:rootfs.diff_ids[0]", "value") in got
