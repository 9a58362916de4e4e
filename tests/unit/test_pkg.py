"""``pkg build``: build.yml validation, the tag, the layer's contents, and reproducibility."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from composer import canonjson
from composer.epoch import DEFAULT_EPOCH, Epoch
from composer.errors import ComposerError, SpecError
from composer.images.cache import Cache
from composer.pkg import build as pkg
from composer.pkg import package as pkgdir
from composer.tar.canon import Entry, Kind
from composer.tar.read import read_entries
from tests.unit.test_deb import HARD, MTIME, SYM, make_deb

ROOT = Path(__file__).resolve().parents[2]
VERSION = "1:2.0-1"
DEB_MEMBERS = [
    ("./", None, {}),
    ("./boot/", None, {}),
    ("./boot/vmlinuz-6.1.0-test", b"KERNEL" * 100, {}),
    ("./lib/", None, {"mtime": 1000}),
    ("./lib/modules/", None, {}),
    ("./lib/modules/6.1.0-test/", None, {}),
    ("./lib/modules/6.1.0-test/a.ko", b"module a", {}),
    ("./lib/modules/6.1.0-test/skip.ko", b"module skipped", {}),
    ("./usr/", None, {}),
    ("./usr/bin/", None, {}),
    ("./usr/bin/zzz", b"#!/bin/sh\nshared\n", {"mode": 0o4755}),
    ("./usr/bin/aaa", None, {**HARD, "linkname": "./usr/bin/zzz"}),
    ("./usr/bin/mmm", None, {**HARD, "linkname": "./usr/bin/zzz"}),
    ("./usr/bin/link", None, {**SYM, "linkname": "zzz", "mode": 0o777}),
    ("./usr/share/", None, {}),
    ("./usr/share/doc/", None, {}),
    ("./usr/share/doc/demo/", None, {}),
    ("./usr/share/doc/demo/copyright", b"(c)\n", {}),
]


def write(path: Path, text: str, mode: int | None = None) -> Path:
    """Write ``text``; ``mode`` None leaves the umask's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def make_package(base: Path, build_yml: str, *, with_deb: bool = True) -> tuple[Path, Path]:
    """``base/packages/demo`` with a rootfs/ and (optionally) ``base/debs/demo_*.deb``."""
    directory = base / "packages" / "demo"
    debs = base / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    sha = "0" * 64
    if with_deb:
        sha = make_deb(debs / "demo_1%3a2.0-1_amd64.deb",
                       [(n, d, dict(a)) for n, d, a in DEB_MEMBERS], version=VERSION)
    write(directory / "build.yml", textwrap.dedent(build_yml).replace("SHA", sha))
    write(directory / "rootfs" / "init", "#!/bin/sh\necho init\n", 0o755)
    write(directory / "rootfs" / "etc" / "motd", "hello\n", 0o600)
    (directory / "rootfs" / "empty").mkdir()
    (directory / "rootfs" / "bin").mkdir()
    os.symlink("../init", directory / "rootfs" / "bin" / "init")
    return directory, debs


FULL = """\
    image: demo
    org: example
    debs:
      - name: demo
        version: "1:2.0-1"
        sha256: SHA
        exclude: ["usr/share/doc/**", "lib/modules/*/skip.ko"]
    rootfs: rootfs
    rename:
      - {from: "boot/vmlinuz-*", to: kernel}
    nested:
      - path: kernel.tar
        include: ["lib/**"]
    config:
      Entrypoint: [/init]
      Cmd: ["--verbose", "it's"]
      Env: [PATH=/bin, EMPTY=]
      WorkingDir: /
      Labels: {org.example.x: "1", empty: ""}
"""


def image_of(cache: Cache, result: pkg.PackageResult) -> tuple[dict, dict, bytes]:
    desc = cache.lookup(result.cache_name)
    assert desc is not None and desc["digest"] == result.digest
    manifest = canonjson.loads(cache.read_blob(result.digest))
    config = canonjson.loads(cache.read_blob(manifest["config"]["digest"]))
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    return manifest, config, gzip.decompress(cache.read_blob(layer["digest"]))


