"""Image resolution against an in-process fake registry (faults injected), and OCI layouts.

The fake registry is ``http.server`` on 127.0.0.1 in a thread: loopback refs talk plain HTTP, so
the real client code runs unchanged. Retries are made instant by handing the client a ``sleep``
that only records how long it would have slept.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from composer import canonjson
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.registry import RegistryClient, _reason, parse_challenge
from composer.images.resolve import resolve_image, select_platform
from composer.images.write import Written, export_layout, gzip_bytes, write_image
from composer.oci.media import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_LAYER_GZIP,
)
from composer.streams.digest import DigestMismatch
from tests.fixtures.images import (
    blob_files,
    export_index,
    files_layer,
    make_index,
    sample_image,
)

# -- the fake registry ----------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # close the connection after sending ``body`` (a short read)


class FakeRegistry:
    """Serves manifests and blobs from dicts; ``faults[path]`` replies are served first."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.faults: dict[str, list[Reply]] = {}
        self.token: str | None = None
        self.token_field = "token"
        self.redirect_blobs: str | None = None
        self.digest_header = True
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append((parts.path, headers))
                self.reply(fake.handle(parts.path, parse_qs(parts.query), headers))

            def reply(self, reply: Reply) -> None:
                self.send_response(reply.status)
                sent = {k.lower() for k in reply.headers}
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if "content-length" not in sent:
                    self.send_header("Content-Length", str(len(reply.body)))
                if reply.cut:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply.body)
                if reply.cut:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- content ---------------------------------------------------------------------------
    def add_image(self, repo: str, tag: str | None, store: Cache, written: Written) -> None:
        manifest = canonjson.loads(written.manifest)
        for desc in [manifest["config"], *manifest["layers"]]:
            self.blobs[desc["digest"]] = store.read_blob(desc["digest"])
        self.add_manifest(repo, tag, written.manifest, written.descriptor["mediaType"])

    def add_manifest(self, repo: str, tag: str | None, data: bytes, media_type: str) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.manifests[(repo, digest)] = (data, media_type)
        if tag:
            self.manifests[(repo, tag)] = (data, media_type)
        return digest

    def paths(self, kind: str = "") -> list[str]:
        return [p for p, _ in self.requests if kind in p]

    # -- the protocol ----------------------------------------------------------------------
    def handle(self, path: str, query: dict, headers: dict[str, str]) -> Reply:
        if path == "/token":
            scope = query.get("scope", [""])[0]
            if query.get("service") != ["fake"] or not scope.endswith(":pull"):
                return _error(400, "DENIED", "bad token request")
            return Reply(200, json.dumps({self.token_field: self.token}).encode(),
                         {"Content-Type": "application/json"})
        if self.faults.get(path):
            return self.faults[path].pop(0)
        match = re.match(r"^/v2/(.+)/(manifests|blobs)/([^/]+)$", path)
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            repo = match.group(1) if match else ""
            challenge = (f'Bearer realm="http://{self.host}/token",service="fake",'
                         f'scope="repository:{repo}:pull"')
            return _error(401, "UNAUTHORIZED", "authentication required",
                          {"WWW-Authenticate": challenge})
        if path == "/v2/":
            return Reply(200, b"{}")
        if not match:
            return _error(404, "NOT_FOUND", "no such endpoint")
        repo, kind, reference = match.groups()
        if kind == "manifests":
            if (repo, reference) not in self.manifests:
                return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            data, media_type = self.manifests[(repo, reference)]
            extra = {"Content-Type": media_type}
            if self.digest_header:
                extra["Docker-Content-Digest"] = "sha256:" + hashlib.sha256(data).hexdigest()
            return Reply(200, data, extra)
        if self.redirect_blobs:
            return Reply(307, b"", {"Location": f"{self.redirect_blobs}{path}"})
        if reference not in self.blobs:
            return _error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        return Reply(200, self.blobs[reference], {"Content-Type": "application/octet-stream"})


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Reply:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **(headers or {})})


