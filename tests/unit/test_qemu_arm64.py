"""``run qemu`` for arm64 guests, without booting: which architecture an output is for, the
``virt`` board's command lines (direct kernel boot, AAVMF, virtio-scsi media), and the format
table's architectures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from composer import canonjson
from composer.errors import UsageError
from composer.run import qemu, targets
from composer.run.fsimage import fsimage_argv
from composer.run.targets import TARGETS
from outputs import FORMATS, check_arch

ARM64 = TARGETS["arm64"]
HEAD = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-accel", "tcg", "-m", "512",
        "-nographic", "-no-reboot"]


def arm64_image() -> bytes:
    head = bytearray(0x240)
    head[:2] = b"MZ"
    head[0x38:0x3C] = b"ARMd"
    return bytes(head)


def bzimage() -> bytes:
    head = bytearray(0x240)
    head[0x202:0x206] = b"HdrS"
    return bytes(head)


def test_the_kernel_header_names_the_architecture(tmp_path: Path) -> None:
    for data, arch in ((arm64_image(), "arm64"), (bzimage(), "amd64"), (b"golden", None)):
        (tmp_path / "k").write_bytes(data)
        assert targets.kernel_arch(tmp_path / "k") == arch
    assert targets.kernel_arch(tmp_path / "missing") is None


def test_the_build_record_wins_over_the_kernel(tmp_path: Path) -> None:
    prefix = tmp_path / "img"
    Path(f"{prefix}-kernel").write_bytes(bzimage())
    assert targets.guess_arch(prefix, Path(f"{prefix}-kernel")) == "amd64"
    Path(f"{prefix}.build.json").write_bytes(canonjson.pretty({"build": {"arch": "arm64"}}))
    assert targets.guess_arch(prefix, Path(f"{prefix}-kernel")) == "arm64"
    assert qemu.output_prefix(tmp_path / "img-efi.qcow2") == prefix
    assert qemu.output_prefix(tmp_path / "img-efi-initrd.iso") == prefix
    assert qemu.output_prefix(prefix) == prefix


def test_arm64_direct_kernel_boot(tmp_path: Path) -> None:
    prefix = tmp_path / "img"
    Path(f"{prefix}-kernel").write_bytes(arm64_image())
    Path(f"{prefix}-initrd.img").write_bytes(b"I")
    Path(f"{prefix}-cmdline").write_text("console=ttyS0 panic=-1\n")
    kernel, initrd, cmdline = qemu.boot_files(prefix, ARM64.console)
    # the PC's console is kept, the board's is added last, so it is /dev/console
    assert cmdline == "console=ttyS0 panic=-1 console=ttyAMA0"
    assert qemu.qemu_argv(kernel, initrd, cmdline, memory="512", accel="tcg",
                          target=ARM64) == [*HEAD, "-kernel", str(kernel), "-initrd",
                                            str(initrd), "-append", cmdline]
    assert qemu.kernel_cmdline("console=ttyAMA0,115200", "ttyAMA0") == \
        "console=ttyAMA0,115200 panic=-1"


def test_arm64_uefi_disk_is_aavmf_and_virtio_scsi(tmp_path: Path) -> None:
    vars_copy = tmp_path / "AAVMF_VARS.fd"
    argv = qemu.disk_argv(tmp_path / "img-efi.img", "raw", memory="512", accel="tcg",
                          ovmf_vars=vars_copy, target=ARM64)
    assert argv == [*HEAD,
                    "-drive", "if=pflash,format=raw,unit=0,readonly=on,"
                    "file=/usr/share/AAVMF/AAVMF_CODE.fd",
                    "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
                    "-device", "virtio-scsi-pci,id=scsi0",
                    "-drive", f"file={tmp_path / 'img-efi.img'},format=raw,if=none,id=boot0,"
                    "media=disk,snapshot=on",
                    "-device", "scsi-hd,drive=boot0,bootindex=0"]
    iso = qemu.iso_argv(tmp_path / "img-efi.iso", memory="512", accel="tcg", disk=False,
                        ovmf_vars=vars_copy, target=ARM64)
    assert iso[-3:] == [f"file={tmp_path / 'img-efi.iso'},format=raw,if=none,id=boot0,"
                        "media=cdrom,readonly=on", "-device", "scsi-cd,drive=boot0,bootindex=0"]


def test_arm64_fsimage_root_is_sda_on_virtio_scsi(tmp_path: Path) -> None:
    Path(f"{tmp_path}/img-kernel").write_bytes(arm64_image())
    Path(f"{tmp_path}/img-cmdline").write_text("x")
    argv = fsimage_argv(tmp_path / "img-erofs.img", "kernel+erofs", memory="512", accel="tcg",
                        target=ARM64, head=HEAD)
    assert argv[argv.index("-append") + 1] == "x console=ttyAMA0 panic=-1 root=/dev/sda " \
        "rootfstype=erofs"
    assert argv[-1] == "scsi-hd,drive=boot0,bootindex=0"


def test_an_unknown_guest_architecture() -> None:
    with pytest.raises(UsageError, match=r"cannot boot riscv64 \(can: amd64, arm64\)"):
        targets.target("riscv64")


def test_formats_per_architecture() -> None:
    check_arch(["tar", "kernel+initrd", "docker", "iso-bios"], "amd64")
    check_arch(["tar", "kernel+initrd", "tar-kernel-initrd", "kernel+squashfs", "kernel+erofs",
                "docker", "oci"], "arm64")
    with pytest.raises(UsageError) as info:
        check_arch(["tar", "raw-bios"], "arm64")
    message = str(info.value)
    assert message.startswith("format raw-bios is for amd64 only, not arm64; for arm64: ")
    can = message.split("for arm64: ")[1].split(", ")
    assert "kernel+initrd" in can and "raw-bios" not in can and "iso-bios" not in can
    assert all(FORMATS[f].supports("arm64") for f in can)


def test_an_arm64_iso_always_boots_under_aavmf(tmp_path: Path, monkeypatch) -> None:
    """virt has no BIOS: ``run qemu NAME-efi.iso`` gets AAVMF without ``--uefi``."""
    code, template = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    code.write_bytes(b"c")
    template.write_bytes(b"v")
    monkeypatch.setitem(TARGETS, "arm64", dataclasses.replace(ARM64, firmware=(code, template)))
    seen: list[list[str]] = []
    monkeypatch.setattr(qemu.tools, "find_tool", lambda *a, **k: "/bin/true")
    monkeypatch.setattr(qemu.vmctl, "supervise", lambda argv, **kw: seen.append(argv) or 0)
    iso = tmp_path / "img-efi.iso"
    iso.write_bytes(b"\0" * 4096)
    assert qemu.run_qemu(iso, memory="512", timeout=10, accel="tcg", arch="arm64") == 0
    [argv] = seen
    assert argv[:5] == ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57"]
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={code}" in argv
