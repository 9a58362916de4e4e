"""Boot examples/hello.yml from its kernel+squashfs, kernel+erofs and kernel+iso outputs.

Debian's kernel (the example's) has squashfs, erofs and isofs only as modules, so a bare
``root=/dev/...`` boot cannot mount them. This test adds what linuxkit's kernel has built in: a
small initramfs (the pinned busybox-static plus the block-device and filesystem modules from
the pinned kernel .deb) whose /init loads the modules, mounts the output image read-only as the
root and ``switch_root``s into the image's own /init. The example init then prints its banner
and runs the onboot container from the image: the filesystem is proven by booting from it.
The squashfs and erofs images are attached as virtio disks (/dev/vda: the SCSI disk driver
would pull in a longer module chain), the ISO as linuxkit does, a CD on q35's AHCI (/dev/sr0).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from composer.debian.deb import open_deb
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key
from outputs.initrd.cpio import tar_to_cpio
from tests.fixtures.busybox_rootfs import busybox_binary
from tests.integration.conftest import banner_lines, require_tool
from tests.integration.test_end_to_end import BANNER, PACKAGES, ROOT, composer

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|c)")
VIRTIO = ["virtio/virtio", "virtio/virtio_ring", "virtio/virtio_pci_modern_dev",
          "virtio/virtio_pci_legacy_dev", "virtio/virtio_pci", "block/virtio_blk"]
AHCI_CD = ["scsi/scsi_common", "scsi/scsi_mod", "ata/libata", "ata/libahci", "ata/ahci",
           "cdrom/cdrom", "scsi/sr_mod"]
CASES = {  # format: (image, fstype, root device, drivers/ modules, fs modules, qemu drive)
    "kernel+squashfs": ("hello-squashfs.img", "squashfs", "/dev/vda", VIRTIO,
                        ["fs/squashfs/squashfs"], "if=virtio,format=raw,readonly=on"),
    "kernel+erofs": ("hello-erofs.img", "erofs", "/dev/vda", VIRTIO,
                     ["crypto/crc32c_generic", "lib/libcrc32c", "fs/erofs/erofs"],
                     "if=virtio,format=raw,readonly=on"),
    "kernel+iso": ("hello.iso", "iso9660", "/dev/sr0", AHCI_CD, ["fs/isofs/isofs"],
                   "media=cdrom,format=raw"),
}
INIT = """#!/bin/sh
/bin/busybox mkdir -p /proc /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in {modules}; do
  /bin/busybox insmod /modules/$m.ko || echo "fsimage-test: insmod $m failed"
done
i=0
while [ ! -b {device} ] && [ $i -lt 100 ]; do /bin/busybox sleep 0.1; i=$((i+1)); done
if /bin/busybox mount -t {fstype} -o ro {device} /newroot; then
  echo "fsimage-test: {fstype} root mounted from {device}"
else
  echo "fsimage-test: cannot mount {device}"; /bin/busybox poweroff -f
