"""ISO formats: layout, El Torito, isohybrid MBR/GPT, ESP, configs, external oracles, and bytes
that depend on nothing but the input (clock, TZ, umask, cwd, randomness, each pycdlib leak)."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pycdlib
import pytest

from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key
from composer.tools import run
from outputs import FORMATS, Options, boot, bootloader_debs, bootloaders, output_files
from outputs.iso import formats as iso
from outputs.iso import iso9660
from tests.fixtures.perturb import environment  # noqa: F401 - a fixture

KERNEL = b"MZ not really a bzImage\n" * 400
CMDLINE = b"console=ttyS0 panic=-1 quiet\n"
OPTS = Options(mtime=1492533000)  # 2017-04-18T16:30:00Z
ISO_FORMATS = ("iso-bios", "iso-efi", "iso-efi-initrd", "iso-hybrid")
ROOT = Path(__file__).resolve().parents[2]
COMMON = {"boot", "boot/boot.cat", "boot/cmdline", "boot/initrd.img", "boot/kernel"}
BIOS_FILES = {"isolinux", "isolinux/isolinux.bin", "isolinux/isolinux.cfg",
              "isolinux/ldlinux.c32"}
EFI_FILES = {"boot/efi.img", "boot/grub", "boot/grub/grub.cfg"}


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (apt-get install {package})")
        pytest.skip(f"{tool} not installed (apt-get install {package})")


@pytest.fixture(autouse=True)
def need_bootloaders() -> None:
    """The default pins are files of pinned Debian packages, fetched once into the deb cache;
    without Debian's archive (and no cache) no ISO can be built here."""
    try:
        bootloaders.load_all(tuple(bootloaders.DEFAULTS.values()))
    except ComposerError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"bootloaders unavailable: {exc}")
        pytest.skip(f"bootloaders unavailable: {exc}")


def make_rootfs(path: Path, *, kernel: bytes | None = KERNEL, cmdline: bytes | None = CMDLINE,
                big: int = 0) -> Path:
    entries: list[tuple[Entry, bytes | None]] = [
        (Entry("bin", Kind.DIR, 0o755), None),
        (Entry("bin/busybox", Kind.FILE, 0o755, mtime=7, size=4), b"BBOX"),
        (Entry("bin/sh", Kind.HARDLINK, 0o755, mtime=7, linkname="bin/busybox"), None),
        (Entry("boot", Kind.DIR, 0o755), None),
        (Entry("etc", Kind.DIR, 0o755), None),
        (Entry("etc/hostname", Kind.FILE, 0o644, size=5), b"box1\n"),
        (Entry("init", Kind.SYMLINK, 0o777, linkname="bin/busybox"), None),
    ]
    if kernel is not None:
        entries.append((Entry("boot/kernel", Kind.FILE, 0o600, size=len(kernel)), kernel))
    if cmdline is not None:
        entries.append((Entry("boot/cmdline", Kind.FILE, 0o644, size=len(cmdline)), cmdline))
    with open(path, "wb") as f:
        w = CanonicalTarWriter(f)
        for entry, data in sorted(entries, key=lambda e: sort_key(e[0].path)):
            w.add(entry, data)
        if big:
            w.add(Entry("zz", Kind.FILE, 0o644, size=big), io.BytesIO(bytes(big)))
        w.close()
    return path


def build(rootfs: Path, out: Path, fmt: str, options: Options = OPTS) -> Path:
    with OutputSet(out) as outset:
        FORMATS[fmt].convert(rootfs, "hello", outset, options)
        outset.commit()
    return out / output_files(fmt, "hello")[0]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_rootfs(tmp_path / "rootfs.tar")


@pytest.fixture(scope="module")
def isos(tmp_path_factory) -> dict[str, Path]:
    """Every ISO format built once from the same rootfs (read-only for the tests)."""
    tmp = tmp_path_factory.mktemp("isos")
    rootfs = make_rootfs(tmp / "rootfs.tar")
    return {fmt: build(rootfs, tmp / "out", fmt) for fmt in (*ISO_FORMATS, "kernel+initrd")}