def entries(tar: bytes) -> dict[str, tuple[Entry, bytes | None]]:
    return {e.path: (e, r.read() if r else None) for e, r in read_entries(io.BytesIO(tar))}


def build(directory: Path, debs: Path, cache: Path, epoch: Epoch | None = None, **kw):
    return pkg.build_package(directory, Cache(cache), epoch=epoch or Epoch(None),
                             arch=kw.pop("arch", "amd64"), debs_dir=debs,
                             layout=kw.pop("layout", None), **kw)


def test_full_package(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, FULL)
    result = build(directory, debs, tmp_path / "cache")
    tag = pkgdir.package_ref(directory).split(":")[1]
    assert str(result) == f"example/demo:{tag}@{result.digest}"
    assert result.cache_name == f"docker.io/example/demo:{tag}"
    assert len(tag) == 40 and all(c in "0123456789abcdef" for c in tag)
    _, config, tar = image_of(Cache(tmp_path / "cache"), result)
    assert config["config"] == {"Entrypoint": ["/init"], "Cmd": ["--verbose", "it's"],
                                "Env": ["PATH=/bin", "EMPTY="], "WorkingDir": "/",
                                "Labels": {"org.example.x": "1", "empty": ""}}
    assert config["architecture"] == "amd64"
    assert config["created"] == "2017-04-18T16:30:00Z"
    outer = entries(tar)
    assert list(outer) == ["bin", "bin/init", "boot", "empty", "etc", "etc/motd", "init", "kernel",
                           "kernel.tar", "usr", "usr/bin", "usr/bin/aaa", "usr/bin/link",
                           "usr/bin/mmm", "usr/bin/zzz", "usr/share"]
    t = DEFAULT_EPOCH
    # rootfs: owner 0:0, git modes (0600 -> 0644), every mtime the epoch
    assert outer["etc/motd"][0] == Entry("etc/motd", Kind.FILE, 0o644, 0, 0, t, 6)
    assert outer["init"][0].mode == 0o755
    assert outer["bin/init"][0] == Entry("bin/init", Kind.SYMLINK, 0o777, mtime=t,
                                         linkname="../init")
    assert outer["empty"][0] == Entry("empty", Kind.DIR, 0o755, mtime=t)
    # renamed kernel; hard links regrouped so the first sorted path holds the data
    assert outer["kernel"] == (Entry("kernel", Kind.FILE, 0o644, mtime=t, size=600),
                               b"KERNEL" * 100)
    assert outer["usr/bin/aaa"] == (Entry("usr/bin/aaa", Kind.FILE, 0o4755, mtime=t, size=17),
                                    b"#!/bin/sh\nshared\n")
    for link in ("usr/bin/mmm", "usr/bin/zzz"):
        assert outer[link][0] == Entry(link, Kind.HARDLINK, 0o4755, mtime=t,
                                       linkname="usr/bin/aaa")
    assert outer["usr/bin/link"][0].linkname == "zzz"
    # nested kernel.tar: lib/** moved in, with the deb's own directory metadata
    inner = entries(outer["kernel.tar"][1])  # type: ignore[arg-type]
    assert list(inner) == ["lib", "lib/modules", "lib/modules/6.1.0-test",
                           "lib/modules/6.1.0-test/a.ko"]
    assert inner["lib"][0] == Entry("lib", Kind.DIR, 0o755, mtime=1000)
    assert inner["lib/modules/6.1.0-test/a.ko"][1] == b"module a"
    assert outer["kernel.tar"][0] == Entry("kernel.tar", Kind.FILE, 0o644, mtime=t,
                                           size=len(outer["kernel.tar"][1]))  # type: ignore


