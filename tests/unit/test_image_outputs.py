"""Formats docker, oci, oci-dir and docker-context: structure, digests, determinism, errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.tar.canon import Entry, Kind
from composer.tar.check import check_tar
from composer.tar.read import read_entries
from outputs import FORMATS, Options, output_files
from outputs.image.formats import dockerfile, image_name
from tests.fixtures.busybox_rootfs import INIT_SCRIPT, write_rootfs

ROOT = Path(__file__).resolve().parents[2]
MTIME = 1492533000
OPTS = Options(mtime=MTIME)
BOX = b"#!fake busybox\n" * 100


def build(tmp: Path, fmt: str, options: Options = OPTS, name: str = "hello", **rootfs) -> Path:
    rootfs_tar = write_rootfs(tmp / f"rootfs-{fmt}.tar", busybox=BOX, **rootfs)
    with OutputSet(tmp / "out") as outs:
        FORMATS[fmt].convert(rootfs_tar, name, outs, options)
        (path,) = outs.commit()
    assert [path.name] == list(output_files(fmt, name))
    return path


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tf:
        return {m.name: (tf.extractfile(m).read() if m.isfile() else b"") for m in tf}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(files: dict[str, bytes], digest: str) -> bytes:
    data = files["blobs/sha256/" + digest.removeprefix("sha256:")]
    assert sha(data) == digest
    return data


def test_docker_archive_structure(tmp_path):
    archive = build(tmp_path, "docker")
    files = members(archive)
    assert check_tar(archive) is None  # the archive itself is a canonical tar
    with tarfile.open(archive) as tf:
        infos = tf.getmembers()
    assert [m.name for m in infos][:2] == ["blobs", "blobs/sha256"]
    assert [m.name for m in infos][-3:] == ["index.json", "manifest.json", "oci-layout"]
    assert all(m.mtime == MTIME and m.uid == 0 and m.gid == 0 for m in infos)
    assert {m.mode for m in infos if m.isfile()} == {0o644}
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}

    (docker_manifest,) = json.loads(files["manifest.json"])
    assert docker_manifest["RepoTags"] == ["hello:latest"]
    index = json.loads(files["index.json"])
    (desc,) = index["manifests"]
    assert desc["annotations"] == {"io.containerd.image.name": "docker.io/library/hello:latest",
                                   "org.opencontainers.image.ref.name": "latest"}
    manifest = json.loads(blob(files, desc["digest"]))
    assert desc["size"] == len(blob(files, desc["digest"]))
    assert docker_manifest["Config"] == "blobs/sha256/" + manifest["config"]["digest"][7:]
    assert docker_manifest["Layers"] == ["blobs/sha256/" + manifest["layers"][0]["digest"][7:]]
    config = json.loads(blob(files, manifest["config"]["digest"]))
    assert config == {
        "architecture": "amd64",
        "config": {"Entrypoint": ["/init"]},
        "created": "2017-04-18T16:30:00Z",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [manifest["layers"][0]["digest"]]},
    }
    layer = blob(files, manifest["layers"][0]["digest"])
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    names = [e.path for e, _ in read_entries(io.BytesIO(layer))]
    assert names == ["bin", "bin/busybox", "bin/sh", "etc", "etc/motd", "init"]  # no boot/
    (tmp_path / "layer.tar").write_bytes(layer)
    assert check_tar(tmp_path / "layer.tar") is None
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        assert tf.extractfile("init").read() == INIT_SCRIPT
        assert tf.extractfile("bin/busybox").read() == BOX


def test_oci_archive_is_the_docker_archive_without_manifest_json(tmp_path):
    docker = members(build(tmp_path, "docker"))
    oci = members(build(tmp_path, "oci"))
    del docker["manifest.json"]
    assert oci == docker


def test_oci_dir_matches_oci_archive_and_modes_ignore_umask(tmp_path):
    old = os.umask(0o077)
    try:
        out = build(tmp_path, "oci-dir")
    finally:
        os.umask(old)
    archive = members(build(tmp_path, "oci"))
    tree = {str(p.relative_to(out)): p for p in sorted(out.rglob("*"))}
    assert {k for k, p in tree.items() if p.is_file()} == {k for k, v in archive.items() if v}
    for rel, path in tree.items():
        if path.is_file():
            assert path.read_bytes() == archive[rel]
            assert path.stat().st_mode & 0o777 == 0o644
        else:
            assert path.stat().st_mode & 0o777 == 0o755
    assert out.stat().st_mode & 0o777 == 0o755
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_oci_dir_replaces_an_older_directory(tmp_path):
    first = build(tmp_path, "oci-dir")
    stray = first / "blobs" / "sha256" / "stray"
    stray.write_bytes(b"old")
    second = build(tmp_path, "oci-dir", Options(mtime=MTIME + 1))
    assert second == first and not stray.exists()
    assert not [p for p in second.parent.iterdir() if p.name.startswith(".")]


def test_failed_build_leaves_no_directory(tmp_path):
    with pytest.raises(RuntimeError), OutputSet(tmp_path) as outs:
        with outs.create_dir("x") as d:
            (d / "f").write_bytes(b"1")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def config_of(archive: Path) -> dict:
    files = members(archive)
    (entry,) = json.loads(files["manifest.json"])
    return json.loads(files[entry["Config"]])


def test_entrypoint_rc_init_override_and_arch(tmp_path):
    assert config_of(build(tmp_path / "a", "docker", rc_init=True))["config"] == {
        "Entrypoint": ["/bin/rc.init"]}
    opts = Options(mtime=0, entrypoint=("/bin/sh", "-c", "echo hi"), arch="arm64")
    config = config_of(build(tmp_path / "b", "docker", opts, rc_init=True))
    assert config["config"] == {"Entrypoint": ["/bin/sh", "-c", "echo hi"]}
    assert config["architecture"] == "arm64"
    assert config["created"] == "1970-01-01T00:00:00Z"
    with pytest.raises(ComposerError, match="entrypoint"):
        Options(mtime=0, entrypoint=())


def test_tags(tmp_path):
    assert image_name("hello", None).familiar == "hello:latest"
    name = image_name("x", "127.0.0.1:5000/foo/bar:v1")
    assert (name.familiar, name.full, name.tag) == (
        "127.0.0.1:5000/foo/bar:v1", "127.0.0.1:5000/foo/bar:v1", "v1")
    assert image_name("x", "someone/app:2").familiar == "someone/app:2"
    archive = build(tmp_path, "docker", Options(mtime=MTIME, image_tag="someone/app:2"))
    assert json.loads(members(archive)["manifest.json"])[0]["RepoTags"] == ["someone/app:2"]
    with pytest.raises(ComposerError, match="--tag"):
        image_name("Hello World", None)
    with pytest.raises(ComposerError, match="without a digest"):
        image_name("x", "foo@sha256:" + "0" * 64)


def test_docker_context(tmp_path):
    first = Entry("A-first", Kind.FILE, 0o644, mtime=MTIME, size=1)
    archive = build(tmp_path, "docker-context", rc_init=True, extra=((first, b"a"),))
    assert check_tar(archive) is None
    with tarfile.open(archive) as tf:
        names = tf.getnames()
        assert tf.extractfile("Dockerfile").read() == (
            b'\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT ["/bin/rc.init"]\n')  # linuxkit's bytes
        assert tf.getmember("Dockerfile").mtime == MTIME
    assert names[:2] == ["A-first", "Dockerfile"]
    assert "boot/kernel" in names  # the whole rootfs, as linuxkit's docker format
    assert dockerfile(["/init", "x y"]).endswith(b'ENTRYPOINT ["/init","x y"]\n')


def test_docker_context_refuses_a_rootfs_dockerfile(tmp_path):
    clash = Entry("Dockerfile", Kind.FILE, 0o644, size=1)
    with pytest.raises(ComposerError, match="Dockerfile"):
        build(tmp_path, "docker-context", extra=((clash, b"x"),))
    assert not (tmp_path / "out" / "hello.docker").exists()


def test_hard_link_into_boot_is_an_error(tmp_path):
    link = Entry("etc/kernel", Kind.HARDLINK, 0o644, linkname="boot/kernel")
    with pytest.raises(ComposerError, match="hard link into boot"):
        build(tmp_path, "docker", extra=((link, None),))


_BUILD_ALL = """
import sys
from pathlib import Path
from composer.atomic import OutputSet
from outputs import FORMATS, Options
src, out = Path(sys.argv[1]), Path(sys.argv[2])
with OutputSet(out) as outs:
    for fmt in ("docker", "oci", "oci-dir", "docker-context"):
        FORMATS[fmt].convert(src, "hello", outs, Options(mtime=1492533000))
    outs.commit()