def read_iso(path: Path) -> tuple[dict[str, bytes | None], pycdlib.PyCdlib]:
    """Rock Ridge path -> content (None for directories), and the open reader."""
    reader = pycdlib.PyCdlib()
    reader.open(str(path))
    tree: dict[str, bytes | None] = {}
    for root, dirs, files in reader.walk(rr_path="/"):
        base = root.strip("/")
        for d in dirs:
            tree[f"{base}/{d}".lstrip("/")] = None
        for f in files:
            full = f"{base}/{f}".lstrip("/")
            buf = io.BytesIO()
            reader.get_file_from_iso_fp(buf, rr_path="/" + full)
            tree[full] = buf.getvalue()
    return tree, reader


def image_id(tree: dict[str, bytes | None]) -> str:
    [marker] = [p for p in tree if p.startswith("boot/image_id_")]
    return marker.removeprefix("boot/image_id_")


def extract_esp(iso_file: Path, dest: Path) -> Path:
    tree, reader = read_iso(iso_file)
    reader.close()
    dest.write_bytes(tree["boot/efi.img"])
    return dest


# --- the format table and the layout ------------------------------------------------------------

def test_formats_and_file_names() -> None:
    assert {f: output_files(f, "x") for f in ISO_FORMATS} == {
        "iso-bios": ("x.iso",), "iso-efi": ("x-efi.iso",),
        "iso-efi-initrd": ("x-efi-initrd.iso",), "iso-hybrid": ("x-hybrid.iso",)}
    assert all(f in FORMATS and FORMATS[f].family == "iso" for f in ISO_FORMATS)


@pytest.mark.parametrize("fmt", ISO_FORMATS)
def test_pycdlib_reads_back_the_layout(isos, fmt: str) -> None:
    tree, reader = read_iso(isos[fmt])
    reader.close()
    layout = iso.LAYOUTS[fmt]
    expected = set(COMMON) | {f"boot/image_id_{image_id(tree)}"}
    expected |= BIOS_FILES if layout.bios else set()
    expected |= EFI_FILES if layout.efi else set()
    assert set(tree) == expected
    assert tree["boot/kernel"] == KERNEL
    assert tree["boot/cmdline"] == CMDLINE
    assert len(image_id(tree)) == 16


@pytest.mark.parametrize("fmt", ISO_FORMATS)
def test_initrd_is_the_kernel_initrd_formats_initrd(isos, fmt: str) -> None:
    """One initrd code path: the ISO carries exactly what kernel+initrd writes."""
    tree, reader = read_iso(isos[fmt])
    reader.close()
    assert tree["boot/initrd.img"] == (isos["kernel+initrd"].parent
                                       / "hello-initrd.img").read_bytes()
    assert b"etc/hostname" in gzip.decompress(tree["boot/initrd.img"])


def test_iso_efi_and_iso_efi_initrd_are_the_same_bytes(isos) -> None:
    assert isos["iso-efi"].read_bytes() == isos["iso-efi-initrd"].read_bytes()


def test_names_and_attributes(isos) -> None:
    """Rock Ridge names in lower case, ISO 9660 names the same in upper case; read-only, root,
    dated mtime in UTC."""
    _, reader = read_iso(isos["iso-hybrid"])
    try:
        rec = reader.get_record(iso_path="/BOOT/INITRD.IMG;1")
        assert rec.rock_ridge.name() == b"initrd.img"
        assert reader.get_record(iso_path="/ISOLINUX/LDLINUX.C32;1").rock_ridge.name() \
            == b"ldlinux.c32"
        assert rec.rock_ridge.get_file_mode() == 0o100444
        date = rec.date
        assert (date.years_since_1900 + 1900, date.month, date.day_of_month, date.hour,
                date.minute, date.second, date.gmtoffset) == (2017, 4, 18, 16, 30, 0, 0)
        pvd = reader.pvd
        assert pvd.volume_identifier.rstrip() == b"IMAGE_COMPOSER"
        for vd_date in (pvd.volume_creation_date, pvd.volume_modification_date,
                        pvd.volume_effective_date):
            assert vd_date.record()[:16] == b"2017041816300000"
            assert vd_date.gmtoffset == 0
    finally:
        reader.close()


# --- El Torito, boot info table, isohybrid MBR and GPT ------------------------------------------

