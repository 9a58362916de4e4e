"""`run qemu` with an ISO, without booting: firmware and media arguments, the OVMF vars copy,
and the errors a user can cause."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from composer.cli import main
from composer.errors import ComposerError, UsageError
from composer.run import qemu


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch) -> Path:
    """A qemu on PATH that records its arguments and whether the OVMF vars file existed."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "qemu-system-x86_64"
    fake.write_text('#!/bin/sh\nd="$(dirname "$0")"\nprintf "%s\\n" "$@" > "$d/args"\n'
                    'for a in "$@"; do case "$a" in *unit=1,file=*) '
                    'test -w "${a##*file=}" && echo yes > "$d/vars-writable";; esac; done\n'
                    'exit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return bindir


@pytest.fixture
def ovmf(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    code, vars_ = tmp_path / "OVMF_CODE_4M.fd", tmp_path / "OVMF_VARS_4M.fd"
    code.write_bytes(b"code")
    vars_.write_bytes(b"vars")
    vars_.chmod(0o444)  # as installed: the firmware must get a writable copy
    monkeypatch.setattr(qemu, "OVMF_CODE", code)
    monkeypatch.setattr(qemu, "OVMF_VARS", vars_)
    return code, vars_


def iso_file(tmp_path: Path) -> Path:
    path = tmp_path / "hello-hybrid.iso"
    path.write_bytes(b"\0" * 2048)
    return path


@pytest.mark.parametrize(("disk", "media"), [
    (False, "file={iso},format=raw,if=ide,media=cdrom,readonly=on"),
    (True, "file={iso},format=raw,if=ide,media=disk,snapshot=on"),
])
def test_iso_argv(tmp_path: Path, disk: bool, media: str) -> None:
    iso = iso_file(tmp_path)
    argv = qemu.iso_argv(iso, memory="512", accel="tcg", disk=disk)
    assert argv == ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nographic",
                    "-no-reboot", "-drive", media.format(iso=iso)]


def test_uefi_argv_uses_read_only_code_and_the_vars_copy(tmp_path: Path) -> None:
    argv = qemu.iso_argv(tmp_path / "x.iso", memory="1G", accel="tcg", disk=True,
                         ovmf_vars=tmp_path / "vars.fd")
    assert argv[7:11] == [
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={qemu.OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={tmp_path / 'vars.fd'}"]


def test_cli_boots_an_iso_under_uefi_as_disk(tmp_path: Path, fake_qemu: Path, ovmf) -> None:
    iso = iso_file(tmp_path)
    assert main(["run", "qemu", str(iso), "--uefi", "--disk", "--accel", "tcg"]) == 0
    args = (fake_qemu / "args").read_text().splitlines()
    assert f"file={iso},format=raw,if=ide,media=disk,snapshot=on" in args
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={ovmf[0]}" in args
    [vars_arg] = [a for a in args if "unit=1" in a]
    copy = Path(vars_arg.split("file=", 1)[1])
    assert copy != ovmf[1]
    assert (fake_qemu / "vars-writable").read_text() == "yes\n"
    assert not copy.exists()  # thrown away afterwards


def test_cli_defaults_are_seabios_and_cdrom(tmp_path: Path, fake_qemu: Path) -> None:
    iso = iso_file(tmp_path)
    assert main(["run", "qemu", str(iso), "--accel", "tcg"]) == 0
    args = (fake_qemu / "args").read_text().splitlines()
    assert f"file={iso},format=raw,if=ide,media=cdrom,readonly=on" in args
    assert not any("pflash" in a for a in args)


def test_kernel_initrd_under_uefi(tmp_path: Path, fake_qemu: Path, ovmf) -> None:
    prefix = tmp_path / "img"
    for suffix, data in (("kernel", "K"), ("initrd.img", "I"), ("cmdline", "quiet\n")):
        Path(f"{prefix}-{suffix}").write_text(data)
    assert qemu.run_qemu(prefix, memory="512", timeout=60, accel="tcg", uefi=True) == 0
    args = (fake_qemu / "args").read_text().splitlines()
    assert "-kernel" in args and any("pflash" in a for a in args)


def test_media_flags_need_an_iso(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--disk"):
        qemu.run_qemu(tmp_path / "img", memory="512", timeout=60, accel="tcg", disk=True)


def test_missing_iso_is_named(tmp_path: Path) -> None:
    with pytest.raises(ComposerError, match=r"no-such\.iso: no such file"):
        qemu.run_qemu(tmp_path / "no-such.iso", memory="512", timeout=60, accel="tcg")


def test_missing_ovmf_says_what_to_install(tmp_path: Path, fake_qemu: Path,
                                           monkeypatch) -> None:
    monkeypatch.setattr(qemu, "OVMF_CODE", tmp_path / "nope.fd")
    with pytest.raises(ComposerError, match="apt-get install ovmf"):
        qemu.run_qemu(iso_file(tmp_path), memory="512", timeout=60, accel="tcg", uefi=True)


def test_firmware_and_media_flags_exclude_each_other(tmp_path: Path, capsys) -> None:
    iso = iso_file(tmp_path)
    assert main(["run", "qemu", str(iso), "--bios", "--uefi"]) == 2
    assert main(["run", "qemu", str(iso), "--cdrom", "--disk"]) == 2