fi
/bin/busybox umount /proc
/bin/busybox umount /dev
exec /bin/busybox switch_root /newroot /init
"""


@pytest.fixture(scope="module")
def outputs(debs_dir, tmp_path_factory) -> Path:
    """examples/hello.yml built as all three formats in one build (they share kernel/cmdline)."""
    tmp = tmp_path_factory.mktemp("fsimage-boot")
    env = {"IMAGE_COMPOSER_CACHE": str(tmp / "cache")}
    for name in PACKAGES:
        composer("pkg", "build", "--debs", str(debs_dir),
                 str(ROOT / "examples" / "packages" / name), env=env)
    out = tmp / "out"
    composer("build", "-f", ",".join(CASES), "-o", str(out),
             str(ROOT / "examples" / "hello.yml"), env=env)
    return out


def kernel_modules(debs_dir: Path, wanted: list[str]) -> dict[str, bytes]:
    [deb] = sorted(debs_dir.glob("linux-image-*_amd64.deb"))  # fetch-debs brings arm64 too
    found: dict[str, bytes] = {}
    with open_deb(deb, None) as reader:
        for entry, data in reader.data_entries():
            m = re.fullmatch(r"lib/modules/[^/]+/kernel/(?:drivers/)?(.+)\.ko", entry.path)
            if m and m.group(1) in wanted and data is not None:
                found[m.group(1)] = data.read()
    missing = set(wanted) - set(found)
    assert not missing, f"{deb.name} lacks {sorted(missing)}"
    return found


def write_initramfs(path: Path, debs_dir: Path, modules: list[str], device: str,
                    fstype: str) -> None:
    blobs = kernel_modules(debs_dir, modules)
    init = INIT.format(modules=" ".join(m.replace("/", "_") for m in modules), device=device,
                       fstype=fstype).encode()
    box = busybox_binary(debs_dir)
    entries = [(Entry("bin", Kind.DIR, 0o755), None),
               (Entry("bin/busybox", Kind.FILE, 0o755, size=len(box)), box),
               (Entry("bin/sh", Kind.SYMLINK, 0o777, linkname="busybox"), None),
               (Entry("init", Kind.FILE, 0o755, size=len(init)), init),
               (Entry("modules", Kind.DIR, 0o755), None)]
    for name, blob in blobs.items():
        entries.append((Entry(f"modules/{name.replace('/', '_')}.ko", Kind.FILE, 0o644,
                              size=len(blob)), blob))
    tar = path.with_suffix(".tar")
    with open(tar, "wb") as f:
        writer = CanonicalTarWriter(f)
        for entry, data in sorted(entries, key=lambda e: sort_key(e[0].path)):
            writer.add(entry, data)
        writer.close()
    with open(path, "wb") as out:
        tar_to_cpio(tar, out)


@pytest.mark.parametrize("fmt", list(CASES))
def test_boots_from_the_filesystem_image(fmt, outputs, debs_dir, tmp_path):
    qemu = require_tool("qemu-system-x86_64", "qemu-system-x86")
    image, fstype, device, drivers, fs_modules, drive = CASES[fmt]
    initramfs = tmp_path / "initramfs.cpio"
    write_initramfs(initramfs, debs_dir, drivers + fs_modules, device, fstype)
    cmdline = (outputs / "hello-cmdline").read_text().strip()
    argv = [qemu, "-machine", "q35", "-m", "512", "-nographic", "-no-reboot", "-net", "none",
            "-kernel", str(outputs / "hello-kernel"), "-initrd", str(initramfs),
            "-append", f"{cmdline} root={device}",
            "-drive", f"file={outputs / image},{drive}"]
    # the timeout only guards against a hung guest; a TCG boot takes about 10 s
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=900, env={**os.environ, "TZ": "UTC"})
    lines = [ANSI.sub("", line).strip() for line in proc.stdout.splitlines()]
    mounted = f"fsimage-test: {fstype} root mounted from {device}"
    assert mounted in lines, "\n".join(lines[-60:])
    assert banner_lines(lines, BANNER) == BANNER, "\n".join(lines[-60:])
    assert "Kernel panic" not in proc.stdout


def test_rebuild_in_another_environment_is_identical(outputs, debs_dir, tmp_path):
    """The example's three images again from the CLI with another TZ, umask, locale, hash seed,
    cwd and cache: the same bytes."""
    env = {"IMAGE_COMPOSER_CACHE": str(tmp_path / "cache"), "TZ": "America/St_Johns",
           "LC_ALL": "C", "LANG": "C", "PYTHONHASHSEED": "99"}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for name in PACKAGES:
        composer("pkg", "build", "--debs", str(debs_dir),
                 str(ROOT / "examples" / "packages" / name), cwd=cwd, env=env, umask=0o077)
    out = tmp_path / "out"
    composer("build", "-f", ",".join(reversed(CASES)), "-o", str(out),
             str(ROOT / "examples" / "hello.yml"), cwd=cwd, env=env, umask=0o077)
    names = ["hello-kernel", "hello-cmdline"] + [case[0] for case in CASES.values()]
    for name in names:
        assert (out / name).read_bytes() == (outputs / name).read_bytes(), name
