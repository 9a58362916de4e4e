"""check-tar and explain, plus sparse layer members, against tars made by other tools."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

import pytest

from composer.cli import main
from composer.tar.canon import CanonicalTarWriter, Entry, Kind
from composer.tar.check import check_tar, explain


def canonical(tmp_path, records=()):
    path = tmp_path / "c.tar"
    with open(path, "wb") as fh:
        w = CanonicalTarWriter(fh)
        w.add(Entry("a", Kind.DIR, mode=0o755, records=records))
        w.add(Entry("a/f", Kind.FILE, size=2, records=records), b"hi")
        w.close()
    return path


def need(tool):
    if shutil.which(tool) is None:
        import os
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI")
        pytest.skip(f"{tool} not installed")


def test_our_output_is_canonical(tmp_path):
    assert check_tar(canonical(tmp_path)) is None


def test_gnu_tar_output_is_flagged_at_the_uname_field(tmp_path):
    need("tar")
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "f").write_bytes(b"hi")
    out = tmp_path / "gnu.tar"
    subprocess.run(["tar", "--sort=name", "--format=ustar", "--owner=root", "--group=root",
                    "--mtime=@0", "-cf", out, "-C", src, "a"], check=True)
    problem = check_tar(out)
    assert problem is not None and problem.path == "a"
    assert "uname" in problem.message


@pytest.mark.parametrize("names, message", [
    (["b", "a"], "out of order"),
    (["./", "a"], "root directory"),
    (["x/y"], "parent"),
])
def test_structural_problems(tmp_path, names, message):
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
            tf.addfile(info, io.BytesIO(b""))
    problem = check_tar(path)
    assert problem is not None and message in problem.message


def test_trailing_garbage_is_flagged(tmp_path):
    path = canonical(tmp_path)
    with open(path, "ab") as fh:
        fh.write(b"\0" * 10240 + b"junk")
    problem = check_tar(path)
    assert problem is not None


def test_cli_exit_status(tmp_path, capsys):
    assert main(["check-tar", str(canonical(tmp_path))]) == 0
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    assert main(["check-tar", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_explain_reports_provenance(tmp_path):
    path = canonical(tmp_path, records=(("LINUXKIT.location", "init[0]"),
                                        ("LINUXKIT.source", "docker.io/x/y:1")))
    text = "\n".join(explain(path, "/a/f"))
    assert "source:   docker.io/x/y:1" in text and "location: init[0]" in text
    assert "section:  init" in text  # as the report names it
    assert main(["explain", str(path), "nope"]) == 1


def test_sparse_members_are_expanded(tmp_path):
    need("tar")
    from tests.unit.test_flatten import flatten

    sparse = tmp_path / "sp"
    with open(sparse, "wb") as fh:
        fh.seek(1 << 20)
        fh.write(b"middle")
        fh.seek(3 << 20)
        fh.write(b"end")
    for fmt in ("gnu", "posix"):
        layer_path = tmp_path / f"{fmt}.tar"
        subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", layer_path, "-C",
                        tmp_path, "sp"], check=True)
        got = flatten(tmp_path / fmt, layer_path.read_bytes())
        assert got["sp"][2] == sparse.read_bytes()
