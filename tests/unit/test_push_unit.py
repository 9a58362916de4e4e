"""Push helpers that need no registry: reading layouts, choosing outputs, reference checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.images.push import Layout, Pusher, image_output, push
from composer.oci.refs import parse_registry_ref
from outputs import FORMATS, Options
from tests.fixtures.busybox_rootfs import write_rootfs


def test_layout_reads_the_image_from_archives_and_directories(tmp_path):
    rootfs = write_rootfs(tmp_path / "rootfs.tar", busybox=b"box")
    with OutputSet(tmp_path / "out") as outs:
        for fmt in ("docker", "oci", "oci-dir"):
            FORMATS[fmt].convert(rootfs, "x", outs, Options(mtime=0))
        paths = outs.commit()
    descs = []
    for path in paths:
        with Layout(path) as layout:
            desc = layout.image()
            assert b'"layers"' in layout.read_blob(desc)
            descs.append(desc)
    assert len({d["digest"] for d in descs}) == 1
    assert image_output([tmp_path / "x.tar", *reversed(paths)]).name == "x-docker.tar"
    assert image_output([tmp_path / "x.tar"]) is None


def test_not_a_layout(tmp_path):
    rootfs = write_rootfs(tmp_path / "rootfs.tar", busybox=b"box")
    with pytest.raises(ComposerError, match=r"no index\.json"):
        Layout(rootfs).image()
    (tmp_path / "junk").write_bytes(b"not a tar")
    with pytest.raises(ComposerError, match="not a tar"):
        Layout(tmp_path / "junk")


def test_a_digest_reference_must_match(tmp_path):
    rootfs = write_rootfs(tmp_path / "rootfs.tar", busybox=b"box")
    with OutputSet(tmp_path) as outs:
        FORMATS["oci"].convert(rootfs, "x", outs, Options(mtime=0))
        (archive,) = outs.commit()
    ref = parse_registry_ref("127.0.0.1:9/x@sha256:" + "0" * 64)
    with pytest.raises(ComposerError, match="the image's digest is"):
        push([Path(archive)], ref, Pusher())
