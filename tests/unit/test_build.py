"""End-to-end builds from generated images in an OCI layout (no services needed).

The reproducibility test runs the real command in subprocesses whose clock zone, umask, locale,
cwd, hash seed and cache directory all differ, and demands identical bytes for every output.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from composer import canonjson
from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from composer.tar.canon import Kind
from composer.tar.read import read_entries

ROOT = Path(__file__).resolve().parents[2]


def tar_of(files: dict[str, bytes | str], mtime: int = 1600000000) -> bytes:
    """A layer: ``str`` values are symlink targets, ``bytes`` file contents; dirs implied."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, value in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if isinstance(value, str):
                info.type, info.linkname = tarfile.SYMTYPE, value
                tf.addfile(info)
            else:
                info.size, info.mode = len(value), 0o755
                tf.addfile(info, io.BytesIO(value))
    return buf.getvalue()


def module_tar() -> bytes:
    return tar_of({"lib/modules/6.1.0/kernel/fs/x.ko": b"\x7fELF module"})


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """An OCI layout with a kernel, an init and a container image."""
    base = tmp_path_factory.mktemp("layout")
    store = Cache(base / "store")
    images = {
        "kernel": [tar_of({"kernel": b"not really a bzImage", "kernel.tar": module_tar(),
                           "System.map": b"dropped"})],
        "init": [tar_of({"init": b"#!/bin/sh\necho hi\n", "bin/sh": "busybox",
                         "bin/busybox": b"\x7fELF busybox"}),
                 tar_of({"etc/motd": b"welcome\n"}, mtime=2000000000)],
        "hello": [tar_of({"bin/hello": b"#!/bin/sh\necho hello\n"})],
    }
    for tag, layers in images.items():
        config = {"Cmd": ["/bin/hello"]} if tag == "hello" else {}
        written = write_image(store, layers, config=config)
        export_layout(store, written, base / "oci", tag)
    return base / "oci"


def spec_text(layout: Path, extra: str = "") -> str:
    return f"""\
kernel:
  image: oci:{layout}:kernel
  cmdline: console=ttyS0 quiet
init:
  - oci:{layout}:init
onboot:
  - name: hello
    image: oci:{layout}:hello
    command: ["/bin/hello", "world"]
services:
  - name: svc
    image: oci:{layout}:hello
files:
  - path: etc/greeting
    contents: "hi there\\n"
    mode: "0644"
{extra}"""