@pytest.fixture
def fake():
    registry = FakeRegistry()
    yield registry
    registry.close()


@pytest.fixture
def store(tmp_path) -> Cache:
    """Where test images are generated (never the cache under test)."""
    return Cache(tmp_path / "store")


@pytest.fixture
def cache(tmp_path) -> Cache:
    return Cache(tmp_path / "cache")


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps) -> RegistryClient:
    return RegistryClient(retries=2, backoff=0.5, sleep=sleeps.append, timeout=(10, 30))


def assert_no_partial_files(cache: Cache) -> None:
    tmp = cache.root / "tmp"
    assert not tmp.exists() or sorted(tmp.iterdir()) == []


def assert_image_complete(cache: Cache, image) -> None:
    """Every blob of the image is in the cache and still hashes to its name."""
    for layer in image.layers:
        data = cache.read_blob(layer.digest, layer.size)
        assert hashlib.sha256(data).hexdigest() == layer.digest.split(":")[1]
    cache.read_blob(image.digest)


# -- registry: the happy paths ---------------------------------------------------------------


def test_pull_by_tag_stores_everything_and_reuses_the_cache(fake, store, cache, client):
    layers = [files_layer({f"l{i}/f": f"layer {i}\n" * (i + 1)}) for i in range(6)]
    written = write_image(store, layers, config={"Cmd": ["/bin/sh"]})
    fake.add_image("test/img", "1", store, written)
    ref = f"{fake.host}/test/img:1"

    logs: list[str] = []
    image = resolve_image(ref, cache=cache, arch="amd64", client=client, log=logs.append)

    manifest = canonjson.loads(written.manifest)
    config = canonjson.loads(written.config)
    assert image.ref == ref
    assert image.digest == written.digest
    assert image.index_digest is None
    assert image.config == config
    assert [layer.digest for layer in image.layers] == [d["digest"] for d in manifest["layers"]]
    assert [layer.size for layer in image.layers] == [d["size"] for d in manifest["layers"]]
    assert [layer.diff_id for layer in image.layers] == config["rootfs"]["diff_ids"]
    assert {layer.media_type for layer in image.layers} == {OCI_LAYER_GZIP}
    assert image.pinned == f"{ref}@{written.digest}"
    assert_image_complete(cache, image)
    assert cache.lookup(ref)["digest"] == written.digest
    assert logs and logs[0] == f"pulling {ref}"
    assert_no_partial_files(cache)
    assert len(fake.paths("/blobs/")) == 7  # config + 6 layers, each fetched once

    # Tags are not re-resolved without pull; a second resolve never touches the network.
    fake.requests.clear()
    again = resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert again == image and again.config == image.config
    assert fake.requests == []
    offline = resolve_image(ref, cache=cache, arch="amd64", offline=True)
    assert offline == image

    # pull re-reads the tag, but blobs already cached are not downloaded again.
    resolve_image(ref, cache=cache, arch="amd64", client=client, pull=True)
    assert fake.paths() == ["/v2/test/img/manifests/1"]


def test_pull_moves_a_tag(fake, store, cache, client):
    first = sample_image(store, tag="-one")
    second = sample_image(store, tag="-two")
    fake.add_image("test/img", "1", store, first)
    ref = f"{fake.host}/test/img:1"
    assert resolve_image(ref, cache=cache, arch="amd64", client=client).digest == first.digest
    fake.add_image("test/img", "1", store, second)
    assert resolve_image(ref, cache=cache, arch="amd64", client=client).digest == first.digest
    moved = resolve_image(ref, cache=cache, arch="amd64", client=client, pull=True)
    assert moved.digest == second.digest
    assert cache.lookup(ref)["digest"] == second.digest
    assert resolve_image(ref, cache=cache, arch="amd64", offline=True).digest == second.digest