def test_el_torito_entries(isos) -> None:
    for fmt, platform, sections in (("iso-bios", 0, 0), ("iso-efi", 0xEF, 0),
                                    ("iso-hybrid", 0, 1)):
        _, reader = read_iso(isos[fmt])
        try:
            cat = reader.eltorito_boot_catalog
            assert cat.validation_entry.platform_id == platform
            assert cat.initial_entry.boot_indicator == 0x88
            assert cat.initial_entry.boot_media_type == 0  # no emulation
            if iso.LAYOUTS[fmt].bios:
                isolinux = reader.get_record(iso_path="/ISOLINUX/ISOLINUX.BIN;1")
                assert cat.initial_entry.sector_count == 4
                assert cat.initial_entry.load_rba == isolinux.extent_location()
            else:
                esp = reader.get_record(iso_path="/BOOT/EFI.IMG;1")
                assert cat.initial_entry.load_rba == esp.extent_location()
            assert len(cat.sections) == sections
            if sections:
                [section] = cat.sections
                assert section.platform_id == 0xEF
                [entry] = section.section_entries
                esp = reader.get_record(iso_path="/BOOT/EFI.IMG;1")
                assert entry.load_rba == esp.extent_location()
                assert entry.sector_count == esp.get_data_length() // 512
        finally:
            reader.close()


@pytest.mark.parametrize("fmt", ["iso-bios", "iso-hybrid"])
def test_boot_info_table(isos, fmt: str) -> None:
    """isolinux.bin on the ISO carries the PVD LBA, its own LBA and length (bytes 8..24)."""
    data = isos[fmt].read_bytes()
    _, reader = read_iso(isos[fmt])
    rec = reader.get_record(iso_path="/ISOLINUX/ISOLINUX.BIN;1")
    lba, length = rec.extent_location(), rec.get_data_length()
    reader.close()
    on_disc = data[lba * 2048:lba * 2048 + length]
    original = bootloaders.load(bootloaders.DEFAULTS["isolinux.bin"])
    assert struct.unpack_from("<III", on_disc, 8) == (16, lba, length)
    assert on_disc[:8] == original[:8] and on_disc[64:] == original[64:]


