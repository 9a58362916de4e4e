"""Shared fixtures for integration tests: real services and tools, started here, stopped here.

A tool that is missing makes its tests fail when ``CI=true`` (the CI installs everything, so a
skip there would hide a broken setup) and skip otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from composer import tools

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def require_tool(name: str, package: str | None = None) -> str:
    """The tool's path; fail under CI=true, skip otherwise, when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {package or name})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def debs_dir() -> Path:
    """examples/debs/ with every pinned .deb, fetched with apt-get download if missing."""
    require_tool("apt-get", "apt")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "fetch-debs")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return EXAMPLES / "debs"


@pytest.fixture(scope="session")
def example_packages(debs_dir: Path, tmp_path_factory) -> dict:
    """examples/packages/{kernel,init,hello} built once per test session into one cache:
    name -> (cache, PackageResult). The kernel alone takes about 10 s to build."""
    from composer.epoch import Epoch
    from composer.images.cache import Cache
    from composer.pkg import build as pkg

    cache = Cache(tmp_path_factory.mktemp("example-packages"))
    return {name: (cache, pkg.build_package(EXAMPLES / "packages" / name, cache,
                                            epoch=Epoch(None), arch="amd64",
                                            debs_dir=debs_dir, layout=None))
            for name in ("kernel", "init", "hello")}


TWO_ARCH = ("amd64", "arm64")
TWO_ARCH_PACKAGES = ("hello", "kernel", "rcinit", "runc")


@pytest.fixture(scope="session")
def two_arch_packages(debs_dir: Path, tmp_path_factory) -> dict:
    """examples/packages/{hello,kernel,rcinit,runc} built for amd64 and arm64 at once (each
    tag a two-platform index) into one cache, as ``pkg build --arch amd64,arm64`` does:
    name -> (cache, PackageResult). Every arm64 test shares it (about 40 s here)."""
    from composer.epoch import Epoch
    from composer.images.cache import Cache
    from composer.pkg import build as pkg

    cache = Cache(tmp_path_factory.mktemp("two-arch-packages"))
    return {name: (cache, pkg.build_package(EXAMPLES / "packages" / name, cache,
                                            epoch=Epoch(None), arch=TWO_ARCH,
                                            debs_dir=debs_dir, layout=None))
            for name in TWO_ARCH_PACKAGES}