def test_pull_by_digest_then_no_network(fake, store, cache, client):
    written = sample_image(store)
    fake.add_image("test/img", None, store, written)
    ref = f"{fake.host}/test/img@{written.digest}"
    image = resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert image.digest == written.digest
    assert image.pinned == ref
    assert_image_complete(cache, image)
    assert cache.lookup(f"{fake.host}/test/img@{written.digest}")["digest"] == written.digest

    fake.requests.clear()
    assert resolve_image(ref, cache=cache, arch="amd64", client=client, pull=True) == image
    assert fake.requests == []  # a digest names the same bytes forever: the cache answers


def test_tag_and_digest_ref_uses_the_digest(fake, store, cache, client):
    pinned = sample_image(store, tag="-pinned")
    moved = sample_image(store, tag="-moved")
    fake.add_image("test/img", None, store, pinned)
    fake.add_image("test/img", "1", store, moved)
    image = resolve_image(f"{fake.host}/test/img:1@{pinned.digest}", cache=cache,
                          arch="amd64", client=client)
    assert image.digest == pinned.digest
    assert cache.lookup(f"{fake.host}/test/img:1") is None  # the tag's meaning is not recorded


def test_bearer_token_flow(fake, store, cache, client):
    fake.token = "s3cret"
    fake.token_field = "access_token"
    written = sample_image(store)
    fake.add_image("test/img", "1", store, written)
    image = resolve_image(f"{fake.host}/test/img:1", cache=cache, arch="amd64", client=client)
    assert image.digest == written.digest
    tokens = [h for p, h in fake.requests if p == "/token"]
    assert len(tokens) == 1  # one token, reused for every blob
    assert "authorization" not in tokens[0]  # anonymous
    registry_requests = [(p, h) for p, h in fake.requests if p.startswith("/v2/")]
    _, first_headers = registry_requests[0]
    assert "authorization" not in first_headers  # the first try is refused with a challenge
    assert all(h.get("authorization") == "Bearer s3cret" for _, h in registry_requests[1:])
    assert len(registry_requests) == 1 + 1 + 3  # 401, manifest, config + 2 layers


def test_unauthorized_without_token_service(fake, cache, client):
    fake.faults["/v2/test/img/manifests/1"] = [
        _error(401, "UNAUTHORIZED", "auth", {"WWW-Authenticate": 'Basic realm="x"'})]
    with pytest.raises(ComposerError, match=r"authentication required \(401 from http://"):
        resolve_image(f"{fake.host}/test/img:1", cache=cache, arch="amd64", client=client)


def test_retries_a_500_then_succeeds(fake, store, cache, client, sleeps):
    written = sample_image(store)
    fake.add_image("test/img", "1", store, written)
    path = "/v2/test/img/manifests/1"
    fake.faults[path] = [_error(500, "UNKNOWN", "boom"), _error(503, "UNAVAILABLE", "busy")]
    image = resolve_image(f"{fake.host}/test/img:1", cache=cache, arch="amd64", client=client)
    assert image.digest == written.digest
    assert fake.paths("/manifests/") == [path] * 3
    assert sleeps == [0.5, 1.0]  # exponential backoff


def test_gives_up_after_bounded_retries(fake, cache, client, sleeps):
    path = "/v2/test/img/manifests/1"
    fake.faults[path] = [_error(502, "UNKNOWN", "bad gateway") for _ in range(10)]
    ref = f"{fake.host}/test/img:1"
    with pytest.raises(ComposerError) as info:
        resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert str(info.value) == f"{ref}: bad gateway (502 from http://{fake.host}{path})"
    assert len(fake.paths()) == 3
    assert len(sleeps) == 2


def test_short_blob_read_is_retried_whole(fake, store, cache, client):
    written = sample_image(store)
    fake.add_image("test/img", "1", store, written)
    layer = canonjson.loads(written.manifest)["layers"][0]
    data = fake.blobs[layer["digest"]]
    path = f"/v2/test/img/blobs/{layer['digest']}"
    fake.faults[path] = [Reply(200, data[:10], {"Content-Length": str(len(data))}, cut=True)]
    image = resolve_image(f"{fake.host}/test/img:1", cache=cache, arch="amd64", client=client)
    assert_image_complete(cache, image)
    assert fake.paths(path).count(path) == 2
    assert_no_partial_files(cache)


