"""The report's data: sections, layers, shared content and changes, from real builds of
generated images (checked against :mod:`tarfile` as an independent reader), and the page."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from composer.cli import main
from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from composer.report import data, render
from composer.repro.diff import tar_members
from composer.tar.canon import CanonicalTarWriter, Entry, Kind
from composer.tar.check import LOCATION_RECORD, SOURCE_RECORD

BUSYBOX = b"\x7fELF busybox " * 300
DPKG_STATUS = (b"Package: hello\nStatus: install ok installed\nVersion: 2.10-3\n"
               b"Architecture: amd64\n\n")


def tar_of(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, value in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1600000000
            if isinstance(value, str):
                info.type, info.linkname = tarfile.SYMTYPE, value
                tf.addfile(info)
            else:
                info.size, info.mode = len(value), 0o755
                tf.addfile(info, io.BytesIO(value))
    return buf.getvalue()


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("layout")
    store = Cache(base / "store")
    images = {
        "kernel": [tar_of({"kernel": b"K" * 5000,
                           "kernel.tar": tar_of({"lib/modules/6.1.0/x.ko": b"M" * 700})})],
        "init": [tar_of({"init": b"#!/bin/sh\n", "bin/sh": "busybox", "bin/busybox": BUSYBOX}),
                 tar_of({"etc/motd": b"welcome\n" * 10})],
        "hello": [tar_of({"bin/busybox": BUSYBOX, "bin/hello": b"#!/bin/sh\necho hi\n",
                          "var/lib/dpkg/status": DPKG_STATUS})],
    }
    for tag, layers in images.items():
        export_layout(store, write_image(store, layers, config={}), base / "oci", tag)
    return base / "oci"


def spec(layout: Path, greeting: str = "hi there") -> str:
    return f"""\
kernel:
  image: oci:{layout}:kernel
  cmdline: console=ttyS0
init:
  - oci:{layout}:init
onboot:
  - name: hello
    image: oci:{layout}:hello
services:
  - name: svc
    image: oci:{layout}:init
files:
  - path: etc/greeting
    contents: "{greeting}\\n"
