"""Fuzz the ISO 9660 writer wrapper: random trees -> outputs.iso.iso9660.PinnedIso ->
pycdlib's reader finds every directory and file with its bytes under both the ISO and the Rock Ridge
name, and the same tree gives the same bytes twice. Names the writer does not accept are a
ValueError.
Bounded for CI; ``FUZZ_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import io
import os

import pycdlib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outputs.iso.iso9660 import PinnedIso, iso_path

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DIR = st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True)
FILE = st.from_regex(r"[a-z0-9_]{1,27}(\.[a-z0-9_]{1,3})?", fullmatch=True)


@st.composite
def trees(draw) -> tuple[list[str], dict[str, bytes]]:
    dirs = sorted(set(draw(st.lists(st.lists(DIR, min_size=1, max_size=3).map("/".join),
                                    max_size=4))))
    dirs = sorted({"/".join(d.split("/")[:i]) for d in dirs
                   for i in range(1, d.count("/") + 2)})
    files: dict[str, bytes] = {}
    for _ in range(draw(st.integers(1, 6))):
        parent = draw(st.sampled_from(["", *dirs]))
        name = draw(FILE)
        path = f"{parent}/{name}" if parent else name
        if path not in dirs and path.upper() not in {p.upper() for p in [*files, *dirs]}:
            files[path] = draw(st.binary(max_size=5000))
    return dirs, files


def build(dirs: list[str], files: dict[str, bytes], mtime: int) -> bytes:
    out = io.BytesIO()
    with PinnedIso(mtime=mtime, seed=b"fuzz") as iso:
        for d in dirs:
            iso.add_directory(d)
        for path in sorted(files):
            iso.add_file(path, io.BytesIO(files[path]), len(files[path]))
        iso.write(out)
    return out.getvalue()


@FUZZ
@given(trees(), st.integers(0, 2**31 - 1))
def test_pycdlib_reads_back_what_was_written(tree, mtime) -> None:
    dirs, files = tree
    data = build(dirs, files, mtime)
    assert build(dirs, files, mtime) == data
    reader = pycdlib.PyCdlib()
    reader.open_fp(io.BytesIO(data))
    try:
        for d in dirs:
            assert reader.get_record(rr_path="/" + d).is_dir()
            assert reader.get_record(iso_path=iso_path(d, directory=True)).is_dir()
        for path, content in files.items():
            for key in ({"rr_path": "/" + path}, {"iso_path": iso_path(path)}):
                got = io.BytesIO()
                reader.get_file_from_iso_fp(got, **key)
                assert got.getvalue() == content, (path, key)
        walked = set()
        for top, subdirs, names in reader.walk(rr_path="/"):
            walked |= {f"{top}/{n}".lstrip("/") for n in [*subdirs, *names]}
        assert walked == {*dirs, *files}  # nothing more, nothing less
    finally:
        reader.close()


@FUZZ
@given(st.text(max_size=40))
def test_names_the_writer_refuses_are_a_value_error(name: str) -> None:
    try:
        converted = iso_path(name)
    except ValueError:
        return
    assert converted.startswith("/") and converted.endswith(";1")
    assert ".." not in name.split("/") and all(name.split("/"))


def test_iso_path_rejects_traversal() -> None:
    for bad in ["..", "a/../b", "/abs", "", "A", "a b", "a/"]:
        with pytest.raises(ValueError):
            iso_path(bad)
