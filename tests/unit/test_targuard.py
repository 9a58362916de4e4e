"""Hostile or damaged tars give one clean error on every Python, never a silently short archive.

tarfile stops without a word at the first header it cannot parse after the first one, and since
the CVE-2025-8194 fix (Debian's 3.11.2, newer CPythons) a negative size is such a header. The
tests run each hostile archive through every tarfile fallback of the product, as this Python's
tarfile behaves and with that fix simulated (``patched_tarfile``), so they prove the detection
whichever tarfile the machine has. On a Python that already has the fix both runs are the same.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.images import push, sources
from composer.rootfs import flatten
from composer.rootfs.tree import Tree
from composer.tar import guard as targuard
from composer.tar.canon import CanonError
from composer.tar.read import read_entries


def _cve_8194_block(self, count):
    """tarfile's ``_block`` as the CVE-2025-8194 fix has it."""
    if count < 0:
        raise tarfile.InvalidHeaderError("invalid offset")
    blocks, remainder = divmod(count, tarfile.BLOCKSIZE)
    if remainder:
        blocks += 1
    return blocks * tarfile.BLOCKSIZE


@pytest.fixture(params=["this-python", "cve-2025-8194-fix"])
def tarfile_kind(request, monkeypatch) -> str:
    if request.param == "cve-2025-8194-fix":
        monkeypatch.setattr(tarfile.TarInfo, "_block", _cve_8194_block)
    return request.param


