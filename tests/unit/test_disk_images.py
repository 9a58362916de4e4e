"""raw-bios, raw-efi, aws and the GRUB raw layer of qcow2-efi, end to end from a rootfs tar:
read back by sfdisk, sgdisk, fsck.fat and mtools (independent readers), identifiers derived
from content (each pin removed in turn changes the bytes), and the same bytes whatever the
TZ, umask or cwd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pefile
import pytest

from composer import tools
from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key
from outputs import FORMATS, Options, bootloaders, fat, output_files
from outputs.disk import layouts
from outputs.disk.formats import raw_layer
from tests.unit.test_disk_uki import RELEASE, fake_kernel

MIB = 1 << 20
OPTS = Options(mtime=1492533000, disk_size_mib=48)  # 2017-04-18T16:30:00Z
ROOT = Path(__file__).resolve().parents[2]
KERNEL = fake_kernel(3 * MIB + 12345)
CMDLINE = b"console=ttyS0 panic=-1\n"
TOOLS = {"sfdisk": "fdisk", "sgdisk": "gdisk", "fsck.fat": "dosfstools", "mcopy": "mtools",
         "mattrib": "mtools", "faketime": "faketime"}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (apt-get install {TOOLS.get(tool, tool)})")
        pytest.skip(f"{tool} not installed (apt-get install {TOOLS.get(tool, tool)})")
    return path


@pytest.fixture(autouse=True, scope="module")
def need_bootloaders() -> None:
    """The default pins are files of pinned Debian packages (fetched once into the deb cache);
    syslinux's installer needs mtools."""
    roles = {r for layout in layouts.LAYOUTS.values() for r in layout.roles}
    problem = None if shutil.which("mcopy") else "mtools missing (apt-get install mtools)"
    try:
        bootloaders.load_all(tuple(bootloaders.DEFAULTS[r] for r in sorted(roles)))
    except ComposerError as exc:
        problem = f"bootloaders unavailable: {exc}"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)


def make_rootfs(path: Path, marker: bytes = b"box1\n") -> Path:
    entries = [
        (Entry("boot", Kind.DIR, 0o755), None),
        (Entry("boot/cmdline", Kind.FILE, 0o644, size=len(CMDLINE)), CMDLINE),
        (Entry("boot/kernel", Kind.FILE, 0o600, size=len(KERNEL)), KERNEL),
        (Entry("etc", Kind.DIR, 0o755), None),
        (Entry("etc/hostname", Kind.FILE, 0o644, size=len(marker)), marker),
        (Entry("init", Kind.FILE, 0o755, size=len(KERNEL)), KERNEL),  # some initrd bulk
    ]
    with open(path, "wb") as f:
        w = CanonicalTarWriter(f)
        for entry, data in sorted(entries, key=lambda e: sort_key(e[0].path)):
            w.add(entry, data)
        w.close()
    return path


def build(rootfs: Path, out: Path, fmt: str, options: Options = OPTS) -> Path:
    with OutputSet(out) as outset:
        if fmt == "qcow2-efi":  # no container writer here: its raw layer
            with raw_layer(rootfs, "hello", outset, options, fmt) as raw:
                shutil.copyfile(raw, out / "grub-efi.raw")
            outset.commit()
            return out / "grub-efi.raw"
        FORMATS[fmt].convert(rootfs, "hello", outset, options)
        outset.commit()
    return out / output_files(fmt, "hello")[0]


FORMATS_BUILT = ("raw-bios", "raw-efi", "aws", "qcow2-efi")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("disks")
    rootfs = make_rootfs(tmp / "rootfs.tar")
    return {fmt: build(rootfs, tmp / fmt, fmt) for fmt in FORMATS_BUILT}


def partition(image: Path, tmp_path: Path) -> Path:
    """Partition 1 (from the table sfdisk reads) as its own file."""
    table = json.loads(tools.run([need("sfdisk"), "--json", image], capture=True).stdout)
    [part] = table["partitiontable"]["partitions"]
    out = tmp_path / f"{image.name}.part"
    with open(image, "rb") as src, open(out, "wb") as dst:
        src.seek(part["start"] * 512)
        dst.write(src.read(part["size"] * 512))
    return out


