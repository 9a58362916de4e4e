"""Format rpi3: the SD card tar, read back with independent readers.

Python's tarfile reads the tar; u-boot-tools (``mkimage -l``/``dumpimage``) reads each uImage
and takes its data out; our uImages are byte for byte what ``mkimage`` makes of the same data
with the same options (``SOURCE_DATE_EPOCH`` gives it the same time); the kernel gunzips to
the rootfs's kernel and the initrd is the very initrd ``kernel+initrd`` writes; the firmware
files are the pinned packages' files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from composer.errors import ComposerError, UsageError
from composer.tar.canon import Entry, Kind
from outputs import FORMATS, Options, bootloader_debs, check_arch
from outputs.rpi3 import formats as rpi3
from outputs.rpi3 import uimage
from tests.unit.test_outputs import CMDLINE, KERNEL, OPTS, build, make_rootfs, rootfs_entries

DTB = b"\xd0\x0d\xfe\xed fake Pi 3 B device tree"
DTB_PLUS = b"\xd0\x0d\xfe\xed fake Pi 3 B+ device tree"
FIRMWARE = ("LICENCE.broadcom", "bootcode.bin", "fixup.dat", "fixup_cd.dat", "fixup_x.dat",
            "start.elf", "start_cd.elf", "start_x.elf", "u-boot.bin")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (apt-get install u-boot-tools)")
        pytest.skip(f"{tool} not installed (apt-get install u-boot-tools)")
    return path


def need_dpkg_deb() -> str:
    path = shutil.which("dpkg-deb")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dpkg-deb is required in CI (apt-get install dpkg)")
        pytest.skip("dpkg-deb not installed")
    return path


def pi_rootfs(path: Path, kernel: bytes = KERNEL, cmdline: bytes | None = CMDLINE,
              dtbs: bool = True) -> Path:
    entries = [e for e in rootfs_entries(cmdline=cmdline) if e[0].path != "boot/kernel"]
    entries.append((Entry("boot/kernel", Kind.FILE, 0o600, size=len(kernel)), kernel))
    if dtbs:
        for d in ("boot/dtb", "boot/dtb/broadcom"):
            entries.append((Entry(d, Kind.DIR, 0o755), None))
        for base, data in (("bcm2837-rpi-3-b.dtb", DTB), ("bcm2837-rpi-3-b-plus.dtb", DTB_PLUS),
                           ("bcm2711-rpi-4-b.dtb", b"not a Pi 3")):
            entries.append((Entry(f"boot/dtb/broadcom/{base}", Kind.FILE, 0o644,
                                  size=len(data)), data))
    return make_rootfs(path, entries)


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        f = tf.extractfile(name)
        assert f is not None
        return f.read()


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> bytes:
    tmp = tmp_path_factory.mktemp("rpi3")
    return build(pi_rootfs(tmp / "rootfs.tar"), tmp / "out", "rpi3")["hello.tar"]


def test_the_row() -> None:
    row = FORMATS["rpi3"]
    assert row.output_files("x") == ("x.tar",) and row.arches == frozenset({"arm64"})
    assert [p.role for p in row.bootloader_pins(OPTS)] == sorted(FIRMWARE)
    check_arch(["rpi3", "kernel+initrd"], "arm64")
    with pytest.raises(UsageError, match=r"^format rpi3 is for arm64 only, not amd64; "
                                         r"for amd64: "):
        check_arch(["rpi3"], "amd64")


def test_the_members_linuxkit_writes(card: bytes) -> None:
    got = members(card)
    assert sorted(got) == sorted([
        *FIRMWARE, "boot.scr", "boot.script", "config.txt", "dtb", "dtb/broadcom",
        "dtb/broadcom/bcm2837-rpi-3-b-plus.dtb", "dtb/broadcom/bcm2837-rpi-3-b.dtb",
        "initrd.uimg", "kernel.uimg"])
    assert list(got) == sorted(got, key=lambda p: p.replace("/", "\0"))  # canonical order
    for info in got.values():
        assert (info.uid, info.gid, info.mtime) == (0, 0, OPTS.mtime)
        assert info.mode == (0o755 if info.isdir() else 0o644)
    assert member(card, "dtb/broadcom/bcm2837-rpi-3-b.dtb") == DTB
    assert member(card, "dtb/broadcom/bcm2837-rpi-3-b-plus.dtb") == DTB_PLUS
    assert member(card, "config.txt") == (b"avoid_warnings=2\n# 64bit mode, serial and kernel\n"
                                          b"arm_control=0x200\nenable_uart=1\n"
                                          b"kernel=u-boot.bin\n")


def test_firmware_is_the_pinned_debs_files(card: bytes) -> None:
    """Each firmware file is the pinned .deb's file, as dpkg-deb unpacks it."""
    from composer.debian.pool import fetch

    rows = {role: bootloader_debs.FILES[role] for role in FIRMWARE}
    debs = fetch({row.deb for row in rows.values()})
    unpacked: dict[str, bytes] = {}
    for deb, path in debs.items():
        raw = subprocess.run([need_dpkg_deb(), "--fsys-tarfile", str(path)], check=True,
                             capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            for role, row in rows.items():
                if row.deb == deb:
                    f = tf.extractfile("./" + row.member)
                    assert f is not None
                    unpacked[role] = f.read()
    for role in FIRMWARE:
        data = member(card, role)
        assert data == unpacked[role], role
        assert hashlib.sha256(data).hexdigest() == bootloader_debs.FILES[role].sha256
    assert bootloader_debs.FILES["bootcode.bin"].deb.pool_paths()[0] == (
        "pool/non-free-firmware/r/raspi-firmware/raspi-firmware_1.20220830+ds-1_all.deb")
    assert bootloader_debs.FILES["u-boot.bin"].member == "usr/lib/u-boot/rpi_3/u-boot.bin"
    assert member(card, "start.elf")[:4] == b"\x7fELF"


def _mkimage_list(path: Path) -> str:
    return subprocess.run([need("mkimage"), "-l", str(path)], capture_output=True, text=True,
                          check=True).stdout


def _dump(path: Path, image_type: str, dest: Path) -> bytes:
    subprocess.run([need("dumpimage"), "-T", image_type, "-p", "0", "-o", str(dest), str(path)],
                   check=True, capture_output=True)
    return dest.read_bytes()


def test_uimages_read_back_with_u_boot_tools(card: bytes, tmp_path: Path, rootfs_kernel_initrd
                                             ) -> None:
    for name in ("kernel.uimg", "initrd.uimg", "boot.scr"):
        (tmp_path / name).write_bytes(member(card, name))
    kernel = _mkimage_list(tmp_path / "kernel.uimg")
    assert "Image Type:   AArch64 Linux Kernel Image (gzip compressed)" in kernel
    assert "Load Address: 00080000" in kernel and "Entry Point:  00080000" in kernel
    initrd = _mkimage_list(tmp_path / "initrd.uimg")
    assert "Image Type:   AArch64 Linux RAMDisk Image (gzip compressed)" in initrd
    assert "Load Address: 00000000" in initrd and "Entry Point:  00000000" in initrd
    script = _mkimage_list(tmp_path / "boot.scr")
    assert "Image Name:   RPi3" in script
    assert "Image Type:   AArch64 Linux Script (uncompressed)" in script
    created = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(OPTS.mtime))
    assert all(f"Created:      {created}" in out for out in (kernel, initrd, script))
    # the data CRCs: dumpimage checks them before it extracts (a wrong one is an error)
    assert gzip.decompress(_dump(tmp_path / "kernel.uimg", "kernel", tmp_path / "k")) == KERNEL
    assert _dump(tmp_path / "initrd.uimg", "ramdisk", tmp_path / "i") == \
        rootfs_kernel_initrd["hello-initrd.img"]
    # a script's data is mkimage's one-file list: its size, a 0, the script
    script_text = member(card, "boot.script")
    assert _dump(tmp_path / "boot.scr", "script", tmp_path / "s") == \
        len(script_text).to_bytes(4, "big") + bytes(4) + script_text


