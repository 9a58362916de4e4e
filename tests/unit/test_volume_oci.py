"""``volumes`` with ``format: oci``: the image's index as an OCI image layout in the volume's
``lower`` (linuxkit's ``ImageOCITar``), every platform or only ``platforms``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from composer import canonjson
from composer.cli import main
from composer.images.cache import Cache
from composer.oci.refs import parse_ref
from composer.tar.read import read_entries
from tests.fixtures.images import attested_index, make_index, sample_image, spdx_sbom

LOWER = "containers/volumes/v/lower"


def _cache(root: Path) -> dict:
    store = Cache(root)
    amd64 = sample_image(store, arch="amd64")
    arm64 = sample_image(store, arch="arm64", variant="v8")
    attestation = canonjson.loads(attested_index(store, amd64, spdx_sbom("a", [])).manifest)[
        "manifests"][1]
    index = make_index(store, [amd64, arm64], extra=[attestation])
    store.tag(parse_ref("multi:1").cache_name, index.descriptor)
    return {"index": index, "amd64": amd64, "arm64": arm64, "attestation": attestation}


def build(tmp_path: Path, cache: Path, capsys, volume: str) -> tuple[int, str, dict]:
    spec = tmp_path / "s.yml"
    spec.write_text(f"volumes:\n  - {volume}\n")
    code = main(["build", "-f", "tar", "--offline", "--arch", "amd64", "--cache", str(cache),
                 "-o", str(tmp_path / "out"), "--name", "s", "--no-sbom", str(spec)])
    err = capsys.readouterr().err
    tree = {}
    if code == 0:
        with open(tmp_path / "out" / "s.tar", "rb") as fh:
            tree = {e.path: (e, r.read() if r else None) for e, r in read_entries(fh)}
    return code, err, tree


def blobs(tree: dict) -> set[str]:
    prefix = f"{LOWER}/blobs/sha256/"
    found = set()
    for path, (_entry, data) in tree.items():
        if path.startswith(prefix):
            digest = "sha256:" + path[len(prefix):]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == digest  # the blob itself
            found.add(digest)
    return found


def manifest_blobs(store: Cache, digest: str) -> set[str]:
    manifest = json.loads(store.read_blob(digest))
    return {digest, manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])}


def test_oci_volume_holds_the_whole_index(tmp_path, capsys):
    made = _cache(tmp_path / "cache")
    store = Cache(tmp_path / "cache")
    code, err, tree = build(tmp_path, tmp_path / "cache", capsys,
                            "{name: v, image: 'multi:1', format: oci}")
    assert code == 0, err
    assert tree[f"{LOWER}/oci-layout"][1] == b'{\n\t\t"imageLayoutVersion": "1.0.0"\n\t}'
    index = made["index"]
    assert tree[f"{LOWER}/index.json"][1].decode() == (
        '{\n   "schemaVersion": 2,\n   "mediaType": "application/vnd.oci.image.index.v1+json",\n'
        '   "manifests": [\n      {\n'
        '         "mediaType": "application/vnd.oci.image.index.v1+json",\n'
        f'         "size": {index.descriptor["size"]},\n'
        f'         "digest": "{index.digest}",\n'
        '         "annotations": {\n'
        '            "org.opencontainers.image.ref.name": "docker.io/library/multi:1"\n'
        '         }\n      }\n   ]\n}')
    want = {index.digest, *manifest_blobs(store, made["amd64"].digest),
            *manifest_blobs(store, made["arm64"].digest),
            *manifest_blobs(store, made["attestation"]["digest"])}  # linuxkit keeps it
    assert blobs(tree) == want
    entry = tree[f"{LOWER}/index.json"][0]
    assert dict(entry.records) == {"LINUXKIT.source": "docker.io/library/multi:1",
                                   "LINUXKIT.location": "volume[0]"}
    assert not any(p.startswith(f"{LOWER}/etc") for p in tree)  # not unpacked
    for sub in ("tmp", "merged"):
        assert f"containers/volumes/v/{sub}" in tree


def test_oci_volume_platforms(tmp_path, capsys):
    made = _cache(tmp_path / "cache")
    store = Cache(tmp_path / "cache")
    code, err, tree = build(tmp_path, tmp_path / "cache", capsys,
                            "{name: v, image: 'multi:1', format: oci, platforms: [linux/arm64]}")
    assert code == 0, err
    assert blobs(tree) == {made["index"].digest, *manifest_blobs(store, made["arm64"].digest)}


def test_oci_volume_needs_an_image(tmp_path, capsys):
    code, err, _ = build(tmp_path, tmp_path / "cache", capsys, "{name: v, format: oci}")
    assert code == 2
    assert "s.yml:2:23: volumes[0].format: format: oci needs an image" in err
