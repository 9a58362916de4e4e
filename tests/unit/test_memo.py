"""The phase-one result cache: reused exactly when nothing that shapes the rootfs changed."""

from __future__ import annotations

from pathlib import Path

from composer.rootfs import memo
from tests.unit.test_build import layout, run_cli, spec_text  # noqa: F401 - shared fixture


def build(tmp_path: Path, spec: Path, out: str, *extra: str):
    proc = run_cli(["build", "-f", "tar,kernel+initrd", "-o", str(tmp_path / out), "--cache",
                    str(tmp_path / "cache"), *extra, str(spec)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    outputs = {p.name: p.read_bytes() for p in sorted((tmp_path / out).iterdir())}
    # phase one's own lines: phase two says "reused" for its outputs (test_output_cache.py)
    phase_one = "\n".join(line for line in proc.stderr.splitlines() if line.startswith("rootfs:"))
    return phase_one, outputs


def test_rebuild_reuses_and_changes_rebuild(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    first, out1 = build(tmp_path, spec, "a")
    assert "reused" not in first
    second, out2 = build(tmp_path, spec, "b")
    assert "reused" in second
    assert out1 == out2  # the record, SBOM and SHA256SUMS included
    assert len(list((tmp_path / "cache" / "rootfs").glob("packages-*.json"))) == 1
    spec.write_text(spec_text(layout).replace("hi there", "hi again"))
    third, out3 = build(tmp_path, spec, "c")
    assert "reused" not in third and out3["demo.tar"] != out1["demo.tar"]
    fourth, _ = build(tmp_path, spec, "d", "--source-date-epoch", "1700000000")
    assert "reused" not in fourth


def test_a_damaged_result_is_not_reused(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    _, out1 = build(tmp_path, spec, "a")
    [stored] = (tmp_path / "cache" / "rootfs").glob("*.tar")
    data = bytearray(stored.read_bytes())
    data[600] ^= 0xFF  # same size, different bytes
    stored.write_bytes(bytes(data))
    log, out2 = build(tmp_path, spec, "b")
    assert "reused" not in log and out1 == out2


def test_key_covers_code_spec_images_sources_and_epoch(tmp_path, monkeypatch):
    from composer.epoch import Epoch
    from composer.images.model import Image, Layer
    from composer.spec.model import File, ImageRef, Spec

    src = tmp_path / "src"
    src.write_text("one")
    spec = Spec(sources=("x.yml",), init=(ImageRef("a/b:1"),),
                files=(File(path="etc/x", source=str(src)),))
    image = Image("docker.io/a/b:1", "sha256:" + "1" * 64, {},
                  (Layer("sha256:" + "2" * 64, 1, "m", "sha256:" + "3" * 64),))
    base = memo.rootfs_key(spec, {"a/b:1": image}, Epoch(None))
    assert base == memo.rootfs_key(spec, {"a/b:1": image}, Epoch(None))
    other_image = Image("docker.io/a/b:1", "sha256:" + "4" * 64, {}, image.layers)
    assert memo.rootfs_key(spec, {"a/b:1": other_image}, Epoch(None)) != base
    assert memo.rootfs_key(spec, {"a/b:1": image}, Epoch(5)) != base
    src.write_text("two")
    changed_source = memo.rootfs_key(spec, {"a/b:1": image}, Epoch(None))
    assert changed_source != base
    monkeypatch.setattr(memo, "_code_digest", "different code")
    assert memo.rootfs_key(spec, {"a/b:1": image}, Epoch(None)) != changed_source


def test_tar_output_is_placed_and_writing_to_it_spoils_nothing(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    _, out1 = build(tmp_path, spec, "a")
    [stored] = (tmp_path / "cache" / "rootfs").glob("*.tar")
    placed = tmp_path / "a" / "demo.tar"
    assert placed.read_bytes() == stored.read_bytes()
    # same directory again: rename(2) between two links of one file is a no-op; the
    # temporary must not be left behind
    log, out2 = build(tmp_path, spec, "a")
    assert "reused" in log and out2 == out1
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(out1)
    # a user edits the output in place (same size): the cache entry must not be trusted
    with open(placed, "r+b") as fh:
        fh.seek(600)
        fh.write(b"X")
    log, out3 = build(tmp_path, spec, "a")
    assert "reused" not in log and out3 == out1


def test_untouched_result_is_not_rehashed_touched_one_is(tmp_path, layout, monkeypatch):  # noqa: F811
    import os

    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    build(tmp_path, spec, "a")
    [stored] = (tmp_path / "cache" / "rootfs").glob("*.tar")
    key = stored.stem
    hashed = []
    real = memo._file_digest
    monkeypatch.setattr(memo, "_file_digest", lambda p: hashed.append(p) or real(p))
    assert memo.lookup(tmp_path / "cache", key) is not None and hashed == []
    os.utime(stored, ns=(0, 0))  # changes mtime and ctime: hash again (and it still matches)
    assert memo.lookup(tmp_path / "cache", key) is not None and hashed == [str(stored)]
    assert memo.lookup(tmp_path / "cache", key) is not None and len(hashed) == 1  # re-signed


def test_cache_verify_reports_a_damaged_result(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    build(tmp_path, spec, "a")
    ok = run_cli(["cache", "verify", "--cache", str(tmp_path / "cache")], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    [stored] = (tmp_path / "cache" / "rootfs").glob("*.tar")
    data = bytearray(stored.read_bytes())
    data[600] ^= 0xFF
    stored.write_bytes(bytes(data))
    bad = run_cli(["cache", "verify", "--cache", str(tmp_path / "cache")], cwd=tmp_path)
    assert bad.returncode != 0 and stored.name in bad.stdout + bad.stderr


def test_a_result_from_another_boot_is_rehashed_before_it_is_trusted(tmp_path, layout,  # noqa: F811
                                                                     monkeypatch):
    """The rootfs tar is renamed in without an fsync, so its stat signature vouches for it only
    in the boot that wrote it: after a reboot (a power loss may have left it renamed but stale,
    with the same size and mtime) it is hashed again, and a damaged one is not used."""
    import os

    from composer.images import cache as cache_module

    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    build(tmp_path, spec, "a")
    [stored] = (tmp_path / "cache" / "rootfs").glob("*.tar")
    key = stored.stem
    hashed = []
    real = memo._file_digest
    monkeypatch.setattr(memo, "_file_digest", lambda p: hashed.append(p) or real(p))
    assert memo.lookup(tmp_path / "cache", key) is not None and hashed == []
    monkeypatch.setattr(cache_module, "boot_id", lambda: "another-boot")
    monkeypatch.setattr(memo, "boot_id", lambda: "another-boot")
    assert memo.lookup(tmp_path / "cache", key) is not None and hashed == [str(stored)]
    assert memo.lookup(tmp_path / "cache", key) is not None and len(hashed) == 1  # re-signed

    monkeypatch.setattr(memo, "boot_id", lambda: "a-third-boot")
    stat = stored.stat()
    data = bytearray(stored.read_bytes())
    data[600] ^= 0xFF  # what a lost write could leave: same size, mtime put back
    stored.write_bytes(bytes(data))
    os.utime(stored, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert memo.lookup(tmp_path / "cache", key) is None
