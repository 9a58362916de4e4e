"""The Docker-engine source against a real dockerd (vfs storage) started by a fixture.

Images get into the engine the way users' do: skopeo writes a docker-archive of a generated
image and ``docker load`` reads it. Reading back must give the image's own config (same bytes,
so the same image ID) and its own layers (each hashing to its diff_id), not a flattened export.
"""

from __future__ import annotations

import hashlib

import pytest

from composer import canonjson, tools
from composer.cache.maintain import verify
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.resolve import resolve_image
from composer.images.sources import DOCKER_LAYER
from composer.images.write import export_layout
from tests.fixtures.images import files_layer, make_image
from tests.integration.conftest import require_tool

pytestmark = pytest.mark.integration


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def loaded(dockerd, tmp_path_factory):
    """A three-layer image (one layer repeated) loaded into the engine as it/hello:1."""
    skopeo = require_tool("skopeo")
    base = tmp_path_factory.mktemp("docker-src")
    store = Cache(base / "store")
    one = files_layer({"etc/os-release": "ID=dockertest\n"})
    two = files_layer({"bin/hello": "#!/bin/sh\necho hello\n"})
    written = make_image(store, [one, two, one], config={"Cmd": ["/bin/hello"]})
    export_layout(store, written, base / "layout", "1")
    archive = base / "skopeo.tar"
    tools.run([skopeo, "--insecure-policy", "copy", "--quiet", f"oci:{base / 'layout'}:1",
               f"docker-archive:{archive}:it/hello:1"], capture=True)
    assert "it/hello:1" in dockerd.run("load", "-i", str(archive))
    return written, [one, two, one], base


def test_engine_image_has_its_real_config_and_layers(dockerd, loaded, tmp_path, monkeypatch):
    written, layers, _ = loaded
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    cache = Cache(tmp_path / "cache")
    image = resolve_image("docker-daemon:it/hello:1", cache=cache, arch="amd64")
    manifest = canonjson.loads(cache.read_blob(image.digest))
    assert manifest["config"]["digest"] == sha256(written.config)  # same bytes: same image ID
    image_id = dockerd.run("image", "inspect", "--format", "{{.Id}}", "it/hello:1").strip()
    assert manifest["config"]["digest"] == image_id
    assert image.config == canonjson.loads(written.config)
    assert [la.diff_id for la in image.layers] == [sha256(t) for t in layers]
    for layer, tar in zip(image.layers, layers, strict=True):
        assert layer.media_type == DOCKER_LAYER
        assert cache.read_blob(layer.digest) == tar  # the engine's layer, byte for byte
    assert image.ref == "docker-daemon:it/hello:1"
    assert verify(cache) == []

    # the same image saved by the docker CLI gives the very same manifest
    saved = tmp_path / "saved.tar"
    dockerd.run("save", "-o", str(saved), "it/hello:1")
    from_file = resolve_image(f"docker-archive:{saved}", cache=Cache(tmp_path / "c2"),
                              arch="amd64")
    assert (from_file.digest, from_file.layers) == (image.digest, image.layers)


def test_docker_flag_prefers_the_engine(dockerd, loaded, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    cache = Cache(tmp_path / "cache")
    # docker.io/it/hello:1 exists nowhere but in the engine: no network is touched
    logs: list[str] = []
    image = resolve_image("it/hello:1", cache=cache, arch="amd64", docker=True,
                          log=logs.append)
    assert image.ref == "docker.io/it/hello:1"
    assert logs == ["docker.io/it/hello:1: using the image in the Docker engine"]
    same = resolve_image("docker-daemon:it/hello:1", cache=cache, arch="amd64")
    assert image.digest == same.digest


def test_engine_errors(dockerd, loaded, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    cache = Cache(tmp_path / "cache")
    with pytest.raises(ComposerError, match=r"^docker-daemon:it/nothing:1: no such image in "
                                            r"the Docker engine$"):
        resolve_image("docker-daemon:it/nothing:1", cache=cache, arch="amd64")
    with pytest.raises(ComposerError, match="image is for linux/amd64, not linux/arm64"):
        resolve_image("docker-daemon:it/hello:1", cache=cache, arch="arm64")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(ComposerError, match=r"^cannot reach the Docker engine: "):
        resolve_image("docker-daemon:it/hello:1", cache=cache, arch="amd64")
