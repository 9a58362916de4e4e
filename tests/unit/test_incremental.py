"""Rebuilds whose cost grows with the change: container and init regions spliced from the previous
rootfs tar (composer.rootfs.regions). Every incremental build is compared byte for byte with a
from-scratch build of the same spec in an empty cache; the invalidation rules are pinned."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from composer.cli import main
from composer.epoch import resolve_epoch
from composer.images.cache import Cache
from composer.images.model import Image
from composer.images.write import export_layout, write_image
from composer.rootfs import memo, regions
from tests.fixtures.images import layer_tar, symlink
from tests.unit.test_build import tar_of

EPOCH = "1700000000"


@pytest.fixture(scope="module")
def oci(tmp_path_factory) -> Path:
    """An init image and four container images, each distinct."""
    base = tmp_path_factory.mktemp("inc-layout")
    store = Cache(base / "store")
    images = {
        "init": [tar_of({"init": b"#!/bin/sh\n", "bin/sh": b"sh", "etc/os": b"base\n",
                         **{f"usr/lib/l{j}": bytes([7, j]) * 40 for j in range(20)}}),
                 tar_of({"usr/lib/l3": b"newer", "etc/os": b"base 2\n"}),
                 layer_tar([symlink("lib", "usr/lib")])],
        "big": [tar_of({f"usr/share/d{i}/f{j}": bytes([i, j]) * (50 + j) for i in range(4)
                        for j in range(30)}),
                tar_of({"usr/share/d1/f1": b"replaced", "var/lib/dpkg/status":
                        b"Package: demo\nStatus: install ok installed\nVersion: 1\n"
                        b"Architecture: amd64\n\n", "etc/x": b"x"})],
        "small": [tar_of({"bin/tool": b"tool v1", "etc/tool.conf": b"a=1"})],
        "small2": [tar_of({"bin/tool": b"tool v2", "etc/tool.conf": b"a=2", "lib/x": b"x"})],
        "boot": [tar_of({"bin/setup": b"setup v1"})],
        "boot2": [tar_of({"bin/setup": b"setup v2", "etc/setup": b"more"})],
    }
    for tag, layers in images.items():
        export_layout(store, write_image(store, layers, config={"Cmd": ["/bin/x"]}),
                      base / "oci", tag)
    return base / "oci"


def spec(oci: Path, *, service: str = "small", onboot: str = "boot",
         files: str = '  - path: etc/motd\n    contents: "hello\\n"\n') -> str:
    return f"""\
init:
  - oci:{oci}:init
onboot:
  - name: setup
    image: oci:{oci}:{onboot}
services:
  - name: big
    image: oci:{oci}:big
  - name: tool
    image: oci:{oci}:{service}
    readonly: true