@pytest.mark.parametrize("fmt", ["iso-bios", "iso-hybrid"])
def test_isohybrid_mbr(isos, fmt: str) -> None:
    data = isos[fmt].read_bytes()
    isohdpfx = bootloaders.load(bootloaders.DEFAULTS["isohdpfx.bin"])
    assert data[:432] == isohdpfx  # the pinned MBR code, not pycdlib's older copy
    assert data[510:512] == b"\x55\xaa"
    assert len(data) % (1 << 20) == 0  # padded to whole cylinders (64 heads x 32 sectors)
    mbr_id = struct.unpack_from("<I", data, 440)[0]
    assert mbr_id != 0
    parts = [struct.unpack_from("<B3xB3xII", data, 446 + 16 * i) for i in range(4)]
    status, ptype, start, count = parts[0]
    assert status == 0x80 and start == 0 and count == len(data) // 512
    if fmt == "iso-bios":
        assert ptype == 0x17 and parts[1] == (0, 0, 0, 0)
    else:
        _, reader = read_iso(isos[fmt])
        esp = reader.get_record(iso_path="/BOOT/EFI.IMG;1")
        lba, length = esp.extent_location(), esp.get_data_length()
        reader.close()
        assert ptype == 0
        assert parts[1] == (0, 0xEF, lba * 4, length // 512)


def test_hybrid_gpt_is_consistent(isos) -> None:
    """Header and entry-array CRCs over all 128 entries, and the backup GPT repeating the
    primary's GUIDs (two pycdlib bugs the wrapper fixes)."""
    data = isos["iso-hybrid"].read_bytes()

    def header(lba: int) -> tuple:
        raw = bytearray(data[lba * 512:lba * 512 + 92])
        assert raw[:8] == b"EFI PART"
        crc = struct.unpack_from("<I", raw, 16)[0]
        raw[16:20] = bytes(4)
        assert zlib.crc32(raw) == crc
        current, backup = struct.unpack_from("<QQ", raw, 24)
        disk_guid = bytes(raw[56:72])
        entries_lba, count, size, array_crc = struct.unpack_from("<QIII", raw, 72)
        array = data[entries_lba * 512:entries_lba * 512 + count * size]
        assert count == 128 and size == 128
        assert zlib.crc32(array) == array_crc
        return current, backup, disk_guid, array

    current, backup, guid, array = header(1)
    assert current == 1 and backup == len(data) // 512 - 1
    b_current, b_backup, b_guid, b_array = header(backup)
    assert (b_current, b_backup) == (backup, 1)
    assert b_guid == guid and b_array == array
    assert array[32:48] != array[128 + 32:128 + 48]  # partition GUIDs differ


# --- boot configs ------------------------------------------------------------------------------

def test_isolinux_and_grub_configs(isos) -> None:
    tree, reader = read_iso(isos["iso-hybrid"])
    reader.close()
    ident = image_id(tree)
    cfg = tree["isolinux/isolinux.cfg"].decode()
    assert "  LINUX /boot/kernel\n" in cfg and "  INITRD /boot/initrd.img\n" in cfg
    assert "  APPEND console=ttyS0 panic=-1 quiet\n" in cfg
    grub = tree["boot/grub/grub.cfg"].decode()
    assert f"search --no-floppy --set=root --file /boot/image_id_{ident}\n" in grub
    assert "linux /boot/kernel 'console=ttyS0' 'panic=-1' 'quiet'\n" in grub
    assert grub.endswith("initrd /boot/initrd.img\nboot\n")
    assert tree[f"boot/image_id_{ident}"] == f"{ident}\n".encode()


def test_command_line_words_and_quoting() -> None:
    assert boot.command_line(b"  a=1\n\tb  c\n") == "a=1 b c"
    assert boot.command_line(b"") == ""
    with pytest.raises(ComposerError, match="UTF-8"):
        boot.command_line(b"\xff")
    assert boot.grub_quote("it's $x;#") == "'it'\\''s $x;#'"
    assert iso.isolinux_cfg("").decode().splitlines()[-1] == "  APPEND"
    assert iso.grub_cfg("", "00").decode().splitlines()[2] == "linux /boot/kernel"


def test_no_cmdline_means_an_empty_one(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "r.tar", cmdline=None)
    tree, reader = read_iso(build(rootfs, tmp_path / "out", "iso-hybrid"))
    reader.close()
    assert tree["boot/cmdline"] == b""
    assert "  APPEND\n" in tree["isolinux/isolinux.cfg"].decode()


def test_no_kernel_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "r.tar", kernel=None)
    out = tmp_path / "out"
    with pytest.raises(ComposerError, match="boot/kernel"):
        build(rootfs, out, "iso-bios")
    assert list(out.iterdir()) == []


# --- external tools as oracles ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ISO_FORMATS)
def test_xorriso_reports_el_torito(isos, fmt: str) -> None:
    need("xorriso", "xorriso")
    proc = run(["xorriso", "-indev", isos[fmt], "-report_el_torito", "plain",
                "-report_system_area", "plain"], capture=True)
    report = proc.stdout.decode()
    images = [ln.split() for ln in report.splitlines() if ln.startswith("El Torito boot img :")]
    paths = [ln.split(":", 1)[1].split() for ln in report.splitlines()
             if ln.startswith("El Torito img path :")]
    layout = iso.LAYOUTS[fmt]
    expected = ([["1", "/isolinux/isolinux.bin"]] if layout.bios else []) + \
        ([[str(1 + layout.bios), "/boot/efi.img"]] if layout.efi else [])
    assert paths == expected
    assert [img[6] for img in images] == (["BIOS"] if layout.bios else []) + \
        (["UEFI"] if layout.efi else [])
    assert "El Torito cat path : /boot/boot.cat" in report
    assert "wrong" not in report and "problems" not in report, report
    if layout.isohybrid:
        assert "MBR isohybrid cyl-align-on" in report
    if layout.isohybrid and layout.efi:
        assert "GPT partition path :   2  /boot/efi.img" in report


