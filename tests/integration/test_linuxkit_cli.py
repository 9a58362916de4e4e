"""linuxkit's registry flags and cache commands against real registries.

Debian's docker-registry three ways: plain HTTP (``registry``), HTTP basic auth that refuses an
anonymous client (``basic_registry``) and HTTPS with a certificate from a throwaway CA
(``tls_registry``). skopeo is the independent reader: it says which bytes a registry or an
archive holds.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from composer.cli import main
from composer.images.cache import Cache
from tests.fixtures.images import export_layout, files_layer, make_image, make_index, sample_image
from tests.integration.conftest import require_tool

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A two-platform index (in a cache that names it, for ``cache push``), one of its images
    as an OCI layout (for skopeo to push), and an image with a whiteout."""
    base = tmp_path_factory.mktemp("lk-images")
    store = Cache(base / "store")
    amd, arm = sample_image(store, arch="amd64"), sample_image(store, arch="arm64")
    index = make_index(store, [amd, arm])
    export_layout(store, amd, base / "amd", "1")
    whiteout = make_image(store, [files_layer({"a/keep": "kept\n", "a/gone": "gone\n"}),
                                  files_layer({"a/.wh.gone": ""})])
    return {"store": store, "amd": amd, "arm": arm, "index": index, "layout": base / "amd",
            "whiteout": whiteout}


# -- --cert-file: a TLS registry no system trusts ---------------------------------------------
def test_cert_file_makes_a_tls_registry_trusted(tls_registry, images, tmp_path, capsys):
    ref = tls_registry.registry.push_layout(images["layout"], "1", "lk/app")
    cache = tmp_path / "cache"
    code, _, err = cli(["cache", "pull", "--cache", str(cache), ref], capsys)
    assert code == 1 and err.count("error:") == 1 and err.splitlines()[-1].startswith("error:")
    assert "TLS error" in err and "certificate verify failed" in err, err
    assert Cache(cache).lookup(ref) is None

    junk = tmp_path / "junk.pem"
    junk.write_text("nothing here\n")
    code, _, err = cli(["cache", "pull", "--cache", str(cache), "--cert-file", str(junk), ref],
                       capsys)
    assert code == 1 and "junk.pem: no PEM certificate" in err

    # linuxkit's spelling, the flag before the command: the registry is spoken to over HTTPS
    # (found from its answer to plain HTTP, as linuxkit's client finds it) and trusted
    code, out, err = cli(["--cert-file", str(tls_registry.ca.ca), "cache", "pull", "--cache",
                          str(cache), ref], capsys)
    assert code == 0, err
    assert out == f"{ref}\n"
    served = tls_registry.registry.inspect_raw(ref)
    assert Cache(cache).lookup(ref)["digest"] == sha256(served) == images["amd"].digest

    # pushes too: --override starts with a HEAD, whose answer has no body to say "HTTPS"
    pushed = f"{tls_registry.registry.host}/lk/pushed:2"
    code, out, err = cli(["cache", "push", "--cache", str(cache), "--override", "--cert-file",
                          str(tls_registry.ca.ca), "--remote-name", pushed, ref], capsys)
    assert code == 0, err
    assert out == f"{pushed.rsplit(':', 1)[0]}@{images['amd'].digest}\n"
    assert sha256(tls_registry.registry.inspect_raw(pushed)) == images["amd"].digest


# -- --mirror: pulls go where the mirror says -------------------------------------------------
def test_a_mirror_serves_what_the_origin_lacks(registry, tls_registry, images, tmp_path,
                                               capsys, monkeypatch):
    """The origin (plain) never had the image; the mirror (TLS, under a path prefix) has it."""
    tls = tls_registry.registry
    tls.push_layout(images["layout"], "1", "prefix/lkmirror/app")
    ref = f"{registry.host}/lkmirror/app:1"
    cache = tmp_path / "cache"
    code, _, err = cli(["cache", "pull", "--cache", str(cache), ref], capsys)
    assert code == 1 and "lkmirror/app" in err  # the origin: manifest unknown

    monkeypatch.setenv("LINUXKIT_MIRROR", f"{registry.host}=https://{tls.host}/prefix")
    code, out, err = cli(["cache", "pull", "--cache", str(cache), "--cert-file",
                          str(tls_registry.ca.ca), ref], capsys)
    assert code == 0, err
    assert out == f"{ref}\n"  # kept under the name the user gave, as linuxkit keeps it
    assert Cache(cache).lookup(ref)["digest"] == images["amd"].digest


def test_a_mirror_serves_what_the_origin_refuses(basic_registry, registry, images, tmp_path,
                                                 capsys):
    """The origin wants credentials nobody gave; a catch-all mirror serves the build."""
    ref = basic_registry.push_layout(images["layout"], "1", "lkrefused/app")
    registry.push_layout(images["layout"], "1", "lkrefused/app")
    spec = tmp_path / "refused.yml"
    spec.write_text(f"init:\n  - {ref}\n")
    argv = ["build", "--cache", str(tmp_path / "cache"), "--o", str(tmp_path / "out.tar"),
            str(spec)]
    code, _, err = cli(argv, capsys)
    assert code == 1 and "authentication required" in err, err

    code, out, err = cli(["--mirror", f"http://{registry.host}", *argv], capsys)
    assert code == 0, err
    assert out == f"{tmp_path / 'out.tar'}\n"
    with tarfile.open(tmp_path / "out.tar") as tf:  # an independent reader of the one output
        names = tf.getnames()
    assert "etc/arch" in names and "bin/hello" in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.tar", "refused.yml"]