# The uncompressed layer of FULL, committed: it depends on nothing but the entries (not on zlib,
# liblzma or the machine), so any machine must derive it. Update it only for intended changes.
GOLDEN_FULL_DIFF_ID = "sha256:1e6b8b9d242efbe888bce6bd4f592982e8c2eb6d4f8f44d52b9fbf1174b7af2d"


def test_golden_layer(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, FULL)
    result = build(directory, debs, tmp_path / "cache")
    _, config, _ = image_of(Cache(tmp_path / "cache"), result)
    assert config["rootfs"]["diff_ids"] == [GOLDEN_FULL_DIFF_ID]


def test_source_date_epoch_clamps_everything(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, FULL)
    result = build(directory, debs, tmp_path / "cache", Epoch(500))
    _, config, tar = image_of(Cache(tmp_path / "cache"), result)
    assert config["created"] == "1970-01-01T00:08:20Z"
    outer = entries(tar)
    assert {e.mtime for e, _ in outer.values()} == {500}
    assert {e.mtime for e, _ in entries(outer["kernel.tar"][1]).values()} == {500}  # type: ignore


def test_reproducible_across_umask_tz_cwd_cache_and_hash_seed(tmp_path: Path,
                                                              monkeypatch) -> None:
    old = os.umask(0o022)
    try:
        first_dir, debs = make_package(tmp_path / "a", FULL)
        os.umask(0o077)
        second_dir, _ = make_package(tmp_path / "b", FULL)
        assert (second_dir / "build.yml").stat().st_mode & 0o777 == 0o600
        first = build(first_dir, debs, tmp_path / "cache1")
        monkeypatch.setenv("TZ", "Pacific/Kiritimati")
        time.tzset()
        monkeypatch.chdir(second_dir / "rootfs")
        os.utime(second_dir / "rootfs" / "init", (1, 1))
        second = build(second_dir, tmp_path / "b" / "debs", tmp_path / "cache2")
    finally:
        os.umask(old)
        monkeypatch.undo()
        time.tzset()
    assert second.ref == first.ref
    assert second.digest == first.digest
    # and through the CLI, in another process with another hash seed and umask
    env = {**os.environ, "PYTHONHASHSEED": "12345", "TZ": "America/St_Johns", "LC_ALL": "C"}
    cli = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o027); from composer.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "pkg", "build", str(second_dir), "--debs",
         str(debs), "--cache", str(tmp_path / "cache3")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == f"{first}\n"


def test_tag_follows_content_not_metadata(tmp_path: Path) -> None:
    directory, _ = make_package(tmp_path, FULL)
    tag = pkgdir.package_ref(directory)
    os.utime(directory / "rootfs" / "etc" / "motd", (5, 5))
    (directory / "rootfs" / "etc" / "motd").chmod(0o640)  # not executable: still 0644
    assert pkgdir.package_ref(directory) == tag
    (directory / "rootfs" / "etc" / "motd").write_text("changed\n")
    changed = pkgdir.package_ref(directory)
    assert changed != tag
    (directory / "rootfs" / "etc" / "motd").write_text("hello\n")
    assert pkgdir.package_ref(directory) == tag
    (directory / "rootfs" / "etc" / "motd").chmod(0o755)
    assert pkgdir.package_ref(directory) not in (tag, changed)
    (directory / "rootfs" / "etc" / "motd").chmod(0o644)
    (directory / "rootfs" / "empty" / "new").mkdir()
    assert pkgdir.package_ref(directory) != tag
    (directory / "rootfs" / "empty" / "new").rmdir()
    os.unlink(directory / "rootfs" / "bin" / "init")
    os.symlink("../other", directory / "rootfs" / "bin" / "init")
    assert pkgdir.package_ref(directory) != tag


def test_tree_hash_lists_paths_unambiguously(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "x" / "y", "1")
    write(b / "x-y", "1")
    (b / "x").mkdir()
    assert pkgdir.tree_hash(a) != pkgdir.tree_hash(b)