def run_cli(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None,
            umask: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATE_EPOCH",)}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "composer", *args], cwd=cwd, env=env, text=True,
        capture_output=True, check=False,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


FORMATS = "tar,kernel+initrd,tar-kernel-initrd"


def test_two_builds_in_different_environments_give_identical_bytes(tmp_path, layout):
    spec = tmp_path / "spec" / "demo.yml"
    spec.parent.mkdir()
    spec.write_text(spec_text(layout))
    results = []
    for n, (tz, umask, lang, seed) in enumerate([("UTC", 0o022, "C.UTF-8", "1"),
                                                  ("Asia/Kolkata", 0o077, "C", "4242")]):
        cwd = tmp_path / f"cwd{n}"
        cwd.mkdir()
        out = tmp_path / f"out{n}"
        proc = run_cli(["build", "-f", FORMATS, "-o", str(out), "--cache",
                        str(tmp_path / f"cache{n}"), str(spec)], cwd=cwd,
                       env_extra={"TZ": tz, "LANG": lang, "LC_ALL": lang,
                                  "PYTHONHASHSEED": seed}, umask=umask)
        assert proc.returncode == 0, proc.stderr
        results.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert sorted(results[0]) == ["demo-cmdline", "demo-initrd.img", "demo-initrd.tar",
                                  "demo-kernel", "demo.SHA256SUMS", "demo.build-env.json",
                                  "demo.build.json", "demo.spdx.json", "demo.tar"]
    for name in results[0]:  # the environment file too: the same machine built both
        assert results[0][name] == results[1][name], f"{name} differs"
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out1").iterdir()} == {"0o644"}


def test_rootfs_layout_and_source_date_epoch(tmp_path, layout):
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    proc = run_cli(["build", "-f", "tar", "-o", str(tmp_path), "--cache",
                    str(tmp_path / "cache"), "--source-date-epoch", "1700000000", str(spec)],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "demo.tar", "rb") as fh:
        entries = {e.path: (e, r.read() if r else None) for e, r in read_entries(fh)}
    assert entries["boot/kernel"][1] == b"not really a bzImage"
    assert entries["boot/cmdline"][1] == b"console=ttyS0 quiet"
    assert "lib/modules/6.1.0/kernel/fs/x.ko" in entries
    assert "System.map" not in entries and "kernel.tar" not in entries
    assert entries["init"][1] == b"#!/bin/sh\necho hi\n"
    assert entries["etc/resolv.conf"][0].linkname == "/run/resolvconf/resolv.conf"
    assert entries["etc/greeting"][0].mode == 0o644
    # SOURCE_DATE_EPOCH clamps the image's later mtime and stamps generated entries
    assert entries["etc/motd"][0].mtime == 1700000000
    assert entries["bin/busybox"][0].mtime == 1600000000
    assert entries["boot/cmdline"][0].mtime == 1700000000
    bundle = "containers/onboot/000-hello"
    config = canonjson.loads(entries[f"{bundle}/config.json"][1])
    assert config["process"]["args"] == ["/bin/hello", "world"]
    assert config["root"] == {"path": "rootfs"}  # Go's omitempty: readonly false is left out
    assert [m["destination"] for m in config["mounts"]] == sorted(
        m["destination"] for m in config["mounts"])
    assert {n["type"] for n in config["linux"]["namespaces"]} == {"pid", "mount"}
    assert entries[f"{bundle}/lower/bin/hello"][0].kind is Kind.FILE
    runtime = canonjson.loads(entries[f"{bundle}/runtime.json"][1])
    assert runtime["mounts"][2]["options"][0] == f"lowerdir=/{bundle}/lower"
    # the service reuses the image already extracted for the onboot container
    svc = canonjson.loads(entries["containers/services/svc/config.json"][1])
    assert svc["process"]["args"] == ["/bin/hello"]
    assert "containers/services/svc/lower" not in entries
    svc_runtime = canonjson.loads(entries["containers/services/svc/runtime.json"][1])
    assert svc_runtime["mounts"][2]["options"][0] == f"lowerdir=/{bundle}/lower"
    assert entries[f"{bundle}/lower/etc/hosts"][1].startswith(b"127.0.0.1")
    paths = list(entries)
    assert len(paths) == len(set(paths))


def test_typo_in_spec_is_exit_2_with_position_and_no_output(tmp_path, layout):
    spec = tmp_path / "bad.yml"
    spec.write_text(spec_text(layout).replace("cmdline:", "cmdlin:"))
    out = tmp_path / "out"
    proc = run_cli(["build", "-o", str(out), "--cache", str(tmp_path / "c"), str(spec)],
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{spec}:3:3: ")
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_unknown_image_is_exit_1_one_line_and_no_output(tmp_path, layout):
    spec = tmp_path / "bad.yml"
    spec.write_text(spec_text(layout).replace(f"oci:{layout}:hello\n    command",
                                              f"oci:{layout}:nosuchtag\n    command"))
    out = tmp_path / "out"
    proc = run_cli(["build", "-o", str(out), "--cache", str(tmp_path / "c"), "--offline",
                    str(spec)], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "nosuchtag" in lines[0] and f"{spec}:" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_missing_kernel_for_kernel_initrd_leaves_nothing(tmp_path, layout):
    spec = tmp_path / "nokernel.yml"
    spec.write_text(f"init:\n  - oci:{layout}:init\n")
    out = tmp_path / "out"
    proc = run_cli(["build", "-f", "tar,kernel+initrd", "-o", str(out), "--cache",
                    str(tmp_path / "c"), str(spec)], cwd=tmp_path)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "kernel" in errors[0], proc.stderr
    assert proc.stderr.splitlines()[-1] == errors[0]
    assert sorted(p.name for p in out.iterdir()) == []


def test_a_later_architecture_failing_leaves_no_earlier_ones_files(tmp_path, layout):
    """``--arch amd64,arm64`` is one build: the amd64 part succeeds, the arm64 part fails
    (these images are amd64 only), and nothing of the amd64 part is placed; what an earlier
    build left in the directory is untouched."""
    spec = tmp_path / "s.yml"
    spec.write_text(spec_text(layout))
    out = tmp_path / "out"
    out.mkdir()
    (out / "s-amd64-kernel").write_bytes(b"an earlier build's kernel")
    proc = run_cli(["build", "--arch", "amd64,arm64", "-f", "kernel+initrd", "-o", str(out),
                    "--cache", str(tmp_path / "c"), str(spec)], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not linux/arm64" in errors[0], proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["s-amd64-kernel"]
    assert (out / "s-amd64-kernel").read_bytes() == b"an earlier build's kernel"
    assert proc.stdout == ""  # no path printed for a file that was not placed


def test_offline_never_downloads_the_bootloader_debs_either(tmp_path, layout):
    """``--offline`` holds for phase two: with an empty .deb cache and a mirror that would
    answer, iso-bios fails saying the pinned packages are not cached, and leaves nothing."""
    spec = tmp_path / "s.yml"
    spec.write_text(spec_text(layout))
    out = tmp_path / "out"
    proc = run_cli(["build", "-f", "iso-bios", "-o", str(out), "--cache", str(tmp_path / "c"),
                    "--offline", str(spec)], cwd=tmp_path,
                   env_extra={"IMAGE_COMPOSER_DEB_CACHE": str(tmp_path / "debs"),
                              "IMAGE_COMPOSER_DEBIAN_MIRRORS": "http://127.0.0.1:9"})
    assert proc.returncode == 1, proc.stderr
    assert "(offline)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "debs").exists() or not any((tmp_path / "debs").iterdir())
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


def test_paused_gc_restores_the_collector_as_it_was():
    """A build pauses the cyclic collector (phase one makes no cycles) and gives it back in
    the state it found it, error or not."""
    import gc

    from composer.build import paused_gc

    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    try:
        with paused_gc():
            raise KeyError("x")
    except KeyError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