def test_a_corrupt_uimage_is_refused_by_dumpimage(card: bytes, tmp_path: Path) -> None:
    """The CRC check above can fail: one flipped data byte and dumpimage says so."""
    data = bytearray(member(card, "kernel.uimg"))
    data[100] ^= 1
    (tmp_path / "bad.uimg").write_bytes(bytes(data))
    proc = subprocess.run([need("dumpimage"), "-T", "kernel", "-p", "0", "-o",
                           str(tmp_path / "k"), str(tmp_path / "bad.uimg")], capture_output=True)
    assert proc.returncode != 0 and b"failed to verify header" in proc.stderr


@pytest.fixture(scope="module")
def rootfs_kernel_initrd(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("ki")
    return build(pi_rootfs(tmp / "rootfs.tar"), tmp / "out", "kernel+initrd")


def test_uimages_are_mkimages_bytes(card: bytes, tmp_path: Path) -> None:
    """The same data through ``mkimage`` with linuxkit's make-rpi3 options: the same bytes."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(OPTS.mtime)}
    (tmp_path / "boot.script").write_bytes(member(card, "boot.script"))
    for name, image_type, args in (
            ("kernel.uimg", "kernel", ["-T", "kernel", "-C", "gzip", "-a", "0x80000",
                                       "-e", "0x80000"]),
            ("initrd.uimg", "ramdisk", ["-T", "ramdisk"]),
            ("boot.scr", None, ["-T", "script", "-C", "none", "-a", "0x00000000",
                                "-e", "0x00000000", "-n", "RPi3"])):
        ours = tmp_path / name
        ours.write_bytes(member(card, name))
        data = tmp_path / f"{name}.data"
        if image_type is None:  # mkimage makes the script's list itself
            data = tmp_path / "boot.script"
        else:
            _dump(ours, image_type, data)
        theirs = tmp_path / f"{name}.mkimage"
        subprocess.run([need("mkimage"), "-A", "arm64", "-O", "linux", *args, "-d", str(data),
                        str(theirs)], check=True, capture_output=True, env=env)
        assert theirs.read_bytes() == ours.read_bytes(), name


def test_boot_script(card: bytes) -> None:
    script = member(card, "boot.script").decode()
    assert script.splitlines()[0] == f'setenv bootargs "{CMDLINE.decode()}"'
    assert "fatload mmc 0:1 ${fdt_addr_r} dtb/${fdtfile}\n" in script
    assert script.endswith("bootm ${loadaddr} ${ramdisk_addr_r} ${fdt_addr_r}\n")
    # linuxkit's own command line when the spec has none
    assert rpi3.boot_script("").decode().startswith(
        'setenv bootargs "dwc_otg.lpm_enable=0 earlyprintk console=tty1 '
        'console=ttyS0,115200 root=/dev/ram0 rw"\n')
    with pytest.raises(ComposerError, match=r"command line has \" \$"):
        rpi3.boot_script('init="$x"')


def test_a_gzip_kernel_is_kept_as_it_is(tmp_path: Path) -> None:
    """linuxkit's arm64 kernels are Image.gz: mkimage -C gzip takes them as they are."""
    gz = gzip.compress(KERNEL, mtime=0)
    out = build(pi_rootfs(tmp_path / "r.tar", kernel=gz), tmp_path / "out", "rpi3")
    assert member(out["hello.tar"], "kernel.uimg")[uimage.HEADER_SIZE:] == gz


def test_no_device_tree_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ComposerError, match=r"needs the Raspberry Pi 3 device trees "
                                            r"boot/dtb/broadcom/bcm2837-rpi-3-b\*\.dtb"):
        build(pi_rootfs(tmp_path / "r.tar", dtbs=False), tmp_path / "out", "rpi3")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_initrd_compression_is_in_the_ramdisk_header(tmp_path: Path) -> None:
    options = Options(mtime=OPTS.mtime, initrd_compression="zstd")
    out = build(pi_rootfs(tmp_path / "r.tar"), tmp_path / "out", "rpi3", options=options)
    initrd = member(out["hello.tar"], "initrd.uimg")
    assert initrd[31] == uimage.COMPRESSION["zstd"]
    assert initrd[uimage.HEADER_SIZE:uimage.HEADER_SIZE + 4] == b"\x28\xb5\x2f\xfd"


