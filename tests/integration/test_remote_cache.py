"""The remote build cache against real registries: two builders with empty caches sharing one
registry, poisoned entries, racing builders, a registry killed mid-push, basic and token auth.

Builds are real ``image-composer build`` processes, each with its own empty cache directory;
the images come through a logging proxy, so a test can see that a builder pulled no layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from composer.cache.maintain import verify
from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from composer.repro import attest
from tests.integration.conftest import ProxyPlan, Registry, free_port, require_tool
from tests.unit.test_build import module_tar, tar_of

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FORMATS = "tar,kernel+initrd"


@pytest.fixture(scope="module")
def images(registry, tmp_path_factory) -> dict[str, object]:
    """kernel, init and an onboot image in the registry, and the digests of their layers."""
    base = tmp_path_factory.mktemp("remote-images")
    store = Cache(base / "store")
    content = {
        "kernel": [tar_of({"kernel": b"not really a bzImage", "kernel.tar": module_tar()})],
        "init": [tar_of({"init": b"#!/bin/sh\necho hi\n",
                         "blob": random.Random(7).randbytes(300_000)})],
        "hello": [tar_of({"bin/hello": b"#!/bin/sh\necho hello\n"})],
    }
    refs, layers = {}, set()
    for tag, tars in content.items():
        written = write_image(store, tars, config={"Cmd": ["/bin/hello"]})
        layers |= {d["digest"] for d in json.loads(written.manifest)["layers"]}
        export_layout(store, written, base / tag, "1")
        refs[tag] = registry.push_layout(base / tag, "1", f"remote/{tag}")
    return {"refs": refs, "layers": layers}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("remote-keys")
    return {"ci": attest.generate_key(base / "ci"),
            "p256": attest.generate_key(base / "p256", "ecdsa-p256"),
            "mallory": attest.generate_key(base / "mallory")}


def write_spec(path: Path, host: str, refs: dict[str, str]) -> Path:
    def via(ref: str) -> str:
        return host + ref[ref.index("/"):]

    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "motd").write_text("built once, shared by many\n")  # a host file: its
    # checkout's path must not matter to the key
    path.write_text(f"""\
kernel:
  image: {via(refs['kernel'])}
  cmdline: console=ttyS0
init:
  - {via(refs['init'])}
onboot:
  - name: hello
    image: {via(refs['hello'])}
files:
  - path: etc/motd
    source: motd
