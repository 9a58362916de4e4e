"""Phase-two formats: the files each writes, their contents, errors, determinism, flat memory."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest
from zlib_ng import zlib_ng

from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key
from composer.tar.read import read_entries
from composer.tools import run
from outputs import FORMATS, Options, compressor_id, output_files
from outputs.initrd.cpio import Header, NewcWriter

KERNEL = b"MZ fake bzImage \x00\x01\x02" * 10
CMDLINE = b"console=ttyS0 panic=-1"
OPTS = Options(mtime=1492533000)


def need_cpio() -> None:
    if shutil.which("cpio") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("cpio is required in CI (apt-get install cpio)")
        pytest.skip("cpio not installed")


def gnu_cpio_list(archive: Path) -> bytes:
    return run(["cpio", "-it", "--force-local", "-F", archive], capture=True).stdout


def ucode_cpio() -> bytes:
    """A tiny uncompressed early-microcode cpio, as ``boot/ucode.cpio`` would hold."""
    buf = io.BytesIO()
    w = NewcWriter(buf)
    w.add(Header("kernel", 1, 0o040755, 0, 0, 2, 0, 0))
    w.add(Header("kernel/x86", 2, 0o040755, 0, 0, 2, 0, 0))
    w.add(Header("kernel/x86/microcode", 3, 0o040755, 0, 0, 2, 0, 0))
    w.add(Header("kernel/x86/microcode/GenuineIntel.bin", 4, 0o100644, 0, 0, 1, 0, 5), b"UCODE")
    w.close()
    return buf.getvalue()


def rootfs_entries(kernel=True, cmdline: bytes | None = CMDLINE, ucode=False, dtb=False):
    out: list[tuple[Entry, bytes | None]] = [
        (Entry("bin", Kind.DIR, 0o755), None),
        (Entry("bin/busybox", Kind.FILE, 0o755, mtime=7, size=4), b"BBOX"),
        (Entry("bin/sh", Kind.HARDLINK, 0o755, mtime=7, linkname="bin/busybox"), None),
        (Entry("boot", Kind.DIR, 0o755), None),
        (Entry("boot/System.map", Kind.FILE, 0o644, size=3), b"map"),  # dropped
        (Entry("etc", Kind.DIR, 0o755), None),
        (Entry("etc/hostname", Kind.FILE, 0o644, size=5), b"box1\n"),
        (Entry("init", Kind.SYMLINK, 0o777, linkname="bin/busybox"), None),
    ]
    if kernel:
        out.append((Entry("boot/kernel", Kind.FILE, 0o600, size=len(KERNEL)), KERNEL))
    if cmdline is not None:
        out.append((Entry("boot/cmdline", Kind.FILE, 0o644, size=len(cmdline)), cmdline))
    if ucode:
        u = ucode_cpio()
        out.append((Entry("boot/ucode.cpio", Kind.FILE, 0o644, size=len(u)), u))
    if dtb:  # where a linuxkit arm64 kernel image puts the Pi 3's device tree (format rpi3)
        out += [(Entry("boot/dtb", Kind.DIR, 0o755), None),
                (Entry("boot/dtb/broadcom", Kind.DIR, 0o755), None),
                (Entry("boot/dtb/broadcom/bcm2837-rpi-3-b.dtb", Kind.FILE, 0o644, size=4),
                 b"\xd0\x0d\xfe\xed")]
    return out


def make_rootfs(path: Path, entries) -> Path:
    with open(path, "wb") as f:
        w = CanonicalTarWriter(f)
        for entry, data in sorted(entries, key=lambda e: sort_key(e[0].path)):
            w.add(entry, data)
        w.close()
    return path


def build(rootfs: Path, out: Path, fmt: str, name: str = "hello",
          options: Options = OPTS) -> dict[str, bytes]:
    """Run one converter the way the build does; return every file left in ``out``."""
    with OutputSet(out) as outset:
        FORMATS[fmt].convert(rootfs, name, outset, options)
        outset.commit()
    return {p.name: _contents(p) for p in sorted(out.iterdir())}


def _contents(path: Path) -> bytes | tuple:
    """A file's bytes, or a directory output's (relative path, bytes) pairs, sorted."""
    if path.is_dir():
        return tuple(sorted((str(f.relative_to(path)), f.read_bytes())
                            for f in path.rglob("*") if f.is_file()))
    return path.read_bytes()


def newc_names_and_data(data: bytes) -> dict[str, bytes]:
    out = {}
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        namesize = int(data[pos + 94:pos + 102], 16)
        filesize = int(data[pos + 54:pos + 62], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = data[pos:pos + filesize]
        pos += filesize + (-filesize % 4)


@pytest.fixture
def rootfs(tmp_path, request) -> Path:
    """The test rootfs; for a test parametrized with ``fmt`` rpi3, with the Pi's device tree."""
    callspec = getattr(request.node, "callspec", None)
    rpi3 = callspec is not None and callspec.params.get("fmt") == "rpi3"
    return make_rootfs(tmp_path / "rootfs.tar", rootfs_entries(dtb=rpi3))


