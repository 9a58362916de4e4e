"""Pulling from Debian's real docker-registry behind basic auth, a token server and faults.

skopeo pushes the images (keeping their digests); our client pulls them back. The token server
and the fault injector are small proxies (tests/integration/conftest.py) in front of a real
registry, so every byte still comes from docker-registry.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from composer import canonjson, cli
from composer.cache.maintain import verify
from composer.errors import ComposerError
from composer.images.auth import credentials_from, docker_credentials
from composer.images.cache import Cache
from composer.images.registry import RegistryClient, RegistryError
from composer.images.resolve import default_client, resolve_image
from composer.images.write import export_layout
from composer.streams.digest import DigestMismatch
from tests.fixtures.images import blob_files, files_layer, make_image, sample_image
from tests.integration.conftest import ProxyPlan, non_loopback_address

pytestmark = pytest.mark.integration


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(registry, tmp_path, written, store, name: str, tag: str = "1") -> str:
    layout = tmp_path / f"layout-{name.replace('/', '-')}"
    export_layout(store, written, layout, tag)
    return registry.push_layout(layout, tag, name)


def assert_complete(cache: Cache, image) -> None:
    for layer in image.layers:
        assert sha256(cache.read_blob(layer.digest, layer.size)) == layer.digest
    assert verify(cache) == []
    assert list((cache.root / "tmp").iterdir()) == []


def test_basic_auth_with_credentials_from_docker_config(basic_registry, tmp_path, capsys):
    store = Cache(tmp_path / "store")
    written = sample_image(store)
    ref = push(basic_registry, tmp_path, written, store, "auth/app")
    user, password = basic_registry.creds

    # no credentials: one clear line naming the registry
    anonymous = RegistryClient(credentials=lambda _host: None)
    with pytest.raises(RegistryError) as info:
        resolve_image(ref, cache=Cache(tmp_path / "c0"), arch="amd64", client=anonymous)
    assert info.value.lines() == [
        f"error: {ref}: authentication required (401 from http://{basic_registry.host}/v2/"
        f"auth/app/manifests/1); no credentials for {basic_registry.host} (docker login, "
        "or docker config.json)"]

    # wrong credentials
    wrong = credentials_from({"auths": {basic_registry.host: {"username": user,
                                                              "password": "nope"}}},
                             tmp_path / "config.json")
    with pytest.raises(RegistryError, match="were refused"):
        resolve_image(ref, cache=Cache(tmp_path / "c1"), arch="amd64",
                      client=RegistryClient(credentials=wrong))

    # the docker config the way `docker login` writes it, read through the CLI's default client
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps(
        {"auths": {f"http://{basic_registry.host}/v1/": {"auth": auth}}}))
    cache = Cache(tmp_path / "cache")
    client = RegistryClient(credentials=docker_credentials({"DOCKER_CONFIG": str(config)}))
    image = resolve_image(ref, cache=cache, arch="amd64", client=client)
    assert image.digest == written.digest == sha256(basic_registry.inspect_raw(ref))
    assert_complete(cache, image)


def test_lock_command_reads_the_docker_config(basic_registry, tmp_path, monkeypatch, capsys):
    store = Cache(tmp_path / "store")
    written = sample_image(store, tag="-lock")
    ref = push(basic_registry, tmp_path, written, store, "auth/locked")
    user, password = basic_registry.creds
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps(
        {"auths": {basic_registry.host: {"username": user, "password": password}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    spec = tmp_path / "s.yml"
    spec.write_text(f"init:\n  - {ref}\n")
    assert cli.main(["lock", "-q", "--arch", "amd64", "--cache", str(tmp_path / "cache"),
                     str(spec)]) == 0
    lock = json.loads((tmp_path / "s.lock").read_text())
    assert lock["images"] == {ref: {"amd64": {"digest": written.digest}}}


def test_token_server_in_front(registry, proxy_for, tmp_path):
    store = Cache(tmp_path / "store")
    written = sample_image(store, tag="-token")
    push(registry, tmp_path, written, store, "tok/app")
    plan = ProxyPlan(token="tok-123")
    proxy = proxy_for(registry, plan)
    ref = f"{proxy.host}/tok/app:1"
    cache = Cache(tmp_path / "cache")
    image = resolve_image(ref, cache=cache, arch="amd64",
                          client=RegistryClient(credentials=lambda _h: None))
    assert image.digest == written.digest
    assert_complete(cache, image)
    token_requests = [entry for entry in plan.log if entry[0] == "/token"]
    assert token_requests == [("/token", "", 200)]  # one token, reused for every blob
    served = [entry for entry in plan.log if entry[0] != "/token" and entry[2] == 200]
    assert served and all(auth == "Bearer tok-123" for _, auth, _ in served)


def test_token_server_wanting_credentials(registry, proxy_for, tmp_path):
    store = Cache(tmp_path / "store")
    written = sample_image(store, tag="-tokauth")
    push(registry, tmp_path, written, store, "tok/private")
    plan = ProxyPlan(token="tok-456", token_creds=("bob", "hunter2"))
    proxy = proxy_for(registry, plan)
    ref = f"{proxy.host}/tok/private:1"
    with pytest.raises(RegistryError, match=r"token request failed: bad credentials \(401"):
        resolve_image(ref, cache=Cache(tmp_path / "c0"), arch="amd64",
                      client=RegistryClient(credentials=lambda _h: None))
    creds = credentials_from({"auths": {proxy.host: {"username": "bob",
                                                     "password": "hunter2"}}},
                             tmp_path / "config.json")
    cache = Cache(tmp_path / "cache")
    image = resolve_image(ref, cache=cache, arch="amd64",
                          client=RegistryClient(credentials=creds))
    assert image.digest == written.digest
    expected = "Basic " + base64.b64encode(b"bob:hunter2").decode()
    assert ("/token", expected, 200) in plan.log


def test_faults_500s_and_dropped_connections_still_complete(registry, proxy_for, tmp_path):
    store = Cache(tmp_path / "store")
    layers = [files_layer({f"data/{n}": bytes(range(256)) * (300 + 97 * n)}) for n in range(6)]
    written = make_image(store, layers)
    push(registry, tmp_path, written, store, "faulty/app")
    plan = ProxyPlan(faults=True)
    proxy = proxy_for(registry, plan)
    sleeps: list[float] = []
    client = RegistryClient(sleep=sleeps.append)
    cache = Cache(tmp_path / "cache")
    image = resolve_image(f"{proxy.host}/faulty/app:1", cache=cache, arch="amd64",
                          client=client)
    assert image.digest == written.digest
    assert_complete(cache, image)
    statuses = [status for _, _, status in plan.log]
    assert 500 in statuses and -1 in statuses  # both kinds of fault really happened
    assert sleeps  # and were retried with backoff
    cut = [p for p, n in plan.attempts.items() if n == 3 and "/blobs/" in p]
    assert cut  # a blob cut short twice was fetched a third time


def test_tampered_blob_is_rejected_and_not_cached(registry, tmp_path):
    store = Cache(tmp_path / "store")
    written = make_image(store, [files_layer({"etc/tamper": "original content\n"})])
    ref = push(registry, tmp_path, written, store, "tamper/app")
    layer = canonjson.loads(written.manifest)["layers"][0]["digest"]
    data = bytearray(registry.blob_file(layer).read_bytes())
    data[len(data) // 2] ^= 0x01
    registry.blob_file(layer).write_bytes(bytes(data))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(DigestMismatch) as info:
        resolve_image(ref, cache=cache, arch="amd64", client=RegistryClient())
    (line,) = info.value.lines()
    assert line.startswith(f"error: {ref}: layer {layer}: content is sha256:")
    assert line.endswith(f", expected {layer}")
    assert layer[7:] not in blob_files(cache)
    assert cache.lookup(ref) is None
    assert list((cache.root / "tmp").iterdir()) == []
    with pytest.raises(ComposerError, match="offline"):
        resolve_image(ref, cache=cache, arch="amd64", offline=True)


def test_insecure_registry_beyond_loopback(registry, proxy_for, tmp_path):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    store = Cache(tmp_path / "store")
    written = sample_image(store, tag="-insecure")
    push(registry, tmp_path, written, store, "plain/app")
    proxy = proxy_for(registry, ProxyPlan(), bind=address)
    ref = f"{proxy.host}/plain/app:1"
    # without --insecure-registry a non-loopback registry is only ever spoken to over TLS
    with pytest.raises(RegistryError, match=f"TLS error talking to {proxy.host}|"
                                            f"cannot connect to {proxy.host}"):
        resolve_image(ref, cache=Cache(tmp_path / "c0"), arch="amd64",
                      client=RegistryClient(retries=0))
    assert proxy.plan.log == []
    image = resolve_image(ref, cache=Cache(tmp_path / "cache"), arch="amd64",
                          client=default_client({proxy.host}))
    assert image.digest == written.digest
