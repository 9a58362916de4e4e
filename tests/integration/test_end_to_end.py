"""The walking skeleton end to end, through the real command only.

Example packages built from the pinned Debian debs -> pushed to a real docker-registry ->
a spec naming them by digest -> `image-composer build` into an empty cache -> the canonical tar
passes check-tar -> kernel+initrd boots in QEMU and the init runs the onboot container.
And the bundled example (examples/hello.yml, @pkg: refs) built twice in different environments
gives identical bytes for every output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import banner_lines, require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kernel", "init", "hello")
ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|c)")
BANNER = ["image-composer init: booted", "image-composer init: onboot 000-hello",
          "image-composer init: running 000-hello", "hello from the onboot container",
          "image-composer init: 000-hello: exited with status 0", "image-composer init: done"]


def composer(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             umask: int | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "composer", *args], cwd=cwd or ROOT, env=full_env, text=True,
        errors="replace", capture_output=True, stdin=subprocess.DEVNULL, check=False,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc


def boot_lines(prefix: Path) -> list[str]:
    require_tool("qemu-system-x86_64", "qemu-system-x86")
    # --timeout only guards against a hung guest; a TCG boot takes about 10 s.
    proc = composer("run", "qemu", str(prefix), "--timeout", "3600")
    return [ANSI.sub("", line).strip() for line in proc.stdout.splitlines()]


def test_build_from_registry_by_digest_and_boot(registry, debs_dir, tmp_path):
    layout = tmp_path / "layout"
    refs = {}
    for name in PACKAGES:
        out = composer("pkg", "build", "--cache", str(tmp_path / "pkgcache"), "--debs",
                       str(debs_dir), "--layout", str(layout),
                       str(ROOT / "examples" / "packages" / name)).stdout.strip()
        tag, digest = out.rsplit(":", 2)[1].split("@")[0], out.split("@")[1]
        registry.push_layout(layout, tag, f"example/{name}")
        refs[name] = f"{registry.host}/example/{name}@{digest}"
    spec = tmp_path / "e2e.yml"
    spec.write_text(f"""\
kernel:
  image: {refs['kernel']}
  cmdline: "console=ttyS0"
init:
  - {refs['init']}
onboot:
  - name: hello
    image: {refs['hello']}
""")
    out = tmp_path / "out"
    composer("build", "-f", "kernel+initrd,tar", "-o", str(out), "--cache",
             str(tmp_path / "fresh-cache"), str(spec))
    assert sorted(p.name for p in out.iterdir()) == [
        "e2e-cmdline", "e2e-initrd.img", "e2e-kernel", "e2e.SHA256SUMS", "e2e.build-env.json",
        "e2e.build.json", "e2e.spdx.json", "e2e.tar"]
    assert composer("check-tar", str(out / "e2e.tar")).stdout.strip().endswith("canonical")
    lines = boot_lines(out / "e2e")
    assert banner_lines(lines, BANNER) == BANNER, "\n".join(lines[-60:])


def test_example_is_reproducible_across_environments(debs_dir, tmp_path):
    """Different cwd, TZ, umask, locale, hash seed and cache: identical bytes, every output."""
    outputs = []
    for n, (tz, umask, lang, seed) in enumerate([("UTC", 0o022, "C.UTF-8", "0"),
                                                  ("America/St_Johns", 0o077, "C", "99")]):
        env = {"TZ": tz, "LC_ALL": lang, "LANG": lang, "PYTHONHASHSEED": seed,
               "IMAGE_COMPOSER_CACHE": str(tmp_path / f"cache{n}")}
        cwd = tmp_path / f"cwd{n}"
        cwd.mkdir()
        for name in PACKAGES:
            composer("pkg", "build", "--debs", str(debs_dir),
                     str(ROOT / "examples" / "packages" / name), cwd=cwd, env=env, umask=umask)
        out = tmp_path / f"out{n}"
        composer("build", "-f", "kernel+initrd,tar,tar-kernel-initrd", "-o", str(out),
                 str(ROOT / "examples" / "hello.yml"), cwd=cwd, env=env, umask=umask)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert list(outputs[0]) == ["hello-cmdline", "hello-initrd.img", "hello-initrd.tar",
                                "hello-kernel", "hello.SHA256SUMS", "hello.build-env.json",
                                "hello.build.json", "hello.spdx.json", "hello.tar"]
    for name, data in outputs[0].items():
        assert outputs[1][name] == data, f"{name} differs between the two environments"
    lines = boot_lines(tmp_path / "out0" / "hello")
    assert banner_lines(lines, BANNER) == BANNER, "\n".join(lines[-60:])
