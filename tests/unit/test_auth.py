"""Credentials from docker's config.json and credential helpers, and their use by the client."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from composer.errors import ComposerError
from composer.images.auth import (
    DOCKER_HUB_KEY,
    config_path,
    credentials_from,
    docker_credentials,
    run_helper,
)
from composer.images.cache import Cache
from composer.images.registry import RegistryClient, RegistryError
from composer.images.resolve import resolve_image
from composer.oci.refs import parse_ref
from tests.fixtures.images import sample_image
from tests.unit.test_registry_unit import FakeRegistry, Reply


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_config_path_prefers_docker_config(tmp_path):
    assert config_path({"DOCKER_CONFIG": str(tmp_path), "HOME": "/nowhere"}) == \
        tmp_path / "config.json"
    assert config_path({"HOME": str(tmp_path)}) == tmp_path / ".docker" / "config.json"


def test_inline_auths_by_every_spelling_of_a_host(tmp_path):
    config = {"auths": {
        DOCKER_HUB_KEY: {"auth": b64("hubuser:hub:pass")},
        "https://reg.example:5000/v1/": {"auth": b64("a:b")},
        "other.example": {"username": "u", "password": "p"},
        "empty.example": {},
    }}
    creds = credentials_from(config, tmp_path / "config.json")
    assert creds("docker.io") == ("hubuser", "hub:pass")  # password keeps its colons
    assert creds("reg.example:5000") == ("a", "b")
    assert creds("REG.example:5000") == ("a", "b")
    assert creds("other.example") == ("u", "p")
    assert creds("empty.example") is None
    assert creds("unknown.example") is None


def test_malformed_auth_is_an_error_naming_the_file(tmp_path):
    creds = credentials_from({"auths": {"r.example": {"auth": "!!!"}}}, tmp_path / "c.json")
    with pytest.raises(ComposerError, match=r"c.json: auths\['r.example'\]: malformed auth"):
        creds("r.example")


def test_helpers_take_precedence_and_store_is_the_fallback(tmp_path):
    calls = []

    def helper(name, server):
        calls.append((name, server))
        return (f"{name}-user", "secret") if name != "empty" else None

    config = {"credHelpers": {"gcr.example": "gcr", "none.example": "empty"},
              "credsStore": "desktop",
              "auths": {"gcr.example": {"auth": b64("inline:x")},
                        "inline.example": {"auth": b64("inline:y")}}}
    creds = credentials_from(config, tmp_path / "config.json", helper)
    assert creds("gcr.example") == ("gcr-user", "secret")
    assert creds("inline.example") == ("inline", "y")
    assert creds("docker.io") == ("desktop-user", "secret")
    assert creds("none.example") is None
    assert calls == [("gcr", "gcr.example"), ("desktop", DOCKER_HUB_KEY),
                     ("empty", "none.example")]


def test_broken_config_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ComposerError, match=r"config\.json: not valid JSON"):
        docker_credentials({"DOCKER_CONFIG": str(tmp_path)})
    assert docker_credentials({"DOCKER_CONFIG": str(tmp_path / "none")})("x.example") is None


@pytest.fixture
def helper_on_path(tmp_path, monkeypatch):
    """A real ``docker-credential-fake`` program: answers from a JSON file by server URL."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-fake"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "assert sys.argv[1:] == ['get'], sys.argv\n"
        "server = sys.stdin.read().strip()\n"
        f"table = json.load(open({str(tmp_path / 'table.json')!r}))\n"
        "if server not in table:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "print(json.dumps({'ServerURL': server, 'Username': table[server][0],"
        " 'Secret': table[server][1]}))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "table.json").write_text(json.dumps({
        DOCKER_HUB_KEY: ["hub", "hubsecret"], "r.example:5000": ["me", "s3cret"]}))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_real_helper_program(helper_on_path):
    assert run_helper("fake", "r.example:5000") == ("me", "s3cret")
    assert run_helper("fake", DOCKER_HUB_KEY) == ("hub", "hubsecret")
    assert run_helper("fake", "unknown.example") is None
    with pytest.raises(ComposerError, match="docker-credential-missing not found"):
        run_helper("missing", "r.example")
    config = helper_on_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    creds = docker_credentials({"DOCKER_CONFIG": str(config)})
    assert creds("docker.io") == ("hub", "hubsecret")


# -- the client answering challenges with credentials -----------------------------------------
@pytest.fixture
def fake():
    registry = FakeRegistry()
    yield registry
    registry.close()


def test_basic_challenge_answered_with_configured_credentials(fake, tmp_path):
    store = Cache(tmp_path / "store")
    written = sample_image(store)
    fake.add_image("team/app", "1", store, written)
    challenge = {"WWW-Authenticate": 'Basic realm="registry"'}
    fake.faults["/v2/team/app/manifests/1"] = [Reply(401, b"", challenge)]
    creds = credentials_from({"auths": {fake.host: {"auth": b64("alice:pw")}}},
                             tmp_path / "config.json")
    client = RegistryClient(credentials=creds, sleep=lambda _s: None)
    image = resolve_image(f"{fake.host}/team/app:1", cache=Cache(tmp_path / "cache"),
                          arch="amd64", client=client)
    assert image.digest == written.digest
    sent = [h.get("authorization") for p, h in fake.requests if p.endswith("/manifests/1")]
    assert sent == [None, "Basic " + b64("alice:pw")]


def test_basic_challenge_without_credentials_says_how_to_log_in(fake, tmp_path):
    fake.faults["/v2/team/app/manifests/1"] = [
        Reply(401, b"", {"WWW-Authenticate": 'Basic realm="registry"'})]
    client = RegistryClient(credentials=lambda _host: None, sleep=lambda _s: None)
    with pytest.raises(RegistryError, match=rf"no credentials for {fake.host} \(docker login"):
        client.get_manifest(parse_ref(f"{fake.host}/team/app:1"), "1")


def test_insecure_registry_uses_plain_http():
    ref = parse_ref("reg.example:5000/a/b:1")
    assert RegistryClient().repo_url(ref).startswith("https://reg.example:5000/")
    assert RegistryClient(insecure={"reg.example:5000"}).repo_url(ref) == \
        "http://reg.example:5000/v2/a/b"
    assert RegistryClient(insecure={"other:5000"}).repo_url(ref).startswith("https://")