def mread(image: Path, path: str) -> bytes:
    return tools.run([need("mcopy"), "-n", "-i", f"{image}@@1M", f"::/{path}", "-"],
                     capture=True).stdout


@pytest.mark.parametrize("fmt", ["raw-bios", "aws"])
def test_mbr_disks_pass_sfdisk(images: dict[str, Path], fmt: str) -> None:
    sfdisk = need("sfdisk")
    tools.run([sfdisk, "-V", images[fmt]])
    table = json.loads(tools.run([sfdisk, "--json", images[fmt]], capture=True).stdout)
    [part] = table["partitiontable"]["partitions"]
    size = images[fmt].stat().st_size
    assert part["start"] == 2048 and part.get("bootable") is True and part["type"] == "6"
    if fmt == "aws":  # --size, the partition to the very end
        assert size == 48 * MIB and part["start"] + part["size"] == size // 512
    else:  # content-sized: 1 MiB before, 3 MiB after the partition
        assert size == (part["size"] * 512) + 4 * MIB
    mbr_code = bootloaders.load(bootloaders.DEFAULTS[bootloaders.MBR])
    assert images[fmt].read_bytes()[:440] == mbr_code.ljust(440, b"\0")


@pytest.mark.parametrize("fmt", ["raw-efi", "qcow2-efi"])
def test_gpt_disks_pass_sgdisk(images: dict[str, Path], fmt: str) -> None:
    sgdisk = need("sgdisk")
    out = tools.run([sgdisk, "-v", images[fmt]], capture=True).stdout.decode()
    assert "No problems found" in out, out
    info = tools.run([sgdisk, "-i", "1", images[fmt]], capture=True).stdout.decode()
    assert "EFI system partition" in info and "First sector: 2048" in info


