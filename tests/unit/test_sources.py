"""oci-archive: and docker-archive: sources, read in place from generated archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from composer import canonjson
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.resolve import resolve_image
from composer.images.sources import DOCKER_LAYER, SourceRef, parse_source
from composer.images.write import export_layout
from composer.oci.media import DOCKER_MANIFEST
from composer.oci.refs import RefError
from composer.streams.digest import DigestMismatch
from tests.fixtures.images import blob_files, export_index, files_layer, make_index, sample_image


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_dir(root: Path, dest: Path, prefix: str = "") -> Path:
    with tarfile.open(dest, "w") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=prefix + path.relative_to(root).as_posix(), recursive=False)
    return dest


def add(tar: tarfile.TarFile, name: str, data: bytes | None = None, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    elif data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def docker_save(dest: Path, images: list[tuple[list[str], list[bytes], dict]]) -> Path:
    """A legacy `docker save` archive: <id>/layer.tar per layer, <config id>.json, manifest.json;
    a layer used twice is a symlink to the first copy, as docker writes it."""
    manifest = []
    seen: dict[str, str] = {}
    with tarfile.open(dest, "w") as tar:
        for tags, layers, config in images:
            cfg = canonjson.compact(config)
            names = []
            for layer in layers:
                layer_id = sha(layer)[7:]
                name = f"{layer_id}/layer.tar"
                if layer_id in seen:
                    names.append(name)
                    continue
                add(tar, layer_id)
                add(tar, name, layer)
                seen[layer_id] = name
                names.append(name)
            add(tar, f"{sha(cfg)[7:]}.json", cfg)
            manifest.append({"Config": f"{sha(cfg)[7:]}.json", "RepoTags": tags,
                             "Layers": names})
        add(tar, "manifest.json", json.dumps(manifest).encode())
    return dest


def config_for(layers: list[bytes], arch: str = "amd64") -> dict:
    return {"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]}}


def test_parse_source():
    assert parse_source("oci-archive:img.tar") == SourceRef("oci-archive", "img.tar", None)
    assert parse_source("oci-archive:dir/img.tar:v1") == SourceRef("oci-archive", "dir/img.tar",
                                                                   "v1")
    assert parse_source("docker-archive:a.tar") == SourceRef("docker-archive", "a.tar", None)
    assert parse_source("docker-archive:a.tar:busybox:1") == \
        SourceRef("docker-archive", "a.tar", "busybox:1")
    assert parse_source("docker-daemon:busybox:1") == SourceRef("docker-daemon", "busybox:1",
                                                                None)
    assert str(parse_source("docker-archive:a.tar:x:1")) == "docker-archive:a.tar:x:1"
    assert parse_source("busybox:1") is None
    assert parse_source("oci:layout") is None
    with pytest.raises(RefError):
        parse_source("docker-daemon:Not Valid")
    with pytest.raises(RefError):
        parse_source("oci-archive:")


def test_oci_archive_single_and_index(tmp_path):
    store = Cache(tmp_path / "store")
    amd64 = sample_image(store, arch="amd64")
    arm64 = sample_image(store, arch="arm64", variant="v8")
    index = make_index(store, [amd64, arm64])
    export_index(store, index, [amd64, arm64], tmp_path / "layout", "multi")
    export_layout(store, amd64, tmp_path / "layout", "one")
    archive = tar_dir(tmp_path / "layout", tmp_path / "img.tar", prefix="./")

    cache = Cache(tmp_path / "cache")
    one = resolve_image("oci-archive:img.tar:one", cache=cache, arch="amd64", base_dir=tmp_path)
    assert (one.digest, one.index_digest) == (amd64.digest, None)
    assert one.ref == "oci-archive:img.tar:one"
    arm = resolve_image(f"oci-archive:{archive}:multi", cache=cache, arch="arm64")
    assert (arm.digest, arm.index_digest) == (arm64.digest, index.digest)
    assert arm.config == canonjson.loads(arm64.config)
    for layer in arm.layers:
        assert sha(cache.read_blob(layer.digest)) == layer.digest
    with pytest.raises(ComposerError, match="layout holds 2 manifests"):
        resolve_image(f"oci-archive:{archive}", cache=cache, arch="amd64")
    with pytest.raises(ComposerError, match="no manifest tagged 'nope'"):
        resolve_image(f"oci-archive:{archive}:nope", cache=cache, arch="amd64")


def test_oci_archive_with_a_corrupt_blob_is_refused_and_not_cached(tmp_path):
    store = Cache(tmp_path / "store")
    written = sample_image(store)
    export_layout(store, written, tmp_path / "layout", "1")
    layer = canonjson.loads(written.manifest)["layers"][0]["digest"]
    path = tmp_path / "layout" / "blobs" / "sha256" / layer[7:]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    archive = tar_dir(tmp_path / "layout", tmp_path / "img.tar")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(DigestMismatch):
        resolve_image(f"oci-archive:{archive}", cache=cache, arch="amd64")
    assert layer[7:] not in blob_files(cache)


def test_missing_or_bad_archive(tmp_path):
    cache = Cache(tmp_path / "cache")
    with pytest.raises(ComposerError, match="no such file"):
        resolve_image(f"oci-archive:{tmp_path}/none.tar", cache=cache, arch="amd64")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ComposerError, match="not a readable tar archive"):
        resolve_image(f"oci-archive:{tmp_path}/junk.tar", cache=cache, arch="amd64")
    with pytest.raises(ComposerError, match="not a readable docker save archive"):
        resolve_image(f"docker-archive:{tmp_path}/junk.tar", cache=cache, arch="amd64")
    with pytest.raises(ComposerError, match="not an OCI archive"):
        resolve_image(f"oci-archive:{docker_save(tmp_path / 'd.tar', [])}", cache=cache,
                      arch="amd64")


def test_docker_archive_keeps_the_real_layers_and_config(tmp_path):
    base = files_layer({"etc/os-release": "ID=test\n"})
    top = files_layer({"etc/motd": "hi\n"})
    other = files_layer({"other": "x\n"})
    cfg_a, cfg_b = config_for([base, top]), config_for([base, other])
    archive = docker_save(tmp_path / "save.tar", [(["example/a:1"], [base, top], cfg_a),
                                                  (["b:2", "b:latest"], [base, other], cfg_b)])
    cache = Cache(tmp_path / "cache")
    image = resolve_image("docker-archive:save.tar:example/a:1", cache=cache, arch="amd64",
                          base_dir=tmp_path)
    assert image.config == cfg_a
    assert [(la.digest, la.diff_id, la.media_type) for la in image.layers] == \
        [(sha(base), sha(base), DOCKER_LAYER), (sha(top), sha(top), DOCKER_LAYER)]
    manifest = canonjson.loads(cache.read_blob(image.digest))
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == sha(canonjson.compact(cfg_a))
    # docker.io/library/b:2 is how "b:2" normalises; the duplicate layer is a symlink
    b = resolve_image(f"docker-archive:{archive}:docker.io/library/b:2", cache=cache,
                      arch="amd64")
    assert [la.digest for la in b.layers] == [sha(base), sha(other)]
    # the synthesised manifest is a pure function of the archive
    again = resolve_image(f"docker-archive:{archive}:b:latest", cache=Cache(tmp_path / "c2"),
                          arch="amd64")
    assert again.digest == b.digest
    with pytest.raises(ComposerError, match=r"archive holds 2 images; name one"):
        resolve_image(f"docker-archive:{archive}", cache=cache, arch="amd64")
    with pytest.raises(ComposerError, match=r"no image tagged 'c:1' in the archive \(tags: "
                                            r"b:2, b:latest, example/a:1\)"):
        resolve_image(f"docker-archive:{archive}:c:1", cache=cache, arch="amd64")
    with pytest.raises(ComposerError, match="image is for linux/amd64, not linux/arm64"):
        resolve_image(f"docker-archive:{archive}:b:2", cache=cache, arch="arm64")


def test_docker_archive_layer_that_does_not_match_its_diff_id(tmp_path):
    layer = files_layer({"a": "1\n"})
    cfg = config_for([files_layer({"a": "2\n"})])
    archive = docker_save(tmp_path / "save.tar", [(["x:1"], [layer], cfg)])
    cache = Cache(tmp_path / "cache")
    image = resolve_image(f"docker-archive:{archive}", cache=cache, arch="amd64")
    with pytest.raises(DigestMismatch):
        cache.uncompressed_layer(image.layers[0].digest, image.layers[0].size,
                                 image.layers[0].media_type, image.layers[0].diff_id, "layer")


def test_docker_archive_new_format_blob_names_are_checked(tmp_path):
    layer = files_layer({"a": "1\n"})
    cfg = canonjson.compact(config_for([layer]))
    with tarfile.open(tmp_path / "save.tar", "w") as tar:
        add(tar, f"blobs/sha256/{sha(cfg)[7:]}", cfg)
        add(tar, f"blobs/sha256/{'0' * 64}", layer)  # misnamed
        add(tar, "manifest.json", json.dumps([{
            "Config": f"blobs/sha256/{sha(cfg)[7:]}", "RepoTags": None,
            "Layers": [f"blobs/sha256/{'0' * 64}"]}]).encode())
    cache = Cache(tmp_path / "cache")
    with pytest.raises(DigestMismatch, match="expected sha256:0000"):
        resolve_image(f"docker-archive:{tmp_path}/save.tar", cache=cache, arch="amd64")
    assert sha(layer)[7:] not in blob_files(cache)
    assert list((cache.root / "tmp").iterdir()) == []
