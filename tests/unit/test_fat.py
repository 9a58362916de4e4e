"""The pyfatfs wrapper: pinned dates and serial, bytes fsck.fat and mtools accept, no host leaks."""

from __future__ import annotations

import datetime
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.tools import run
from outputs import fat
from outputs.fatfs_shim import PyFatFS

MTIME = 1492533000  # 2017-04-18T16:30:00Z
FILES = {
    "EFI/BOOT/BOOTX64.EFI": bytes(range(256)) * 4000,
    "EFI/BOOT/grub.cfg": b"search --file /x\n",
    "boot/grub/grub.cfg": b"linux /boot/kernel\n",
}


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (apt-get install {package})")
        pytest.skip(f"{tool} not installed (apt-get install {package})")
    return path


def esp(tmp_path: Path, name: str = "esp.img", files=FILES, **kw) -> bytes:
    args = {"serial": 0x1234ABCD, "mtime": MTIME, **kw}
    path = tmp_path / name
    fat.write_esp(path, files, **args)
    return path.read_bytes()


@pytest.fixture
def tz(monkeypatch):
    """Set TZ for the rest of the test (time.tzset), restored afterwards."""
    def set_tz(value: str) -> None:
        monkeypatch.setenv("TZ", value)
        time.tzset()

    yield set_tz
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(("mtime", "expected"), [
    (MTIME, (2017, 4, 18, 16, 30, 0)),
    (MTIME + 1, (2017, 4, 18, 16, 30, 0)),  # FAT has 2-second resolution: round down
    (0, (1980, 1, 1, 0, 0, 0)),  # FAT cannot store dates before 1980: clamp
    (fat.FAT_MIN_EPOCH - 1, (1980, 1, 1, 0, 0, 0)),
    (10**10, (2107, 12, 31, 23, 59, 58)),  # nor after 2107
])
def test_fat_time_is_utc_and_clamped(tz, mtime: int, expected: tuple) -> None:
    tz("Pacific/Kiritimati")  # UTC+14: a local-time conversion would show here
    assert fat.fat_time(mtime).timetuple()[:6] == expected


def test_contents_names_serial_and_dates(tmp_path: Path) -> None:
    esp(tmp_path)
    with PyFatFS(str(tmp_path / "esp.img"), read_only=True) as fs:
        for name, data in FILES.items():
            assert fs.readbytes("/" + name) == data
        assert sorted(fs.listdir("/")) == ["EFI", "boot"]
        assert sorted(fs.listdir("/EFI/BOOT")) == ["BOOTX64.EFI", "grub.cfg"]
        for name in [*FILES, "EFI", "EFI/BOOT", "boot", "boot/grub"]:
            info = fs.getinfo("/" + name, namespaces=["details"])
            assert info.modified.replace(tzinfo=None) == datetime.datetime(2017, 4, 18, 16, 30)
    bpb = (tmp_path / "esp.img").read_bytes()[:512]
    assert struct.unpack_from("<I", bpb, 39)[0] == 0x1234ABCD  # BS_VolID
    assert struct.unpack_from("<HH", bpb, 24) == (fat.SECTORS_PER_TRACK, fat.HEADS)
    assert bpb[54:62] == b"FAT12   "