def test_changed_file_changes_digest(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, FULL)
    first = build(directory, debs, tmp_path / "cache")
    (directory / "rootfs" / "etc" / "motd").write_text("bye\n")
    second = build(directory, debs, tmp_path / "cache")
    assert second.ref != first.ref and second.digest != first.digest
    # both stay in the cache under their own tags
    assert Cache(tmp_path / "cache").lookup(first.cache_name)["digest"] == first.digest


def test_layout_export(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, FULL)
    result = build(directory, debs, tmp_path / "cache", layout=tmp_path / "layout")
    tag = result.ref.rsplit(":", 1)[1]
    layout = Cache(tmp_path / "layout")
    assert layout.lookup(tag)["digest"] == result.digest
    assert (tmp_path / "layout" / "oci-layout").is_file()
    assert not (tmp_path / "layout" / "uncompressed").exists()


def test_pin_mismatch_and_missing_deb(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, FULL)
    text = (directory / "build.yml").read_text()
    sha = text.split("sha256: ")[1].split()[0]
    (directory / "build.yml").write_text(text.replace(sha, "f" * 64))
    with pytest.raises(ComposerError, match=f"sha256 is {sha}, pinned f{{64}}"):
        build(directory, debs, tmp_path / "cache")
    with pytest.raises(ComposerError, match=r"no such \.deb; fetch it with examples/fetch-debs"):
        build(directory, tmp_path / "elsewhere", tmp_path / "cache")


def test_overrides_replace_a_pin_and_change_the_tag(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, FULL)
    pinned = pkgdir.package_ref(directory)
    newer = debs / "demo_1%3a2.1-1_amd64.deb"
    sha = make_deb(newer, [(n, d, dict(a)) for n, d, a in DEB_MEMBERS], version="1:2.1-1")
    (debs / "overrides.yml").write_text(
        f'overrides:\n  - name: demo\n    pinned: "1:2.0-1"\n    version: "1:2.1-1"\n'
        f"    sha256: {sha}\n")
    (debs / "demo_1%3a2.0-1_amd64.deb").unlink()
    warnings: list[str] = []
    result = build(directory, debs, tmp_path / "cache", log=warnings.append)
    assert result.ref != pinned and result.ref == pkgdir.package_ref(directory)
    assert [o.version for o in result.overrides] == ["1:2.1-1"]
    assert warnings and "instead of the pinned 1:2.0-1" in warnings[0]


def test_hard_link_whose_target_is_filtered_out(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, """\
        image: demo
        debs:
          - name: demo
            version: "1:2.0-1"
            sha256: SHA
            include: ["usr/bin/mmm", "usr/bin/aaa"]
        """)
    result = build(directory, debs, tmp_path / "cache")
    outer = entries(image_of(Cache(tmp_path / "cache"), result)[2])
    assert list(outer) == ["usr", "usr/bin", "usr/bin/aaa", "usr/bin/mmm"]
    assert outer["usr/bin/aaa"][1] == b"#!/bin/sh\nshared\n"
    assert outer["usr/bin/mmm"][0].kind is Kind.HARDLINK
    assert outer["usr/bin/mmm"][0].linkname == "usr/bin/aaa"


def test_rootfs_replaces_deb_files(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, """\
        image: demo
        debs:
          - {name: demo, version: "1:2.0-1", sha256: SHA, include: ["usr/bin/*"]}
        rootfs: rootfs
        """)
    write(directory / "rootfs" / "usr" / "bin" / "mmm", "mine\n")
    result = build(directory, debs, tmp_path / "cache")
    outer = entries(image_of(Cache(tmp_path / "cache"), result)[2])
    assert outer["usr/bin/mmm"] == (Entry("usr/bin/mmm", Kind.FILE, 0o644,
                                          mtime=DEFAULT_EPOCH, size=5), b"mine\n")
    assert outer["usr/bin/zzz"][0].linkname == "usr/bin/aaa"