def test_format_table():
    assert all(f.name == name and f.files for name, f in FORMATS.items())
    assert {"tar", "kernel+initrd", "tar-kernel-initrd"} <= set(FORMATS)
    assert output_files("kernel+initrd", "x") == ("x-kernel", "x-initrd.img", "x-cmdline")
    assert output_files("tar", "x") == ("x.tar",)
    assert output_files("tar-kernel-initrd", "x") == ("x-initrd.tar",)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_writes_exactly_its_files(rootfs, tmp_path, fmt):
    out = tmp_path / "out"
    files = build(rootfs, out, fmt)
    assert sorted(files) == sorted(output_files(fmt, "hello"))  # and no hidden leftovers
    for name in files:
        mode = (out / name).stat().st_mode & 0o777
        assert mode == (0o755 if (out / name).is_dir() else 0o644)


def test_tar_is_the_rootfs_byte_for_byte(rootfs, tmp_path):
    files = build(rootfs, tmp_path / "out", "tar")
    assert files["hello.tar"] == rootfs.read_bytes()


@pytest.mark.parametrize("how", ["link", "copy", "python-copy"])
def test_place_gives_the_same_bytes_whatever_the_filesystem_allows(tmp_path, monkeypatch, how):
    """OutputSet.place: reflink, hard link, copy_file_range or a plain copy; same result."""
    import errno

    from composer import atomic

    source = tmp_path / "src.tar"
    source.write_bytes(os.urandom(3 << 20))
    monkeypatch.setattr(atomic, "_clone", lambda src, out: False)
    if how != "link":
        def no_link(*_args):
            raise OSError(errno.EXDEV, "cross-device link")
        monkeypatch.setattr(atomic.os, "link", no_link)
    if how == "python-copy":
        def no_cfr(*_args):
            raise OSError(errno.ENOSYS, "no copy_file_range")
        monkeypatch.setattr(atomic.os, "copy_file_range", no_cfr)
    with OutputSet(tmp_path / "out", known={source: ("ab" * 32, 3 << 20)}) as outs:
        outs.place("x.tar", source)
        [(_, tmp)] = outs._pending
        assert outs.digests[tmp] == ("ab" * 32, 3 << 20)
        [placed] = outs.commit()
    assert placed.read_bytes() == source.read_bytes()
    assert (placed.stat().st_ino == source.stat().st_ino) is (how == "link")
    assert placed.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path / "out") == ["x.tar"]


def test_kernel_initrd_contents(rootfs, tmp_path):
    files = build(rootfs, tmp_path / "out", "kernel+initrd")
    assert files["hello-kernel"] == KERNEL
    assert files["hello-cmdline"] == CMDLINE
    initrd = files["hello-initrd.img"]
    # gzip header: deflate, no flags (no FNAME), mtime 0, XFL 0 (level 6), OS 3
    assert initrd[:10] == bytes.fromhex("1f8b0800000000000003")
    cpio = gzip.decompress(initrd)
    # same bytes as the pinned zlib-ng's own gzip wrapper over the whole cpio at the same level
    z = zlib_ng.compressobj(6, zlib_ng.DEFLATED, 31)
    assert z.compress(cpio) + z.flush() == initrd
    members = newc_names_and_data(cpio)
    assert list(members) == ["bin", "bin/busybox", "bin/sh", "etc", "etc/hostname", "init"]
    assert members["bin/sh"] == b"BBOX" and members["etc/hostname"] == b"box1\n"


def test_kernel_initrd_listed_by_gnu_cpio(rootfs, tmp_path):
    need_cpio()
    files = build(rootfs, tmp_path / "out", "kernel+initrd")
    (tmp_path / "initrd.cpio").write_bytes(gzip.decompress(files["hello-initrd.img"]))
    listing = gnu_cpio_list(tmp_path / "initrd.cpio")
    assert listing.decode().split() == ["bin", "bin/busybox", "bin/sh", "etc", "etc/hostname",
                                        "init"]


def test_ucode_is_prepended_raw(tmp_path):
    rootfs = make_rootfs(tmp_path / "r.tar", rootfs_entries(ucode=True))
    files = build(rootfs, tmp_path / "out", "kernel+initrd")
    u = ucode_cpio()
    initrd = files["hello-initrd.img"]
    assert initrd.startswith(u) and initrd[len(u):len(u) + 2] == b"\x1f\x8b"
    assert "kernel/x86/microcode/GenuineIntel.bin" not in newc_names_and_data(
        gzip.decompress(initrd[len(u):]))
    plain = build(make_rootfs(tmp_path / "p.tar", rootfs_entries()), tmp_path / "plain",
                  "kernel+initrd")
    assert initrd[len(u):] == plain["hello-initrd.img"]


