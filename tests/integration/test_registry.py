"""Resolving images from Debian's real docker-registry, pushed there by skopeo.

skopeo is the independent party: it pushes our generated layouts (keeping their digests) and its
own view of the registry's manifests is what our resolutions are checked against.
"""

from __future__ import annotations

import hashlib

import pytest

from composer import canonjson
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.resolve import resolve_image
from composer.images.write import export_layout
from composer.oci.media import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_LAYER_GZIP,
)
from tests.fixtures.images import export_index, make_index, sample_image

pytestmark = pytest.mark.integration


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_complete(cache: Cache, image) -> None:
    """Every blob the image names is in the cache and hashes to its name."""
    cache.read_blob(image.digest)
    for layer in image.layers:
        assert sha256(cache.read_blob(layer.digest, layer.size)) == layer.digest
    tmp = cache.root / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


@pytest.fixture
def store(tmp_path) -> Cache:
    return Cache(tmp_path / "store")


def test_single_platform_by_tag_and_by_digest(registry, store, tmp_path):
    written = sample_image(store)
    export_layout(store, written, tmp_path / "layout", "1")
    ref = registry.push_layout(tmp_path / "layout", "1", "it/single")
    assert sha256(registry.inspect_raw(ref)) == written.digest

    cache = Cache(tmp_path / "cache")
    logs: list[str] = []
    image = resolve_image(ref, cache=cache, arch="amd64", log=logs.append)
    manifest = canonjson.loads(written.manifest)
    config = canonjson.loads(written.config)
    assert image.ref == ref
    assert image.digest == written.digest
    assert image.index_digest is None
    assert image.config == config
    assert [(la.digest, la.size, la.media_type, la.diff_id) for la in image.layers] == [
        (d["digest"], d["size"], OCI_LAYER_GZIP, diff)
        for d, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)]
    assert_complete(cache, image)
    assert cache.lookup(ref)["digest"] == written.digest
    assert logs[0] == f"pulling {ref}"

    # Everything is cached now: offline gives the same image without the network.
    assert resolve_image(ref, cache=cache, arch="amd64", offline=True) == image

    by_digest = f"{registry.host}/it/single@{written.digest}"
    other = Cache(tmp_path / "cache2")
    pinned = resolve_image(by_digest, cache=other, arch="amd64")
    assert (pinned.digest, pinned.layers, pinned.config) == (image.digest, image.layers,
                                                             image.config)
    assert_complete(other, pinned)
    assert resolve_image(by_digest, cache=other, arch="amd64", offline=True) == pinned


def test_two_platform_index(registry, store, tmp_path):
    amd64 = sample_image(store, arch="amd64")
    arm64 = sample_image(store, arch="arm64", variant="v8")
    index = make_index(store, [amd64, arm64])
    export_index(store, index, [amd64, arm64], tmp_path / "layout", "1")
    ref = registry.push_layout(tmp_path / "layout", "1", "it/multi", all_images=True)
    assert sha256(registry.inspect_raw(ref)) == index.digest

    cache = Cache(tmp_path / "cache")
    for arch, want in (("amd64", amd64), ("arm64", arm64), ("arm64/v8", arm64)):
        image = resolve_image(ref, cache=cache, arch=arch)
        assert (image.digest, image.index_digest) == (want.digest, index.digest)
        assert image.config == canonjson.loads(want.config)
        assert image.config["architecture"] == arch.split("/")[0]
        assert_complete(cache, image)
    assert cache.lookup(ref)["mediaType"] == OCI_INDEX
    assert cache.lookup(ref)["digest"] == index.digest
    for arch, want in (("amd64", amd64), ("arm64", arm64)):
        assert resolve_image(ref, cache=cache, arch=arch, offline=True).digest == want.digest

    # By the index digest, into an empty cache: only the chosen platform is downloaded.
    other = Cache(tmp_path / "cache2")
    image = resolve_image(f"{registry.host}/it/multi@{index.digest}", cache=other, arch="arm64")
    assert (image.digest, image.index_digest) == (arm64.digest, index.digest)
    assert not other.has_blob(amd64.digest)
    with pytest.raises(ComposerError, match=r"no linux/s390x image in the index "
                                            r"\(it has: linux/amd64, linux/arm64/v8\)"):
        resolve_image(ref, cache=other, arch="s390x")


def test_docker_schema2_manifest(registry, store, tmp_path):
    """skopeo converts the manifest to Docker v2 schema 2; the layers stay the same bytes."""
    written = sample_image(store, tag="-docker")
    export_layout(store, written, tmp_path / "layout", "1")
    ref = registry.push_layout(tmp_path / "layout", "1", "it/docker", manifest_format="v2s2")
    raw = registry.inspect_raw(ref)
    assert canonjson.loads(raw)["mediaType"] == DOCKER_MANIFEST

    cache = Cache(tmp_path / "cache")
    image = resolve_image(ref, cache=cache, arch="amd64")
    assert image.digest == sha256(raw)
    assert canonjson.loads(cache.read_blob(image.digest))["config"]["mediaType"] == DOCKER_CONFIG
    manifest = canonjson.loads(written.manifest)
    assert [la.digest for la in image.layers] == [d["digest"] for d in manifest["layers"]]
    assert {la.media_type for la in image.layers} == {DOCKER_LAYER_GZIP}
    assert [la.diff_id for la in image.layers] == \
        canonjson.loads(written.config)["rootfs"]["diff_ids"]
    assert_complete(cache, image)