def test_no_debs_needs_no_debs_dir(tmp_path: Path) -> None:
    directory, _ = make_package(tmp_path, "image: plain\nrootfs: rootfs\n", with_deb=False)
    result = build(directory, tmp_path / "nowhere", tmp_path / "cache")
    assert result.ref.startswith("image-composer/plain:")
    outer = entries(image_of(Cache(tmp_path / "cache"), result)[2])
    assert "init" in outer


@pytest.mark.parametrize(("yml", "where", "message"), [
    ("image: demo\nbogus: 1\n", "2:1", "unknown key 'bogus'"),
    ("org: x\n", "1:1", "missing required key 'image'"),
    ("image: demo\nimage: again\n", "2:1", "duplicate key 'image'"),
    ("image: Demo\n", "1:8", "must be lowercase"),
    ("image: demo\ndebs:\n  - name: x\n    version: 1\n    sha256: abc\n", "5:13",
     "64 lowercase hex"),
    ("image: demo\ndebs:\n  - name: x\n    version: 1\n", "3:5", "missing required key 'sha256'"),
    ("image: demo\ndebs:\n  - {name: x, version: 1, sha256: " + "a" * 64 + ", inclde: []}\n",
     "3:101", "unknown key 'inclde'"),
    ("image: demo\ndebs: {}\n", "2:7", "debs must be a list"),
    ("image: demo\nconfig:\n  Cmd: echo\n", "3:8", "config.Cmd must be a list of strings"),
    ("image: demo\nconfig:\n  Env: [NOEQUALS]\n", "3:9", "not NAME=VALUE"),
    ("image: demo\nconfig:\n  Volumes: {}\n", "3:3", "unknown key 'Volumes'"),
    ("image: demo\nrootfs: missing\n", "2:9", "not a directory in the package"),
    ("image: demo\nrename:\n  - {from: a, to: ../b}\n", "3:19", "not a path inside"),
    ("image: demo\nnested:\n  - {path: k.tar, include: [/abs]}\n", "3:29",
     "globs are relative"),
    ("image: demo\nconfig: [\n", "3:1", "invalid YAML"),
    ("", "1:1", "build.yml is empty"),
    ("image: ~\n", "1:8", "image must be a string"),
])
def test_build_yml_errors(tmp_path: Path, yml: str, where: str, message: str) -> None:
    write(tmp_path / "build.yml", yml)
    with pytest.raises(SpecError) as info:
        pkgdir.load_spec(tmp_path)
    [line] = info.value.lines()
    assert line.startswith(f"{tmp_path / 'build.yml'}:{where}: "), line
    assert message in line


def test_not_a_package_directory(tmp_path: Path) -> None:
    with pytest.raises(ComposerError, match="not a package directory"):
        pkgdir.package_ref(tmp_path)


def test_rename_must_match_exactly_one(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, """\
        image: demo
        debs: [{name: demo, version: "1:2.0-1", sha256: SHA}]
        rename:
          - {from: "usr/bin/*", to: x}
        """)
    with pytest.raises(SpecError) as info:
        build(directory, debs, tmp_path / "cache")
    assert info.value.lines()[0].startswith(f"{directory / 'build.yml'}:4:5: rename: ")
    assert "usr/bin/aaa, usr/bin/link" in info.value.lines()[0]


def test_rootfs_special_files_are_refused(tmp_path: Path) -> None:
    directory, _ = make_package(tmp_path, "image: plain\nrootfs: rootfs\n", with_deb=False)
    os.mkfifo(directory / "rootfs" / "fifo")
    with pytest.raises(ComposerError, match="only files, directories and symlinks"):
        pkgdir.package_ref(directory)


