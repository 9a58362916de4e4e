"""The partitioned disk formats boot: the example spec built through the real CLI, each disk
booted from the file itself in qemu-system-x86_64 (TCG or KVM), watching the serial console for
the example init's banner. One boot per boot chain:

- ``raw-bios``: SeaBIOS -> mbr.bin -> syslinux on FAT16 -> kernel + initrd;
- ``aws`` (default 1024M): the same chain on FAT32;
- ``raw-efi``: OVMF -> systemd-boot -> the UKI (systemd-stub) -> kernel + initrd;
- ``qcow2-efi``: OVMF -> GRUB (Debian's gcdx64.efi) -> kernel + initrd, through QEMU's qcow2
  driver;
- the containers of the MBR + syslinux disk, each through QEMU's own driver for it:
  ``qcow2-bios`` (qcow2), ``vhd`` and ``dynamic-vhd`` (vpc), ``vmdk``, and ``gcp``'s
  ``disk.raw`` taken out of its tar.gz. ``aws`` is that disk raw (its validators run in the
  unit tests).

Needs apt (examples/fetch-debs), qemu-system-x86_64 and OVMF; the bootloaders and mtools are
pinned Debian 12 packages the build fetches itself. Under CI=true a missing one fails the test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer.run import qemu
from outputs import bootloaders, output_files
from tests.integration.conftest import banner_lines, require_tool
from tests.integration.test_iso_boot import BANNER, EXAMPLES, SPEC_CMDLINE, composer, require_file

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|c)")
BOOT_TIMEOUT = 900  # seconds; a TCG boot takes about 30 s
DISK_FORMATS = ("raw-bios", "raw-efi", "aws", "qcow2-bios", "qcow2-efi", "vhd", "vmdk", "gcp")



@pytest.fixture(scope="module")
def cache(debs_dir: Path, tmp_path_factory) -> Path:
    bootloaders.load_all(tuple(bootloaders.DEFAULTS.values()))  # pinned debs, fetched once
    cache = tmp_path_factory.mktemp("disk-cache")
    composer("pkg", "build", "--cache", cache,
             *(EXAMPLES / "packages" / p for p in ("kernel", "init", "hello")))
    return cache


@pytest.fixture(scope="module")
def disks(cache: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("disks")
    composer("build", "--offline", "--cache", cache, "-f", ",".join(DISK_FORMATS), "-o", out,
             EXAMPLES / "hello.yml")
    built = {fmt: out / output_files(fmt, "hello")[0] for fmt in DISK_FORMATS}
    dyn = tmp_path_factory.mktemp("dynamic-vhd")  # writes NAME.vhd too: a build of its own
    composer("build", "--offline", "--cache", cache, "-f", "dynamic-vhd", "-o", dyn,
             EXAMPLES / "hello.yml")
    built["dynamic-vhd"] = dyn / "hello.vhd"
    gcp = out / "gcp"
    gcp.mkdir()
    subprocess.run(["tar", "-xzf", built["gcp"], "-C", gcp], check=True)
    built["gcp"] = gcp / "disk.raw"
    return built


def boot(image: Path) -> tuple[list[str], str]:
    """``image-composer run qemu FILE``, as a user boots a disk: the driver from the file name,
    OVMF implied by an EFI format's name. (console lines, stderr)"""
    require_tool("qemu-system-x86_64", "qemu-system-x86")
    require_file(str(qemu.OVMF_CODE), "ovmf")
    proc = subprocess.run([sys.executable, "-m", "composer", "run", "qemu", str(image),
                           "--timeout", str(BOOT_TIMEOUT)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace", check=False,
                          timeout=BOOT_TIMEOUT + 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [ANSI.sub("", ln).strip() for ln in proc.stdout.splitlines()], proc.stderr


@pytest.mark.parametrize(("fmt", "uefi", "loader_says"), [
    ("raw-bios", False, "SYSLINUX 6.04"),
    ("aws", False, "SYSLINUX 6.04"),
    ("raw-efi", True, "EFI stub: Loaded initrd"),
    ("qcow2-efi", True, "BOOT_IMAGE=/kernel"),
    ("qcow2-bios", False, "SYSLINUX 6.04"),
    ("vhd", False, "SYSLINUX 6.04"),
    ("dynamic-vhd", False, "SYSLINUX 6.04"),
    ("vmdk", False, "SYSLINUX 6.04"),
    ("gcp", False, "SYSLINUX 6.04"),
])
def test_disk_boots(disks: dict[str, Path], fmt: str, uefi: bool, loader_says: str) -> None:
    console, stderr = boot(disks[fmt])
    tail = "\n".join(console[-60:]) + stderr[-2000:]
    assert banner_lines(console, BANNER) == BANNER, tail
    assert any(loader_says in ln for ln in console), tail  # the chain we meant, not another
    [cmdline] = [ln.split("Command line: ", 1)[1] for ln in console if "Command line: " in ln]
    assert SPEC_CMDLINE in cmdline, cmdline
    assert not any("Kernel panic" in ln for ln in console), tail
    firmware = "OVMF" if uefi else "SeaBIOS"
    assert any(("UEFI" in ln or "BdsDxe" in ln) if uefi else "SeaBIOS" in ln
               for ln in console), f"not booted under {firmware}: {tail}"