@pytest.mark.parametrize("fmt", ISO_FORMATS)
def test_isoinfo_accepts(isos, fmt: str) -> None:
    need("isoinfo", "genisoimage")
    info = run(["isoinfo", "-d", "-i", isos[fmt]], capture=True).stdout.decode()
    assert "Volume id: IMAGE_COMPOSER" in info
    assert "Rock Ridge signatures version 1 found" in info
    assert "El Torito VD version 1 found" in info
    listing = run(["isoinfo", "-R", "-f", "-i", isos[fmt]], capture=True).stdout.decode()
    assert {"/boot/kernel", "/boot/initrd.img", "/boot/cmdline"} <= set(listing.split())


@pytest.mark.parametrize("fmt", ["iso-efi", "iso-hybrid"])
def test_esp_passes_fsck_and_mdir(isos, tmp_path: Path, fmt: str) -> None:
    need("fsck.fat", "dosfstools")
    need("mdir", "mtools")
    esp = extract_esp(isos[fmt], tmp_path / "esp.img")
    proc = run(["fsck.fat", "-n", esp], capture=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listing = run(["mdir", "-i", esp, "::/EFI/BOOT"], capture=True).stdout.decode()
    grub = len(bootloaders.load(bootloaders.DEFAULTS["bootx64.efi"]))
    assert f"BOOTX64  EFI {grub:>9} 2017-04-18  16:30" in listing
    assert "grub.cfg" in listing
    tree, reader = read_iso(isos[fmt])
    reader.close()
    for path in ("::/EFI/BOOT/grub.cfg", "::/boot/grub/grub.cfg"):
        assert run(["mtype", "-i", esp, path], capture=True).stdout == \
            tree["boot/grub/grub.cfg"]


# --- determinism --------------------------------------------------------------------------------

def two_builds(rootfs: Path, tmp_path: Path, fmt: str, environment) -> tuple[bytes, bytes]:  # noqa: F811
    out = []
    for which in (0, 1):
        environment(which)
        out.append(build(rootfs, tmp_path / f"out{which}", fmt).read_bytes())
    return out[0], out[1]


@pytest.mark.parametrize("fmt", ISO_FORMATS)
def test_same_bytes_whatever_clock_tz_umask_cwd_and_seed(rootfs, tmp_path, environment,  # noqa: F811
                                                         fmt: str) -> None:
    a, b = two_builds(rootfs, tmp_path, fmt, environment)
    assert a == b


@pytest.mark.parametrize("leak", ["clock", "timezone", "uuid4"])
def test_each_pycdlib_patch_matters(rootfs, tmp_path, environment, monkeypatch,  # noqa: F811
                                    leak: str) -> None:
    """Without any one of the wrapper's patches, the same two builds differ: so the test above
    covers every leak (peers.md section 7)."""
    full = iso9660.patches
    monkeypatch.setattr(iso9660, "patches",
                        lambda mtime, seed: {k: v for k, v in full(mtime, seed).items()
                                             if k != leak})
    a, b = two_builds(rootfs, tmp_path, "iso-hybrid", environment)
    assert a != b


def test_random_mbr_id_cannot_happen(tmp_path: Path) -> None:
    """pycdlib draws a random MBR id when none is given; inside the wrapper that is an error,
    so a forgotten mbr_id fails every hybrid build instead of leaking."""
    with iso9660.PinnedIso(mtime=0, seed=b"s") as pinned:
        pinned.add_directory("isolinux")
        data = bootloaders.load(bootloaders.DEFAULTS["isolinux.bin"])
        pinned.add_file("isolinux/isolinux.bin", io.BytesIO(data), len(data))
        pinned.add_bios_boot("isolinux/isolinux.bin", "boot.cat")
        with pytest.raises(RuntimeError, match="random"):
            pinned.iso.add_isohybrid()


def test_patches_are_undone(rootfs, tmp_path: Path) -> None:
    import pycdlib.dates
    import pycdlib.isohybrid
    import pycdlib.pycdlib

    before = (pycdlib.pycdlib.time, pycdlib.dates.time, pycdlib.isohybrid.uuid,
              pycdlib.isohybrid.random)
    build(rootfs, tmp_path / "out", "iso-hybrid")
    assert (pycdlib.pycdlib.time, pycdlib.dates.time, pycdlib.isohybrid.uuid,
            pycdlib.isohybrid.random) == before
    assert before[0] is time


_CHILD = """
import sys
from pathlib import Path
from composer.atomic import OutputSet
from outputs import FORMATS, Options
with OutputSet(Path(sys.argv[2])) as outs:
    FORMATS["iso-hybrid"].convert(Path(sys.argv[1]), "hello", outs, Options(mtime=1492533000))
    outs.commit()
"""


def test_same_bytes_under_faketime(rootfs, tmp_path: Path) -> None:
    """A real clock change for the whole process (libfaketime), not just time.time."""
    need("faketime", "faketime")
    results = []
    for i, (when, tz) in enumerate((("2001-02-03 04:05:06", "UTC"),
                                    ("2033-03-03 03:03:03", "Asia/Kathmandu"))):
        out = tmp_path / f"f{i}"
        subprocess.run(["faketime", when, sys.executable, "-c", _CHILD, str(rootfs), str(out)],
                       cwd=ROOT, check=True, env={**os.environ, "TZ": tz})
        results.append((out / "hello-hybrid.iso").read_bytes())
    assert results[0] == results[1]


def test_inputs_change_the_ids(tmp_path: Path) -> None:
    """Image id, MBR id and FAT serial follow the content: another kernel, other ids."""
    ids = []
    for i, kernel in enumerate((KERNEL, KERNEL + b"!")):
        rootfs = make_rootfs(tmp_path / f"r{i}.tar", kernel=kernel)
        path = build(rootfs, tmp_path / f"out{i}", "iso-hybrid")
        data = path.read_bytes()
        tree, reader = read_iso(path)
        reader.close()
        ids.append((image_id(tree), data[440:444], tree["boot/efi.img"][39:43]))
    assert all(x != y for x, y in zip(*ids, strict=True))


def test_mtime_option_dates_everything(rootfs, tmp_path: Path) -> None:
    path = build(rootfs, tmp_path / "out", "iso-bios", Options(mtime=86400 * 366))
    _, reader = read_iso(path)
    try:
        assert reader.pvd.volume_creation_date.record()[:16] == b"1971010200000000"
        assert reader.get_record(rr_path="/boot/kernel").date.years_since_1900 == 71
    finally:
        reader.close()


def test_mtime_zero_leaves_volume_dates_unset(rootfs, tmp_path: Path) -> None:
    """pycdlib writes a volume date of 0 as "not specified" (all '0' digits, ECMA-119 8.4.26.1);
    file records still say 1970-01-01."""
    path = build(rootfs, tmp_path / "out", "iso-bios", Options(mtime=0))
    _, reader = read_iso(path)
    try:
        assert reader.pvd.volume_creation_date.record() == b"0" * 16 + b"\0"
        assert reader.get_record(rr_path="/boot/kernel").date.years_since_1900 == 70
    finally:
        reader.close()


# --- bootloader pins ----------------------------------------------------------------------------

def fake_pin(tmp_path: Path, role: str, data: bytes) -> bootloaders.Pin:
    path = tmp_path / role
    path.write_bytes(data)
    import hashlib

    return bootloaders.Pin(role, str(path), "sha256:" + hashlib.sha256(data).hexdigest())


def test_default_pins_are_files_of_the_pinned_debs() -> None:
    """Never the host's /usr/lib: each default names its Debian package and has its digest."""
    import hashlib

    got = bootloaders.load_all(tuple(bootloaders.DEFAULTS.values()))
    for role, pin in bootloaders.DEFAULTS.items():
        row = bootloader_debs.FILES[role]
        assert pin.path == f"debian:{row.deb.package}={row.deb.version}:/{row.member}"
        assert "sha256:" + hashlib.sha256(got[role]).hexdigest() == pin.digest
        assert bootloaders.load(pin) == got[role]


def test_pins_reported_per_format() -> None:
    roles = {fmt: [p.role for p in iso.bootloader_pins(fmt, OPTS)] for fmt in ISO_FORMATS}
    assert roles == {"iso-bios": ["isohdpfx.bin", "isolinux.bin", "ldlinux.c32"],
                     "iso-efi": ["bootx64.efi"], "iso-efi-initrd": ["bootx64.efi"],
                     "iso-hybrid": ["bootx64.efi", "isohdpfx.bin", "isolinux.bin",
                                    "ldlinux.c32"]}
    assert all(p == bootloaders.DEFAULTS[p.role] for p in iso.bootloader_pins("iso-hybrid",
                                                                              OPTS))


def test_override_is_used_and_changes_the_bytes(rootfs, tmp_path: Path) -> None:
    grub = fake_pin(tmp_path, "bootx64.efi", b"MZ a different GRUB")
    options = Options(mtime=OPTS.mtime, bootloaders=(grub,))
    assert iso.bootloader_pins("iso-efi", options) == (grub,)
    path = build(rootfs, tmp_path / "out", "iso-efi", options)
    esp = extract_esp(path, tmp_path / "esp.img")
    from outputs.fatfs_shim import PyFatFS

    with PyFatFS(str(esp), read_only=True) as fs:
        assert fs.readbytes("/EFI/BOOT/BOOTX64.EFI") == b"MZ a different GRUB"
    assert path.read_bytes() != build(rootfs, tmp_path / "default", "iso-efi").read_bytes()


def test_wrong_digest_names_the_actual_one(tmp_path: Path) -> None:
    pin = fake_pin(tmp_path, "ldlinux.c32", b"abc")
    (tmp_path / "ldlinux.c32").write_bytes(b"abd")
    with pytest.raises(ComposerError) as info:
        bootloaders.load(pin)
    import hashlib

    actual = "sha256:" + hashlib.sha256(b"abd").hexdigest()
    assert f"has {actual}, not the pinned {pin.digest}" in str(info.value)
    assert f"--bootloader ldlinux.c32={tmp_path / 'ldlinux.c32'}@{actual}" in str(info.value)


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    """A missing override and a wrong one: one error naming both."""
    missing = bootloaders.Pin("isolinux.bin", str(tmp_path / "nope"), "sha256:" + "0" * 64)
    wrong = fake_pin(tmp_path, "ldlinux.c32", b"abc")
    (tmp_path / "ldlinux.c32").write_bytes(b"abd")
    with pytest.raises(ComposerError) as info:
        bootloaders.load_all((missing, wrong))
    assert f"cannot read {tmp_path / 'nope'}" in str(info.value)
    assert "bootloader ldlinux.c32" in str(info.value) and "not the pinned" in str(info.value)


def test_bad_isohybrid_code_is_refused(rootfs, tmp_path: Path) -> None:
    mbr = fake_pin(tmp_path, "isohdpfx.bin", b"\x00" * 432)
    with pytest.raises(ComposerError, match="isohdpfx"):
        build(rootfs, tmp_path / "out", "iso-bios", Options(mtime=0, bootloaders=(mbr,)))


@pytest.mark.parametrize(("text", "message"), [
    ("isolinux.bin=/x", "ROLE=PATH@sha256:HEX"),
    ("/x@sha256:" + "0" * 64, "ROLE=PATH"),
    ("grub=/x@sha256:" + "0" * 64, "unknown bootloader role"),
    ("isolinux.bin=/x@sha256:abc", "digest"),
])
def test_parse_pin_errors(text: str, message: str) -> None:
    with pytest.raises(ComposerError, match=message):
        bootloaders.parse_pin(text)


def test_parse_pin_and_options() -> None:
    digest = "sha256:" + "a" * 64
    pin = bootloaders.parse_pin(f"bootx64.efi=/srv/my@grub.efi@{digest}")
    assert pin == bootloaders.Pin("bootx64.efi", "/srv/my@grub.efi", digest)
    with pytest.raises(ComposerError, match="more than once"):
        Options(mtime=0, bootloaders=(pin, pin))


# --- streaming ----------------------------------------------------------------------------------

def test_memory_does_not_grow_with_the_rootfs(tmp_path: Path) -> None:
    peaks = []
    for i, size in enumerate((1 << 20, 48 << 20)):
        rootfs = make_rootfs(tmp_path / f"r{i}.tar", kernel=bytes(size), big=size)
        tracemalloc.start()
        try:
            build(rootfs, tmp_path / f"out{i}", "iso-hybrid")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] - peaks[0] < 4 << 20, peaks