@pytest.mark.parametrize(("glob", "yes", "no"), [
    ("boot/vmlinuz-*", ["boot/vmlinuz-6.1"], ["boot/vmlinuz-6.1/x", "boot", "xboot/vmlinuz-1"]),
    ("lib/**", ["lib", "lib/a", "lib/a/b/c"], ["libx", "usr/lib"]),
    ("**/*.ko", ["a.ko", "x/y/a.ko"], ["a.ko/x", "a.kox"]),
    ("a/**/b", ["a/b", "a/x/b", "a/x/y/b"], ["a/xb", "b"]),
    ("a?c", ["abc"], ["a/c", "ac"]),
    ("a.b[1]", ["a.b[1]"], ["axb1"]),
])
def test_glob_semantics(glob: str, yes: list[str], no: list[str]) -> None:
    pattern = pkgdir.glob_regex(glob)
    assert [p for p in yes if not pattern.match(p)] == []
    assert [p for p in no if pattern.match(p)] == []


def test_layer_is_a_plain_tar_to_gnu_tar(tmp_path: Path) -> None:
    """tarfile (a second reader) sees the same hard links, modes and owners."""
    directory, debs = make_package(tmp_path, FULL)
    result = build(directory, debs, tmp_path / "cache")
    tar = image_of(Cache(tmp_path / "cache"), result)[2]
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["usr/bin/zzz"].islnk() and members["usr/bin/zzz"].linkname == "usr/bin/aaa"
    assert members["usr/bin/aaa"].mode == 0o4755
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert MTIME > DEFAULT_EPOCH  # so the deb's times really were clamped
    assert {m.mtime for m in members.values()} == {DEFAULT_EPOCH}


def test_rootfs_must_stay_inside_the_package(tmp_path: Path) -> None:
    """The tag hashes only the package directory, so rootfs may not lead out of it."""
    outside = tmp_path / "outside"
    write(outside / "secret", "x")
    directory = tmp_path / "pkg"
    write(directory / "build.yml", "image: demo\nrootfs: link\n")
    os.symlink(outside, directory / "link")
    with pytest.raises(SpecError, match="not a directory in the package"):
        pkgdir.load_spec(directory)
    os.symlink("real", directory / "inner")
    write(directory / "real" / "f", "y")
    write(directory / "build.yml", "image: demo\nrootfs: inner\n")
    assert pkgdir.load_spec(directory).rootfs == "inner"


def test_file_over_a_parent_directory_is_refused(tmp_path: Path) -> None:
    directory, debs = make_package(tmp_path, """\
        image: demo
        debs:
          - {name: demo, version: "1:2.0-1", sha256: SHA, include: ["usr/bin/aaa"]}
        rootfs: rootfs
        """)
    write(directory / "rootfs" / "usr", "not a directory\n")
    with pytest.raises(ComposerError, match="its parent 'usr' is not a directory"):
        build(directory, debs, tmp_path / "cache")


ARCHES = """\
    image: demo
    rootfs: rootfs
    arches:
      amd64:
        debs:
          - {name: demo, version: "1:2.0-1", sha256: SHA, include: ["usr/bin/zzz"]}
        rootfs: rootfs-amd64
      arm64:
        debs:
          - {name: demo, version: "1:2.0-1", sha256: ARMPIN, include: ["boot/**"]}
"""


def make_two_arch(tmp_path: Path) -> tuple[Path, Path]:
    directory, debs = make_package(tmp_path, ARCHES)
    arm = make_deb(debs / "demo_1%3a2.0-1_arm64.deb",
                   [(n, d, dict(a)) for n, d, a in DEB_MEMBERS[:3]], version=VERSION)
    yml = directory / "build.yml"
    yml.write_text(yml.read_text().replace("ARMPIN", arm))
    write(directory / "rootfs-amd64" / "etc" / "only-amd64", "x\n")
    return directory, debs


