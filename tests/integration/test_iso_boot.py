"""Every ISO format boots in QEMU: built from the example spec through the real CLI, booted with
`image-composer run qemu` under SeaBIOS and OVMF, as CD and as disk, watching the serial console
for the example init's banner and the spec's command line.

Needs apt (examples/fetch-debs), qemu-system-x86_64, OVMF, isolinux, syslinux-common and
grub-efi-amd64-bin; under CI=true a missing one fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from outputs import bootloaders, output_files
from tests.integration.conftest import banner_lines, require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ISO_FORMATS = ("iso-bios", "iso-efi", "iso-efi-initrd", "iso-hybrid")
ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|c)")
BANNER = ["image-composer init: booted", "image-composer init: onboot 000-hello",
          "image-composer init: running 000-hello", "hello from the onboot container",
          "image-composer init: 000-hello: exited with status 0", "image-composer init: done"]
SPEC_CMDLINE = "console=ttyS0 panic=-1"  # examples/hello.yml
HANG_GUARD = 3600  # seconds: only stops a guest that never powers off; a boot takes ~15 s


def require_file(path: str, package: str) -> None:
    if not Path(path).is_file():
        message = f"{path} is missing (apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def composer(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None,
             umask: int | None = None, prefix: tuple[str, ...] = ()) -> str:
    full_env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    full_env.update(env or {})
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "composer", *map(str, args)], cwd=cwd, env=full_env,
        text=True, errors="replace", capture_output=True, stdin=subprocess.DEVNULL, check=False,
        timeout=HANG_GUARD, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def cache(debs_dir: Path, tmp_path_factory) -> Path:
    """The example packages (kernel, init, hello) built with `pkg build` into a fresh cache."""
    bootloaders.load_all(tuple(bootloaders.DEFAULTS.values()))  # fetched from Debian once
    cache = tmp_path_factory.mktemp("iso-cache")
    composer("pkg", "build", "--cache", cache,
             *(EXAMPLES / "packages" / p for p in ("kernel", "init", "hello")))
    return cache


@pytest.fixture(scope="module")
def isos(cache: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("isos")
    composer("build", "--offline", "--cache", cache, "-f", ",".join(ISO_FORMATS), "-o", out,
             EXAMPLES / "hello.yml")
    return {fmt: out / output_files(fmt, "hello")[0] for fmt in ISO_FORMATS}


@pytest.mark.parametrize(("fmt", "firmware", "media"), [
    ("iso-bios", "bios", "cdrom"),
    ("iso-bios", "bios", "disk"),
    ("iso-efi", "uefi", "cdrom"),
    ("iso-efi-initrd", "uefi", "cdrom"),
    ("iso-hybrid", "bios", "cdrom"),
    ("iso-hybrid", "bios", "disk"),
    ("iso-hybrid", "uefi", "cdrom"),
    ("iso-hybrid", "uefi", "disk"),
])
def test_iso_boots(isos: dict[str, Path], fmt: str, firmware: str, media: str) -> None:
    proc = boot(isos[fmt], f"--{firmware}", f"--{media}")
    console = [ANSI.sub("", ln).strip() for ln in proc.stdout.splitlines()]
    found = banner_lines(console, BANNER)
    tail = "\n".join(console[-60:]) + proc.stderr[-2000:]
    assert found == BANNER, tail
    [cmdline] = [ln.split("Command line: ", 1)[1] for ln in console if "Command line: " in ln]
    assert SPEC_CMDLINE in cmdline, cmdline
    assert "Kernel panic" not in proc.stdout
    assert proc.returncode == 0, tail


def boot(iso: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    require_tool("qemu-system-x86_64", "qemu-system-x86")
    if "--uefi" in flags:
        require_file("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf")
    return subprocess.run(
        [sys.executable, "-m", "composer", "run", "qemu", str(iso), *flags,
         "--timeout", str(HANG_GUARD)], cwd=ROOT, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, errors="replace", check=False, timeout=HANG_GUARD + 60)


def test_hybrid_disk_boots_from_the_mbr_esp_partition(isos: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """OVMF also finds El Torito on a hard disk; much firmware does not and boots a USB stick
    from MBR partition 2 (type 0xEF), where GRUB's own device is the ESP. Hide the El Torito
    boot record from the firmware (ISO 9660 still reads fine) to take that path."""
    stick = tmp_path / "stick.iso"
    data = bytearray(isos["iso-hybrid"].read_bytes())
    record = 17 * 2048
    assert data[record + 7:record + 30] == b"EL TORITO SPECIFICATION"
    data[record + 7:record + 9] = b"XL"
    stick.write_bytes(data)
    proc = boot(stick, "--uefi", "--disk")
    console = [ANSI.sub("", ln).strip() for ln in proc.stdout.splitlines()]
    assert banner_lines(console, BANNER) == BANNER, "\n".join(console[-60:])


def test_rebuild_elsewhere_gives_the_same_isos(isos: dict[str, Path], cache: Path,
                                               tmp_path: Path) -> None:
    """Another clock (libfaketime), TZ, umask, locale and cwd: the same bytes."""
    require_tool("faketime")
    out = tmp_path / "again"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    composer("build", "--offline", "--cache", cache, "-f", ",".join(ISO_FORMATS), "-o", out,
             EXAMPLES / "hello.yml", cwd=cwd, umask=0o077,
             env={"TZ": "Pacific/Kiritimati", "LC_ALL": "C.UTF-8"},
             prefix=("faketime", "2031-07-07 07:07:07"))
    for fmt, path in isos.items():
        assert (out / path.name).read_bytes() == path.read_bytes(), fmt