def test_the_same_bytes_whatever_the_umask_and_zone(card: bytes, tmp_path: Path,
                                                     monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    old = os.umask(0o077)
    try:
        again = build(pi_rootfs(tmp_path / "r.tar"), tmp_path / "out", "rpi3")["hello.tar"]
    finally:
        os.umask(old)
        monkeypatch.undo()
        time.tzset()
    assert again == card


def test_uimage_header_fields() -> None:
    head = uimage.header(size=5, data_crc=0x12345678, time=7, load=0x80000, entry=0x80000,
                         image_type=uimage.TYPE_KERNEL, compression="gzip", name="n")
    assert len(head) == 64 and head[:4] == b"\x27\x05\x19\x56"
    assert head[8:12] == (7).to_bytes(4, "big") and head[24:28] == bytes.fromhex("12345678")
    assert head[28:32] == bytes([5, 22, 2, 1]) and head[32:34] == b"n\0"
    with pytest.raises(ComposerError, match="longer than 32"):
        uimage.header(size=0, data_crc=0, time=0, load=0, entry=0, image_type=2,
                      compression="none", name="x" * 33)


def test_offline_never_downloads_the_firmware(tmp_path: Path) -> None:
    """``build --offline -f rpi3`` with an empty .deb cache (and a mirror that would answer):
    it fails naming the uncached pinned packages, downloads nothing and leaves no output."""
    from tests.golden.inputs import make_inputs
    from tests.unit.test_build import run_cli

    spec = make_inputs(tmp_path / "inputs", "arm64", rpi3=True)
    out = tmp_path / "out"
    proc = run_cli(["build", "--arch", "arm64", "-f", "rpi3", "-o", str(out), "--cache",
                    str(tmp_path / "c"), "--offline", str(spec)], cwd=tmp_path,
                   env_extra={"IMAGE_COMPOSER_DEB_CACHE": str(tmp_path / "debs"),
                              "IMAGE_COMPOSER_DEBIAN_MIRRORS": "http://127.0.0.1:9"})
    assert proc.returncode == 1, proc.stderr
    assert "raspi-firmware=1.20220830+ds-1 (all): not in" in proc.stderr
    assert "u-boot-rpi=2023.01+dfsg-2+deb12u3 (arm64): not in" in proc.stderr
    assert "(offline)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "debs").exists() or not any((tmp_path / "debs").iterdir())
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
