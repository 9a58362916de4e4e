"""``build`` with a lock file, ``--locked``, ``--offline`` and ``--quiet``, through the real CLI
against Debian's docker-registry (the tag is moved by re-pushing with skopeo)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from composer.build import BuildRequest
from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from tests.unit.test_build import module_tar, tar_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif("locked" not in {f.name for f in dataclasses.fields(BuildRequest)},
                       reason="build is not wired to composer.images.lock yet"),
]


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "composer", *args], cwd=cwd,
                          capture_output=True, text=True, check=False)


def test_build_follows_the_lock_until_update(registry, tmp_path):
    store = Cache(tmp_path / "store")
    kernel = write_image(store, [tar_of({"kernel": b"k", "kernel.tar": module_tar()})])
    export_layout(store, kernel, tmp_path / "kernel", "1")
    k = registry.push_layout(tmp_path / "kernel", "1", "lockcli/kernel")
    inits = []
    for n in range(2):
        init = write_image(store, [tar_of({"init": f"#!/bin/sh\necho {n}\n".encode()})])
        export_layout(store, init, tmp_path / f"init{n}", "1")
        inits.append(init)
    i = registry.push_layout(tmp_path / "init0", "1", "lockcli/init")
    spec = tmp_path / "hello.yml"
    spec.write_text(f"kernel:\n  image: {k}\n  cmdline: x\ninit:\n  - {i}\n")
    cache = str(tmp_path / "cache")

    locked = cli(tmp_path, "lock", "-q", "--arch", "amd64", "--cache", cache, "hello.yml")
    assert locked.returncode == 0, locked.stderr
    pins = json.loads((tmp_path / "hello.lock").read_text())["images"]
    assert pins[i]["amd64"]["digest"] == inits[0].digest

    registry.push_layout(tmp_path / "init1", "1", "lockcli/init")  # the tag moves
    fresh = str(tmp_path / "fresh")
    built = cli(tmp_path, "build", "-q", "--locked", "--arch", "amd64", "-f", "tar", "-o",
                "out", "--cache", fresh, "hello.yml")
    assert built.returncode == 0, built.stderr
    assert built.stderr == ""  # --quiet: nothing but errors
    record = (tmp_path / "out" / "hello.tar").read_bytes()
    assert b"echo 0" in record and b"echo 1" not in record

    offline = cli(tmp_path, "build", "--offline", "--arch", "amd64", "-f", "tar", "-o", "off",
                  "--cache", str(tmp_path / "empty"), "hello.yml")
    assert offline.returncode == 1
    assert offline.stderr.strip().splitlines()[-1] == \
        f"error: offline, and not in the cache: {k}, {i}"

    pulled = cli(tmp_path, "build", "--pull", "--arch", "amd64", "-f", "tar", "-o", "pulled",
                 "--cache", fresh, "hello.yml")
    assert pulled.returncode == 0, pulled.stderr
    assert b"echo 1" in (tmp_path / "pulled" / "hello.tar").read_bytes()
    assert json.loads((tmp_path / "hello.lock").read_text())["images"] == pins  # unchanged

    spec.write_text(spec.read_text() + "# edited\n")
    stale = cli(tmp_path, "build", "--locked", "--arch", "amd64", "-f", "tar", "-o", "x",
                "--cache", fresh, "hello.yml")
    assert stale.returncode == 1
    assert "hello.yml changed since" in stale.stderr
    updated = cli(tmp_path, "lock", "--update", "--arch", "amd64", "--cache", cache,
                  "hello.yml")
    assert updated.returncode == 0, updated.stderr
    assert json.loads((tmp_path / "hello.lock").read_text())["images"][i]["amd64"][
        "digest"] == inits[1].digest
