"""``image-composer diff DIR_A DIR_B``: output directories compared file by file."""

from __future__ import annotations

import os
from pathlib import Path

from composer import canonjson
from composer.cli import main
from composer.repro.dirdiff import diff_dirs
from tests.unit.test_diff import BASE, canon_tar, changed


def outputs(root: Path, tar: bytes, record: dict, extra: dict[str, bytes]) -> Path:
    root.mkdir()
    (root / "x.tar").write_bytes(tar)
    (root / "x.build.json").write_bytes(canonjson.pretty(record))
    (root / "x-oci").mkdir()
    (root / "x-oci" / "index.json").write_bytes(b'{"schemaVersion": 2}\n')
    for name, data in extra.items():
        (root / name).write_bytes(data)
    return root


def test_identical_directories(tmp_path, capsys):
    a = outputs(tmp_path / "a", canon_tar(BASE), {"k": 1}, {"x-cmdline": b"quiet"})
    b = outputs(tmp_path / "b", canon_tar(BASE), {"k": 1}, {"x-cmdline": b"quiet"})
    os.symlink("x.tar", a / "link")
    os.symlink("x.tar", b / "link")
    assert main(["diff", str(a), str(b)]) == 0
    assert capsys.readouterr().out == "directory: identical (4 file(s) identical)\n"


def test_file_by_file_and_inside_each(tmp_path, capsys):
    a = outputs(tmp_path / "a", canon_tar(BASE), {"k": 1, "same": 2}, {"only-a": b"1"})
    b = outputs(tmp_path / "b", canon_tar(changed()), {"k": 2, "same": 2}, {"only-b": b"2"})
    (b / "x-oci" / "index.json").write_bytes(b'{"schemaVersion": 3}\n')
    os.symlink("x.tar", a / "link")
    os.symlink("x.build.json", b / "link")
    report = diff_dirs(a, b)
    places = [d.where for d in report.differences]
    assert "only-a" in places and "only-b" in places and "link" in places
    text = [d.text() for d in report.differences]
    assert "only-a: only in A" in text and "only-b: only in B" in text
    assert "link: link target: x.tar -> x.build.json" in text
    assert "x.build.json: json differs: 1 difference(s)" in text
    assert "x.build.json: k: value: 1 -> 2" in text
    assert "x-oci/index.json: schemaVersion: value: 2 -> 3" in text
    assert any(t.startswith("x.tar: tar differs") for t in text)
    assert any(t.startswith("x.tar: bin/sh: ") for t in text)  # inside the tar
    assert report.note == "0 file(s) identical"
    assert main(["diff", str(a), str(b)]) == 1
    assert capsys.readouterr().out.startswith("directory: ")


def test_a_directory_and_a_file_is_an_error(tmp_path, capsys):
    a = outputs(tmp_path / "a", canon_tar(BASE), {}, {})
    assert main(["diff", str(a), str(a / "x.tar")]) == 1
    assert "not a directory" in capsys.readouterr().err