def test_fsck_fat_accepts(tmp_path: Path) -> None:
    need("fsck.fat", "dosfstools")
    esp(tmp_path)
    proc = run(["fsck.fat", "-n", "-v", tmp_path / "esp.img"], capture=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"32 sectors/track, 64 heads" in proc.stdout


def test_mtools_accept(tmp_path: Path) -> None:
    need("mdir", "mtools")
    esp(tmp_path)
    image = tmp_path / "esp.img"
    listing = run(["mdir", "-i", image, "::/EFI/BOOT"], capture=True).stdout.decode()
    assert "BOOTX64  EFI" in listing and "grub.cfg" in listing
    assert "2017-04-18  16:30" in listing
    assert "Volume Serial Number is 1234-ABCD" in listing
    cfg = run(["mtype", "-i", image, "::/boot/grub/grub.cfg"], capture=True).stdout
    assert cfg == FILES["boot/grub/grub.cfg"]


def test_pinned_whatever_the_timezone_and_umask(tmp_path: Path, tz) -> None:
    tz("UTC")
    old = os.umask(0o022)
    try:
        a = esp(tmp_path, "a.img")
        tz("America/Adak")
        os.umask(0o077)
        b = esp(tmp_path, "b.img")
    finally:
        os.umask(old)
    assert a == b


def test_different_inputs_different_bytes(tmp_path: Path) -> None:
    base = esp(tmp_path, "a.img")
    assert esp(tmp_path, "b.img", serial=0x1234ABCE) != base
    assert esp(tmp_path, "c.img", mtime=MTIME + 2) != base


_CHILD = """
import sys
from pathlib import Path
from outputs import fat
from tests.unit.test_fat import FILES
drop = sys.argv[2]
if drop:
    orig = fat.patches
    fat.patches = lambda mtime: {k: v for k, v in orig(mtime).items() if k != drop}
fat.write_esp(Path(sys.argv[1]), FILES, serial=0x1234ABCD, mtime=1492533000)
"""


def build_under_faketime(tmp_path: Path, name: str, when: str, drop: str = "") -> bytes:
    need("faketime", "faketime")
    out = tmp_path / name
    root = Path(__file__).resolve().parents[2]
    subprocess.run(["faketime", when, sys.executable, "-c", _CHILD, str(out), drop],
                   cwd=root, check=True, env={**os.environ, "TZ": "Asia/Kathmandu"})
    return out.read_bytes()


def test_clock_is_pinned_under_faketime(tmp_path: Path) -> None:
    """pyfatfs dates new entries with datetime.now(): a real clock change, via libfaketime."""
    a = build_under_faketime(tmp_path, "a.img", "2001-02-03 04:05:06")
    b = build_under_faketime(tmp_path, "b.img", "2033-03-03 03:03:03")
    assert a == b


def test_clock_patch_is_what_pins_it(tmp_path: Path) -> None:
    """Without the DosDateTime.now patch, the same two clocks give different bytes."""
    a = build_under_faketime(tmp_path, "a.img", "2001-02-03 04:05:06", drop="clock")
    b = build_under_faketime(tmp_path, "b.img", "2033-03-03 03:03:03", drop="clock")
    assert a != b


def test_patches_are_restored(tmp_path: Path) -> None:
    from pyfatfs import PyFat as pyfat_module
    from pyfatfs.DosDateTime import DosDateTime

    before = (DosDateTime.__dict__["now"], pyfat_module.time)
    esp(tmp_path)
    assert (DosDateTime.__dict__["now"], pyfat_module.time) == before
    assert DosDateTime.now().year >= 2024  # the real clock again


def test_serial_is_never_derived_from_the_clock(tmp_path: Path) -> None:
    """A zero serial would make pyfatfs read localtime(): refused before it gets there."""
    with pytest.raises(ValueError, match="serial"):
        esp(tmp_path, serial=0)


def test_localtime_guard_raises(tmp_path: Path, monkeypatch) -> None:
    """If pyfatfs is ever asked to derive a serial, the guard turns the leak into an error."""
    from pyfatfs.PyFat import PyFat

    real_mkfs = PyFat.mkfs

    def mkfs_without_serial(self, filename, **kw):
        kw["volume_id"] = None
        return real_mkfs(self, filename, **kw)

    monkeypatch.setattr(PyFat, "mkfs", mkfs_without_serial)
    with pytest.raises(RuntimeError, match="local time"):
        esp(tmp_path)


def test_size_grows_with_content_and_has_a_limit(tmp_path: Path) -> None:
    small = fat.esp_size({"a": b"x"})
    assert small == 1 << 20
    assert fat.esp_size({"a": bytes(5 << 20)}) > 5 << 20
    with pytest.raises(ComposerError, match="32 MiB"):
        fat.write_esp(tmp_path / "big.img", {"EFI/BOOT/BOOTX64.EFI": bytes(40 << 20)},
                      serial=1, mtime=MTIME)


@pytest.mark.parametrize("size_mib", [1, 9, 17, 30])
def test_every_size_passes_fsck(tmp_path: Path, size_mib: int) -> None:
    """pyfatfs picks the cluster size from the image size; every one of ours must be valid."""
    need("fsck.fat", "dosfstools")
    files = {"EFI/BOOT/BOOTX64.EFI": b"\x5a" * ((size_mib << 20) - (700 << 10))}
    size = fat.write_esp(tmp_path / "esp.img", files, serial=7, mtime=MTIME)
    assert size <= fat.MAX_SIZE
    proc = run(["fsck.fat", "-n", tmp_path / "esp.img"], capture=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with PyFatFS(str(tmp_path / "esp.img"), read_only=True) as fs:
        assert fs.readbytes("/EFI/BOOT/BOOTX64.EFI") == files["EFI/BOOT/BOOTX64.EFI"]
