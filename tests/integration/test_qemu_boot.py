"""Boot smoke test: the example kernel, init and hello packages, hand-assembled into an initrd.

Independent of phase one on purpose: it checks that the packages ``pkg build`` makes from the
pinned Debian debs boot under ``image-composer run qemu`` and that the init runs an onboot
container, whatever the assembler does. (The end-to-end build+boot test is the lead's.)
Needs apt (for examples/fetch-debs) and qemu-system-x86_64.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer import canonjson
from composer.images.cache import Cache
from composer.pkg import build as pkg
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key
from composer.tar.read import read_entries
from outputs.initrd.cpio import tar_to_cpio
from tests.integration.conftest import banner_lines, require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BUNDLE = "containers/onboot/000-hello"
ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|c)")  # SeaBIOS clears the screen


@pytest.fixture(scope="session")
def built(example_packages) -> dict[str, tuple[Cache, pkg.PackageResult]]:
    return example_packages


def layer_entries(cache: Cache, result: pkg.PackageResult) -> list[tuple[Entry, bytes | None]]:
    manifest = canonjson.loads(cache.read_blob(result.digest))
    [layer] = manifest["layers"]
    tar = gzip.decompress(cache.read_blob(layer["digest"]))
    return [(e, r.read() if r else None) for e, r in read_entries(io.BytesIO(tar))]


def initrd_tree(built) -> tuple[bytes, dict[str, tuple[Entry, bytes | None]]]:
    """(kernel, rootfs entries): init at /, kernel.tar at /, hello as onboot 000-hello."""
    kernel = dict((e.path, d) for e, d in layer_entries(*built["kernel"]))
    tree: dict[str, tuple[Entry, bytes | None]] = {}
    for e, d in read_entries(io.BytesIO(kernel["kernel.tar"])):
        tree[e.path] = (e, d.read() if d else None)
    for e, d in layer_entries(*built["init"]):
        tree[e.path] = (e, d)
    for path in ("containers", "containers/onboot", BUNDLE, f"{BUNDLE}/lower",
                 f"{BUNDLE}/rootfs", f"{BUNDLE}/tmp"):
        tree[path] = (Entry(path, Kind.DIR, 0o755), None)
    for e, d in layer_entries(*built["hello"]):
        path = f"{BUNDLE}/lower/{e.path}"
        link = f"{BUNDLE}/lower/{e.linkname}" if e.kind is Kind.HARDLINK else e.linkname
        tree[path] = (Entry(path, e.kind, e.mode, e.uid, e.gid, e.mtime, e.size, link), d)
    config = {"ociVersion": "1.0.2", "process": {
        "args": ["/bin/echo", "hello from the onboot container"], "cwd": "/",
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "root": {"path": "rootfs", "readonly": False}}
    runtime = {"mounts": [
        {"destination": f"/{BUNDLE}/tmp", "source": "tmpfs", "type": "tmpfs"},
        {"destination": f"/{BUNDLE}/rootfs", "source": "overlay", "type": "overlay",
         "options": [f"lowerdir=/{BUNDLE}/lower", f"upperdir=/{BUNDLE}/tmp/upper"]}]}
    for name, value in (("config.json", config), ("runtime.json", runtime)):
        data = canonjson.pretty(value)
        tree[f"{BUNDLE}/{name}"] = (Entry(f"{BUNDLE}/{name}", Kind.FILE, 0o644,
                                          size=len(data)), data)
    return kernel["kernel"], tree  # type: ignore[return-value]


def test_example_packages_boot_and_run_onboot(built, tmp_path: Path) -> None:
    require_tool("qemu-system-x86_64", "qemu-system-x86")
    kernel, tree = initrd_tree(built)
    rootfs = tmp_path / "rootfs.tar"
    with open(rootfs, "wb") as f:
        writer = CanonicalTarWriter(f)
        for path in sorted(tree, key=sort_key):
            writer.add(*tree[path])
        writer.close()
    prefix = tmp_path / "smoke"
    Path(f"{prefix}-kernel").write_bytes(kernel)
    with open(f"{prefix}-initrd.img", "wb") as out:
        tar_to_cpio(rootfs, out)
    Path(f"{prefix}-cmdline").write_text("quiet\n")
    # --timeout only guards against a hung guest; a normal boot takes seconds.
    proc = subprocess.run(
        [sys.executable, "-m", "composer", "run", "qemu", str(prefix), "--timeout", "3600"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", check=False)
    lines = [ANSI.sub("", ln).strip() for ln in proc.stdout.splitlines()]
    expected = ["image-composer init: booted", "image-composer init: onboot 000-hello",
                "image-composer init: running 000-hello", "hello from the onboot container",
                "image-composer init: 000-hello: exited with status 0",
                "image-composer init: done"]
    found = banner_lines(lines, expected)
    assert found == expected, proc.stdout[-3000:] + proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Kernel panic" not in proc.stdout
