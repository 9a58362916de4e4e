"""kernel+squashfs, kernel+erofs, kernel+iso: the image's tree, read back by tools that are not
ours (unsquashfs, fsck.erofs, xorriso, isoinfo), equals the rootfs tar minus boot/; the bytes
are reproducible and every pin matters. The kernel as the reader (loop mounts, with xattrs and
hard links) is tests/integration/test_fsimage_mount.py."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from composer import tools
from composer.atomic import OutputSet
from composer.errors import ComposerError, UsageError
from outputs import FORMATS, check_clashes, output_files
from outputs.fsimage import erofs, squashfs
from outputs.options import Options
from tests.fixtures.fs_trees import expected_tree, walk, write_odd_rootfs

MTIME = 1492533000
OPTS = Options(mtime=MTIME)
FS_FORMATS = ("kernel+squashfs", "kernel+erofs", "kernel+iso")


def need(tool: str, package: str) -> str:
    path = tools.shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (apt-get install {package})")
        pytest.skip(f"{tool} not installed (apt-get install {package})")
    return path


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    return write_odd_rootfs(tmp_path_factory.mktemp("rootfs") / "rootfs.tar")


@pytest.fixture(scope="module")
def rootfs_nodev(tmp_path_factory) -> Path:
    return write_odd_rootfs(tmp_path_factory.mktemp("rootfs") / "rootfs.tar", devices=False)


def build(fmt: str, rootfs: Path, out: Path, options: Options = OPTS) -> dict[str, Path]:
    with OutputSet(out) as outs:
        FORMATS[fmt].convert(rootfs, "t", outs, options)
        return {p.name: p for p in outs.commit()}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def strip(tree: dict[str, dict], *fields: str) -> dict[str, dict]:
    return {p: {k: v for k, v in n.items() if k not in fields} for p, n in tree.items()}


@pytest.mark.parametrize("fmt", FS_FORMATS)
def test_kernel_and_cmdline_are_the_boot_files(fmt, rootfs, rootfs_nodev, tmp_path):
    out = build(fmt, rootfs_nodev if fmt == "kernel+iso" else rootfs, tmp_path)
    assert sorted(out) == sorted(output_files(fmt, "t"))
    assert out["t-kernel"].read_bytes() == b"kernel-blob"
    assert out["t-cmdline"].read_bytes() == b"console=ttyS0 x\n"


# ---- squashfs: unsquashfs -pf (a pseudo file: every inode's metadata plus the data) ----

def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _split(line: str) -> list[str]:
    return [_unescape(p) for p in re.split(r"(?<!\\) ", line)]


def read_squashfs(image: Path, tmp: Path) -> tuple[dict[str, dict], list[set[str]]]:
    pf = tmp / "pseudo"
    subprocess.run([need("unsquashfs", "squashfs-tools"), "-q", "-pf", str(pf), str(image)],
                   check=True, stdout=subprocess.DEVNULL)
    raw = pf.read_bytes()
    marker = b"# START OF DATA - DO NOT MODIFY\n#\n"
    head, _, data = raw.partition(marker)
    tree: dict[str, dict] = {}
    groups: dict[str, set[str]] = {}
    for line in head.decode("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = _split(line)
        path = "" if parts[0] == "/" else parts[0]
        if parts[1] == "L":
            tree[path] = dict(tree[parts[2]])
            groups.setdefault(parts[2], {parts[2]}).add(path)
            continue
        if parts[1] == "x":  # unsquashfs 4.6 (Debian 13) also lists xattrs; 4.5.1 does not,
            continue         # so they are checked by the -s count and the kernel mount test
        kind, mtime, mode, uid, gid, *rest = parts[1:]
        node = dict(type={"D": "d", "R": "f", "S": "l", "C": "c", "B": "b", "I": "p"}[kind],
                    mode=int(mode, 8), uid=int(uid), gid=int(gid), mtime=int(mtime), xattrs={})
        if kind == "R":
            size, offset = int(rest[0]), int(rest[1])
            node["sha256"] = hashlib.sha256(data[offset:offset + size]).hexdigest()
        elif kind == "S":
            node["link"] = rest[0]
        elif kind in "CB":
            # unsquashfs 4.5.1 splits the kernel's dev_t encoding as if it were 8:8 bits
            # (it shows 8:300 as 4104:44; the kernel reads 8:300, see the mount test)
            rdev = (int(rest[0]) << 8) | int(rest[1])
            node["dev"] = ((rdev >> 8) & 0xFFF, (rdev & 0xFF) | ((rdev >> 12) & 0xFFF00))
        tree[path] = node
    return tree, list(groups.values())


def test_squashfs_tree_equals_the_rootfs(rootfs, tmp_path):
    image = build("kernel+squashfs", rootfs, tmp_path / "out")["t-squashfs.img"]
    got, groups = read_squashfs(image, tmp_path)
    want, want_groups = expected_tree(rootfs, MTIME)
    assert got == {p: {**n, "xattrs": {}} for p, n in want.items()}  # -pf has no xattrs
    assert groups == want_groups
    stat_out = subprocess.run(["unsquashfs", "-s", str(image)], capture_output=True, text=True,
                              check=True).stdout
    assert "Compression gzip" in stat_out and "Block size 131072" in stat_out
    assert "Number of xattr ids 3" in stat_out  # busybox, l*200, tmp/deep (kernel test: values)
    mkfs = subprocess.run(["unsquashfs", "-mkfs-time", str(image)], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert mkfs == str(MTIME)


def test_squashfs_thread_count_does_not_change_bytes(rootfs, tmp_path):
    digests = set()
    for jobs in (1, 3):
        dest = tmp_path / f"j{jobs}.img"
        squashfs.write_squashfs(rootfs, dest, MTIME, jobs=jobs)
        digests.add(sha(dest))
    assert len(digests) == 1


def test_squashfs_pins_matter(rootfs, tmp_path, monkeypatch):
    """Without --defaults, a SOURCE_DATE_EPOCH in the caller's environment would set the mkfs
    time; with our argv it cannot, and the mkfs time follows Options.mtime."""
    ours = tmp_path / "ours.img"
    squashfs.write_squashfs(rootfs, ours, MTIME)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "12345")
    again = tmp_path / "again.img"
    squashfs.write_squashfs(rootfs, again, MTIME)
    assert sha(again) == sha(ours)
    unpinned = tmp_path / "unpinned.img"
    from composer.debian.unpack import unpack
    from outputs.tool_debs import TAR2SQFS

    tool = unpack(TAR2SQFS, tmp_path / "tool")
    argv = [a for a in squashfs.tar2sqfs_args(unpinned, MTIME, program=str(tool.program))
            if not a.startswith("uid=0")]
    argv.remove("--defaults")
    subprocess.run(argv, input=_tree_tar(rootfs), check=True,
                   env={**os.environ, **tool.env, "SOURCE_DATE_EPOCH": "12345"})
    assert sha(unpinned) != sha(ours)
    other = tmp_path / "other.img"
    squashfs.write_squashfs(rootfs, other, MTIME + 1)
    assert sha(other) != sha(ours)


def _tree_tar(rootfs: Path) -> bytes:
    import io

    buf = io.BytesIO()
    squashfs.feed_tree(rootfs, buf, "t", "kernel+squashfs", None)
    return buf.getvalue()


def test_squashfs_never_runs_the_hosts_tar2sqfs(rootfs, tmp_path, monkeypatch):
    """The host's squashfs-tools-ng (Debian 13's 1.3.2, say) and zlib are never run: with a
    tar2sqfs on PATH that fails and no system library path, the pinned Debian 12 tar2sqfs
    and its pinned libraries make the same bytes, and the record names those packages."""
    ours = tmp_path / "ours.img"
    squashfs.write_squashfs(rootfs, ours, MTIME)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "tar2sqfs").write_text("#!/bin/sh\necho host tar2sqfs ran >&2\nexit 7\n")
    (fake / "tar2sqfs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    again = tmp_path / "again.img"
    squashfs.write_squashfs(rootfs, again, MTIME)
    assert sha(again) == sha(ours)
    assert squashfs.tool_version().split() == [
        "squashfs-tools-ng=1.2.0-1", "libsquashfs1=1.2.0-1", "zlib1g=1:1.2.13.dfsg-1",
        "liblzma5=5.4.1-1+deb12u1", "liblz4-1=1.9.4-1", "libzstd1=1.5.4+dfsg2-5",
        "liblzo2-2=2.10-2"]


def test_squashfs_links_only_pinned_libraries_and_libc(tmp_path):
    """Every library the pinned tar2sqfs loads, but the C library, is one of the unpacked
    pinned packages' (ldd with the run's LD_LIBRARY_PATH)."""
    from composer.debian.unpack import unpack
    from outputs.tool_debs import TAR2SQFS

    tool = unpack(TAR2SQFS, tmp_path / "t")
    out = subprocess.run(["ldd", str(tool.program)], capture_output=True, text=True,
                         check=True, env={**os.environ, **tool.env}).stdout
    libs = dict(re.findall(r"^\s*(\S+) => (\S+)", out, re.M))
    assert "libz.so.1" in libs and "libsquashfs.so.1" in libs
    outside = {name: path for name, path in libs.items()
               if not path.startswith(str(tmp_path / "t") + "/")}
    assert set(outside) == {"libc.so.6"}, outside


def test_squashfs_rejects_times_past_2106(tmp_path):
    from composer.tar.canon import CanonicalTarWriter, Entry, Kind

    tar = tmp_path / "late.tar"
    with open(tar, "wb") as f:
        w = CanonicalTarWriter(f)
        w.add(Entry("x", Kind.FILE, mtime=2**32, size=0), b"")
        w.close()
    with pytest.raises(ComposerError, match="past 2106"):
        squashfs.write_squashfs(tar, tmp_path / "x.img", MTIME)


# ---- erofs: fsck.erofs checks every inode and extracts the tree ----

def test_erofs_passes_fsck_and_extracts_to_the_rootfs(rootfs, tmp_path):
    image = build("kernel+erofs", rootfs, tmp_path / "out")["t-erofs.img"]
    fsck = need("fsck.erofs", "erofs-utils")
    subprocess.run([fsck, str(image)], check=True)
    dest = tmp_path / "x"
    root = os.geteuid() == 0
    # as a user, fsck.erofs would apply the umask to the modes unless told not to
    subprocess.run([fsck, f"--extract={dest}", *([] if root else ["--preserve-perms"]),
                    str(image)], check=True)
    got, _ = walk(dest)
    want, _ = expected_tree(rootfs, MTIME)
    if not root:  # a user cannot make device nodes (the kernel mount test, as root, reads them)
        want = {p: n for p, n in want.items() if n["type"] not in ("c", "b")}
    # fsck.erofs 1.5 extracts without setuid/setgid/sticky bits, xattrs or hard links, and
    # restores owners only as root: compare what it does restore (the kernel test sees all).
    fields = ("xattrs",) if root else ("xattrs", "uid", "gid")
    want = strip(want, *fields)
    got = strip(got, *fields)
    for tree in (want, got):
        for node in tree.values():
            node["mode"] &= 0o777
            if node["type"] == "l":
                node.pop("mtime")  # fsck.erofs 1.5 does not set symlink times
    assert got == want


def test_erofs_superblock(rootfs, tmp_path):
    image = build("kernel+erofs", rootfs, tmp_path / "out")["t-erofs.img"]
    info = subprocess.run([need("dump.erofs", "erofs-utils"), "-s", str(image)],
                          capture_output=True, text=True, check=True).stdout
    uuid = erofs.volume_uuid(hashlib.sha256(rootfs.read_bytes()).hexdigest(), MTIME)
    assert re.search(r"Filesystem UUID:\s+" + str(__import__("uuid").UUID(bytes=uuid)), info)
    assert "Filesystem created:                           Tue Apr 18 16:30:00 2017" in info
    assert os.path.getsize(image) % 4096 == 0


def test_erofs_uuid_and_time_pins_matter(rootfs, tmp_path):
    import io

    def image(uuid: bytes, mtime: int) -> bytes:
        buf = io.BytesIO()
        erofs.write_erofs(rootfs, buf, mtime, uuid)
        return buf.getvalue()

    base = image(b"\x11" * 16, MTIME)
    assert image(b"\x11" * 16, MTIME) == base
    assert image(b"\x22" * 16, MTIME) != base
    assert image(b"\x11" * 16, MTIME + 1) != base
    digest = hashlib.sha256(rootfs.read_bytes()).hexdigest()
    assert erofs.volume_uuid(digest, MTIME) != erofs.volume_uuid("0" * 64, MTIME)


def test_erofs_rejects_unknown_xattr_namespace(tmp_path):
    from composer.tar.canon import CanonicalTarWriter, Entry, Kind

    tar = tmp_path / "x.tar"
    with open(tar, "wb") as f:
        w = CanonicalTarWriter(f)
        w.add(Entry("x", Kind.FILE, size=0, xattrs=(("weird.name", b"1"),)), b"")
        w.close()
    import io

    with pytest.raises(ComposerError, match="erofs stores only"):
        erofs.write_erofs(tar, io.BytesIO(), MTIME, bytes(16))


# ---- iso: xorriso extracts it (modes, owners, mtimes, contents), isoinfo lists extents ----

def test_iso_tree_equals_the_rootfs(rootfs_nodev, tmp_path):
    iso = build("kernel+iso", rootfs_nodev, tmp_path / "out")["t.iso"]
    xorriso = need("xorriso", "xorriso")
    dest = tmp_path / "x"
    subprocess.run([xorriso, "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest)],
                   check=True, capture_output=True)
    got, _ = walk(dest)
    want, _ = expected_tree(rootfs_nodev, MTIME)
    # Rock Ridge has no xattrs (genisoimage drops them too); xorriso cannot date symlinks it
    # extracts, and restores owners only as root.
    fields = ("xattrs",) if os.geteuid() == 0 else ("xattrs", "uid", "gid")
    want, got = strip(want, *fields), strip(got, *fields)
    for tree in (want, got):
        for path, node in tree.items():
            if node["type"] == "l" or path == "":
                node.pop("mtime")  # the extraction root is xorriso's own directory
                if path == "":
                    node.pop("mode")
    assert got == want
    # hard links share one extent: isoinfo (genisoimage), an independent ISO reader
    listing = subprocess.run([need("isoinfo", "genisoimage"), "-R", "-l", "-i", str(iso)],
                             capture_output=True, text=True, check=True).stdout
    extents = dict(re.findall(r"\[\s*(\d+) \d+\]\s+(busybox|sh2)\s*$", listing, re.M))
    assert len(extents) == 1, extents  # both names, one extent
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True,
                          check=True).stdout
    assert "Joliet with UCS level 3 found" in info and "Rock Ridge signatures" in info
    assert "El Torito" not in info
    lsdl = subprocess.run([xorriso, "-indev", str(iso), "-find", "/", "-exec", "lsdl"],
                          capture_output=True, text=True, check=True).stdout
    assert re.search(r"^drwxr-xr-x .* Apr 18  2017 '/'$", lsdl, re.M)  # the root: 0755, mtime
    assert re.search(r"^-rwsr-xr-x .* '/bin/busybox'$", lsdl, re.M)
    for name in ("busybox", "sh2"):  # Rock Ridge link counts (isoinfo shows them, xorriso not)
        assert re.search(r"^\S+\s+2\s.*\]\s+" + name + r"\s*$", listing, re.M)


def test_iso_joliet_names(rootfs_nodev, tmp_path):
    iso = build("kernel+iso", rootfs_nodev, tmp_path / "out")["t.iso"]
    names = subprocess.run([need("isoinfo", "genisoimage"), "-J", "-f", "-i", str(iso)],
                           capture_output=True, check=True).stdout.decode("utf-8", "replace")
    assert "/" + "l" * 64 + "\n" in names  # Joliet's 64-character limit
    assert "/tmp/deep/a/b/c/d/e/f/g/nine levels down.TXT" in names


def test_iso_rejects_device_nodes(rootfs, tmp_path):
    with pytest.raises(ComposerError, match="cannot store a char"):
        build("kernel+iso", rootfs, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


def test_iso_record_dates_are_the_entries_mtimes(rootfs_nodev, tmp_path):
    """Each record's dates come from its entry; unpinned (the build's mtime for every record,
    as the bootable ISOs do) the bytes differ."""
    from outputs.iso.iso9660 import PinnedClock

    ours = build("kernel+iso", rootfs_nodev, tmp_path / "a")["t.iso"]
    original = PinnedClock.set
    try:
        PinnedClock.set = lambda self, epoch: None
        flat = build("kernel+iso", rootfs_nodev, tmp_path / "b")["t.iso"]
    finally:
        PinnedClock.set = original
    assert sha(flat) != sha(ours)


# ---- all three ----

@pytest.mark.parametrize("fmt", FS_FORMATS)
def test_reproducible_across_tz_umask_cwd(fmt, rootfs, rootfs_nodev, tmp_path, monkeypatch):
    source = rootfs_nodev if fmt == "kernel+iso" else rootfs
    digests = []
    for i, (tz, umask) in enumerate((("UTC", 0o022), ("Pacific/Kiritimati", 0o077))):
        monkeypatch.setenv("TZ", tz)
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(1000 * i))
        cwd = tmp_path / f"cwd{i}"
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        old = os.umask(umask)
        try:
            out = build(fmt, source, tmp_path / f"out{i}")
        finally:
            os.umask(old)
        digests.append({n: sha(p) for n, p in out.items()})
    assert digests[0] == digests[1]


def test_clashing_formats_are_a_usage_error():
    from composer.commands.build import formats

    with pytest.raises(UsageError, match=r"kernel\+iso and iso-bios both write NAME\.iso"):
        check_clashes(["kernel+iso", "iso-bios"])
    with pytest.raises(UsageError, match=r"both write NAME\.iso"):  # what -f goes through
        formats(["kernel+iso,tar", "iso-bios"])
    check_clashes(["kernel+initrd", "kernel+squashfs", "kernel+erofs", "kernel+iso"])


def test_fed_program_errors_are_clean():
    def lots(pipe):
        for _ in range(64):
            pipe.write(bytes(1 << 16))

    assert tools.run(["head", "-c", "1"], feed=lots, capture=True).stdout == bytes(1)
    with pytest.raises(ComposerError, match="false exited with status 1"):
        tools.run(["false"], feed=lots)

    def broken(pipe):
        pipe.write(b"x")
        raise ComposerError("feeder failed")

    with pytest.raises(ComposerError, match="feeder failed"):
        tools.run(["cat"], feed=broken, capture=True)


def test_shared_files_must_have_the_same_bytes(tmp_path):
    with OutputSet(tmp_path) as outs:
        with outs.create("t-kernel") as f:
            f.write(b"one")
        with outs.create("t-kernel") as f:
            f.write(b"one")
        with pytest.raises(ComposerError, match="different bytes"), outs.create("t-kernel") as f:
            f.write(b"two")
        assert [p.name for p in outs.commit()] == ["t-kernel"]
    assert sorted(os.listdir(tmp_path)) == ["t-kernel"]


def _tar(path: Path, entries) -> Path:
    from composer.tar.canon import CanonicalTarWriter

    with open(path, "wb") as f:
        w = CanonicalTarWriter(f)
        for entry, data in entries:
            w.add(entry, data)
        w.close()
    return path


@pytest.mark.parametrize("fmt", FS_FORMATS)
def test_no_kernel_is_an_error_and_no_output(fmt, tmp_path):
    from composer.tar.canon import Entry, Kind

    tar = _tar(tmp_path / "r.tar", [(Entry("etc", Kind.DIR, mode=0o755), None)])
    with pytest.raises(ComposerError, match="has no boot/kernel"):
        build(fmt, tar, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("fmt", FS_FORMATS)
def test_hard_link_into_boot_is_an_error(fmt, tmp_path):
    from composer.tar.canon import Entry, Kind

    tar = _tar(tmp_path / "r.tar", [
        (Entry("boot", Kind.DIR, mode=0o755), None),
        (Entry("boot/kernel", Kind.FILE, size=1), b"k"),
        (Entry("vmlinuz", Kind.HARDLINK, linkname="boot/kernel"), None)])
    with pytest.raises(ComposerError, match="hard link into boot/"):
        build(fmt, tar, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())