"""


def tree_digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_same_bytes_whatever_tz_umask_locale_and_cwd(tmp_path):
    rootfs = write_rootfs(tmp_path / "rootfs.tar", busybox=BOX)
    results = []
    for i, (tz, umask, lang) in enumerate((("UTC", "022", "C"),
                                           ("Asia/Kathmandu", "077", "de_DE.UTF-8"))):
        out = tmp_path / f"out{i}"
        cwd = tmp_path / f"cwd{i}"
        cwd.mkdir()
        env = {**os.environ, "TZ": tz, "LANG": lang, "LC_ALL": lang,
               "PYTHONHASHSEED": str(i + 1), "PYTHONPATH": str(ROOT)}
        subprocess.run(["sh", "-c", f'umask {umask} && exec "$0" -c "$1" "$2" "$3"',
                        sys.executable, _BUILD_ALL, str(rootfs), str(out)],
                       check=True, env=env, cwd=cwd)
        results.append(tree_digest(out))
    assert results[0] == results[1]
    assert sorted(results[0]) == sorted(
        ["hello-docker.tar", "hello-oci.tar", "hello.docker",
         *[f"hello-oci/{k}" for k in tree_digest(tmp_path / "out0" / "hello-oci")]])


def test_memory_stays_flat(tmp_path):
    big = Entry("big", Kind.FILE, 0o644, mtime=MTIME, size=48 << 20)

    class Zeros(io.RawIOBase):
        left = big.size

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), self.left)
            buffer[:n] = b"\0" * n
            self.left -= n
            return n

    rootfs = write_rootfs(tmp_path / "rootfs.tar", busybox=BOX, extra=((big, Zeros()),))
    tracemalloc.start()
    try:
        with OutputSet(tmp_path / "out") as outs:
            FORMATS["docker"].convert(rootfs, "hello", outs, OPTS)
            outs.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, peak


# -- several architectures: one file, one multi-platform index ---------------------------------
def two_rootfs(tmp: Path) -> dict[str, Path]:
    """A different rootfs per architecture (its own busybox bytes), as a cross-build makes."""
    return {arch: write_rootfs(tmp / f"rootfs-{arch}.tar", busybox=arch.encode() * 100)
            for arch in ("amd64", "arm64")}


def build_platforms(tmp: Path, fmt: str, order: tuple[str, ...], rootfs: dict[str, Path],
                    name: str = "hello") -> Path:
    parts = [(rootfs[arch], Options(mtime=MTIME, arch=arch)) for arch in order]
    with OutputSet(tmp / "-".join(order)) as outs:
        FORMATS[fmt].convert_platforms(parts, name, outs)
        (path,) = outs.commit()
    assert [path.name] == list(output_files(fmt, name))  # the one-arch file name
    return path


def single(tmp: Path, fmt: str, arch: str, rootfs: Path) -> dict[str, bytes]:
    with OutputSet(tmp / f"single-{arch}") as outs:
        FORMATS[fmt].convert(rootfs, "hello", outs, Options(mtime=MTIME, arch=arch))
        (path,) = outs.commit()
    return members(path)


def test_platform_index_is_sorted_and_refuses_a_platform_twice():
    from composer.oci.documents import platform_index

    def image(arch: str, variant: str | None = None) -> tuple[dict, dict]:
        config = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(arch.encode() + (variant or "").encode()), "size": 1,
                "annotations": {"dropped": "yes"}}
        return desc, config

    one = platform_index([image("arm64", "v8"), image("amd64"), image("arm64")])
    assert one == platform_index([image("amd64"), image("arm64"), image("arm64", "v8")])
    doc = json.loads(one)
    assert doc["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"] for m in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    assert all(set(m) == {"mediaType", "digest", "size", "platform"} for m in doc["manifests"])
    with pytest.raises(ValueError, match="second image for platform linux/amd64"):
        platform_index([image("amd64"), image("amd64")])
    with pytest.raises(ValueError, match="must be strings"):
        platform_index([({"mediaType": "m", "digest": "d", "size": 1}, {"os": 1})])


def test_two_platform_oci_holds_each_single_arch_image(tmp_path):
    from composer.oci.documents import platform_index

    rootfs = two_rootfs(tmp_path)
    archive = build_platforms(tmp_path, "oci", ("amd64", "arm64"), rootfs)
    assert check_tar(archive) is None  # a canonical tar, like the one-arch file
    with tarfile.open(archive) as tf:
        names = tf.getnames()
    assert len(names) == len(set(names))
    files = members(archive)
    [top] = json.loads(files["index.json"])["manifests"]
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert top["annotations"] == {"io.containerd.image.name": "docker.io/library/hello:latest",
                                  "org.opencontainers.image.ref.name": "latest"}
    index = blob(files, top["digest"])
    entries = json.loads(index)["manifests"]
    assert [m["platform"]["architecture"] for m in entries] == ["amd64", "arm64"]
    pairs = []
    for arch, entry in zip(("amd64", "arm64"), entries, strict=True):
        one = single(tmp_path, "oci", arch, rootfs[arch])
        [desc] = json.loads(one["index.json"])["manifests"]
        assert entry["digest"] == desc["digest"]  # the single-arch build's manifest, byte for byte
        manifest = blob(files, entry["digest"])
        assert manifest == blob(one, desc["digest"])
        for part in [json.loads(manifest)["config"], *json.loads(manifest)["layers"]]:
            assert blob(files, part["digest"]) == blob(one, part["digest"])
        config = json.loads(blob(files, json.loads(manifest)["config"]["digest"]))
        pairs.append((desc, config))
    assert index == platform_index(pairs)  # what push sends for the two single-arch files
    assert sorted(n for n in files if not n.startswith("blobs/sha256/")) == [
        "blobs", "blobs/sha256", "index.json", "oci-layout"]
    # two configs, two layers, two manifests and the index, each once
    assert len([n for n in files if n.startswith("blobs/sha256/")]) == 7


def test_two_platform_files_do_not_depend_on_arch_order_but_docker_loads_the_first(tmp_path):
    rootfs = two_rootfs(tmp_path)
    oci = {order: build_platforms(tmp_path, "oci", order, rootfs).read_bytes()
           for order in (("amd64", "arm64"), ("arm64", "amd64"))}
    assert oci[("amd64", "arm64")] == oci[("arm64", "amd64")]
    for order in (("amd64", "arm64"), ("arm64", "amd64")):
        files = members(build_platforms(tmp_path / "docker", "docker", order, rootfs))
        assert {k: v for k, v in files.items() if k != "manifest.json"} == \
            members(build_platforms(tmp_path / "oci-again", "oci", order, rootfs))
        [entry] = json.loads(files["manifest.json"])
        config = json.loads(files[entry["Config"]])
        assert config["architecture"] == order[0]  # classic docker load takes this one
        assert entry["RepoTags"] == ["hello:latest"]
        assert entry["Layers"] == ["blobs/sha256/" + config["rootfs"]["diff_ids"][0][7:]]


def test_two_platforms_of_one_arch_is_an_error(tmp_path):
    rootfs = two_rootfs(tmp_path)
    parts = [(rootfs["amd64"], OPTS), (rootfs["arm64"], OPTS)]
    with OutputSet(tmp_path / "out") as outs, \
            pytest.raises(ComposerError, match="second image for platform linux/amd64"):
        FORMATS["oci"].convert_platforms(parts, "hello", outs)
    assert not (tmp_path / "out" / "hello-oci.tar").exists()


def test_arch_with_a_variant_is_architecture_and_variant(tmp_path):
    """``--arch arm64/v8``: the config says architecture arm64, variant v8 (not "arm64/v8"),
    and the multi-platform index's entry has that platform."""
    rootfs = two_rootfs(tmp_path)
    files = single(tmp_path, "oci", "arm64/v8", rootfs["arm64"])
    [desc] = json.loads(files["index.json"])["manifests"]
    config = json.loads(blob(files, json.loads(blob(files, desc["digest"]))["config"]["digest"]))
    assert (config["architecture"], config["variant"]) == ("arm64", "v8")
    plain = single(tmp_path / "plain", "oci", "arm64", rootfs["arm64"])
    [plain_desc] = json.loads(plain["index.json"])["manifests"]
    plain_config = blob(plain, json.loads(blob(plain, plain_desc["digest"]))["config"]["digest"])
    assert "variant" not in json.loads(plain_config)  # unchanged without one
    parts = [(rootfs["amd64"], Options(mtime=MTIME, arch="amd64")),
             (rootfs["arm64"], Options(mtime=MTIME, arch="arm64/v8"))]
    with OutputSet(tmp_path / "two") as outs:
        FORMATS["oci"].convert_platforms(parts, "hello", outs)
        (path,) = outs.commit()
    two = members(path)
    [top] = json.loads(two["index.json"])["manifests"]
    entries = json.loads(blob(two, top["digest"]))["manifests"]
    assert [m["platform"] for m in entries] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    assert entries[1]["digest"] == desc["digest"]