"""


def build(tmp_path: Path, layout: Path, name: str, greeting: str = "hi there") -> Path:
    spec_path = tmp_path / f"{name}.yml"
    spec_path.write_text(spec(layout, greeting))
    out = tmp_path / f"out-{name}"
    assert main(["build", "-f", "tar,kernel+initrd", "-o", str(out), "--cache",
                 str(tmp_path / "cache"), str(spec_path)]) == 0
    return out / f"{name}.build.json"


@pytest.fixture(scope="module")
def built(tmp_path_factory, layout) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("built")
    return build(tmp, layout, "one"), tmp / "cache"


def test_sections_add_up_to_the_tar_file_bytes(built):
    record, cache = built
    b = render.read_build(record, cache=cache)
    totals = {t.section: t for t in data.section_totals(b.items)}
    assert set(totals) == {"kernel", "init", "onboot/hello", "services/svc", "files", "sbom"}
    with tarfile.open(record.with_name("one.tar")) as tf:  # an independent reader
        members = tf.getmembers()
    assert sum(t.bytes for t in totals.values()) == sum(m.size for m in members if m.isreg())
    assert sum(t.entries for t in totals.values()) == len(members)
    assert sum(t.files for t in totals.values()) == sum(m.isreg() for m in members)
    assert totals["kernel"].bytes == 5000 + 700 + len("console=ttyS0")
    assert totals["files"].bytes == len("hi there\n")


def test_each_path_gets_its_image_and_layer(built):
    record, cache = built
    items = {it.path: it for it in render.read_build(record, cache=cache).items}
    assert items["etc/motd"].layer == 1 and items["bin/busybox"].layer == 0
    assert items["boot/kernel"].layer == 0 and items["lib/modules/6.1.0/x.ko"].layer == 0
    assert items["boot/cmdline"].layer is None  # generated
    hello = items["containers/onboot/000-hello/lower/bin/hello"]
    assert (hello.section, hello.layer, hello.rel) == ("onboot/hello", 0, "lower/bin/hello")
    assert hello.source.endswith(":hello")
    assert items["containers/onboot/000-hello/config.json"].layer is None
    assert items["etc/greeting"].section == "files"
    from composer.tar.check import explain

    lines = explain(record.with_name("one.tar"), hello.path)
    assert "section:  onboot/hello" in lines and "location: onboot[0]" in lines
    # without the images' layers the report still places every path, with "layer ?"
    blind = {it.path: it for it in render.read_build(record, cache=None).items}
    assert blind["etc/motd"].layer == -1 and blind["etc/motd"].section == "init"


def test_shared_content_is_found_across_sections_only(built):
    record, cache = built
    shared = data.shared_content(render.read_build(record, cache=cache).items)
    busybox = [s for s in shared if s.size == len(BUSYBOX)]
    assert len(busybox) == 1
    # the init image is at / and again in the svc bundle; hello has its own busybox
    assert busybox[0].sections == ("init", "onboot/hello", "services/svc")
    assert busybox[0].reclaimable == 2 * len(BUSYBOX)
    # the shell script ``init`` is in two sections too, but it is one path per section
    paths = dict(busybox[0].paths)
    assert paths["onboot/hello"] == "containers/onboot/000-hello/lower/bin/busybox"
    assert all(len(s.sections) > 1 for s in shared)


def canonical(entries: list[tuple[str, bytes | None, str, str]]) -> bytes:
    buf = io.BytesIO()
    w = CanonicalTarWriter(buf)
    for path, content, source, location in entries:
        records = ((LOCATION_RECORD, location), (SOURCE_RECORD, source)) if source else ()
        if content is None:
            w.add(Entry(path, Kind.DIR, mode=0o755, records=records))
        else:
            w.add(Entry(path, Kind.FILE, size=len(content), records=records), content)
    w.close()
    return buf.getvalue()


def items_of(tar: bytes) -> list[data.Item]:
    return data.attribute(tar_members(io.BytesIO(tar)), lambda source, path: 0)


def test_same_content_within_one_section_is_not_shared():
    tar = canonical([("a", None, "img", "init[0]"), ("a/x", b"same", "img", "init[0]"),
                     ("a/y", b"same", "img", "init[0]")])
    assert data.shared_content(items_of(tar)) == []


def test_an_implicit_directory_belongs_where_its_first_child_does():
    tar = canonical([("containers", None, "img", "onboot[0]"),
                     ("containers/onboot", None, "img", "onboot[0]"),
                     ("containers/onboot/000-web", None, "img", "onboot[0]"),
                     ("usr", None, "", ""), ("usr/x", b"1", "img", "onboot[0]"),
                     ("usr/y", None, "", "")])
    sections = {it.path: it.section for it in items_of(tar)}
    assert sections["usr"] == sections["usr/x"] == sections["usr/y"] == "onboot/web"


def test_diff_of_trees_differing_in_one_file_shows_exactly_that_file():
    base = [("etc", None, "img", "init[0]"), ("etc/a", b"one", "img", "init[0]"),
            ("etc/b", b"two", "img", "init[0]")]
    other = [*base[:2], ("etc/b", b"TWO!", "img", "init[0]")]
    diff = data.diff_items(items_of(canonical(base)), items_of(canonical(other)))
    assert [(c.path, c.change, c.what) for c in diff.changes] == [("etc/b", "changed",
                                                                   ("content",))]
    assert (diff.gained, diff.lost) == (1, 0)
    assert diff.marks() == {"etc/b": "changed"}
    assert data.diff_items(items_of(canonical(base)), items_of(canonical(base))).changes == ()


def test_diff_names_added_removed_mode_owner_and_link():
    def tar(entries):
        buf = io.BytesIO()
        w = CanonicalTarWriter(buf)
        for e, content in entries:
            w.add(e, content)
        w.close()
        return items_of(buf.getvalue())

    a = tar([(Entry("gone", Kind.FILE, size=2), b"xx"), (Entry("l", Kind.SYMLINK, linkname="a"),
                                                        None),
             (Entry("m", Kind.FILE, mode=0o644, size=1), b"m"),
             (Entry("o", Kind.FILE, uid=0, size=1), b"o")])
    b = tar([(Entry("l", Kind.SYMLINK, linkname="b"), None),
             (Entry("m", Kind.FILE, mode=0o755, size=1), b"m"),
             (Entry("new", Kind.FILE, size=3), b"yyy"),
             (Entry("o", Kind.FILE, uid=7, size=1), b"o")])
    got = {c.path: (c.change, c.what) for c in data.diff_items(a, b).changes}
    assert got == {"gone": ("removed", ()), "l": ("changed", ("link",)),
                   "m": ("changed", ("mode",)), "new": ("added", ()),
                   "o": ("changed", ("owner",))}


def test_report_page_names_sections_largest_file_and_inputs(built, tmp_path):
    record, cache = built
    out = tmp_path / "r.html"
    assert main(["report", str(record), "--cache", str(cache), "-o", str(out)]) == 0
    html = out.read_text()
    doc = render.read_build(record, cache=cache).record
    for word in ("onboot/hello", "services/svc", "kernel", "files", "init"):
        assert f"<b>{word}</b>" in html
    assert "containers/onboot/000-hello/lower/bin/busybox" in html  # a largest file
    for image in doc["images"]:
        assert image["digest"] in html
    for output in doc["outputs"]:
        assert output["sha256"] in html
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "default-src 'none'" in html
    # the page is a function of the build: not of the hash seed, time zone, locale or cwd
    again = tmp_path / "again.html"
    env = {**os.environ, "PYTHONHASHSEED": "4242", "TZ": "America/St_Johns", "LC_ALL": "C"}
    subprocess.run([sys.executable, "-m", "composer", "report", str(record), "--cache",
                    str(cache), "-o", str(again)], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    assert again.read_bytes() == out.read_bytes()


def test_two_records_give_the_changes(built, layout, tmp_path):
    record, cache = built
    other = build(tmp_path, layout, "two", greeting="hello there")
    b = render.read_build(other, cache=tmp_path / "cache")
    a = render.read_build(record, cache=cache)
    ctx = render.context(b, a)
    assert [(c.path, c.what) for c in ctx["diff"].changes] == [("etc/greeting", ("content",))]
    # the same paths `image-composer diff` names (it also compares mtimes and provenance)
    from composer.repro.diff import diff_files

    text = diff_files(record.with_name("one.tar"), other.with_name("two.tar"))
    assert {d.where for d in text.differences} == {"etc/greeting"}
    # the same images and tools; only the spec files (and the build's name) differ
    assert sorted(w for w, _, _ in ctx["changed_inputs"]) == ["build.name", "spec one.yml",
                                                              "spec two.yml"]
    pairs = {name: (x, y) for name, x, y in ctx["output_pairs"]}
    assert pairs["two-kernel"][0]["sha256"] == pairs["two-kernel"][1]["sha256"]
    assert pairs["two.tar"][0]["sha256"] != pairs["two.tar"][1]["sha256"]
    html = render.render(ctx)
    assert "etc/greeting" in html and "Changes from one" in html


def test_page_data_cannot_close_its_script_element():
    tar = canonical([("x", None, "img", "init[0]"), ("x/<", None, "img", "init[0]"),
                     ("x/</script><!--<script>", b"1", "img", "init[0]")])
    text = render._json_for_script(data.treemap_data(items_of(tar)))
    assert "<" not in text and ">" not in text
    assert "\\u003c!--\\u003cscript\\u003e" in text


def test_no_rootfs_tar_is_one_clean_error(built, tmp_path, capsys):
    record, _ = built
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    copy = lonely / record.name
    copy.write_bytes(record.read_bytes())
    assert main(["report", str(copy), "--cache", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rootfs tar" in err[0] and "--tar" in err[0]
    assert main(["report", str(copy), "--tar", str(copy)]) == 1  # not the rootfs
    assert not list(lonely.glob("*.html"))


def test_packages_are_grouped_by_the_section_of_their_database(built):
    record, cache = built
    ctx = render.context(render.read_build(record, cache=cache))
    assert ctx["packages"] == [("onboot/hello", [{"name": "hello", "version": "2.10-3",
                                                  "type": "deb",
                                                  "purl": "pkg:deb/debian/hello@2.10-3"
                                                          "?arch=amd64"}])]


def test_attestations_beside_the_record_are_reported(built, tmp_path):
    from composer.repro import attest

    record, cache = built
    here = tmp_path / "signed"
    here.mkdir()
    for f in record.parent.iterdir():
        (here / f.name).write_bytes(f.read_bytes())
    copy = here / record.name
    checks = {c.what: c for c in render.context(render.read_build(copy, cache=cache))["checks"]}
    assert checks["one.intoto.json"].status == "missing"
    assert checks["one.tar"].status == "ok" and checks["one.SHA256SUMS"].status == "ok"
    (tmp_path / "keys").mkdir()
    key, _pub = attest.generate_key(tmp_path / "keys" / "me")
    attest.sign(copy.read_bytes(), key, here / "one.intoto.json")
    build = render.read_build(copy, cache=cache)
    ctx = render.context(build)
    assert {c.what: c.status for c in ctx["checks"]}["one.intoto.json"] == "info"
    assert ctx["repro_word"] == "signed (unchecked)"
    ctx = render.context(build, keys=tmp_path / "keys")
    assert {c.what: c.status for c in ctx["checks"]}["one.intoto.json"] == "ok"
    assert ctx["repro_word"] == "attested"
    (here / "one-kernel").write_bytes(b"tampered")
    ctx = render.context(build, keys=tmp_path / "keys")
    assert {c.what: c.status for c in ctx["checks"]}["one-kernel"] == "differs"
    assert ctx["repro_word"] == "differs"
    (here / "one-kernel").write_bytes((record.parent / "one-kernel").read_bytes())
    (here / "one.verify.json").write_text('{"ok": true, "rebuild": {"ok": true, "outputs": '
                                          '[{"name": "one.tar", "ok": true}]}}')
    ctx = render.context(build)
    verify = {c.what: c for c in ctx["checks"]}["one.verify.json"]
    assert (verify.status, ctx["repro_word"]) == ("ok", "verified")
    assert "1 of 1 outputs reproduced" in verify.detail


def test_the_rootfs_is_found_in_the_cache_when_no_tar_was_built(layout, tmp_path, capsys):
    spec_path = tmp_path / "lean.yml"
    spec_path.write_text(spec(layout))
    out = tmp_path / "out"
    assert main(["build", "-o", str(out), "--cache", str(tmp_path / "cache"),
                 str(spec_path)]) == 0
    assert not (out / "lean.tar").exists()
    capsys.readouterr()
    record = out / "lean.build.json"
    assert main(["report", str(record), "--cache", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.strip() == str(out / "lean.report.html")
    assert "<b>onboot/hello</b>" in (out / "lean.report.html").read_text()
    assert main(["report", str(record), str(record), str(record)]) == 2  # at most two


def test_an_attestation_of_another_record_is_flagged(built, tmp_path):
    from composer.report import scan
    from composer.repro import attest

    record, _ = built
    (tmp_path / "keys").mkdir()
    key, _pub = attest.generate_key(tmp_path / "keys" / "me")
    other = record.read_bytes().replace(b'"name": "one"', b'"name": "uno"')
    assert other != record.read_bytes()
    envelope = tmp_path / "one.intoto.json"
    attest.sign(other, key, envelope)
    checks = scan._attestations(envelope, record.read_bytes(), None)
    assert [(c.status, c.detail) for c in checks] == [("differs", "attests a different record")]