def test_ucode_fixture_is_a_cpio_gnu_cpio_reads(tmp_path):
    need_cpio()
    u = ucode_cpio()
    (tmp_path / "u.cpio").write_bytes(u)
    listing = gnu_cpio_list(tmp_path / "u.cpio")
    assert listing.decode().split()[-1] == "kernel/x86/microcode/GenuineIntel.bin"


def test_cmdline_is_written_even_when_absent_or_empty(tmp_path):
    for i, cmdline in enumerate((None, b"")):
        rootfs = make_rootfs(tmp_path / f"r{i}.tar", rootfs_entries(cmdline=cmdline))
        files = build(rootfs, tmp_path / f"out{i}", "kernel+initrd")
        assert files["hello-cmdline"] == b""
        with tarfile.open(fileobj=io.BytesIO(build(rootfs, tmp_path / f"t{i}",
                                                   "tar-kernel-initrd")["hello-initrd.tar"])) as t:
            assert t.extractfile("cmdline").read() == b""


@pytest.mark.parametrize("ucode", [False, True])
def test_tar_kernel_initrd_members(tmp_path, ucode):
    rootfs = make_rootfs(tmp_path / "r.tar", rootfs_entries(ucode=ucode))
    wrapped = build(rootfs, tmp_path / "out", "tar-kernel-initrd",
                    options=Options(mtime=1234, gzip_level=9))["hello-initrd.tar"]
    separate = build(rootfs, tmp_path / "sep", "kernel+initrd",
                     options=Options(mtime=1, gzip_level=9))
    u = ucode_cpio() if ucode else b""
    with tarfile.open(fileobj=io.BytesIO(wrapped)) as t:
        members = t.getmembers()
        names = [m.name for m in members]
        assert names == ["cmdline", "initrd.img", "kernel", *(["ucode.cpio"] if ucode else [])]
        for m in members:
            assert m.isfile() and (m.mode, m.uid, m.gid, m.mtime) == (0o644, 0, 0, 1234)
            assert (m.uname, m.gname) == ("", "")
        assert t.extractfile("kernel").read() == KERNEL
        assert t.extractfile("cmdline").read() == CMDLINE
        # initrd.img without the microcode, which is a member of its own
        assert u + t.extractfile("initrd.img").read() == separate["hello-initrd.img"]
        if ucode:
            assert t.extractfile("ucode.cpio").read() == u
    # the wrapper tar follows the canon: our reader accepts it and agrees
    assert [e.path for e, _ in read_entries(io.BytesIO(wrapped))] == names


@pytest.mark.parametrize("fmt", ["kernel+initrd", "tar-kernel-initrd"])
def test_missing_kernel_is_an_error_and_leaves_nothing(tmp_path, fmt):
    rootfs = make_rootfs(tmp_path / "r.tar", rootfs_entries(kernel=False))
    out = tmp_path / "out"
    with pytest.raises(ComposerError, match=r"has no boot/kernel: the spec needs a kernel "
                                            rf"section for format {fmt.replace('+', '[+]')}$"):
        build(rootfs, out, fmt)
    assert list(out.iterdir()) == []  # no outputs, no temporaries, no partial files


def test_kernel_that_is_not_a_regular_file_is_an_error(tmp_path):
    entries = rootfs_entries(kernel=False)
    entries.append((Entry("boot/kernel", Kind.SYMLINK, 0o777, linkname="vmlinuz"), None))
    rootfs = make_rootfs(tmp_path / "r.tar", entries)
    with pytest.raises(ComposerError, match=r"boot/kernel .* is a symlink, not a regular file"):
        build(rootfs, tmp_path / "out", "kernel+initrd")
    assert list((tmp_path / "out").iterdir()) == []


def test_error_in_pass_two_leaves_nothing(tmp_path):
    entries = rootfs_entries()
    entries.append((Entry("etc/big", Kind.FILE, uid=1 << 32, size=0), b""))
    rootfs = make_rootfs(tmp_path / "r.tar", entries)
    with pytest.raises(ComposerError, match=r"^etc/big: uid"):
        build(rootfs, tmp_path / "out", "tar-kernel-initrd")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_same_input_same_bytes_whatever_tz_umask_and_directory(rootfs, tmp_path, monkeypatch,
                                                               fmt):
    first = build(rootfs, tmp_path / "a", fmt)
    old = os.umask(0o027)
    try:
        monkeypatch.setenv("TZ", "America/St_Johns")
        time.tzset()
        monkeypatch.chdir(tmp_path)
        again = build(rootfs, tmp_path / "deeper" / "b", fmt)
    finally:
        os.umask(old)
        monkeypatch.undo()
        time.tzset()
    assert again == first