files:
{files}"""


def build(tmp_path: Path, text: str, out: str, cache: str = "cache") -> tuple[str, dict]:
    path = tmp_path / f"{out}.yml"
    path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["build", "-f", "tar", "--name", "inc", "-o", str(tmp_path / out),
                       "--cache", str(tmp_path / cache), "--source-date-epoch", EPOCH,
                       str(path)])
    assert status == 0, err.getvalue()
    files = {p.name: p.read_bytes() for p in sorted((tmp_path / out).iterdir())
             if p.name in ("inc.tar", "inc.spdx.json")}  # the record names the spec file
    return err.getvalue(), files


INIT = {"bin", "dev", "usr"}  # the init image's top-level directories that nothing else touches
SETUP, BIG, TOOL = (f"containers/{c}" for c in ("onboot/000-setup/lower", "services/big/lower",
                                                "services/tool/rootfs"))
EVERY = INIT | {SETUP, BIG, TOOL}
CHANGES = {  # change -> (spec arguments, regions reused)
    "service image changed": ({"service": "small2"}, EVERY - {TOOL}),
    "onboot image changed": ({"onboot": "boot2"}, EVERY - {SETUP}),
    "files entry edited": ({"files": '  - path: etc/motd\n    contents: "bye\\n"\n'}, EVERY),
    "files entry added": ({"files": '  - path: etc/motd\n    contents: "hello\\n"\n'
                                    '  - path: opt/new/file\n    contents: "n"\n'}, EVERY),
    "files entry removed": ({"files": '  - path: etc/other\n    symlink: motd\n'}, EVERY),
    # below a spliced directory, directly or through a symlink: everything is flattened again
    "files entry in an init directory": (
        {"files": '  - path: usr/lib/extra\n    contents: "x"\n'}, set()),
    "files entry through a symlink": (
        {"files": '  - path: lib/extra\n    contents: "x"\n'}, set()),
    "files entry in a container": (
        {"files": '  - path: containers/services/big/lower/usr/share/d1/f1\n'
                  '    contents: "from files"\n'}, set()),
}


def reused(log: str) -> set[str]:
    marker = "regions spliced from an earlier rootfs: "
    for line in log.splitlines():
        if line.startswith("rootfs:") and marker in line:
            return set(line.split(marker)[1].rstrip(")").split(", "))
    return set()


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_incremental_and_from_scratch_builds_give_the_same_bytes(tmp_path, oci, change):
    first, _ = build(tmp_path, spec(oci), "a")
    assert reused(first) == set()
    arguments, regions_reused = CHANGES[change]
    log, incremental = build(tmp_path, spec(oci, **arguments), "b")
    _, scratch = build(tmp_path, spec(oci, **arguments), "c", cache="fresh")
    assert incremental == scratch  # the rootfs tar and the SBOM
    assert reused(log) == regions_reused


def test_a_tampered_earlier_rootfs_is_never_spliced(tmp_path, oci):
    build(tmp_path, spec(oci), "a")
    for tar in (tmp_path / "cache" / "rootfs").glob("*.tar"):
        data = bytearray(tar.read_bytes())
        at = data.find(b"\x01\x02\x01\x02")  # content of the big service's region
        assert at > 0
        data[at] ^= 0xFF
        tar.write_bytes(bytes(data))
    log, incremental = build(tmp_path, spec(oci, service="small2"), "b")
    _, scratch = build(tmp_path, spec(oci, service="small2"), "c", cache="fresh")
    assert reused(log) == set() and incremental == scratch


def test_unchanged_inputs_reuse_every_region_and_keep_the_cache_lean(tmp_path, oci):
    build(tmp_path, spec(oci), "a")
    # the uncompressed layer copies are gone once the build is over (no other build ran)
    assert not list((tmp_path / "cache" / "uncompressed" / "sha256").iterdir())
    log, again = build(tmp_path, spec(oci, files="  []\n"), "b")
    assert reused(log) == EVERY  # (etc had a files entry the first time: not recorded)
    _, scratch = build(tmp_path, spec(oci, files="  []\n"), "c", cache="fresh")
    assert again == scratch


def _image(digest: str = "sha256:" + "1" * 64, ref: str = "oci:x:a") -> Image:
    return Image(ref=ref, digest=digest, config={}, layers=())


def test_every_region_key_input_changes_the_key(monkeypatch):
    epoch = resolve_epoch(1700000000)
    lower = "containers/services/a/lower"
    base = regions.region_key(_image(), "services[0]", lower, epoch)
    variants = [
        regions.region_key(_image(digest="sha256:" + "2" * 64), "services[0]", lower, epoch),
        regions.region_key(_image(ref="oci:x:b"), "services[0]", lower, epoch),
        regions.region_key(_image(), "services[1]", lower, epoch),
        regions.region_key(_image(), "services[0]", "containers/services/a/rootfs", epoch),
        regions.region_key(_image(), "services[0]", lower, resolve_epoch(1700000001)),
    ]
    monkeypatch.setattr(memo, "_code_digest", "0" * 64)  # the phase-one code changed
    variants.append(regions.region_key(_image(), "services[0]", lower, epoch))
    assert len({base, *variants}) == len(variants) + 1


def test_the_writer_splices_whole_entries_below_the_directory_just_written():
    from composer.tar.canon import CanonError, CanonicalTarWriter, Entry, Kind

    first = io.BytesIO()
    writer = CanonicalTarWriter(first)
    writer.add(Entry("a", Kind.DIR, mode=0o755))
    start = writer.written
    writer.add(Entry("a/x", Kind.FILE, size=3), b"xyz")
    writer.add(Entry("a/y", Kind.FILE, size=1), b"y")
    end = writer.written
    writer.add(Entry("b", Kind.DIR, mode=0o755))
    writer.close()
    second = io.BytesIO()
    again = CanonicalTarWriter(second)
    again.add(Entry("a", Kind.DIR, mode=0o755))
    again.splice(first, start, end, "a", "a/y")
    with pytest.raises(CanonError, match="out of order"):
        again.add(Entry("a/x", Kind.FILE))  # nothing may sort inside the range after it
    again.add(Entry("b", Kind.DIR, mode=0o755))
    again.close()
    assert second.getvalue() == first.getvalue()
    for bad in (lambda w: w.splice(first, start, end, "b", "b/y"),  # not the last entry
                lambda w: w.splice(first, start, end - 1, "a", "a/y"),  # not whole blocks
                lambda w: w.splice(first, start, end, "a", "c/y")):  # not below it
        writer = CanonicalTarWriter(io.BytesIO())
        writer.add(Entry("a", Kind.DIR, mode=0o755))
        with pytest.raises(CanonError):
            bad(writer)