@pytest.mark.parametrize("fmt", FORMATS_BUILT)
def test_partition_passes_fsck_fat(images: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    proc = subprocess.run([need("fsck.fat"), "-n", partition(images[fmt], tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "differences" not in proc.stdout and "wrong" not in proc.stdout, proc.stdout


def test_bios_partition_holds_syslinux_and_linuxkits_cfg(images: dict[str, Path]) -> None:
    for fmt in ("raw-bios", "aws"):
        image = images[fmt]
        assert mread(image, "kernel") == KERNEL
        assert mread(image, "syslinux.cfg") == (
            b"DEFAULT linux\nLABEL linux\n    KERNEL /kernel\n    INITRD /initrd.img\n"
            b"    APPEND console=ttyS0 panic=-1\n")
        initrd = mread(image, "initrd.img")
        assert initrd[:2] == b"\x1f\x8b"  # the gzip'd cpio kernel+initrd writes
        attrs = tools.run([need("mattrib"), "-i", f"{image}@@1M", "::/ldlinux.sys",
                           "::/ldlinux.c32", "::/kernel"], capture=True).stdout.decode()
        assert [line.split() for line in attrs.splitlines()] == [
            ["A", "SHR", "::/ldlinux.sys"], ["A", "SHR", "::/ldlinux.c32"], ["::/kernel"]]
        assert len(mread(image, "ldlinux.sys")) > 32768
        with open(image, "rb") as f:
            f.seek(MIB)
            boot = f.read(512)
        assert boot[3:11] == b"SYSLINUX" and boot[510:] == b"\x55\xaa"
        assert int.from_bytes(boot[28:32], "little") == 2048  # hidden sectors = start


def test_efi_partition_holds_systemd_boot_and_the_uki(images: dict[str, Path],
                                                     tmp_path: Path) -> None:
    image = images["raw-efi"]
    sdboot = bootloaders.load(bootloaders.DEFAULTS[bootloaders.SYSTEMD_BOOT])
    assert mread(image, "EFI/BOOT/BOOTX64.EFI") == sdboot
    assert mread(image, "loader/loader.conf") == b"timeout 0\n"
    (tmp_path / "uki.efi").write_bytes(mread(image, "EFI/Linux/linuxkit.efi"))
    pe = pefile.PE(str(tmp_path / "uki.efi"))
    sections = {s.Name.rstrip(b"\0"): s for s in pe.sections}
    cmdline = sections[b".cmdline"]
    assert cmdline.get_data()[:cmdline.Misc_VirtualSize] == b"console=ttyS0 panic=-1"
    assert sections[b".uname"].get_data()[:len(RELEASE)] == RELEASE
    assert sections[b".linux"].get_data()[:len(KERNEL)] == KERNEL
    assert pe.verify_checksum()


def test_grub_partition(images: dict[str, Path]) -> None:
    image = images["qcow2-efi"]
    grub = bootloaders.load(bootloaders.DEFAULTS[bootloaders.GRUB_EFI])
    assert mread(image, "EFI/BOOT/BOOTX64.EFI") == grub
    cfg = mread(image, "EFI/BOOT/grub.cfg")
    assert cfg == mread(image, "boot/grub/grub.cfg")
    assert cfg == (b"set timeout=0\nset gfxpayload=text\nmenuentry 'LinuxKit ISO Image' {\n"
                   b"\tlinux /kernel 'console=ttyS0' 'panic=-1'\n  initrd /initrd.img\n}\n")
    assert mread(image, "kernel") == KERNEL


def test_aws_is_sparse(images: dict[str, Path]) -> None:
    st = images["aws"].stat()
    assert st.st_blocks * 512 < st.st_size // 2, (st.st_blocks, st.st_size)


# -- identity: derived from content, each pin tested by removing it --------------------------
def identifiers(image: Path) -> dict[str, bytes]:
    data = image.read_bytes()
    out = {"fat-serial": data[MIB + 39:MIB + 43]}  # BS_VolID of FAT16
    if data[512:520] == b"EFI PART":
        out["gpt-disk-guid"] = data[512 + 56:512 + 72]
        out["gpt-esp-guid"] = data[1024 + 16:1024 + 32]
    else:
        out["mbr-signature"] = data[440:444]
    return out


def test_identifiers_come_from_content(images: dict[str, Path], tmp_path: Path) -> None:
    other = make_rootfs(tmp_path / "other.tar", marker=b"box2\n")
    for fmt in ("raw-bios", "raw-efi"):
        mine = identifiers(images[fmt])
        theirs = identifiers(build(other, tmp_path / fmt, fmt))
        assert all(mine[k] != theirs[k] for k in mine), fmt
        assert len(set(mine.values())) == len(mine)  # each purpose its own value
    again = identifiers(build(make_rootfs(tmp_path / "same.tar"), tmp_path / "same",
                              "raw-efi"))
    assert again == identifiers(images["raw-efi"])


@pytest.mark.parametrize(("fmt", "purpose"), [
    ("raw-bios", "mbr-signature"), ("raw-bios", "fat-serial"),
    ("raw-efi", "gpt-disk-guid"), ("raw-efi", "gpt-esp-guid"), ("raw-efi", "fat-serial")])
def test_each_identifier_pin(images: dict[str, Path], tmp_path: Path, monkeypatch,
                             fmt: str, purpose: str) -> None:
    """Derive one identifier from something else than the seed: those bytes, and only
    those, change."""
    real_u32, real = layouts.derive_u32, layouts.derive
    monkeypatch.setattr(layouts, "derive_u32", lambda s, p: real_u32(
        s if p != purpose else b"not the seed", p))
    monkeypatch.setattr(layouts, "derive", lambda s, p, n: real(
        s if p != purpose else b"not the seed", p, n))
    path = build(make_rootfs(tmp_path / "rootfs.tar"), tmp_path / "out", fmt)
    old, new = identifiers(images[fmt]), identifiers(path)
    assert old[purpose] != new[purpose]
    assert {k: v for k, v in old.items() if k != purpose} == \
        {k: v for k, v in new.items() if k != purpose}


def test_seed_covers_size_and_bootloaders() -> None:
    pins = bootloaders.resolve(layouts.BIOS_SIZED.roles)
    base = {"mtime": 1, "gzip_level": 6}
    assert layouts.seed("a" * 64, layouts.BIOS_SIZED, pins, size_mib=64, **base) != \
        layouts.seed("a" * 64, layouts.BIOS_SIZED, pins, size_mib=65, **base)
    other = (bootloaders.Pin(pins[0].role, "/x", "sha256:" + "0" * 64), *pins[1:])
    assert layouts.seed("a" * 64, layouts.BIOS_SIZED, pins, size_mib=64, **base) != \
        layouts.seed("a" * 64, layouts.BIOS_SIZED, other, size_mib=64, **base)
    # a content-sized layout ignores --size
    assert layouts.seed("a" * 64, layouts.BIOS, pins, size_mib=64, **base) == \
        layouts.seed("a" * 64, layouts.BIOS, pins, size_mib=65, **base)


@pytest.mark.parametrize("leak", ["SOURCE_DATE_EPOCH", "TZ"])
def test_mtools_time_pins(images: dict[str, Path], tmp_path: Path, monkeypatch,
                          leak: str) -> None:
    """Without SOURCE_DATE_EPOCH mcopy stamps ldlinux.sys with the clock; without TZ=UTC it
    writes the pinned time in local time: either way the bytes change."""
    from outputs.disk import syslinux

    real_run, real_env = tools.run, tools.tool_env

    def leaky_run(argv, **kw):
        env = dict(kw.pop("env", None) or {})
        if leak == "SOURCE_DATE_EPOCH":
            env.pop("SOURCE_DATE_EPOCH", None)
            return real_run(argv, env=env, **kw)
        monkeypatch.setattr(tools, "tool_env", lambda extra=None, **kw: {
            **real_env(extra, **kw), "TZ": "Asia/Kolkata"})
        try:
            return real_run(argv, env=env, **kw)
        finally:
            monkeypatch.setattr(tools, "tool_env", real_env)

    monkeypatch.setattr(syslinux.tools, "run", leaky_run)
    path = build(make_rootfs(tmp_path / "rootfs.tar"), tmp_path / "out", "raw-bios")
    assert path.read_bytes() != images["raw-bios"].read_bytes()


def test_same_bytes_under_other_clock_tz_umask_and_cwd(images: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """In a child process under libfaketime (which mcopy and syslinux inherit), another TZ,
    umask, locale, hash seed and cwd: the same bytes."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from tests.unit.test_disk_images import build, make_rootfs
        out = Path(sys.argv[1])
        rootfs = make_rootfs(out / "rootfs.tar")
        for fmt in {FORMATS_BUILT!r}:
            build(rootfs, out / fmt, fmt)
    """)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "TZ": "Pacific/Kiritimati", "LC_ALL": "C.UTF-8",
           "PYTHONHASHSEED": "123"}
    subprocess.run([need("faketime"), "2031-07-07 07:07:07", sys.executable, "-c", script,
                    str(tmp_path)], cwd=cwd, env=env, check=True,
                   preexec_fn=lambda: os.umask(0o077), timeout=600)
    for fmt, image in images.items():
        assert (tmp_path / fmt / image.name).read_bytes() == image.read_bytes(), fmt


def test_bootloader_override_changes_the_disk(images: dict[str, Path], tmp_path: Path) -> None:
    code = b"\xfa\xeb\xfe" + bytes(437)  # cli; jmp $
    path = tmp_path / "mbr.bin"
    path.write_bytes(code)
    import hashlib

    pin = bootloaders.Pin(bootloaders.MBR, str(path), "sha256:" + hashlib.sha256(code).hexdigest())
    options = Options(mtime=OPTS.mtime, disk_size_mib=48, bootloaders=(pin,))
    out = build(make_rootfs(tmp_path / "rootfs.tar"), tmp_path / "out", "raw-bios", options)
    data = out.read_bytes()
    assert data[:440] == code
    assert data[440:444] != images["raw-bios"].read_bytes()[440:444]  # another seed


def test_build_record_lists_disk_pins_and_size() -> None:
    from composer.repro.record import options_record

    record = options_record(OPTS, ("aws", "raw-efi"))
    assert record["disk_size_mib"] == 48
    assert set(record["bootloaders"]) == {bootloaders.MBR, bootloaders.SYSLINUX,
                                          bootloaders.EFI_STUB, bootloaders.SYSTEMD_BOOT}
    assert "disk_size_mib" not in options_record(OPTS, ("raw-efi",))
    # the syslinux disks run the pinned mtools, and say which; the EFI disks run no tool
    assert record["tools"] == {"mcopy": "mtools=4.0.33-1+really4.0.32-1"}
    assert "tools" not in options_record(OPTS, ("raw-efi",))


def test_syslinux_disks_never_run_the_hosts_mtools(images: dict[str, Path], tmp_path: Path,
                                                   monkeypatch) -> None:
    """Debian 13's mtools 4.0.48 (or none) on PATH changes nothing: the syslinux installer
    finds the pinned Debian 12 mcopy first. Here the host's mcopy and mattrib would fail."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("mcopy", "mattrib", "mtools"):
        (fake / name).write_text("#!/bin/sh\necho host mtools ran >&2\nexit 7\n")
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    path = build(make_rootfs(tmp_path / "rootfs.tar"), tmp_path / "out", "raw-bios")
    assert path.read_bytes() == images["raw-bios"].read_bytes()


# -- sizes and limits ------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "mib"), [("1024M", 1024), ("2G", 2048), ("3", 3072),
                                          ("512m", 512), (" 64M ", 64)])
def test_size_syntax_is_linuxkits(text: str, mib: int) -> None:
    assert layouts.parse_size_mib(text) == mib


@pytest.mark.parametrize("text", ["", "0M", "1T", "1.5G", "-1G", "M"])
def test_bad_sizes(text: str) -> None:
    from composer.errors import UsageError

    with pytest.raises(UsageError, match="--size"):
        layouts.parse_size_mib(text)


def test_size_too_small_is_one_error_and_no_output(tmp_path: Path) -> None:
    options = Options(mtime=OPTS.mtime, disk_size_mib=6)
    out = tmp_path / "out"
    with pytest.raises(ComposerError, match="too small"):
        build(make_rootfs(tmp_path / "rootfs.tar"), out, "aws", options)
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_fat_file_limit(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(4 << 30)  # sparse: no disk space used
    with pytest.raises(ComposerError, match="4 GiB"):
        fat.write_fat(tmp_path / "fs.img", {"big": big}, size=64 * MIB, serial=1, mtime=0,
                      label="X")


def test_fat32_fsinfo_and_backup(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    bits = fat.write_fat(image, {"a/b": b"x" * 100000, "c": b"y"}, size=520 * MIB, serial=7,
                         mtime=OPTS.mtime, label="ESP", hidden_sectors=2048)
    assert bits == 32
    proc = subprocess.run([need("fsck.fat"), "-n", image], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and "wrong" not in proc.stdout, proc.stdout
    data = image.read_bytes()[:7 * 512]
    assert data[:512] == data[6 * 512:7 * 512]  # backup boot sector


def test_guid_helper_matches_uuid_module() -> None:
    from outputs.disk.gpt import guid_from

    assert isinstance(guid_from(bytes(16)), uuid.UUID)


def test_sized_partition_fills_the_disk_up_to_the_fat32_limit() -> None:
    assert layouts.disk_geometry(layouts.BIOS_SIZED, None, 1024) == (1024 * MIB, 1023 * MIB)
    disk, part = layouts.disk_geometry(layouts.BIOS_SIZED, None, 64 * 1024)
    assert (disk, part) == (64 << 30, fat.FAT32_MAX)
    assert layouts.disk_geometry(layouts.BIOS, 20 * MIB, 64 * 1024) == (24 * MIB, 20 * MIB)