def test_unknown_manifest_is_one_clear_line(fake, cache, client):
    ref = f"{fake.host}/test/nope:1"
    with pytest.raises(ComposerError) as info:
        resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert info.value.lines() == [
        f"error: {ref}: manifest unknown (404 from http://{fake.host}/v2/test/nope/manifests/1)"]


def test_connection_refused(cache, client, sleeps):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ref = f"127.0.0.1:{port}/test/img:1"
    with pytest.raises(ComposerError) as info:
        resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert str(info.value) == f"{ref}: cannot connect to 127.0.0.1:{port}: Connection refused"
    assert len(sleeps) == 2  # retried, bounded


def test_tampered_blob_is_rejected_and_not_cached(fake, store, cache, client):
    written = sample_image(store)
    fake.add_image("test/img", "1", store, written)
    layer = canonjson.loads(written.manifest)["layers"][1]
    good = fake.blobs[layer["digest"]]
    fake.blobs[layer["digest"]] = good[:-1] + bytes([good[-1] ^ 1])  # same size, one bit off
    ref = f"{fake.host}/test/img:1"
    with pytest.raises(DigestMismatch) as info:
        resolve_image(ref, cache=cache, arch="amd64", client=client)
    message = str(info.value)
    assert message.startswith(f"{ref}: layer {layer['digest']}: content is sha256:")
    assert message.endswith(f"expected {layer['digest']}")
    assert layer["digest"].split(":")[1] not in blob_files(cache)
    assert_no_partial_files(cache)
    assert cache.lookup(ref) is None  # an incomplete image is never tagged
    assert len(fake.paths(layer["digest"])) == 1  # a wrong digest is not worth a retry

    fake.blobs[layer["digest"]] = good + b"x"  # one byte too many: stopped at the size
    with pytest.raises(DigestMismatch, match="more than the expected"):
        resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert layer["digest"].split(":")[1] not in blob_files(cache)
    assert_no_partial_files(cache)


def test_manifest_digest_must_match_the_ref(fake, store, cache, client):
    real = sample_image(store, tag="-real")
    other = sample_image(store, tag="-other")
    fake.add_image("test/img", None, store, other)
    # The registry answers the request for ``real``'s digest with other bytes.
    fake.manifests[("test/img", real.digest)] = (other.manifest, other.descriptor["mediaType"])
    fake.digest_header = False
    ref = f"{fake.host}/test/img@{real.digest}"
    with pytest.raises(DigestMismatch, match=f"^{re.escape(ref)}: content is .* expected"):
        resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert blob_files(cache) == []


def test_lying_digest_header_is_refused(fake, store, cache, client):
    written = sample_image(store)
    fake.add_image("test/img", "1", store, written)
    fake.faults["/v2/test/img/manifests/1"] = [Reply(200, written.manifest, {
        "Content-Type": written.descriptor["mediaType"],
        "Docker-Content-Digest": "sha256:" + "0" * 64})]
    with pytest.raises(ComposerError, match="the registry says sha256:0000"):
        resolve_image(f"{fake.host}/test/img:1", cache=cache, arch="amd64", client=client)


def test_blob_redirect_to_another_host_drops_authorization(fake, store, cache, client):
    cdn = FakeRegistry()
    try:
        written = sample_image(store)
        fake.add_image("test/img", "1", store, written)
        cdn.blobs = dict(fake.blobs)
        fake.token = "s3cret"
        fake.redirect_blobs = f"http://localhost:{cdn.port}"
        image = resolve_image(f"{fake.host}/test/img:1", cache=cache, arch="amd64",
                              client=client)
        assert_image_complete(cache, image)
        assert len(cdn.paths("/blobs/")) == 3
        assert all("authorization" not in h for _, h in cdn.requests)
        blob_requests = [h for p, h in fake.requests if "/blobs/" in p]
        assert len(blob_requests) == 3
        assert all(h.get("authorization") == "Bearer s3cret" for h in blob_requests)
    finally:
        cdn.close()