def test_arches_parts_and_a_two_platform_index(tmp_path: Path) -> None:
    """Each architecture gets the common part plus its own; two at once: an index over both,
    whose amd64 entry is the single-arch build's image."""
    directory, debs = make_two_arch(tmp_path)
    spec = pkgdir.load_spec(directory)
    assert [p.arch for p in spec.all_debs()] == ["amd64", "arm64"]
    single = build(directory, debs, tmp_path / "one")
    both = build(directory, debs, tmp_path / "two", arch=("arm64", "amd64"))
    cache = Cache(tmp_path / "two")
    index = canonjson.loads(cache.read_blob(both.digest))
    assert cache.lookup(both.cache_name)["digest"] == both.digest
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    assert index["manifests"][0]["digest"] == single.digest == both.image_for("amd64").digest
    amd = entries(gzip.decompress(cache.read_blob(canonjson.loads(cache.read_blob(
        single.digest))["layers"][0]["digest"])))
    arm_manifest = canonjson.loads(cache.read_blob(both.image_for("arm64").digest))
    arm = entries(gzip.decompress(cache.read_blob(arm_manifest["layers"][0]["digest"])))
    assert "etc/only-amd64" in amd and "usr/bin/zzz" in amd and "boot" not in amd
    assert "etc/only-amd64" not in arm and "boot/vmlinuz-6.1.0-test" in arm and "usr" not in arm
    assert canonjson.loads(cache.read_blob(arm_manifest["config"]["digest"]))[
        "architecture"] == "arm64"


def test_an_architectures_own_renames(tmp_path: Path) -> None:
    """``arches.ARCH.rename`` runs for that architecture only, after the top-level renames
    (the example kernel moves arm64's Pi 3 device trees to boot/dtb/ this way)."""
    directory, debs = make_two_arch(tmp_path)
    yml = directory / "build.yml"
    yml.write_text(yml.read_text() + "    rename:\n"
                   "      - {from: \"boot/vmlinuz-*\", to: boot/dtb/moved}\n")
    spec = pkgdir.load_spec(directory)
    assert [r.dest for r in spec.for_arch("arm64").renames] == ["boot/dtb/moved"]
    assert spec.for_arch("amd64").renames == ()
    both = build(directory, debs, tmp_path / "two", arch=("arm64", "amd64"))
    cache = Cache(tmp_path / "two")
    arm_manifest = canonjson.loads(cache.read_blob(both.image_for("arm64").digest))
    arm = entries(gzip.decompress(cache.read_blob(arm_manifest["layers"][0]["digest"])))
    assert "boot/dtb/moved" in arm and "boot/vmlinuz-6.1.0-test" not in arm
    yml.write_text(yml.read_text().replace("to: boot/dtb/moved", "into: x"))
    with pytest.raises(SpecError, match=r"arches\.arm64\.rename\[0\]"):
        pkgdir.load_spec(directory)


def test_an_architecture_the_package_does_not_list(tmp_path: Path) -> None:
    directory, debs = make_two_arch(tmp_path)
    with pytest.raises(ComposerError, match=r"not made for riscv64 .*arches: amd64, arm64"):
        build(directory, debs, tmp_path / "c", arch="riscv64")
    yml = directory / "build.yml"
    yml.write_text(yml.read_text().replace("arm64:", "sparc:"))
    with pytest.raises(SpecError, match="unknown architecture 'sparc'"):
        pkgdir.load_spec(directory)


def test_pkg_build_arch_list_on_the_command_line(tmp_path: Path) -> None:
    directory, debs = make_two_arch(tmp_path)
    out = subprocess.run([sys.executable, "-m", "composer", "pkg", "build", "--arch",
                          "amd64,arm64", "--debs", str(debs), "--cache", str(tmp_path / "c"),
                          str(directory)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    digest = out.stdout.strip().rsplit("@", 1)[1]
    index = canonjson.loads(Cache(tmp_path / "c").read_blob(digest))
    assert len(index["manifests"]) == 2
    bad = subprocess.run([sys.executable, "-m", "composer", "pkg", "build", "--arch",
                          "amd64,amd64", str(directory)], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert bad.returncode == 2 and "each once" in bad.stderr