def test_unknown_tag_and_repository(registry, tmp_path):
    cache = Cache(tmp_path / "cache")
    ref = f"{registry.host}/it/nothing:1"
    with pytest.raises(ComposerError) as info:
        resolve_image(ref, cache=cache, arch="amd64")
    lines = info.value.lines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {ref}: ")
    assert lines[0].endswith(f"(404 from http://{registry.host}/v2/it/nothing/manifests/1)")
    assert cache.lookup(ref) is None


def test_attested_sbom_pulled_from_the_registry_into_the_image(registry, store, tmp_path,
                                                                capsys):
    """BuildKit-style attestation manifest (pushed by skopeo with the index): its SPDX
    statement is fetched with the image, and the build merges it into sbom.spdx.json."""
    from composer.cli import main
    from composer.tar.read import read_entries
    from tests.fixtures.images import attested_index, clean_layout, spdx_sbom

    image = sample_image(store)
    index = attested_index(store, image, spdx_sbom("it", [("musl", "1.2.5-r0")],
                                                   ["lib/ld-musl-x86_64.so.1"]))
    layout = tmp_path / "layout"
    export_index(store, index, [image], layout, "1")
    target = Cache(layout)
    attestation = canonjson.loads(index.manifest)["manifests"][1]
    manifest = canonjson.loads(store.read_blob(attestation["digest"]))
    for desc in [attestation, manifest["config"], *manifest["layers"]]:
        target.put_bytes(store.read_blob(desc["digest"], desc["size"]))
    clean_layout(layout)
    ref = registry.push_layout(layout, "1", "it/attested", all_images=True)
    assert sha256(registry.inspect_raw(ref)) == index.digest

    spec = tmp_path / "s.yml"
    spec.write_text(f"onboot: [{{name: x, image: '{ref}'}}]\n")
    cache = tmp_path / "cache"
    code = main(["build", "-f", "tar", "--cache", str(cache), "-o", str(tmp_path / "out"),
                 "--name", "s", str(spec)])
    assert code == 0, capsys.readouterr().err
    with open(tmp_path / "out" / "s.tar", "rb") as fh:
        tree = {e.path: r.read() if r else None for e, r in read_entries(fh)}
    doc = canonjson.loads(tree["sbom.spdx.json"])
    assert [p["name"] for p in doc["packages"]] == ["musl"]
    assert doc["files"][0]["fileName"] == \
        "containers/onboot/000-x/lower/lib/ld-musl-x86_64.so.1"
    # offline again: the statement is in the cache, so the same bytes come out
    code = main(["build", "-f", "tar", "--offline", "--cache", str(cache), "-o",
                 str(tmp_path / "again"), "--name", "s", str(spec)])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "again" / "s.tar").read_bytes() == (tmp_path / "out" / "s.tar").read_bytes()


def test_oci_volume_fetches_every_platform_from_the_registry(registry, store, tmp_path, capsys):
    """format: oci puts the whole index in the volume: the other platforms' blobs are pulled
    too (the build itself resolves only linux/amd64)."""
    from composer.cli import main
    from composer.tar.read import read_entries

    amd64 = sample_image(store, arch="amd64")
    arm64 = sample_image(store, arch="arm64", variant="v8")
    index = make_index(store, [amd64, arm64])
    export_index(store, index, [amd64, arm64], tmp_path / "layout", "1")
    ref = registry.push_layout(tmp_path / "layout", "1", "it/ocivol", all_images=True)
    spec = tmp_path / "s.yml"
    spec.write_text(f"volumes: [{{name: v, image: '{ref}', format: oci}}]\n")
    code = main(["build", "-f", "tar", "--arch", "amd64", "--cache", str(tmp_path / "cache"),
                 "-o", str(tmp_path / "out"), "--name", "s", str(spec)])
    assert code == 0, capsys.readouterr().err
    with open(tmp_path / "out" / "s.tar", "rb") as fh:
        tree = {e.path: r.read() if r else None for e, r in read_entries(fh)}
    prefix = "containers/volumes/v/lower/blobs/sha256/"
    got = {"sha256:" + p[len(prefix):] for p in tree if p.startswith(prefix)}
    arm = canonjson.loads(arm64.manifest)
    assert {index.digest, amd64.digest, arm64.digest, arm["config"]["digest"],
            *(d["digest"] for d in arm["layers"])} <= got
    for path, data in tree.items():
        if path.startswith(prefix):
            assert sha256(data) == "sha256:" + path[len(prefix):]