@dataclass(frozen=True)
class Registry:
    """A running Debian ``docker-registry`` on loopback (plain HTTP)."""

    host: str  # 127.0.0.1:PORT, the registry part of refs
    root: Path  # its storage directory
    creds: tuple[str, str] | None = None  # htpasswd user and password, if it wants them

    def push_layout(self, layout: Path, tag: str, name: str, *, all_images: bool = False,
                    manifest_format: str | None = None) -> str:
        """Push ``oci:LAYOUT:TAG`` with skopeo as ``NAME:TAG``; returns the pushed ref."""
        skopeo = require_tool("skopeo")
        ref = f"{self.host}/{name}:{tag}"
        argv = [skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        if self.creds:
            argv.append(f"--dest-creds={self.creds[0]}:{self.creds[1]}")
        if manifest_format:
            argv += ["--format", manifest_format]
        else:
            argv.append("--preserve-digests")  # what we wrote is what the registry serves
        if all_images:
            argv.append("--all")
        tools.run([*argv, f"oci:{layout}:{tag}", f"docker://{ref}"], capture=True)
        return ref

    def inspect_raw(self, ref: str) -> bytes:
        """The manifest bytes skopeo gets for ``ref`` (an independent client, as an oracle)."""
        skopeo = require_tool("skopeo")
        creds = [f"--creds={self.creds[0]}:{self.creds[1]}"] if self.creds else []
        return tools.run([skopeo, "--insecure-policy", "inspect", "--raw", "--tls-verify=false",
                          *creds, f"docker://{ref}"], capture=True).stdout

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (filesystem driver), for tampering tests."""
        hexpart = digest.split(":", 1)[1]
        return (self.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexpart[:2]
                / hexpart / "data")


def _wait_until_serving(proc: subprocess.Popen, url: str, log: Path,
                        ready: tuple[int, ...] = (200,), verify: str | bool = True) -> None:
    """Poll ``/v2/`` until the registry answers; fail if it exits first."""
    while True:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited with {proc.returncode}: "
                        f"{log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(url, timeout=5, verify=verify).status_code in ready:
                return
        except requests.ConnectionError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.1)


@contextlib.contextmanager
def _run_registry(base: Path, extra_config: str = "",
                  creds: tuple[str, str] | None = None,
                  tls: CertAuthority | None = None) -> Iterator[Registry]:
    binary = require_tool("docker-registry")
    require_tool("skopeo")
    storage = base / "storage"
    storage.mkdir()
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}"
        + (f", tls: {{certificate: {tls.cert}, key: {tls.key}}}" if tls else "")
        + "}\n" + extra_config
    )
    log = base / "registry.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log_fh,
                                stderr=subprocess.STDOUT, env=tools.tool_env())
    try:
        scheme = "https" if tls else "http"
        _wait_until_serving(proc, f"{scheme}://127.0.0.1:{port}/v2/", log,
                            (401,) if creds else (200,), str(tls.ca) if tls else True)
        yield Registry(f"127.0.0.1:{port}", storage, creds)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry on a free loopback port for the whole session."""
    with _run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry demanding HTTP basic auth, checked against an htpasswd file (bcrypt)."""
    htpasswd = require_tool("htpasswd", "apache2-utils")
    base = tmp_path_factory.mktemp("basic-registry")
    user, password = "composer", "pa:ss word"
    entry = tools.run([htpasswd, "-Bbn", user, password], capture=True).stdout
    assert entry.startswith(b"composer:$2y$"), entry  # bcrypt, not the weaker defaults
    (base / "htpasswd").write_bytes(entry)
    extra = f"auth: {{htpasswd: {{realm: test, path: {base / 'htpasswd'}}}}}\n"
    with _run_registry(base, extra, (user, password)) as running:
        yield running


@dataclass(frozen=True)
class CertAuthority:
    """A throwaway certificate authority and a server certificate it signed for 127.0.0.1."""

    ca: Path  # the CA certificate (PEM): what --cert-file is given
    cert: Path  # the server's certificate (PEM)
    key: Path  # the server's private key (PEM)


def make_test_ca(directory: Path) -> CertAuthority:
    """A CA and a 127.0.0.1/localhost server certificate, made with ``cryptography``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "image-composer test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = CertAuthority(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return out


@dataclass(frozen=True)
class TLSRegistry:
    """A docker-registry speaking only HTTPS, with a certificate from a test CA."""

    registry: Registry
    ca: CertAuthority


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    """Debian's docker-registry on loopback over TLS (a certificate no system trusts)."""
    base = tmp_path_factory.mktemp("tls-registry")
    ca = make_test_ca(base)
    with _run_registry(base, tls=ca) as running:
        yield TLSRegistry(running, ca)


# -- proxies: bearer tokens and faults in front of a real registry ----------------------------
@dataclass
class ProxyPlan:
    """What a proxy does to each request; per path, so every request eventually succeeds."""

    token: str | None = None  # require ``Bearer token`` (issued at /token)
    token_creds: tuple[str, str] | None = None  # /token wants these via basic auth
    faults: bool = False  # 500s and dropped connections on first attempts
    delay: float = 0.0  # seconds slept per 16 KiB of body (to make pulls slow)
    attempts: dict[str, int] = field(default_factory=dict)
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (path, auth, status)


class Proxy:
    """A loopback HTTP proxy for the registry API, with a token server and fault injection."""

    def __init__(self, upstream: str, plan: ProxyPlan, bind: str = "127.0.0.1"):
        self.plan = plan
        self.upstream = upstream
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                proxy.handle(self)

        self.server = ThreadingHTTPServer((bind, 0), Handler)
        self.server.daemon_threads = True
        self.host = f"{bind}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
              headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        plan = self.plan
        parts = urlsplit(handler.path)
        auth = handler.headers.get("Authorization") or ""
        if parts.path == "/token":
            if plan.token_creds:
                user, password = plan.token_creds
                want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                if auth != want:
                    plan.log.append((parts.path, auth, 401))
                    self._send(handler, 401, b'{"errors":[{"code":"DENIED",'
                               b'"message":"bad credentials"}]}',
                               {"Content-Type": "application/json"})
                    return
            query = parse_qs(parts.query)
            ok = query.get("service") == ["test"] and query.get("scope", [""])[0].endswith(":pull")
            plan.log.append((parts.path, auth, 200 if ok else 400))
            body = json.dumps({"token": plan.token}).encode() if ok else b"{}"
            self._send(handler, 200 if ok else 400, body, {"Content-Type": "application/json"})
            return
        if plan.token and auth != f"Bearer {plan.token}":
            repo = parts.path.removeprefix("/v2/").rsplit("/", 2)[0]
            challenge = (f'Bearer realm="http://{self.host}/token",service="test",'
                         f'scope="repository:{repo}:pull"')
            plan.log.append((parts.path, auth, 401))
            self._send(handler, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}',
                       {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
            return
        with self.lock:
            attempt = plan.attempts.get(parts.path, 0)
            # the fault a path gets rotates with the order paths are first seen in
            kind = list(plan.attempts).index(parts.path) % 4 if attempt else len(plan.attempts) % 4
            plan.attempts[parts.path] = attempt + 1
        if plan.faults and parts.path != "/v2/" and attempt == 0 and kind == 0:
            plan.log.append((parts.path, auth, 500))
            self._send(handler, 500, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
            return
        if plan.faults and parts.path != "/v2/" and attempt == 0 and kind == 1:
            plan.log.append((parts.path, auth, -1))  # connection dropped, no answer
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() in ("accept", "user-agent")}
        with requests.get(f"http://{self.upstream}{handler.path}", headers=headers,
                          stream=True, allow_redirects=False, timeout=60) as resp:
            plan.log.append((parts.path, auth, resp.status_code))
            body_cut = plan.faults and attempt <= 1 and kind == 2 and "/blobs/" in parts.path
            handler.send_response(resp.status_code)
            for key in ("Content-Type", "Docker-Content-Digest", "Content-Length", "Location",
                        "WWW-Authenticate"):
                if key in resp.headers:
                    handler.send_header(key, resp.headers[key])
            handler.end_headers()
            sent = 0
            for chunk in resp.raw.stream(16384, decode_content=False):
                if body_cut and sent + len(chunk) > int(resp.headers.get("Content-Length",
                                                                         0)) // 2:
                    handler.wfile.write(chunk[: max(0, len(chunk) // 2)])
                    handler.close_connection = True
                    handler.wfile.flush()
                    handler.connection.shutdown(socket.SHUT_RDWR)
                    return
                handler.wfile.write(chunk)
                sent += len(chunk)
                if plan.delay:
                    time.sleep(plan.delay)


@pytest.fixture
def proxy_for() -> Iterator[Callable[..., Proxy]]:
    """``proxy_for(registry, plan, bind=ADDR)``: a proxy in front of ``registry`` listening on
    ADDR (default loopback); closed after the test."""
    started: list[Proxy] = []

    def start(upstream: Registry, plan: ProxyPlan, bind: str = "127.0.0.1") -> Proxy:
        proxy = Proxy(upstream.host, plan, bind)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


# -- a private Docker engine -------------------------------------------------------------------
@dataclass(frozen=True)
class Docker:
    host: str  # unix:///.../sock

    def run(self, *args: str) -> str:
        docker = require_tool("docker", "docker.io")
        env = {**tools.tool_env(), "DOCKER_HOST": self.host}
        result = subprocess.run([docker, *args], capture_output=True, env=env, check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout.decode()


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Docker]:
    """A private dockerd (vfs storage, no networking, its own roots) started for the session."""
    binary = require_tool("dockerd", "docker.io")
    require_tool("docker", "docker.io")
    base = Path(tempfile.mkdtemp(prefix="dk", dir="/tmp"))  # unix socket paths must be short
    sock = base / "docker.sock"
    log = base / "log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(
            [binary, "--storage-driver", "vfs", "--iptables=false", "--ip6tables=false",
             "--bridge=none", "--data-root", str(base / "data"), "--exec-root",
             str(base / "exec"), "--pidfile", str(base / "pid"), "-H", f"unix://{sock}"],
            stdout=log_fh, stderr=subprocess.STDOUT)
    try:
        import docker

        while True:
            if proc.poll() is not None:
                pytest.fail(f"dockerd exited with {proc.returncode}: "
                            f"{log.read_text(errors='replace')[-2000:]}")
            if sock.exists():
                with contextlib.suppress(Exception):
                    client = docker.DockerClient(base_url=f"unix://{sock}")
                    client.ping()
                    client.close()
                    break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        yield Docker(f"unix://{sock}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", "-R", str(base)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def banner_lines(console: list[str], expected: list[str]) -> list[str]:
    """The expected console lines, in the order they appear. A line counts when it *ends* with
    one: firmware output without a newline (SeaBIOS's "Booting from ROM..", with the kernel
    quiet) can share the serial line with the first thing init prints."""
    return [want for line in console for want in expected if line.endswith(want)]
