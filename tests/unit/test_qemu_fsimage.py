"""``run qemu`` argv for the three rootfs-image formats (booting them: test_fsimage_boot)."""

from __future__ import annotations

from pathlib import Path

from composer.atomic import OutputSet
from composer.run.fsimage import fsimage_argv, fsimage_format
from outputs import FORMATS
from outputs.options import Options
from tests.fixtures.fs_trees import write_odd_rootfs


def test_formats_and_argv(tmp_path: Path) -> None:
    rootfs = write_odd_rootfs(tmp_path / "r.tar", devices=False)
    with OutputSet(tmp_path / "out") as outs:
        for fmt in ("kernel+erofs", "kernel+iso"):
            FORMATS[fmt].convert(rootfs, "t", outs, Options(mtime=1))
        outs.commit()
    out = tmp_path / "out"
    assert fsimage_format(out / "t-erofs.img") == "kernel+erofs"
    assert fsimage_format(out / "t.iso") == "kernel+iso"
    assert fsimage_format(out / "t-kernel") is None
    argv = fsimage_argv(out / "t-erofs.img", "kernel+erofs", memory="1G", accel="tcg")
    append = argv[argv.index("-append") + 1]
    assert append == "console=ttyS0 x panic=-1 root=/dev/sda rootfstype=erofs"
    assert argv[argv.index("-kernel") + 1] == str(out / "t-kernel")
    assert argv[-1] == f"file={out / 't-erofs.img'},format=raw,index=0,media=disk,readonly=on"
    iso = fsimage_argv(out / "t.iso", "kernel+iso", memory="1G", accel="tcg")
    assert iso[iso.index("-append") + 1].endswith(" root=/dev/sr0")
    assert iso[-1].endswith(",media=cdrom,readonly=on")


def test_a_bootable_iso_is_not_a_kernel_iso(tmp_path: Path) -> None:
    iso = tmp_path / "x.iso"
    data = bytearray(40 * 2048)
    data[17 * 2048:17 * 2048 + 30] = b"\x00CD001\x01EL TORITO SPECIFICATION"
    iso.write_bytes(bytes(data))
    (tmp_path / "x-kernel").write_bytes(b"k")
    assert fsimage_format(iso) is None