""")
    return path


def build(spec: Path, cache: Path, out: Path, *extra: str, env: dict | None = None,
          wait: bool = True, formats: str = FORMATS):
    argv = [sys.executable, "-m", "composer", "build", "-f", formats, "-o", str(out),
            "--cache", str(cache), *extra, str(spec)]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_COMPOSER_")}
    environ.update(env or {})
    if not wait:
        return subprocess.Popen(argv, cwd=spec.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=environ)
    return subprocess.run(argv, cwd=spec.parent, capture_output=True, text=True, check=False,
                          env=environ)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "composer", *args], capture_output=True,
                          text=True, check=False, cwd=ROOT, env={**os.environ, **(env or {})})


def outputs(directory: Path) -> dict[str, bytes]:
    """Every file but NAME.build-env.json (the machine's facts, and where hits came from)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.endswith(".build-env.json")}


def layer_gets(proxy, layers: set[str]) -> list[str]:
    return [p for p, _, status in proxy.plan.log
            if "/blobs/" in p and p.rsplit("/", 1)[-1] in layers]


def entries(repo: str, env: dict | None = None) -> list[list[str]]:
    listed = cli("cache", "remote", "ls", repo, env=env)
    assert listed.returncode == 0, listed.stderr
    return [line.split("\t") for line in listed.stdout.splitlines()]


def writer(repo: str, key: Path) -> tuple[str, ...]:
    return ("--cache-to", repo, "--cache-key", str(key))


def reader(repo: str, pub: Path) -> tuple[str, ...]:
    return ("--cache-from", repo, "--cache-trust", str(pub))


# -- two builders, one registry ---------------------------------------------------------------
def test_builder_b_gets_identical_outputs_and_pulls_no_layer(registry, images, keys,
                                                             proxy_for, tmp_path):
    proxy = proxy_for(registry, ProxyPlan())  # the images, as both builders see them
    repo = f"{registry.host}/ci/cache"
    key, pub = keys["ci"]
    # two checkouts in two places, two empty caches
    a = build(write_spec(tmp_path / "a" / "s.yml", proxy.host, images["refs"]),
              tmp_path / "cache-a", tmp_path / "out-a", *writer(repo, key))
    assert a.returncode == 0, a.stderr
    assert "published rootfs tar" in a.stderr and "published outputs kernel+initrd" in a.stderr
    assert layer_gets(proxy, images["layers"])  # A did the work
    proxy.plan.log.clear()
    spec_b = write_spec(tmp_path / "b" / "s.yml", proxy.host, images["refs"])
    b = build(spec_b, tmp_path / "cache-b", tmp_path / "out-b", *reader(repo, pub))
    assert b.returncode == 0, b.stderr
    assert b.stderr.count("from the remote cache") == 2, b.stderr
    # same bytes; the proxy in front of B's images saw no layer download, B's cache holds none
    assert outputs(tmp_path / "out-a") == outputs(tmp_path / "out-b")
    assert proxy.plan.log and layer_gets(proxy, images["layers"]) == []
    assert {p.name: p.stat().st_mode for p in (tmp_path / "out-a").iterdir()} == \
        {p.name: p.stat().st_mode for p in (tmp_path / "out-b").iterdir()}
    stored = {p.name for p in (tmp_path / "cache-b" / "blobs" / "sha256").iterdir()}
    assert not {d.split(":")[1] for d in images["layers"]} & stored
    # the record of where B's results came from, and who signed them
    env = json.loads((tmp_path / "out-b" / "s.build-env.json").read_bytes())
    got = env["remote_cache"]["entries"]
    assert {e["kind"] for e in got} == {"rootfs", "outputs"}
    kid = attest.key_id(attest.load_public_key(pub))
    assert {e["signer"] for e in got} == {kid} and {e["from"] for e in got} == {repo}
    assert "remote_cache" not in json.loads((tmp_path / "out-a" / "s.build-env.json")
                                            .read_bytes())
    # a rebuild on B is local now; the registry listing has one entry per result
    listed = entries(repo)
    assert sorted(row[1] for row in listed) == ["kernel+initrd", "tar"]
    assert all(row[4] == kid[:16] for row in listed)
    # an independent reader (skopeo) sees an OCI artifact
    raw = json.loads(registry.inspect_raw(f"{repo}:{listed[0][0]}"))
    assert raw["artifactType"] == "application/vnd.image-composer.cache.v1"
    assert raw["layers"][0]["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert all("org.opencontainers.image.title" in d["annotations"] for d in raw["layers"])
    assert verify(Cache(tmp_path / "cache-b")) == []


def test_environment_variables_configure_ci_builders(registry, images, keys, tmp_path):
    repo = f"{registry.host}/ci/env"
    key, pub = keys["p256"]  # and an ECDSA P-256 key, as the attestations take
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    env = {"IMAGE_COMPOSER_CACHE_TO": repo, "IMAGE_COMPOSER_CACHE_FROM": repo,
           "IMAGE_COMPOSER_CACHE_KEY": str(key), "IMAGE_COMPOSER_CACHE_TRUST": str(pub)}
    a = build(spec, tmp_path / "ca", tmp_path / "oa", env=env)
    assert a.returncode == 0 and "published rootfs" in a.stderr, a.stderr
    b = build(spec, tmp_path / "cb", tmp_path / "ob", env=env)
    assert b.returncode == 0 and "from the remote cache" in b.stderr, b.stderr
    assert "published" not in b.stderr  # the entries were there: nothing pushed again
    assert outputs(tmp_path / "oa") == outputs(tmp_path / "ob")


def test_without_a_trusted_key_remote_entries_are_ignored_with_a_note(registry, images, keys,
                                                                       tmp_path):
    repo = f"{registry.host}/ci/cache"
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    got = build(spec, tmp_path / "c", tmp_path / "o", "--cache-from", repo)
    assert got.returncode == 0, got.stderr
    notes = [line for line in got.stderr.splitlines() if "--cache-trust" in line]
    assert len(notes) == 1 and notes[0].startswith("note: ")
    assert "remote cache" not in got.stderr.replace(notes[0], "")


# -- poisoned entries ---------------------------------------------------------------------
def test_an_entry_signed_by_an_untrusted_key_is_rejected(registry, images, keys, tmp_path):
    repo = f"{registry.host}/ci/poison"
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    # mallory publishes for the right keys (her bytes happen to be honest; they still count
    # for nothing, since nobody trusts her)
    m = build(spec, tmp_path / "cm", tmp_path / "om", *writer(repo, keys["mallory"][0]))
    assert m.returncode == 0, m.stderr
    b = build(spec, tmp_path / "cb", tmp_path / "ob", *reader(repo, keys["ci"][1]))
    assert b.returncode == 0, b.stderr
    assert "signed by no trusted key" in b.stderr and "from the remote cache" not in b.stderr
    assert outputs(tmp_path / "om") == outputs(tmp_path / "ob")
    env = json.loads((tmp_path / "ob" / "s.build-env.json").read_bytes())
    assert "remote_cache" not in env
    required = build(spec, tmp_path / "cr", tmp_path / "or", *reader(repo, keys["ci"][1]),
                     "--cache-from-required")
    assert required.returncode == 1 and "signed by no trusted key" in required.stderr
    assert not (tmp_path / "or").exists() or not list((tmp_path / "or").iterdir())


def test_a_trusted_entry_whose_bytes_do_not_match_is_rejected(registry, images, keys,
                                                              tmp_path):
    repo = f"{registry.host}/ci/tamper"
    key, pub = keys["ci"]
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    a = build(spec, tmp_path / "ca", tmp_path / "oa", *writer(repo, key))
    assert a.returncode == 0, a.stderr
    rootfs = next(r for r in entries(repo) if r[1] == "tar")
    manifest = json.loads(registry.inspect_raw(f"{repo}:{rootfs[0]}"))
    tar = next(d for d in manifest["layers"]
               if d["annotations"]["org.opencontainers.image.title"] == "rootfs.tar")
    blob = registry.blob_file(tar["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the digest tells
    blob.write_bytes(bytes(data))
    try:
        b = build(spec, tmp_path / "cb", tmp_path / "ob", *reader(repo, pub), formats="tar")
        assert b.returncode == 0, b.stderr
        assert "rejected" in b.stderr and "expected" in b.stderr
        assert outputs(tmp_path / "oa")["s.tar"] == outputs(tmp_path / "ob")["s.tar"]
        assert verify(Cache(tmp_path / "cb")) == []
        assert not [p for p in (tmp_path / "cb" / "tmp").iterdir() if "remote" in p.name]
    finally:
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))


def test_a_builder_that_finds_every_output_fetches_no_rootfs(registry, images, keys, tmp_path):
    repo = f"{registry.host}/ci/lazy"
    key, pub = keys["ci"]
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    a = build(spec, tmp_path / "ca", tmp_path / "oa", *writer(repo, key))
    assert a.returncode == 0, a.stderr
    b = build(spec, tmp_path / "cb", tmp_path / "ob", *reader(repo, pub),
              formats="kernel+initrd")
    assert b.returncode == 0 and "tar not fetched" in b.stderr, b.stderr
    assert not list((tmp_path / "cb" / "rootfs").glob("*.tar"))
    made = outputs(tmp_path / "ob")
    assert {n: made[n] for n in ("s-kernel", "s-initrd.img", "s-cmdline")} == \
        {n: outputs(tmp_path / "oa")[n] for n in ("s-kernel", "s-initrd.img", "s-cmdline")}
    # the output entry's bytes spoilt after the check of its signature: the rootfs is fetched
    # after all and the initrd converted, with the same bytes
    initrd = next(r for r in entries(repo) if r[1] == "kernel+initrd")
    manifest = json.loads(registry.inspect_raw(f"{repo}:{initrd[0]}"))
    layer = next(d for d in manifest["layers"]
                 if d["annotations"]["org.opencontainers.image.title"] == "s-initrd.img")
    blob = registry.blob_file(layer["digest"])
    original = blob.read_bytes()
    blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        c = build(spec, tmp_path / "cc", tmp_path / "oc", *reader(repo, pub),
                  formats="kernel+initrd")
    finally:
        blob.write_bytes(original)
    assert c.returncode == 0, c.stderr
    assert "rejected" in c.stderr and list((tmp_path / "cc" / "rootfs").glob("*.tar"))
    assert outputs(tmp_path / "oc") == outputs(tmp_path / "ob")


# -- racing builders ----------------------------------------------------------------------
def test_four_builders_racing_on_one_key_publish_one_valid_entry(registry, images, keys,
                                                                 tmp_path):
    repo = f"{registry.host}/ci/race"
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    who = ["ci", "p256", "ci", "p256"]  # two signers too: either one's entry is valid
    procs = [build(spec, tmp_path / f"c{n}", tmp_path / f"o{n}", *writer(repo, keys[k][0]),
                   wait=False) for n, k in enumerate(who)]
    for proc in procs:
        _out, err = proc.communicate()
        assert proc.returncode == 0, err
    listed = entries(repo)
    assert sorted(row[1] for row in listed) == ["kernel+initrd", "tar"]  # one per key
    trust = tmp_path / "trusted"
    trust.mkdir()
    for k in ("ci", "p256"):
        (trust / f"{k}.pub").write_bytes(keys[k][1].read_bytes())
    fresh = build(spec, tmp_path / "cf", tmp_path / "of", "--cache-from", repo,
                  "--cache-trust", str(trust), "--cache-from-required")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stderr.count("from the remote cache") == 2
    for n in range(4):
        assert outputs(tmp_path / f"o{n}") == outputs(tmp_path / "of")


# -- a registry killed mid-push -----------------------------------------------------------
class _Forwarder:
    """Forwards every method to a registry; the first blob upload that completes (its PUT)
    kills the registry process instead (SIGKILL) and drops the connection."""

    def __init__(self, upstream: str, pid: int):
        self.killed = False
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and "/blobs/uploads/" in self.path and not me.killed:
                    me.killed = True
                    os.kill(pid, signal.SIGKILL)
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length")}
                try:
                    resp = requests.request(self.command, f"http://{upstream}{self.path}",
                                            headers=headers, data=body, allow_redirects=False,
                                            timeout=30)
                except requests.RequestException:
                    self.close_connection = True
                    return
                self.send_response(resp.status_code)
                for k in ("Content-Type", "Docker-Content-Digest", "Location", "Range",
                          "Docker-Upload-UUID", "WWW-Authenticate"):
                    if k in resp.headers:
                        location = resp.headers[k].replace(upstream, me.host)
                        self.send_header(k, location)
                data = b"" if self.command == "HEAD" else resp.content
                self.send_header("Content-Length", resp.headers.get("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def own_registry(storage: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A docker-registry of this test's own (so it can be killed) on ``storage``."""
    binary = require_tool("docker-registry")
    port = free_port()
    config = storage.parent / f"config-{port}.yml"
    config.write_text("version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {storage}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\n")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5).ok:
                    break
            except requests.ConnectionError:
                assert proc.poll() is None, "docker-registry exited"
        yield f"127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()


def test_a_registry_killed_mid_push_costs_a_warning_and_leaves_no_entry(registry, images, keys,
                                                                        tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    with own_registry(storage) as (host, proc):
        forward = _Forwarder(host, proc.pid)
        try:
            a = build(spec, tmp_path / "ca", tmp_path / "oa",
                      *writer(f"{forward.host}/ci/killed", keys["ci"][0]))
        finally:
            forward.close()
        assert forward.killed and proc.wait() == -signal.SIGKILL
    assert a.returncode == 0, a.stderr
    assert "warning: remote cache" in a.stderr and "not published" in a.stderr
    assert {"s.tar", "s-kernel", "s-initrd.img"} <= set(outputs(tmp_path / "oa"))
    assert verify(Cache(tmp_path / "ca")) == []
    # the same storage, served again: no entry is there to be used
    with own_registry(storage) as (host, _proc):
        assert entries(f"{host}/ci/killed") == []
        b = build(spec, tmp_path / "cb", tmp_path / "ob",
                  *reader(f"{host}/ci/killed", keys["ci"][1]), "--cache-from-required")
    assert b.returncode == 0, b.stderr
    assert "from the remote cache" not in b.stderr
    assert outputs(tmp_path / "oa") == outputs(tmp_path / "ob")


def test_a_registry_that_is_down_falls_back_to_building(registry, images, keys, tmp_path):
    dead = f"127.0.0.1:{free_port()}/ci/cache"
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    got = build(spec, tmp_path / "c", tmp_path / "o", *reader(dead, keys["ci"][1]),
                *writer(dead, keys["ci"][0]))
    assert got.returncode == 0, got.stderr
    warnings = [line for line in got.stderr.splitlines() if line.startswith("warning: remote")]
    assert len(warnings) == 2, got.stderr  # once reading, once publishing; not per entry
    required = build(spec, tmp_path / "c2", tmp_path / "o2", *reader(dead, keys["ci"][1]),
                     "--cache-from-required")
    assert required.returncode == 1
    assert required.stderr.strip().splitlines()[-1].startswith("error: remote cache ")


# -- authenticated registries -------------------------------------------------------------
def test_basic_auth_registry(registry, basic_registry: Registry, images, keys, tmp_path):
    repo = f"{basic_registry.host}/ci/cache"
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    anonymous = build(spec, tmp_path / "c0", tmp_path / "o0", *writer(repo, keys["ci"][0]),
                      env={"DOCKER_CONFIG": str(tmp_path / "none")})
    assert anonymous.returncode == 0 and "not published" in anonymous.stderr
    config = tmp_path / "docker"
    config.mkdir()
    user, password = basic_registry.creds or ("", "")
    import base64

    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {basic_registry.host:
                                                              {"auth": auth}}}))
    env = {"DOCKER_CONFIG": str(config)}
    a = build(spec, tmp_path / "ca", tmp_path / "oa", *writer(repo, keys["ci"][0]), env=env)
    assert a.returncode == 0 and "published rootfs" in a.stderr, a.stderr
    b = build(spec, tmp_path / "cb", tmp_path / "ob", *reader(repo, keys["ci"][1]), env=env)
    assert b.returncode == 0 and b.stderr.count("from the remote cache") == 2, b.stderr
    assert outputs(tmp_path / "oa") == outputs(tmp_path / "ob")
    assert len(entries(repo, env)) == 2
    removed = cli("cache", "remote", "rm", repo, entries(repo, env)[0][0], env=env)
    assert removed.returncode == 0, removed.stderr
    assert len(entries(repo, env)) == 1


def test_token_registry(registry, images, keys, proxy_for, tmp_path):
    repo_path = "ci/token"
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    a = build(spec, tmp_path / "ca", tmp_path / "oa",
              *writer(f"{registry.host}/{repo_path}", keys["ci"][0]))
    assert a.returncode == 0, a.stderr
    proxy = proxy_for(registry, ProxyPlan(token="s3cret"))  # Bearer tokens, read-only
    b = build(spec, tmp_path / "cb", tmp_path / "ob",
              *reader(f"{proxy.host}/{repo_path}", keys["ci"][1]), "--cache-from-required")
    assert b.returncode == 0 and b.stderr.count("from the remote cache") == 2, b.stderr
    assert any(path == "/token" and status == 200 for path, _, status in proxy.plan.log)
    assert outputs(tmp_path / "oa") == outputs(tmp_path / "ob")


def test_prune_by_age_and_size(registry, images, keys, tmp_path):
    repo = f"{registry.host}/ci/prune"
    spec = write_spec(tmp_path / "s.yml", registry.host, images["refs"])
    a = build(spec, tmp_path / "ca", tmp_path / "oa", *writer(repo, keys["ci"][0]))
    assert a.returncode == 0, a.stderr
    listed = entries(repo)
    assert len(listed) == 2
    kept = cli("cache", "remote", "prune", repo, "--older-than", "1d")
    assert kept.returncode == 0 and kept.stdout == "", kept.stderr
    small = min(int(r[2]) for r in listed)
    dry = cli("cache", "remote", "prune", repo, "--max-size", str(small), "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would remove"), dry.stderr
    assert len(entries(repo)) == 2
    gone = cli("cache", "remote", "prune", repo, "--max-size", "0")
    assert gone.returncode == 0 and gone.stdout.count("removed") == 2, gone.stderr
    assert entries(repo) == []
