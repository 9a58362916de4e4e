"""QEMU boots each container from the file itself, through its own block driver (qcow2, vpc,
vmdk; gcp's disk.raw after GNU tar extracts it), under SeaBIOS with TCG.

The disk is made here: a 1 GiB raw whose sector 0 is a tiny boot sector (source below) that
reads one sector far into the disk, behind holes, with INT 13h extended read, prints the
NUL-terminated text it finds there on the serial port and exits QEMU through isa-debug-exit.
So a boot proves the firmware read sector 0 and sector N through the container, as a guest
would. The full disk formats' boots (syslinux, GRUB, UKI) are the formats' own tests.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from composer import tools
from outputs.disk.containers import CONTAINERS
from tests.fixtures.raw_disks import GiB, MiB, make_raw
from tests.integration.conftest import banner_lines, require_tool

# GNU as --32, .code16, assembled once; offsets in the comments:
#  00 cli; xor ax,ax; mov ds/es/ss,ax; mov sp,0x7c00; sti
#  0d mov si,0x7c32 (the DAP); mov ah,0x42; int 0x13; jc fail
#  16 mov si,0x8000
#  19 print: lodsb; test al,al; jz done; mov dx,0x3f8; out dx,al; jmp print
#  24 done: mov dx,0xf4; mov al,0x10; out dx,al (isa-debug-exit: QEMU exits 0x21)
#  2a hang: hlt; jmp hang
#  2d fail: mov si,0x7c42; jmp print
#  32 DAP: size 0x10, 0, count 1, buffer 0000:8000, LBA (u64 at 0x3a)
#  42 "vdisk boot: read failed\n\0"
BOOT = bytes.fromhex(
    "fa31c08ed88ec08ed0bc007cfbbe327cb442cd137217be0080ac84c07406baf803eeebf5baf400b010ee"
    "f4ebfdbe427cebe710000100008000000000000000000000766469736b20626f6f743a2072656164206661"
    "696c65640a00")
LBA_AT = 0x3A
MESSAGE_LBA = (900 * MiB + 1536) // 512
EXIT_STATUS = (0x10 << 1) | 1
QEMU_FORMAT = {"qcow2": "qcow2", "vhd": "vpc", "dynamic-vhd": "vpc", "vmdk": "vmdk",
               "gcp": "raw"}


def bootable_raw(path: Path, text: str) -> Path:
    make_raw(path, GiB)
    sector0 = bytearray(BOOT.ljust(512, b"\0"))
    sector0[LBA_AT:LBA_AT + 8] = MESSAGE_LBA.to_bytes(8, "little")
    sector0[510:512] = b"\x55\xaa"
    with open(path, "r+b") as f:
        f.write(sector0)
        f.seek(MESSAGE_LBA * 512)
        f.write(text.encode() + b"\0")
    return path


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_qemu_boots_the_container(tmp_path: Path, name: str) -> None:
    qemu = require_tool("qemu-system-x86_64", "qemu-system-x86")
    text = f"vdisk boot: read LBA {MESSAGE_LBA} through {name}\n"
    raw = bootable_raw(tmp_path / "disk.raw", text)
    container = CONTAINERS[name]
    out = tmp_path / f"out.{name}"
    with open(out, "wb") as f:
        container.write(raw, f, 1492533000, b"boot")
    image = out
    if name == "gcp":
        work = tmp_path / "x"
        work.mkdir()
        raw.unlink()
        tools.run([require_tool("tar"), "-xzf", out, "-C", work])
        image = work / "disk.raw"
    # the timeout only guards against a hung guest; a boot takes a few seconds, and a disk
    # SeaBIOS cannot boot ends QEMU at once (reboot-timeout=0 with -no-reboot: exit status 0)
    proc = subprocess.run(
        [qemu, "-machine", "q35", "-m", "64", "-nographic", "-no-reboot", "-net", "none",
         "-boot", "reboot-timeout=0",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
         "-drive", f"file={image},format={QEMU_FORMAT[name]},index=0,media=disk"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
        timeout=3600, check=False)
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert banner_lines(lines, [text.strip()]) == [text.strip()], proc.stdout[-2000:]
    assert proc.returncode == EXIT_STATUS, proc.stderr
