"""Shared fixtures for integration tests: real services and tools, started here, stopped here.

A tool that is missing makes its tests fail when ``CI=true`` (the CI installs everything, so a
skip there would hide a broken setup) and skip otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from composer import tools


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


@dataclass(frozen=True)
class Registry:
    """A running Debian ``docker-registry`` on loopback (plain HTTP)."""

    host: str  # 127.0.0.1:PORT, the registry part of refs
    root: Path  # its storage directory

    def push_layout(self, layout: Path, tag: str, name: str, *, all_images: bool = False,
                    manifest_format: str | None = None) -> str:
        """Push ``oci:LAYOUT:TAG`` with skopeo as ``NAME:TAG``; returns the pushed ref."""
        skopeo = require_tool("skopeo")
        ref = f"{self.host}/{name}:{tag}"
        argv = [skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
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
        return tools.run([skopeo, "--insecure-policy", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{ref}"], capture=True).stdout


def _wait_until_serving(proc: subprocess.Popen, url: str, log: Path) -> None:
    """Poll ``/v2/`` until the registry answers; fail if it exits first."""
    while True:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited with {proc.returncode}: "
                        f"{log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.1)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry on a free loopback port for the whole session."""
    binary = require_tool("docker-registry")
    require_tool("skopeo")
    base = tmp_path_factory.mktemp("registry")
    storage = base / "storage"
    storage.mkdir()
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    log = base / "registry.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log_fh,
                                stderr=subprocess.STDOUT, env=tools.tool_env())
    try:
        _wait_until_serving(proc, f"http://127.0.0.1:{port}/v2/", log)
        yield Registry(f"127.0.0.1:{port}", storage)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
