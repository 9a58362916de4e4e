"""The phase-two cache: a format's files are reused exactly when nothing that shapes them
changed, and a damaged or edited entry is rebuilt, never shipped."""

from __future__ import annotations

import os
from pathlib import Path

from composer.cache import outputs as kept
from composer.rootfs import memo
from tests.unit.test_build import layout, run_cli, spec_text  # noqa: F401 - shared fixture

FORMATS = "kernel+initrd,iso-bios,docker,tar-kernel-initrd"


def build(tmp_path: Path, spec: Path, out: str, *extra: str, cache: str = "cache"):
    proc = run_cli(["build", "-f", FORMATS, "-o", str(tmp_path / out), "--cache",
                    str(tmp_path / cache), *extra, str(spec)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = {p.name: p.read_bytes() for p in sorted((tmp_path / out).iterdir())}
    return proc.stderr, files


def reused(log: str) -> set[str]:
    return {line.split(":")[0] for line in log.splitlines() if ": unchanged (reused" in line}


def test_an_unchanged_rebuild_converts_nothing_and_gives_the_same_bytes(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    first, out1 = build(tmp_path, spec, "a")
    assert reused(first) == set()
    second, out2 = build(tmp_path, spec, "b")
    assert reused(second) == set(FORMATS.split(","))
    assert out1 == out2  # outputs, record, SBOM and SHA256SUMS
    # and a build into a fresh cache (nothing reused) gives the same bytes again
    third, out3 = build(tmp_path, spec, "c", cache="other-cache")
    assert reused(third) == set() and out3 == out1
    # the outputs are placed, not copied: a hard link (or reflink) of the entry
    entry = tmp_path / "cache" / "outputs"
    kernels = sorted(entry.glob("*/demo-kernel"))
    assert len(kernels) == 1
    assert os.stat(kernels[0]).st_ino == os.stat(tmp_path / "b" / "demo-kernel").st_ino or \
        kernels[0].read_bytes() == out2["demo-kernel"]


def test_a_changed_input_converts_again(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    build(tmp_path, spec, "a")
    log, _ = build(tmp_path, spec, "b", "--tag", "example/other:2")
    assert "docker" not in reused(log)  # (options are keyed whole: conservative)
    log, _ = build(tmp_path, spec, "c", "--name", "renamed")
    assert reused(log) == set()
    spec.write_text(spec_text(layout).replace("hi there", "hi again"))
    log, _ = build(tmp_path, spec, "d")
    assert reused(log) == set()


def test_writing_to_an_output_spoils_no_later_build(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    _, out1 = build(tmp_path, spec, "a")
    build(tmp_path, spec, "b")  # placed from the cache: b/demo-initrd.img may be its link
    with open(tmp_path / "b" / "demo-initrd.img", "r+b") as fh:  # edited in place
        fh.seek(100)
        fh.write(b"\xff" * 8)
    log, out3 = build(tmp_path, spec, "c")
    assert "kernel+initrd" not in reused(log)  # the entry changed: rebuilt, not shipped
    assert out3 == out1
    log, _ = build(tmp_path, spec, "d")
    assert "kernel+initrd" in reused(log)  # and kept again


def test_a_damaged_entry_is_rebuilt_and_cache_verify_finds_a_hidden_one(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    _, out1 = build(tmp_path, spec, "a")
    [iso] = (tmp_path / "cache" / "outputs").glob("*/demo.iso")
    stat = iso.stat()
    data = bytearray(iso.read_bytes())
    data[40000] ^= 0xFF
    iso.write_bytes(bytes(data))  # same size, new mtime: re-hashed, found, rebuilt
    log, out2 = build(tmp_path, spec, "b")
    assert "iso-bios" not in reused(log) and out2 == out1
    # same size and the old mtime and inode (a deliberate forgery): only verify can tell
    [iso] = (tmp_path / "cache" / "outputs").glob("*/demo.iso")
    stat = iso.stat()
    with open(iso, "r+b") as fh:
        fh.seek(40000)
        old = fh.read(1)
        fh.seek(40000)
        fh.write(bytes([old[0] ^ 0xFF]))
    os.utime(iso, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc = run_cli(["cache", "verify", "--cache", str(tmp_path / "cache")], cwd=tmp_path)
    assert proc.returncode != 0 and "demo.iso: content does not match its entry" in \
        proc.stdout + proc.stderr


def test_cache_clean_removes_the_entries(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    build(tmp_path, spec, "a")
    assert kept.entries(tmp_path / "cache")
    proc = run_cli(["cache", "clean", "--cache", str(tmp_path / "cache")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert kept.entries(tmp_path / "cache") == []
    log, _ = build(tmp_path, spec, "b")
    assert reused(log) == set()


def test_every_key_input_changes_the_key(tmp_path, monkeypatch) -> None:
    from composer import build as pipeline
    from outputs import FORMATS, Options

    stored = memo.Stored(tmp_path / "r.tar", "a" * 64, 1, 1)
    base_opts = Options(mtime=1, arch="amd64")
    base = kept.output_key(pipeline.output_key_parts(FORMATS["docker"], stored, "n", base_opts))
    variants = [
        (FORMATS["oci"], stored, "n", base_opts),
        (FORMATS["docker"], memo.Stored(stored.path, "b" * 64, 1, 1), "n", base_opts),
        (FORMATS["docker"], stored, "other", base_opts),
        (FORMATS["docker"], stored, "n", Options(mtime=2, arch="amd64")),
        (FORMATS["docker"], stored, "n", Options(mtime=1, arch="arm64")),
        (FORMATS["docker"], stored, "n", Options(mtime=1, arch="amd64", image_tag="x/y:1")),
        (FORMATS["docker"], stored, "n", Options(mtime=1, arch="amd64", gzip_level=9)),
    ]
    keys = {kept.output_key(pipeline.output_key_parts(*v)) for v in variants}
    assert len(keys) == len(variants) and base not in keys
    monkeypatch.setattr(memo, "_code_digest", "different composer code")
    assert kept.output_key(pipeline.output_key_parts(FORMATS["docker"], stored, "n",
                                                     base_opts)) != base


def test_the_code_fingerprint_follows_the_source(tmp_path: Path) -> None:
    pkg = tmp_path / "outputs"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    one = kept.code_fingerprint([pkg])
    (pkg / "a.py").write_text("x = 2\n")
    assert kept.code_fingerprint([pkg]) != one


def test_a_cache_that_cannot_keep_the_entry_costs_no_outputs(tmp_path, monkeypatch) -> None:
    """Keeping is best-effort: a full or read-only cache (here: an OSError from the store)
    leaves the build's own files whole and no entry behind."""
    src = tmp_path / "a.out"
    src.write_bytes(b"bytes")

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kept, "_store", full)
    kept.store(tmp_path / "cache", "k" * 64, [("a.out", src, "x" * 64, 5)])
    assert src.read_bytes() == b"bytes"
    assert kept.entries(tmp_path / "cache") == []
    assert kept.lookup(tmp_path / "cache", "k" * 64) is None