def test_schema1_is_rejected(fake, cache, client):
    body = json.dumps({"schemaVersion": 1, "name": "test/img", "tag": "1",
                       "fsLayers": [], "history": [], "signatures": []}).encode()
    fake.add_manifest("test/img", "1", body,
                      "application/vnd.docker.distribution.manifest.v1+prettyjws")
    ref = f"{fake.host}/test/img:1"
    with pytest.raises(ComposerError, match="Docker schema 1 manifests are not supported"):
        resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert blob_files(cache) == []
    assert cache.lookup(ref) is None


# -- multi-platform ----------------------------------------------------------------------------


ATTESTATION = {
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:" + "1" * 64,
    "size": 100,
    "platform": {"architecture": "unknown", "os": "unknown"},
    "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": "sha256:" + "2" * 64},
}


@pytest.fixture
def two_platforms(fake, store):
    amd64 = sample_image(store, arch="amd64")
    arm64 = sample_image(store, arch="arm64", variant="v8")
    index = make_index(store, [amd64, arm64], extra=[ATTESTATION])
    fake.add_image("test/multi", None, store, amd64)
    fake.add_image("test/multi", None, store, arm64)
    fake.add_manifest("test/multi", "1", index.manifest, OCI_INDEX)
    return index, amd64, arm64


@pytest.mark.parametrize(("arch", "pick"), [("amd64", 1), ("arm64", 2), ("arm64/v8", 2)])
def test_index_platform_selection(fake, cache, client, two_platforms, arch, pick):
    index = two_platforms[0]
    chosen, other = two_platforms[pick], two_platforms[3 - pick]
    ref = f"{fake.host}/test/multi:1"
    image = resolve_image(ref, cache=cache, arch=arch, client=client)
    assert image.digest == chosen.digest
    assert image.index_digest == index.digest
    assert image.config["architecture"] == arch.split("/")[0]
    assert_image_complete(cache, image)
    # The index and the chosen manifest are stored, the other platform is not fetched.
    assert cache.has_blob(index.digest)
    assert not cache.has_blob(other.digest)
    assert cache.lookup(ref)["digest"] == index.digest
    assert cache.lookup(ref)["mediaType"] == OCI_INDEX
    assert not any(ATTESTATION["digest"] in p for p in fake.paths())


def test_index_without_the_platform(fake, cache, client, two_platforms):
    with pytest.raises(ComposerError) as info:
        resolve_image(f"{fake.host}/test/multi:1", cache=cache, arch="s390x", client=client)
    assert str(info.value) == (f"{fake.host}/test/multi:1: no linux/s390x image in the index "
                               "(it has: linux/amd64, linux/arm64/v8)")
    with pytest.raises(ComposerError, match="no linux/arm64/v7 image"):
        resolve_image(f"{fake.host}/test/multi:1", cache=cache, arch="arm64/v7", client=client)


def test_offline_second_platform_from_a_cached_index(fake, cache, client, two_platforms):
    ref = f"{fake.host}/test/multi:1"
    resolve_image(ref, cache=cache, arch="amd64", client=client)
    with pytest.raises(ComposerError, match=f"^{re.escape(ref)}: not in the cache \\(offline"):
        resolve_image(ref, cache=cache, arch="arm64", offline=True)
    fake.requests.clear()
    image = resolve_image(ref, cache=cache, arch="arm64", client=client)
    assert image.digest == two_platforms[2].digest
    assert not any("/manifests/1" in p for p in fake.paths())  # the cached index was used


