"""``run qemu`` without booting: the command line, accelerator choice, missing files, timeouts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from composer.errors import ComposerError, UsageError
from composer.run import qemu


def outputs(tmp_path: Path, cmdline: str = "quiet\n") -> Path:
    prefix = tmp_path / "img"
    Path(f"{prefix}-kernel").write_bytes(b"K")
    Path(f"{prefix}-initrd.img").write_bytes(b"I")
    Path(f"{prefix}-cmdline").write_text(cmdline)
    return prefix


@pytest.mark.parametrize(("text", "expected"), [
    ("", "console=ttyS0 panic=-1"),
    ("quiet\n", "quiet console=ttyS0 panic=-1"),
    ("console=tty0  root=/dev/sr0\n", "console=tty0 root=/dev/sr0 panic=-1"),
    ("panic=5", "panic=5 console=ttyS0"),
])
def test_kernel_cmdline(text: str, expected: str) -> None:
    assert qemu.kernel_cmdline(text) == expected


def test_missing_files_are_named(tmp_path: Path) -> None:
    prefix = outputs(tmp_path)
    os.unlink(f"{prefix}-initrd.img")
    os.unlink(f"{prefix}-cmdline")
    with pytest.raises(ComposerError) as info:
        qemu.run_qemu(prefix, memory="512", timeout=10, accel="tcg")
    assert f"{prefix}-initrd.img, {prefix}-cmdline" in str(info.value)
    assert f"{prefix}-kernel" not in str(info.value).split("missing")[1]


def test_argv(tmp_path: Path) -> None:
    kernel, initrd, cmdline = qemu.boot_files(outputs(tmp_path))
    assert qemu.qemu_argv(kernel, initrd, cmdline, memory="1G", accel="tcg") == [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "1G", "-nographic", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "quiet console=ttyS0 panic=-1"]


@pytest.mark.parametrize(("kw", "message"), [
    ({"memory": "lots"}, "--mem"), ({"memory": "0"}, "--mem"),
    ({"accel": "kvm;rm"}, "--accel"), ({"timeout": 0}, "--timeout"),
])
def test_bad_options(tmp_path: Path, kw: dict, message: str) -> None:
    args = {"memory": "512", "timeout": 10.0, "accel": "tcg", **kw}
    with pytest.raises(UsageError, match=message):
        qemu.run_qemu(outputs(tmp_path), **args)


def test_kvm_needs_hardware_virtualisation_module(tmp_path: Path) -> None:
    modules = tmp_path / "module"
    (modules / "kvm").mkdir(parents=True)
    (modules / "kvm_pvm").mkdir()
    assert not qemu.kvm_usable("/dev/kvm", modules)  # PVM-only KVM: never, whatever the device
    (modules / "kvm_intel").mkdir()
    assert not qemu.kvm_usable(str(tmp_path / "no-such-device"), modules)
    regular = tmp_path / "file"
    regular.write_bytes(b"")
    assert not qemu.kvm_usable(str(regular), modules)  # opens, but is not KVM


def test_exit_status_and_timeout(tmp_path: Path, monkeypatch) -> None:
    """A stand-in qemu on PATH: its exit status comes back; a hang becomes a ComposerError."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "qemu-system-x86_64"
    fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
                    '[ -n "${FAKE_QEMU_HANG:-}" ] && exec sleep 30\nexit 3\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    prefix = outputs(tmp_path)
    assert qemu.run_qemu(prefix, memory="256", timeout=3600, accel="tcg") == 3
    assert (bindir / "args").read_text().startswith("-accel tcg -m 256 -nographic")
    monkeypatch.setenv("FAKE_QEMU_HANG", "1")
    with pytest.raises(ComposerError, match="timed out"):
        qemu.run_qemu(prefix, memory="256", timeout=0.5, accel="tcg")


def test_disk_formats_boot_by_their_file_names(tmp_path: Path) -> None:
    """``run qemu FILE`` picks qemu's driver from a disk format's file name, and UEFI for the
    EFI ones; a gcp image says to take its disk.raw out first."""
    assert qemu.disk_image(Path("out/x-efi.qcow2")) == ("qcow2", True)
    assert qemu.disk_image(Path("out/x.qcow2")) == ("qcow2", False)
    assert qemu.disk_image(Path("out/x-efi.img")) == ("raw", True)
    assert qemu.disk_image(Path("out/x-bios.img")) == ("raw", False)
    assert qemu.disk_image(Path("out/x.raw")) == ("raw", False)
    assert qemu.disk_image(Path("out/x.vhd")) == ("vpc", False)
    assert qemu.disk_image(Path("out/x.vmdk")) == ("vmdk", False)
    assert qemu.disk_image(Path("out/x")) is None
    with pytest.raises(UsageError, match=r"disk\.raw inside it"):
        qemu.disk_image(Path("out/x.img.tar.gz"))
    argv = qemu.disk_argv(tmp_path / "x.vhd", "vpc", memory="1G", accel="tcg")
    assert argv[-1] == f"file={tmp_path / 'x.vhd'},format=vpc,if=ide,media=disk,snapshot=on"
    with pytest.raises(UsageError, match="comma"):
        qemu.disk_argv(tmp_path / "a,b.raw", "raw", memory="1G", accel="tcg")
    with pytest.raises(ComposerError, match="no such file"):
        qemu.run_qemu(tmp_path / "missing.qcow2", memory="512", timeout=10, accel="tcg")