def _tar(*members: tuple[str, dict[str, str]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, pax in members:
            info = tarfile.TarInfo(name)
            info.pax_headers = pax
            tf.addfile(info)
    return buf.getvalue()


def negative_pax_size(last: bool) -> bytes:
    """"first", then "a" whose pax size points back before its own header (then "after")."""
    return _tar(("first", {}), ("a", {"size": "-1536"}), *([] if last else [("after", {})]))


def negative_base256_size() -> bytes:
    """A plain ustar header whose size field is base-256 -1024."""
    data = bytearray(_tar(("first", {}), ("b", {}), fmt=tarfile.GNU_FORMAT))
    header = 512
    data[header + 124:header + 136] = b"\xff" * 8 + (-1024 & 0xFFFFFFFF).to_bytes(4, "big")
    chksum = 256 + sum(data[header:header + 148]) + sum(data[header + 156:header + 512])
    data[header + 148:header + 156] = b"%06o\0 " % chksum
    return bytes(data)


def bad_checksum_later() -> bytes:
    """Three members, the second header's checksum broken: on every Python, tarfile alone
    would give only the first member."""
    data = bytearray(_tar(("one", {}), ("two", {}), ("three", {}), fmt=tarfile.USTAR_FORMAT))
    data[512 + 148] ^= 1
    return bytes(data)


HOSTILE = {
    "negative pax size": negative_pax_size(last=False),
    "negative pax size, last member": negative_pax_size(last=True),
    "negative base-256 size": negative_base256_size(),
    "bad checksum after the first header": bad_checksum_later(),
}


@contextlib.contextmanager
def opened(data: bytes, tmp_path: Path, how: str) -> Iterator:
    path = tmp_path / "x.tar"
    path.write_bytes(data)
    if how == "file":
        with open(path, "rb") as fh:
            yield fh
    else:  # a pipe: tarfile's stream mode, as for a .deb's data.tar
        r, w = os.pipe()
        os.write(w, data)
        os.close(w)
        with open(r, "rb") as fh:
            yield fh


@contextlib.contextmanager
def tarfile_only() -> Iterator[None]:
    """The fast reader gives up at once, so tarfile (the fallback) reads everything."""
    from composer.tar import headers as tarread

    def never(fh):
        raise tarread.GiveUp("switched off by the test")
        yield

    saved = tarread.members, flatten.members
    tarread.members = flatten.members = never  # type: ignore[assignment]
    try:
        yield
    finally:
        tarread.members, flatten.members = saved


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("how", ["file", "pipe"])
def test_read_entries_fails_cleanly(tarfile_kind, name, how, tmp_path):
    with opened(HOSTILE[name], tmp_path, how) as fh, \
            pytest.raises(CanonError, match=r"^unreadable tar: "):
        for _entry, reader in read_entries(fh):
            if reader is not None:
                reader.read()


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("fast", [True, False])
def test_a_layer_fails_cleanly(tarfile_kind, name, fast, tmp_path):
    with opened(HOSTILE[name], tmp_path, "file") as fh, \
            contextlib.ExitStack() as stack, \
            pytest.raises(flatten.LayerError, match=r"^layer: unreadable tar: "):
        if not fast:
            stack.enter_context(tarfile_only())
        flatten.apply_tar(Tree(0), fh, "x.tar", 0, what="layer", source="s", location="l")


@pytest.mark.parametrize("name", ["negative pax size", "negative pax size, last member",
                                  "negative base-256 size"])
def test_a_negative_size_is_the_same_error_with_or_without_the_fix(name, tmp_path, monkeypatch):
    def message() -> str:
        with opened(HOSTILE[name], tmp_path, "file") as fh:
            try:
                list(read_entries(fh))
            except CanonError as exc:
                return str(exc)
        raise AssertionError("no error")

    plain = message()
    monkeypatch.setattr(tarfile.TarInfo, "_block", _cve_8194_block)
    assert message() == plain
    assert "negative size" in plain


def test_without_our_size_check_the_fixed_tarfile_still_fails_loudly(tmp_path, monkeypatch):
    """Were our own ``_block`` gone (a renamed internal), the fixed tarfile's header error is
    still turned into an error rather than an early end."""
    monkeypatch.setattr(tarfile.TarInfo, "_block", _cve_8194_block)
    monkeypatch.delattr(targuard.StrictTarInfo, "_block")
    for name in ("negative pax size", "negative pax size, last member"):
        with opened(HOSTILE[name], tmp_path, "pipe") as fh, \
                pytest.raises(CanonError, match=r"invalid offset at byte 512"):
            list(read_entries(fh))


def test_plain_tarfile_really_stops_early_there(tmp_path, monkeypatch):
    """The premise: without the guard tarfile gives fewer members and no error."""
    for data in (bad_checksum_later(), negative_pax_size(last=True)):
        monkeypatch.setattr(tarfile.TarInfo, "_block", _cve_8194_block)
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            assert [m.name for m in tf] == ["one" if data == bad_checksum_later() else "first"]


def test_an_unknown_early_stop_is_caught_at_the_end(tmp_path, monkeypatch):
    """Whatever makes a future tarfile stop quietly, on a file the block after the last member
    must be the end of the archive."""
    real_next = tarfile.TarFile.next

    def stops_after_one(self):
        info = real_next(self)
        return None if info is not None and info.name == "two" else info

    monkeypatch.setattr(tarfile.TarFile, "next", stops_after_one)
    data = _tar(("one", {}), ("two", {}), fmt=tarfile.USTAR_FORMAT)
    with opened(data, tmp_path, "file") as fh, tarfile_only(), \
            pytest.raises(CanonError, match=r"corrupt tar header at byte 512"):
        list(read_entries(fh))
    with opened(data, tmp_path, "file") as fh, tarfile_only(), \
            pytest.raises(flatten.LayerError, match=r"corrupt tar header at byte 512"):
        flatten.apply_tar(Tree(0), fh, "x.tar", 0, what="layer", source="s", location="l")


@pytest.mark.parametrize("tail", [0, 512, 1024, 10240])
@pytest.mark.parametrize("how", ["file", "pipe"])
def test_ordinary_ends_are_still_fine(tarfile_kind, tail, how, tmp_path):
    """No end marker at all, one or many zero blocks."""
    members = _tar(("one", {}), ("two", {}), fmt=tarfile.USTAR_FORMAT)[:1024]
    with opened(members + b"\0" * tail, tmp_path, how) as fh, tarfile_only():
        assert [e.path for e, _ in read_entries(fh)] == ["one", "two"]


@pytest.mark.parametrize("tail", [b"junk", b"\0" * 100])
@pytest.mark.parametrize("how", ["file", "pipe"])
def test_a_torn_last_block_is_an_error(tarfile_kind, tail, how, tmp_path):
    """A tail shorter than a block is a torn archive (a header cut short), zeros or not."""
    data = _tar(("one", {}), fmt=tarfile.USTAR_FORMAT)[:512] + tail
    with opened(data, tmp_path, how) as fh, tarfile_only(), \
            pytest.raises(CanonError, match="truncated header at byte 512"):
        list(read_entries(fh))


# -- the other tarfile readers: archives, docker save streams, layouts to push ----------------

@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_archive_sources_fail_cleanly(tarfile_kind, name, tmp_path):
    path = tmp_path / "a.tar"
    path.write_bytes(HOSTILE[name])
    with pytest.raises(ComposerError, match="not a readable tar archive"), \
            sources.ArchiveReader.open(path):
        pass


class _Sink:
    """Stands in for the cache: reads each member's stream to its end."""

    def put_stream(self, fh, what, expect):
        data = fh.read()
        return "sha256:" + "0" * 64, len(data)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_docker_save_streams_fail_cleanly(tarfile_kind, name, tmp_path):
    with pytest.raises(ComposerError, match="not a readable docker save archive"):
        sources.ingest_docker_save(io.BytesIO(HOSTILE[name]), _Sink(), "save")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_layouts_to_push_fail_cleanly(tarfile_kind, name, tmp_path):
    path = tmp_path / "a.tar"
    path.write_bytes(HOSTILE[name])
    with pytest.raises(ComposerError, match="not a tar archive"):
        push.Layout(path)


# -- the fast reader follows this Python's tarfile where the fixes changed a member's type -----

def _v7_directory_after(extension: str) -> bytes:
    """A member of type "\\0" whose name ends in "/", after a GNU long name or a pax header."""
    long = "d" * 98 + "//" + "e" * 30 + "/"  # the header's own, cut name ends in "/" too
    buf = io.BytesIO()
    fmt = tarfile.GNU_FORMAT if extension == "gnu" else tarfile.PAX_FORMAT
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        info = tarfile.TarInfo(long if extension == "gnu" else "short/")
        info.type = tarfile.AREGTYPE
        if extension == "pax":
            info.pax_headers = {"comment": "x"}
        tf.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("extension", ["gnu", "pax"])
def test_the_fast_reader_reads_types_as_this_tarfile_does(extension):
    from composer.tar import headers as tarread
    from composer.tar.canon import entry_from_tarinfo

    data = _v7_directory_after(extension)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        slow = [entry_from_tarinfo(m) for m in tf]
    fast = [m.entry for m in tarread.members(io.BytesIO(data))]
    assert fast == slow
    patched = hasattr(tarfile.TarInfo, "_frombuf")
    assert tarread._FOLLOWUP_DIRCHECK is not patched