# -- cache push / pull / ls / rm: linuxkit's arguments ----------------------------------------
def test_cache_push_pull_ls_rm(registry, images, tmp_path, capsys):
    store, index = images["store"], images["index"]
    local = "example.invalid/lk/multi:1"
    store.tag(local, index.descriptor)
    remote = f"{registry.host}/lkpush/multi:1"
    argv = ["cache", "push", "--cache", str(store.root), "--remote-name", remote,
            "--with-arch-tags", local]
    code, out, err = cli(argv, capsys)
    assert code == 0, err
    assert out == f"{registry.host}/lkpush/multi@{index.digest}\n"
    assert sha256(registry.inspect_raw(remote)) == index.digest
    assert sha256(registry.inspect_raw(remote + "-amd64")) == images["amd"].digest
    assert sha256(registry.inspect_raw(remote + "-arm64")) == images["arm"].digest

    code, out, err = cli(argv, capsys)  # the registry has the tag: linuxkit leaves it
    assert code == 0 and out == "" and "already exists in the registry, skipping" in err
    code, out, err = cli([*argv, "--override"], capsys)
    assert code == 0 and out.endswith(f"@{index.digest}\n"), err

    one = Cache(tmp_path / "one")
    code, out, err = cli(["cache", "pull", "--cache", str(one.root), "--platform",
                          "linux/arm64", remote], capsys)
    assert code == 0, err
    assert one.has_blob(images["arm"].digest) and not one.has_blob(images["amd"].digest)
    cache = tmp_path / "cache"  # without --platform: every platform, as linuxkit pulls
    code, out, err = cli(["cache", "pull", "--cache", str(cache), remote], capsys)
    assert code == 0, err
    pulled = Cache(cache)
    assert pulled.lookup(remote)["digest"] == index.digest
    assert pulled.has_blob(images["amd"].digest) and pulled.has_blob(images["arm"].digest)

    unpublished = f"{registry.host}/lkpush/never:1"
    pulled.tag(unpublished, images["amd"].descriptor)
    code, out, err = cli(["cache", "ls", "--cache", str(cache), "--format", "linuxkit"], capsys)
    assert out.splitlines() == [f"{'image name':<80} root manifest hash",
                                f"{remote:<80} {index.digest}",
                                f"{unpublished:<80} {images['amd'].digest}"]

    code, out, err = cli(["cache", "rm", "--cache", str(cache), "--published-only", remote,
                          unpublished], capsys)
    assert code == 0, err
    assert f"removing image {remote} from cache" in err
    assert f"image {unpublished} not found in remote registry, leaving in cache" in err
    assert pulled.lookup(remote) is None and pulled.lookup(unpublished) is not None

    code, _, err = cli(["cache", "clean", "--cache", str(cache), "--all"], capsys)
    assert code == 0 and sorted(p.name for p in cache.iterdir()) == ["gc.lock"]


# -- cache export / import -------------------------------------------------------------------
def test_cache_export_formats_and_import(images, tmp_path, capsys):
    skopeo = require_tool("skopeo")
    store, amd, arm = images["store"], images["amd"], images["arm"]
    name = "example.invalid/lk/multi:1"
    store.tag(name, images["index"].descriptor)
    store.tag("example.invalid/lk/whiteout:1", images["whiteout"].descriptor)
    base = ["cache", "export", "--cache", str(store.root)]

    oci = tmp_path / "arm-oci.tar"
    assert cli([*base, "--platform", "linux/arm64", "--outfile", str(oci), name], capsys)[0] == 0
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci-archive:{oci}"],
                         capture_output=True, check=True).stdout
    assert sha256(raw) == arm.digest
    with tarfile.open(oci) as tf:  # named both ways: linuxkit's cache import reads containerd's
        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}
    again = tmp_path / "again.tar"
    assert cli([*base, "--platform", "linux/arm64", "--outfile", str(again), name],
               capsys)[0] == 0
    assert again.read_bytes() == oci.read_bytes()  # the same image, the same bytes

    docker = tmp_path / "docker.tar"
    code, _, err = cli([*base, "--format", "docker", "--platform", "linux/amd64", "--name",
                        "example.invalid/renamed:2", "--outfile", str(docker), name], capsys)
    assert code == 0, err
    inspected = json.loads(subprocess.run(
        [skopeo, "inspect", "--raw", f"docker-archive:{docker}"], capture_output=True,
        check=True).stdout)
    assert inspected["config"]["digest"] == sha256(amd.config)  # manifest.json read by skopeo
    assert len(inspected["layers"]) == 2
    with tarfile.open(docker) as tf:
        manifest = tf.extractfile("manifest.json").read().decode()  # type: ignore[union-attr]
    assert '"RepoTags":["example.invalid/renamed:2"]' in manifest

    fs = tmp_path / "fs.tar"
    code, _, err = cli([*base, "--format", "filesystem", "--outfile", str(fs),
                        "example.invalid/lk/whiteout:1"], capsys)
    assert code == 0, err
    with tarfile.open(fs) as tf:
        names = tf.getnames()
        kept = tf.extractfile("a/keep").read()  # type: ignore[union-attr]
        assert all(not m.pax_headers for m in tf.getmembers())  # a plain filesystem tar
    assert kept == b"kept\n" and "a/gone" not in names and "a/.wh.gone" not in names

    # import, from a file and from stdin ('-'), into fresh caches
    code, out, _ = cli(["cache", "import", "--cache", str(tmp_path / "c1"), str(oci)], capsys)
    assert code == 0 and out == f"{name}\n"
    assert Cache(tmp_path / "c1").lookup(name)["digest"] == arm.digest
    with open(oci, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "composer", "cache", "import", "--cache",
                               str(tmp_path / "c2"), "-"], stdin=stdin, capture_output=True,
                              text=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert Cache(tmp_path / "c2").lookup(name)["digest"] == arm.digest
    assert sorted((tmp_path / "c2" / "tmp").iterdir()) == []
