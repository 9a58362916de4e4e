"""A planted registry password never leaks: not in stderr (even with --debug), not in outputs,
the build record, the SBOM or the cache, whether the registry accepts it or refuses it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from composer import canonjson
from composer.images.cache import Cache
from composer.images.write import write_image
from tests.unit.test_build import tar_of

PASSWORD = "PlantedSecret-7f3a9c"
USER = "robot"


class AuthRegistry:
    """Serves one image at /v2/demo/app, only to Basic ``USER:accepted``."""

    def __init__(self, accepted: str, blobs: dict[str, bytes], manifest: bytes):
        expected = "Basic " + base64.b64encode(f"{USER}:{accepted}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/v2/demo/app/manifests/1":
                    body, ctype = manifest, "application/vnd.oci.image.manifest.v1+json"
                elif self.path.startswith("/v2/demo/app/blobs/"):
                    body, ctype = blobs[self.path.rsplit("/", 1)[1]], "application/octet-stream"
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image(tmp_path):
    store = Cache(tmp_path / "store")
    written = write_image(store, [tar_of({"bin/app": b"#!/bin/sh\n"})])
    manifest = canonjson.loads(written.manifest)
    blobs = {d["digest"]: store.read_blob(d["digest"])
             for d in [manifest["config"], *manifest["layers"]]}
    return blobs, written.manifest


def run_build(tmp_path: Path, registry: AuthRegistry) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    spec = tmp_path / "s.yml"
    spec.write_text(f"init:\n  - {registry.host}/demo/app:1\n")
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "composer", "--debug", "build", "-f", "tar,kernel+initrd", "-o",
         str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), str(spec)],
        env=env, capture_output=True, text=True, check=False)


def leaks(tmp_path: Path, proc: subprocess.CompletedProcess[str]) -> list[str]:
    forms = [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    found = [f"stream:{form}" for form in forms if form in proc.stdout + proc.stderr]
    for where in ("out", "cache"):
        for path in sorted((tmp_path / where).rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path}:{form}" for form in forms if form.encode() in data]
    return found


def test_accepted_password_never_reaches_outputs_record_or_cache(tmp_path, image):
    registry = AuthRegistry(PASSWORD, *image)
    try:
        proc = run_build(tmp_path, registry)
    finally:
        registry.close()
    assert proc.returncode == 1  # no kernel for kernel+initrd: the build runs, then fails
    assert "kernel" in proc.stderr
    registry = AuthRegistry(PASSWORD, *image)
    try:
        ok = subprocess.run(
            [sys.executable, "-m", "composer", "--debug", "build", "-f", "tar", "-o",
             str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
             str(tmp_path / "s.yml")],
            env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker")},
            capture_output=True, text=True, check=False)
    finally:
        registry.close()
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "s.build.json").is_file()
    assert leaks(tmp_path, proc) == [] and leaks(tmp_path, ok) == []


def test_refused_password_is_not_echoed_even_with_debug(tmp_path, image):
    registry = AuthRegistry("the-real-password", *image)
    try:
        proc = run_build(tmp_path, registry)
    finally:
        registry.close()
    assert proc.returncode == 1
    assert "refused" in proc.stderr  # it says what went wrong, without saying the secret
    assert leaks(tmp_path, proc) == []


def test_the_leak_detector_itself_finds_a_leak(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.json").write_text(f"token {PASSWORD}")
    fake = subprocess.CompletedProcess([], 1, "", base64.b64encode(
        f"{USER}:{PASSWORD}".encode()).decode())
    assert len(leaks(tmp_path, fake)) == 2
