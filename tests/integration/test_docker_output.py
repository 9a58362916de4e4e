"""The image formats against real tools: dockerd (load, run, --load), skopeo, umoci, and pushing
to Debian's docker-registry (plain and with basic auth) and reading back with skopeo.

The rootfs is tiny: the committed static busybox as ``/bin/sh`` and an ``/init`` (or
``/bin/rc.init``) script that echoes its arguments.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from composer import tools
from composer.atomic import OutputSet
from composer.commands.push import publish
from composer.images.push import Pusher, push, push_index
from composer.oci.refs import parse_registry_ref
from outputs import FORMATS, Options
from tests.fixtures.busybox_rootfs import busybox_binary, write_rootfs
from tests.integration.conftest import require_tool

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MTIME = 1492533000


# -- fixtures (dockerd, registry and basic_registry come from conftest.py) ----------------
@pytest.fixture(scope="module")
def busybox(debs_dir: Path) -> bytes:
    return busybox_binary(debs_dir)


def build(directory: Path, fmts: tuple[str, ...], busybox: bytes, options: Options | None = None,
          name: str = "hello", **rootfs) -> list[Path]:
    source = write_rootfs(directory / "rootfs.tar", busybox=busybox, **rootfs)
    with OutputSet(directory / "out") as outs:
        for fmt in fmts:
            FORMATS[fmt].convert(source, name, outs, options or Options(mtime=MTIME))
        return outs.commit()


def manifest_digest(archive: Path) -> str:
    with tarfile.open(archive) as tf:
        index = json.loads(tf.extractfile("index.json").read())
    return index["manifests"][0]["digest"]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo(*args: str) -> bytes:
    return tools.run([require_tool("skopeo"), "--insecure-policy", *args], capture=True).stdout


# -- docker ---------------------------------------------------------------------------------
def test_docker_load_then_run(dockerd, busybox, tmp_path):
    (archive,) = build(tmp_path, ("docker",), busybox)
    assert "hello:latest" in dockerd.run("load", "-i", str(archive))
    assert dockerd.run("run", "--rm", "--network", "none", "hello:latest", "one", "two") \
        == "init says: one two\n"
    assert dockerd.run("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh",
                       "hello:latest", "-c", "cat /etc/motd; ls /boot 2>&1 || true") \
        .startswith("hello\n")
    inspect = json.loads(dockerd.run("image", "inspect", "hello:latest"))[0]
    assert inspect["Created"] == "2017-04-18T16:30:00Z"
    assert inspect["Config"]["Entrypoint"] == ["/init"]


def test_build_load_through_the_sdk(dockerd, busybox, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    outputs = build(tmp_path, ("docker", "tar"), busybox,
                    Options(mtime=MTIME, image_tag="composer-test/rc:1"), rc_init=True)
    assert publish([outputs], load=True) == ["loaded composer-test/rc:1"]
    assert dockerd.run("run", "--rm", "--network", "none", "composer-test/rc:1", "hi") \
        == "init says: hi\n"


# -- skopeo and umoci -----------------------------------------------------------------------
def test_skopeo_and_umoci_accept_the_outputs(busybox, tmp_path):
    docker_tar, oci_tar, oci_dir = build(tmp_path, ("docker", "oci", "oci-dir"), busybox)
    digest = manifest_digest(docker_tar)
    assert sha256(skopeo("inspect", "--raw", f"oci-archive:{oci_tar}")) == digest
    assert sha256(skopeo("inspect", "--raw", f"oci:{oci_dir}:latest")) == digest
    info = json.loads(skopeo("inspect", f"docker-archive:{docker_tar}"))
    assert info["Architecture"] == "amd64" and info["Created"] == "2017-04-18T16:30:00Z"
    assert json.loads(skopeo("inspect", f"oci-archive:{oci_tar}"))["Digest"] == digest

    umoci = require_tool("umoci")
    for layout in (oci_dir, _untar(oci_tar, tmp_path / "from-tar"), _untar(docker_tar,
                                                                           tmp_path / "dk")):
        bundle = tmp_path / f"bundle-{layout.name}"
        tools.run([umoci, "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle)],
                  capture=True)
        rootfs = bundle / "rootfs"
        assert (rootfs / "bin" / "busybox").read_bytes() == busybox
        assert os.readlink(rootfs / "bin" / "sh") == "busybox"
        assert (rootfs / "etc" / "motd").read_bytes() == b"hello\n"
        assert not (rootfs / "boot").exists()


def _untar(archive: Path, dest: Path) -> Path:
    """An OCI layout archive (directories and files only) unpacked under ``dest``, by hand:
    ``extractall(filter=...)`` is missing from Python 3.11.2, which the project supports."""
    dest.mkdir()
    with tarfile.open(archive) as tf:
        for member in tf:
            parts = PurePosixPath(member.name).parts
            assert parts and not member.name.startswith("/") and ".." not in parts, member.name
            target = dest.joinpath(*parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            assert member.isfile(), f"{member.name}: not a file or directory"
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tf.extractfile(member)
            assert source is not None
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
    return dest


# -- push -----------------------------------------------------------------------------------
def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "composer", *args], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          check=False)


def test_push_cli_same_digest_as_local_and_across_builds(registry, busybox, tmp_path):
    (first,) = build(tmp_path / "a", ("docker",), busybox)
    ref = f"{registry.host}/composer/hello:1"
    result = _cli("push", str(first), ref, env={"DOCKER_CONFIG": str(tmp_path / "nocfg")})
    assert result.returncode == 0, result.stderr
    digest = manifest_digest(first)
    assert result.stdout.decode() == f"{registry.host}/composer/hello@{digest}\n"
    assert sha256(registry.inspect_raw(ref)) == digest

    # pulled back by skopeo (an independent client), it is the same image
    skopeo("copy", "--quiet", "--src-tls-verify=false", "--preserve-digests",
           f"docker://{ref}", f"oci:{tmp_path / 'back'}:x")
    back = json.loads((tmp_path / "back" / "index.json").read_text())
    assert back["manifests"][0]["digest"] == digest

    # a second build, elsewhere, pushes the same digest and sends no blob again
    (second,) = build(tmp_path / "b", ("oci-dir",), busybox)
    pusher = Pusher()
    pushed = push([second], parse_registry_ref(f"{registry.host}/composer/hello:2"), pusher)
    assert pushed.digest == digest
    assert pusher.uploaded == [] and len(pusher.skipped) == 2
    assert sha256(registry.inspect_raw(f"{registry.host}/composer/hello:2")) == digest


def test_chunked_upload(registry, busybox, tmp_path):
    (archive,) = build(tmp_path, ("oci",), busybox)
    pusher = Pusher(chunk_size=300 * 1024)  # busybox's ~2 MB layer goes in several PATCHes
    ref = parse_registry_ref(f"{registry.host}/composer/chunked:1")
    pushed = push([archive], ref, pusher)
    assert len(pusher.uploaded) == 2
    assert sha256(registry.inspect_raw(str(ref))) == pushed.digest == manifest_digest(archive)
    skopeo("copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
           f"oci:{tmp_path / 'back'}:x")  # skopeo verifies every blob it pulls


def test_push_with_basic_auth(basic_registry, busybox, tmp_path):
    (archive,) = build(tmp_path, ("docker",), busybox)
    ref = f"{basic_registry.host}/private/hello:1"
    result = _cli("push", str(archive), ref, env={"DOCKER_CONFIG": str(tmp_path / "none")})
    assert result.returncode == 1
    assert b"authentication required" in result.stderr and b"Traceback" not in result.stderr

    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(":".join(basic_registry.creds).encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {
        "auth": auth}}}))
    result = _cli("push", str(archive), ref, env={"DOCKER_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    digest = manifest_digest(archive)
    assert result.stdout.decode().strip().endswith(digest)
    assert sha256(basic_registry.inspect_raw(ref)) == digest


def test_several_arches_push_one_index(registry, busybox, tmp_path):
    archives = []
    for arch in ("arm64", "amd64"):
        (archive,) = build(tmp_path / arch, ("oci",), busybox, Options(mtime=MTIME, arch=arch))
        archives.append(archive)
    ref = parse_registry_ref(f"{registry.host}/composer/multi:1")
    pushed = push_index(archives, ref, Pusher())
    raw = registry.inspect_raw(str(ref))
    assert sha256(raw) == pushed.digest
    index = json.loads(raw)
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    assert [m["digest"] for m in index["manifests"]] == [manifest_digest(a)
                                                         for a in reversed(archives)]
    again = push_index(list(reversed(archives)), ref, Pusher())
    assert again.digest == pushed.digest  # the order of --arch does not matter
