"""Pinned tools run from their unpacked .debs (composer.debian.unpack), against a real HTTP
archive on loopback: fetched and verified through the pool, ``--offline`` honoured, nothing
written outside the scratch directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from composer import tools
from composer.debian import pool as debpool
from composer.debian.pool import PoolDeb, PoolError
from composer.debian.unpack import PinnedTool, bin_path, unpack
from tests.unit.test_deb import HARD, SYM
from tests.unit.test_debpool import archive, env  # noqa: F401 - the fixture

TOOL = [("./", None, {}), ("./usr/", None, {}), ("./usr/bin/", None, {}),
        ("./usr/bin/tool", b"#!/bin/sh\necho pinned tool \"$@\"\n", {"mode": 0o755}),
        ("./usr/bin/tool-alias", None, {**SYM, "linkname": "tool"}),
        ("./usr/bin/same", None, {**HARD, "linkname": "./usr/bin/tool"}),
        ("./usr/lib/", None, {}), ("./usr/lib/x86_64-linux-gnu/", None, {}),
        ("./usr/lib/x86_64-linux-gnu/libdemo.so.1", b"\x7fELF", {})]


def served(archive, members, package: str = "demo-tool") -> PoolDeb:  # noqa: F811
    probe = PoolDeb(package, "1.0-1", "all", "0" * 64)
    data = archive.add(probe, members)
    return PoolDeb(package, "1.0-1", "all", hashlib.sha256(data).hexdigest())


def test_a_pinned_tool_runs_from_its_unpacked_deb(archive, tmp_path):  # noqa: F811
    deb = served(archive, TOOL)
    tool = PinnedTool("usr/bin/tool", (deb,))
    got = unpack(tool, tmp_path / "scratch", environ=env(archive, tmp_path))
    assert got.program == tmp_path / "scratch/usr/bin/tool"
    assert os.readlink(got.bin_dir / "tool-alias") == "tool"
    assert (got.bin_dir / "same").stat().st_ino == got.program.stat().st_ino
    assert tmp_path.joinpath("scratch/usr/lib/x86_64-linux-gnu") \
        .as_posix() in got.env["LD_LIBRARY_PATH"].split(":")
    # found on PATH by a child, as the syslinux installer finds mcopy
    out = tools.run(["sh", "-c", "tool-alias x"], capture=True,
                    env={"PATH": bin_path([got], {"PATH": "/usr/bin:/bin"})}).stdout
    assert out == b"pinned tool x\n"
    assert tool.record() == "demo-tool=1.0-1"
    assert tool.name == "tool"


def test_offline_takes_the_debs_from_the_cache_only(archive, tmp_path):  # noqa: F811
    deb = served(archive, TOOL)
    tool = PinnedTool("usr/bin/tool", (deb,))
    with debpool.offline_mode(), pytest.raises(PoolError, match=r"demo-tool=1\.0-1.*offline"):
        unpack(tool, tmp_path / "a", environ=env(archive, tmp_path))
    assert archive.hits == {}
    unpack(tool, tmp_path / "b", environ=env(archive, tmp_path))
    with debpool.offline_mode():
        assert unpack(tool, tmp_path / "c", environ=env(archive, tmp_path)).program.is_file()


def test_a_deb_cannot_write_through_its_own_link(archive, tmp_path):  # noqa: F811
    outside = tmp_path / "outside"
    outside.mkdir()
    deb = served(archive, [("./", None, {}), ("./usr/", None, {}),
                           ("./usr/lib", None, {**SYM, "linkname": str(outside)}),
                           ("./usr/lib/evil", b"x", {})], "evil")
    with pytest.raises(PoolError, match="through a link"):
        unpack(PinnedTool("usr/lib/evil", (deb,)), tmp_path / "s",
               environ=env(archive, tmp_path))
    assert list(outside.iterdir()) == []


def test_the_program_must_be_in_the_packages(archive, tmp_path):  # noqa: F811
    deb = served(archive, TOOL)
    with pytest.raises(PoolError, match=r"/usr/bin/nope is not a file in demo-tool=1\.0-1"):
        unpack(PinnedTool("usr/bin/nope", (deb,)), tmp_path / "s",
               environ=env(archive, tmp_path))


def test_another_architectures_pin_is_refused(tmp_path):
    deb = PoolDeb("demo-tool", "1.0-1", "s390x", "0" * 64)
    with pytest.raises(PoolError, match="another architecture"):
        unpack(PinnedTool("usr/bin/tool", (deb,)), tmp_path / "s")


def test_the_tool_rows_are_debian_12_amd64_pins():
    """Each pinned program is in its first package; every package is a Debian 12 version."""
    from outputs.tool_debs import MCOPY, TAR2SQFS

    for tool in (TAR2SQFS, MCOPY):
        assert tool.program.startswith("usr/bin/")
        assert {d.arch for d in tool.debs} == {"amd64"}
        assert len({d.package for d in tool.debs}) == len(tool.debs)
    assert TAR2SQFS.debs[0].package == "squashfs-tools-ng"
    assert "zlib1g" in {d.package for d in TAR2SQFS.debs}  # the compressor: pinned too
    assert Path(MCOPY.program).name == "mcopy"