def test_gzip_level_is_part_of_the_identity(rootfs, tmp_path):
    fast = build(rootfs, tmp_path / "1", "kernel+initrd", options=Options(0, gzip_level=1))
    best = build(rootfs, tmp_path / "9", "kernel+initrd", options=Options(0, gzip_level=9))
    assert fast["hello-initrd.img"][8] == 4 and best["hello-initrd.img"][8] == 2  # XFL
    assert gzip.decompress(fast["hello-initrd.img"]) == gzip.decompress(best["hello-initrd.img"])
    # the id names everything that shapes the bytes: the pinned library, level, block size
    assert compressor_id(9) == f"zlib-ng-{zlib_ng.ZLIBNG_VERSION} gzip -9 blocks 256KiB"
    assert compressor_id() == f"zlib-ng-{zlib_ng.ZLIBNG_VERSION} gzip -6 blocks 256KiB"


@pytest.mark.parametrize("kwargs", [{"mtime": -1}, {"mtime": 0, "gzip_level": 0},
                                    {"mtime": 0, "gzip_level": 10},
                                    {"mtime": 0, "gzip_level": True}])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ComposerError):
        Options(**kwargs)


def test_memory_stays_flat_with_big_and_hard_linked_files(tmp_path):
    """A 64 MiB file, hard-linked (so spooled), must not be held in memory by any format."""
    size = 64 << 20

    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.left = n

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    rootfs = tmp_path / "big.tar"
    with open(rootfs, "wb") as f:
        w = CanonicalTarWriter(f)
        for entry, data in sorted(rootfs_entries(dtb=True), key=lambda e: sort_key(e[0].path)):
            w.add(entry, data)
        w.add(Entry("var", Kind.DIR, 0o755))
        w.add(Entry("var/big", Kind.FILE, size=size), Zeros(size))
        w.add(Entry("var/big2", Kind.HARDLINK, linkname="var/big"))
        w.close()
    for fmt in sorted(FORMATS):
        tracemalloc.start()
        try:
            convert_only(rootfs, tmp_path / fmt, fmt)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # a disk format's FAT partition: pyfatfs keeps the volume's FAT in memory, which grows
        # with the disk's fixed size (aws, vhd, vmdk and gcp 1 GiB: about 17 MiB; dynamic-vhd
        # 25 GiB: about 95 MiB), not with its content; holding the 64 MiB file would pass 128
        bound = 128 << 20 if FORMATS[fmt].family == "disk" else 16 << 20
        assert peak < bound, f"{fmt}: peak {peak} bytes"


def convert_only(rootfs: Path, out: Path, fmt: str) -> None:
    """Like :func:`build` without reading the outputs back (which would allocate)."""
    with OutputSet(out) as outset:
        FORMATS[fmt].convert(rootfs, "hello", outset, OPTS)
        outset.commit()


@pytest.mark.parametrize("size", [0, 1, 256 * 1024, 256 * 1024 + 1, 3 * 1024 * 1024 + 7])
def test_parallel_gzip_bytes_do_not_depend_on_threads(size):
    """Blocks are fixed, so 1, 2 or 5 threads give the same bytes, and gzip reads them back."""
    import io

    from composer.streams.gz import GzipWriter

    rng = __import__("random").Random(size)
    data = bytes(rng.getrandbits(8) for _ in range(min(size, 4096))) * (size // 4096 + 1)
    data = data[:size]
    results = []
    for threads in (1, 2, 5):
        buf = io.BytesIO()
        with GzipWriter(buf, 6, threads=threads) as gz:
            for start in range(0, size, 100_003):  # writes that straddle block boundaries
                gz.write(data[start:start + 100_003])
        results.append(buf.getvalue())
    assert results[0] == results[1] == results[2]
    assert gzip.decompress(results[0]) == data


def test_a_killed_builds_temporaries_are_swept_but_not_a_live_ones(tmp_path):
    import subprocess as sp

    from composer.atomic import TEMP_MARK, OutputSet

    dead = sp.Popen(["true"])
    dead.wait()  # its pid is now free (and almost surely unused)
    (tmp_path / f"{TEMP_MARK}{dead.pid}.x.tar.abc.partial").write_bytes(b"junk")
    (tmp_path / f"{TEMP_MARK}{dead.pid}.y-oci.def").mkdir()
    live = tmp_path / f"{TEMP_MARK}{os.getpid()}.z.tar.ghi.partial"
    live.write_bytes(b"in progress")
    (tmp_path / ".unrelated").write_bytes(b"not ours")
    OutputSet(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".unrelated", live.name])