def test_select_platform_rules():
    def desc(arch, variant=None, digest="a"):
        platform = {"os": "linux", "architecture": arch}
        if variant:
            platform["variant"] = variant
        return {"digest": "sha256:" + digest * 64, "size": 1, "platform": platform}

    arm = [desc("arm", "v6", "6"), desc("arm", "v7", "7")]
    assert select_platform(arm, "arm/v7", "x")["digest"].endswith("7")
    with pytest.raises(ComposerError, match=r"several images for linux/arm .*name a variant"):
        select_platform(arm, "arm", "x")
    assert select_platform([desc("arm64")], "arm64/v8", "x")["platform"]["architecture"] == "arm64"
    both = [desc("arm64", "v9", "9"), desc("arm64", "v8", "8")]
    assert select_platform(both, "arm64", "x")["digest"].endswith("8")  # the default variant
    windows = {**desc("amd64", None, "w"), "platform": {"os": "windows", "architecture": "amd64"}}
    with pytest.raises(ComposerError, match=r"it has: linux/arm64, windows/amd64"):
        select_platform([windows, desc("arm64")], "amd64", "x")


def test_docker_manifest_list_and_v2_manifest(fake, store, cache, client):
    layer = files_layer({"etc/hostname": "docker\n"})
    blob = gzip_bytes(layer)
    config = canonjson.compact({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    })
    manifest = canonjson.compact({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                   "digest": store.put_bytes(config)},
        "layers": [{"mediaType": DOCKER_LAYER_GZIP, "size": len(blob),
                    "digest": store.put_bytes(blob)}],
    })
    for data in (config, blob):
        fake.blobs["sha256:" + hashlib.sha256(data).hexdigest()] = data
    manifest_digest = fake.add_manifest("test/docker", None, manifest, DOCKER_MANIFEST)
    listing = canonjson.compact({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "size": len(manifest),
                       "digest": manifest_digest,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    list_digest = fake.add_manifest("test/docker", "1", listing, DOCKER_LIST)
    ref = f"{fake.host}/test/docker:1"
    image = resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert (image.digest, image.index_digest) == (manifest_digest, list_digest)
    assert [layer.media_type for layer in image.layers] == [DOCKER_LAYER_GZIP]
    assert cache.lookup(ref)["mediaType"] == DOCKER_LIST
    assert_image_complete(cache, image)


# -- offline --------------------------------------------------------------------------------


def test_offline_miss_names_the_ref_and_never_connects(fake, store, cache):
    written = sample_image(store)
    fake.add_image("test/img", "1", store, written)
    for ref in (f"{fake.host}/test/img:1", f"{fake.host}/test/img@{written.digest}"):
        with pytest.raises(ComposerError) as info:
            resolve_image(ref, cache=cache, arch="amd64", offline=True)
        assert info.value.lines() == [f"error: {ref}: not in the cache (offline)"]
    assert fake.requests == []


def test_offline_with_missing_layer(fake, store, cache, client):
    written = sample_image(store)
    fake.add_image("test/img", "1", store, written)
    ref = f"{fake.host}/test/img:1"
    image = resolve_image(ref, cache=cache, arch="amd64", client=client)
    cache.blob_path(image.layers[1].digest).unlink()
    with pytest.raises(ComposerError, match=f"^{re.escape(ref)}: not in the cache "
                                            f"\\(offline; missing layer {image.layers[1].digest}"):
        resolve_image(ref, cache=cache, arch="amd64", offline=True)
    # Online, only the missing layer is downloaded again.
    fake.requests.clear()
    assert resolve_image(ref, cache=cache, arch="amd64", client=client) == image
    assert fake.paths() == [f"/v2/test/img/blobs/{image.layers[1].digest}"]


# -- image checks ---------------------------------------------------------------------------


def _serve_manifest(fake, store, manifest: dict, tag: str = "1") -> str:
    data = canonjson.compact(manifest)
    for desc in [manifest["config"], *manifest["layers"]]:
        if store.has_blob(desc["digest"]):
            fake.blobs[desc["digest"]] = store.read_blob(desc["digest"])
    fake.add_manifest("test/odd", tag, data, manifest["mediaType"])
    return f"{fake.host}/test/odd:{tag}"


def test_foreign_layers_are_rejected(fake, store, cache, client):
    written = sample_image(store)
    manifest = canonjson.loads(written.manifest)
    manifest["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    ref = _serve_manifest(fake, store, manifest)
    with pytest.raises(ComposerError, match="foreign/non-distributable layer"):
        resolve_image(ref, cache=cache, arch="amd64", client=client)
    manifest["layers"][0]["mediaType"] = "application/x-unknown"
    ref = _serve_manifest(fake, store, manifest, "2")
    with pytest.raises(ComposerError, match="unsupported media type 'application/x-unknown'"):
        resolve_image(ref, cache=cache, arch="amd64", client=client)


def test_diff_ids_must_match_the_layers(fake, store, cache, client):
    layer = files_layer({"a": "a"})
    written = write_image(store, [layer, layer], raw_config={
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    })
    fake.add_image("test/img", "1", store, written)
    with pytest.raises(ComposerError, match="lists 1 diff_ids for 2 layers"):
        resolve_image(f"{fake.host}/test/img:1", cache=cache, arch="amd64", client=client)


def test_wrong_architecture_is_rejected(fake, store, cache, client):
    fake.add_image("test/img", "1", store, sample_image(store, arch="arm64"))
    with pytest.raises(ComposerError, match="image is for linux/arm64, not linux/amd64"):
        resolve_image(f"{fake.host}/test/img:1", cache=cache, arch="amd64", client=client)


def test_artifact_manifests_are_not_images(fake, store, cache, client):
    written = sample_image(store)
    manifest = canonjson.loads(written.manifest)
    manifest["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    ref = _serve_manifest(fake, store, manifest)
    with pytest.raises(ComposerError, match="not a container image"):
        resolve_image(ref, cache=cache, arch="amd64", client=client)


def test_parse_challenge():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/busybox:pull,push"}
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic",
                                                               {"realm": "Registry Realm"})


def test_network_errors_are_reduced_to_their_reason():
    tls = requests.exceptions.SSLError(
        "HTTPSConnectionPool(host='10.0.0.1', port=443): Max retries exceeded with url: /v2/ "
        "(Caused by SSLError(SSLCertVerificationError(1, \"[SSL: CERTIFICATE_VERIFY_FAILED] "
        "certificate verify failed: IP address mismatch, certificate is not valid for "
        "'10.0.0.1'. (_ssl.c:1006)\")))")
    assert _reason(tls) == ("certificate verify failed: IP address mismatch, certificate is not "
                            "valid for '10.0.0.1'.")
    dns = requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='x.invalid', port=443): Max retries exceeded with url: /v2/ "
        "(Caused by NameResolutionError(\"<urllib3.connection.HTTPSConnection object at 0x7f>: "
        "Failed to resolve 'x.invalid' ([Errno -2] Name or service not known)\"))")
    assert _reason(dns) == "Name or service not known"


# -- OCI image layouts --------------------------------------------------------------------------


def test_layout_by_tag_relative_to_base_dir(tmp_path, store, cache):
    written = sample_image(store)
    export_layout(store, written, tmp_path / "specs" / "images" / "base", "v1")
    image = resolve_image("oci:images/base:v1", cache=cache, arch="amd64",
                          base_dir=tmp_path / "specs")
    assert image.ref == "oci:images/base:v1"  # as written: no absolute path leaks into records
    assert image.digest == written.digest
    assert_image_complete(cache, image)
    assert cache.refs() == []  # a layout is its own store: nothing is tagged in the cache
    # Without a tag a single-image layout is unambiguous.
    untagged = resolve_image("oci:images/base", cache=cache, arch="amd64",
                             base_dir=tmp_path / "specs")
    assert (untagged.ref, untagged.digest) == ("oci:images/base", written.digest)


def test_layout_errors(tmp_path, store, cache):
    one, two = sample_image(store, tag="-1"), sample_image(store, tag="-2")
    export_layout(store, one, tmp_path / "lay", "one")
    export_layout(store, two, tmp_path / "lay", "two")
    with pytest.raises(ComposerError, match=r"layout holds 2 manifests; .*\(tags: one, two\)"):
        resolve_image("oci:lay", cache=cache, arch="amd64", base_dir=tmp_path)
    with pytest.raises(ComposerError, match=r"no manifest tagged 'three' .*\(tags: one, two\)"):
        resolve_image("oci:lay:three", cache=cache, arch="amd64", base_dir=tmp_path)
    with pytest.raises(ComposerError, match="not an OCI image layout"):
        resolve_image("oci:nowhere:one", cache=cache, arch="amd64", base_dir=tmp_path)
    assert resolve_image("oci:lay:two", cache=cache, arch="amd64",
                         base_dir=tmp_path).digest == two.digest


def test_corrupt_layout_blob_is_rejected(tmp_path, store, cache):
    written = sample_image(store)
    export_layout(store, written, tmp_path / "lay", "v1")
    layer = canonjson.loads(written.manifest)["layers"][0]["digest"]
    path = Cache(tmp_path / "lay").blob_path(layer)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(DigestMismatch, match=f"oci:lay:v1: layer {layer}: content is"):
        resolve_image("oci:lay:v1", cache=cache, arch="amd64", base_dir=tmp_path)
    assert layer.split(":")[1] not in blob_files(cache)
    assert_no_partial_files(cache)
    path.unlink()
    with pytest.raises(ComposerError, match=f"blob {layer} is missing from the layout"):
        resolve_image("oci:lay:v1", cache=cache, arch="amd64", base_dir=tmp_path)


def test_layout_with_an_index(tmp_path, store, cache):
    amd64 = sample_image(store, arch="amd64")
    arm64 = sample_image(store, arch="arm64")
    index = make_index(store, [amd64, arm64])
    export_index(store, index, [amd64, arm64], tmp_path / "lay", "multi")
    assert sorted(p.name for p in (tmp_path / "lay").iterdir()) == [
        "blobs", "index.json", "oci-layout"]
    for arch, want in (("amd64", amd64), ("arm64", arm64)):
        image = resolve_image("oci:lay:multi", cache=cache, arch=arch, base_dir=tmp_path)
        assert (image.digest, image.index_digest) == (want.digest, index.digest)
    # A layout copied elsewhere resolves to the same image: paths are not part of identity.
    shutil.copytree(tmp_path / "lay", tmp_path / "copy")
    other = Cache(tmp_path / "other-cache")
    assert resolve_image("oci:copy:multi", cache=other, arch="arm64",
                         base_dir=tmp_path).digest == arm64.digest


def test_layout_path_is_relative_to_base_dir_not_cwd(tmp_path, store, cache, monkeypatch):
    written = sample_image(store)
    export_layout(store, written, tmp_path / "a" / "lay", "v1")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    assert resolve_image("oci:lay:v1", cache=cache, arch="amd64",
                         base_dir=tmp_path / "a").digest == written.digest
    with pytest.raises(ComposerError, match="not an OCI image layout"):
        resolve_image("oci:lay:v1", cache=cache, arch="amd64")


def test_results_do_not_depend_on_download_order(fake, store, tmp_path, client):
    """Same image whichever layer finishes first (the fake serves them concurrently)."""
    layers = [files_layer({f"d{i}/f": str(i) * (1000 * (8 - i))}) for i in range(8)]
    written = write_image(store, layers)
    fake.add_image("test/img", "1", store, written)
    images = [resolve_image(f"{fake.host}/test/img:1", cache=Cache(tmp_path / f"c{i}"),
                            arch="amd64", client=client) for i in range(3)]
    assert images[0] == images[1] == images[2]
    assert [(layer.digest, layer.diff_id) for layer in images[0].layers] == [
        (d["digest"], diff) for d, diff in zip(
            canonjson.loads(written.manifest)["layers"],
            canonjson.loads(written.config)["rootfs"]["diff_ids"], strict=True)]
    assert all(sorted(p.name for p in (tmp_path / f"c{i}" / "blobs" / "sha256").iterdir())
               == blob_files(Cache(tmp_path / "c0")) for i in range(3))
