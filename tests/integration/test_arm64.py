"""arm64, cross-built on this machine and booted under emulation (qemu-system-aarch64, TCG).

The example packages are built for amd64 and arm64 at once (``two_arch_packages``: each tag a
two-platform index), so ``examples/services.yml`` builds unchanged for either architecture.
Each distinct thing boots once, through the real commands (``build --arch arm64``, ``run
qemu``): the kernel and initrd by direct kernel boot on ``-M virt -cpu cortex-a57``, and the
raw-efi disk (systemd-boot and a UKI on arm64's systemd-stub) and the iso-efi CD (GRUB) under
AAVMF, which ``run qemu`` implies for media on arm64 (no BIOS). In each, the page
the httpd service serves is fetched from the host through the port forward and the power
button runs the onshutdown container. A two-architecture ``-f oci,docker`` build writes one
file per format holding one multi-platform index, the one it pushes to a real registry, whose
manifests are, byte for byte, the ones each single-architecture build writes (``skopeo inspect
--raw``; ``umoci`` unpacks each platform: its runc is that architecture's); the docker file
loads and runs in a real dockerd, and ``verify`` reproduces both.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from composer import canonjson
from tests.integration.conftest import free_port, require_tool
from tests.integration.test_runtime_boot import ROOT, Boot, composer

pytestmark = pytest.mark.integration

SPEC = ROOT / "examples" / "services.yml"
RPI3_FILES = ("LICENCE.broadcom", "bootcode.bin", "fixup.dat", "fixup_cd.dat", "fixup_x.dat",
              "start.elf", "start_cd.elf", "start_x.elf", "u-boot.bin")


@pytest.fixture(scope="module")
def arm64_outputs(two_arch_packages, tmp_path_factory) -> Path:
    """``build --arch arm64 -f kernel+initrd,raw-efi,iso-efi,rpi3 examples/services.yml``."""
    cache = next(iter(two_arch_packages.values()))[0].root
    out = tmp_path_factory.mktemp("arm64") / "out"
    started = time.monotonic()
    composer("build", "--cache", str(cache), "--arch", "arm64", "-f",
             "kernel+initrd,raw-efi,iso-efi,rpi3", "-o", str(out), str(SPEC))
    print(f"arm64 cross-build of services.yml (kernel+initrd, raw-efi, iso-efi, rpi3): "
          f"{time.monotonic() - started:.1f} s")
    return out


def page() -> str:
    spec = yaml.safe_load(SPEC.read_text())
    [text] = [f["contents"] for f in spec["files"] if f["path"] == "etc/httpd/index.html"]
    return text


def serve_and_power_off(target: Path, what: str) -> list[str]:
    """Boot ``target`` with ``run qemu`` (the architecture from its build record), fetch the
    page through the port forward, press the power button; the console's lines."""
    require_tool("qemu-system-aarch64", "qemu-system-arm")
    port = free_port()
    boot = Boot(target, "--publish", f"{port}:80", "--cpus", "2")
    try:
        body = None
        while time.monotonic() - boot.started < 600 and body is None:
            assert boot.proc.poll() is None, "the VM ended early:\n" + boot.tail()
            try:
                body = requests.get(f"http://127.0.0.1:{port}/", timeout=3).text
            except requests.RequestException:
                time.sleep(1)
        answered = time.monotonic() - boot.started
        assert body == page(), boot.tail()
        status = boot.power_off()
    finally:
        boot.kill()
    lines = boot.lines()
    [done] = [ln for ln in lines if "rc.init: done" in ln]
    print(f"arm64 {what}: the page answered {answered:.1f} s after run qemu started "
          f"(TCG); {done}; powered off {time.monotonic() - boot.started:.1f} s after start")
    text = "\n".join(lines)
    assert status == 0, text
    assert "Booting Linux on physical CPU" in text
    assert "net: eth0 is 10.0.2.15/24" in text
    assert text.index("runc: service httpd: started") < text.index(
        "goodbye from the onshutdown container") < text.index("reboot: Power down")
    return lines


def test_arm64_outputs_are_arm64(arm64_outputs: Path) -> None:
    record = canonjson.loads((arm64_outputs / "services.build.json").read_bytes())
    assert record["build"]["arch"] == "arm64"
    kernel = (arm64_outputs / "services-kernel").read_bytes()
    assert kernel[:2] == b"MZ" and kernel[0x38:0x3C] == b"ARMd"
    # the arm64 builds of GRUB (iso-efi), systemd-boot and its stub (raw-efi), from arm64 debs,
    # and the Pi's firmware and u-boot (rpi3)
    assert sorted(record["options"]["bootloaders"]) == sorted([
        "bootaa64.efi", "efiaa64.stub", "sd-bootaa64.efi", *RPI3_FILES])


def test_arm64_kernel_initrd_boots_and_serves(arm64_outputs: Path) -> None:
    lines = serve_and_power_off(arm64_outputs / "services", "kernel+initrd (direct boot)")
    assert any("input: gpio-keys" in ln for ln in lines)  # the power button, from the DT


def test_arm64_raw_efi_boots_under_aavmf(arm64_outputs: Path) -> None:
    lines = serve_and_power_off(arm64_outputs / "services-efi.img", "raw-efi (AAVMF, UKI)")
    text = "\n".join(lines)
    assert "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID" in text  # systemd-stub's


def test_arm64_iso_efi_boots_under_aavmf(arm64_outputs: Path) -> None:
    lines = serve_and_power_off(arm64_outputs / "services-efi.iso", "iso-efi (AAVMF, GRUB)")
    assert any("Welcome to GRUB!" in ln for ln in lines)
    assert any('"UEFI QEMU QEMU CD-ROM' in ln for ln in lines)  # booted as a CD


@dataclass(frozen=True)
class TwoArch:
    """``build --arch amd64,arm64 -f oci,docker --push REF`` (``out``, its stdout) and the
    single-arch ``-f oci`` builds of the same spec (``single[arch]``)."""

    cache: Path
    out: Path
    stdout: str
    ref: str
    single: dict[str, Path]


@pytest.fixture(scope="module")
def two_arch(two_arch_packages, registry, tmp_path_factory) -> TwoArch:
    cache = next(iter(two_arch_packages.values()))[0].root
    base = tmp_path_factory.mktemp("two-arch")
    ref = f"{registry.host}/composer-test/services:two-arch"
    started = time.monotonic()
    stdout = composer("build", "--cache", str(cache), "--arch", "amd64,arm64", "-f",
                      "oci,docker", "-o", str(base / "out"), "--name", "services",
                      "--insecure-registry", registry.host, "--push", ref, str(SPEC)).stdout
    print(f"two-arch oci+docker build and push: {time.monotonic() - started:.1f} s")
    single = {}
    for arch in ("amd64", "arm64"):
        single[arch] = base / f"single-{arch}"
        composer("build", "--cache", str(cache), "--arch", arch, "-f", "oci", "-o",
                 str(single[arch]), "--name", "services", str(SPEC))
    return TwoArch(cache, base / "out", stdout, ref, single)


def layout_file(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tf:
        return tf.extractfile(name).read()  # type: ignore[union-attr]


def single_manifest(two_arch: TwoArch, arch: str) -> str:
    """The manifest digest the single-arch ``-f oci`` build of ``arch`` wrote."""
    index = json.loads(layout_file(two_arch.single[arch] / "services-oci.tar", "index.json"))
    [desc] = index["manifests"]
    return desc["digest"]


def test_two_arch_build_pushes_one_index(two_arch: TwoArch) -> None:
    """One ``services-oci.tar`` and one ``services-docker.tar`` (no per-arch image files), and
    the registry serves the index they hold, byte for byte, over the single-arch manifests."""
    skopeo = require_tool("skopeo")
    wrote = {Path(line).name for line in two_arch.stdout.splitlines() if line.startswith("/")}
    assert {"services-oci.tar", "services-docker.tar", "services.build.json",
            "services.SHA256SUMS", "services-amd64.build.json", "services-arm64.build.json"
            } <= wrote
    assert not any(n.endswith(("-amd64-oci.tar", "-arm64-oci.tar", "-amd64-docker.tar",
                               "-arm64-docker.tar")) for n in wrote)
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false",
                          f"docker://{two_arch.ref}"], capture_output=True, check=True).stdout
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]} == \
        {arch: single_manifest(two_arch, arch) for arch in ("amd64", "arm64")}
    assert two_arch.stdout.splitlines()[-1].endswith("@sha256:" + hashlib.sha256(raw).hexdigest())
    for fmt in ("oci", "docker"):  # the file's index is what was pushed
        archive = two_arch.out / f"services-{fmt}.tar"
        assert subprocess.run([skopeo, "inspect", "--raw", f"oci-archive:{archive}"],
                              capture_output=True, check=True).stdout == raw


def test_two_arch_oci_file_holds_each_platforms_build(two_arch: TwoArch, tmp_path: Path) -> None:
    """skopeo picks each platform out of ``services-oci.tar`` (digests preserved): its manifest
    is the single-arch build's, and umoci unpacks it: its runc is that architecture's."""
    skopeo = require_tool("skopeo")
    umoci = require_tool("umoci")
    archive = two_arch.out / "services-oci.tar"
    with tarfile.open(archive) as tf:
        names = tf.getnames()
    assert len(names) == len(set(names))  # every blob once
    layout = tmp_path / "layout"
    for arch in ("amd64", "arm64"):
        subprocess.run([skopeo, "--insecure-policy", "copy", "--quiet", "--preserve-digests",
                        "--override-arch", arch, f"oci-archive:{archive}",
                        f"oci:{layout}:{arch}"], capture_output=True, check=True)
        raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{layout}:{arch}"],
                             capture_output=True, check=True).stdout
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == single_manifest(two_arch, arch)
        subprocess.run([umoci, "unpack", "--rootless", "--image", f"{layout}:{arch}",
                        str(tmp_path / f"bundle-{arch}")], check=True, capture_output=True)
        # the image is the rootfs minus boot/: its runc is each architecture's (ELF e_machine)
        runc = (tmp_path / f"bundle-{arch}" / "rootfs" / "usr" / "sbin" / "runc").read_bytes()
        assert int.from_bytes(runc[18:20], "little") == {"amd64": 62, "arm64": 183}[arch]


def test_two_arch_docker_file_loads_and_runs_the_host_platform(two_arch: TwoArch, dockerd,
                                                               monkeypatch, tmp_path) -> None:
    """The classic image store (dockerd with vfs) loads manifest.json's image, the first
    ``--arch`` (amd64, this machine's), under the spec's tag, and runs it; ``build --load``
    with several architectures loads that one file, and refuses when the first is not the
    host's."""
    archive = two_arch.out / "services-docker.tar"
    [entry] = json.loads(layout_file(archive, "manifest.json"))
    amd64_config = entry["Config"].removeprefix("blobs/sha256/")
    assert "services:latest" in dockerd.run("load", "-i", str(archive))
    [image] = json.loads(dockerd.run("image", "inspect", "services:latest"))
    assert (image["Architecture"], image["Id"]) == ("amd64", "sha256:" + amd64_config)
    assert dockerd.run("run", "--rm", "--network", "none", "--entrypoint", "/bin/busybox",
                       "services:latest", "uname", "-m") == "x86_64\n"
    dockerd.run("rmi", "services:latest")
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    proc = composer("build", "--cache", str(two_arch.cache), "--arch", "amd64,arm64", "-f",
                    "docker", "-o", str(tmp_path), "--name", "services", "--load", str(SPEC))
    assert proc.stdout.splitlines()[-1] == "loaded services:latest"
    assert "docker: unchanged (reused" in proc.stderr  # kept in the cache, as other formats
    assert (tmp_path / "services-docker.tar").read_bytes() == archive.read_bytes()
    assert json.loads(dockerd.run("image", "inspect", "services:latest"))[0]["Id"] == image["Id"]
    refused = subprocess.run([sys.executable, "-m", "composer", "build", "--cache",
                              str(two_arch.cache), "--arch", "arm64,amd64", "-f", "docker",
                              "-o", str(tmp_path / "no"), "--load", str(SPEC)],
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "give amd64 first in --arch" in refused.stderr
    assert not (tmp_path / "no").exists()


def test_two_arch_record_names_the_file_once_and_verify_reproduces_it(two_arch: TwoArch
                                                                      ) -> None:
    record = canonjson.loads((two_arch.out / "services.build.json").read_bytes())
    assert record["build"]["arch"] == "amd64,arm64"
    assert [o["name"] for o in record["outputs"]] == ["services-docker.tar", "services-oci.tar"]
    assert set(record["rootfs"]) == {"amd64", "arm64"}
    for arch in ("amd64", "arm64"):  # each architecture's record lists no image file
        per_arch = canonjson.loads((two_arch.out / f"services-{arch}.build.json").read_bytes())
        assert not any(o["name"].endswith(".tar") for o in per_arch["outputs"])
        assert per_arch["rootfs"] == record["rootfs"][arch]
    started = time.monotonic()
    proc = composer("verify", "--cache", str(two_arch.cache),
                    str(two_arch.out / "services.SHA256SUMS"), str(SPEC))
    print(f"verify of the two-arch oci+docker build: {time.monotonic() - started:.1f} s")
    assert "services-oci.tar: reproduced" in proc.stdout
    assert "services-docker.tar: reproduced" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "verified"


# -- rpi3: the Raspberry Pi 3 SD card tar, on QEMU's raspi3b ------------------------------------

def tar_member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tf:
        f = tf.extractfile(name)
        assert f is not None, name
        return f.read()


def test_rpi3_uimages_hold_the_kernel_and_initrd(arm64_outputs: Path, tmp_path: Path) -> None:
    """dumpimage (u-boot-tools) checks each uImage's CRCs and takes the data out: the kernel
    gunzips to the kernel+initrd format's kernel, the ramdisk is its initrd, byte for byte;
    the device trees are the example kernel's (Debian's arm64 kernel package)."""
    dumpimage = require_tool("dumpimage", "u-boot-tools")
    card = arm64_outputs / "services.tar"
    with tarfile.open(card) as tf:
        names = tf.getnames()
    assert sorted(names) == sorted([
        "kernel.uimg", "initrd.uimg", "boot.scr", "boot.script", "config.txt", *RPI3_FILES,
        "dtb", "dtb/broadcom", "dtb/broadcom/bcm2837-rpi-3-b.dtb",
        "dtb/broadcom/bcm2837-rpi-3-b-plus.dtb"])
    for name, image_type in (("kernel.uimg", "kernel"), ("initrd.uimg", "ramdisk")):
        (tmp_path / name).write_bytes(tar_member(card, name))
        subprocess.run([dumpimage, "-T", image_type, "-p", "0", "-o", str(tmp_path / image_type),
                        str(tmp_path / name)], check=True, capture_output=True)
    kernel = (arm64_outputs / "services-kernel").read_bytes()
    assert gzip.decompress((tmp_path / "kernel").read_bytes()) == kernel
    assert (tmp_path / "ramdisk").read_bytes() == \
        (arm64_outputs / "services-initrd.img").read_bytes()
    dtb = tar_member(card, "dtb/broadcom/bcm2837-rpi-3-b.dtb")
    assert dtb[:4] == b"\xd0\x0d\xfe\xed" and b"raspberrypi,3-model-b" in dtb


def test_rpi3_is_reproducible_and_arm64_only(two_arch_packages, arm64_outputs: Path,
                                           tmp_path: Path) -> None:
    """Again under another zone and umask: the same bytes. For amd64: a usage error (exit 2)
    naming the architectures it is for."""
    cache = next(iter(two_arch_packages.values()))[0].root
    env = {**os.environ, "TZ": "Pacific/Kiritimati"}
    proc = subprocess.run(["sh", "-c", 'umask 077 && exec "$@"', "sh", sys.executable, "-m",
                           "composer", "build", "--cache", str(cache), "--arch", "arm64",
                           "-f", "rpi3", "-o", str(tmp_path / "again"), str(SPEC)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again" / "services.tar").read_bytes() == \
        (arm64_outputs / "services.tar").read_bytes()
    amd64 = subprocess.run([sys.executable, "-m", "composer", "build", "--cache", str(cache),
                            "--arch", "amd64", "-f", "rpi3", "-o", str(tmp_path / "amd64"),
                            str(SPEC)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert amd64.returncode == 2, amd64.stderr
    assert "format rpi3 is for arm64 only, not amd64" in amd64.stderr
    assert not (tmp_path / "amd64").exists() or not list((tmp_path / "amd64").iterdir())


# the image's init at work: rc.init starting the onboot container under runc (the rest of the
# boot, about as long again under TCG, is what the other arm64 boots test)
ONBOOT = "runc: onboot 000-net: starting"


def sd_card(tar: Path, tmp_path: Path) -> Path:
    """A 128 MiB SD image (QEMU wants a power of two): MBR, one FAT32 partition at 1 MiB with
    the tar's files, as extracting it onto a card would give (test side only)."""
    for tool, package in (("sfdisk", "fdisk"), ("mkfs.vfat", "dosfstools"),
                          ("mcopy", "mtools")):
        require_tool(tool, package)
    files = tmp_path / "card"
    with tarfile.open(tar) as tf:
        tf.extractall(files, filter="data")
    image = tmp_path / "sd.img"
    with open(image, "wb") as f:
        f.truncate(128 << 20)
    subprocess.run(["sfdisk", "-q", str(image)], input=b"label: dos\nstart=2048, type=c\n",
                   check=True, capture_output=True)
    subprocess.run(["mkfs.vfat", "-F", "32", "--offset", "2048", str(image),
                    str((128 << 10) - 1024)], check=True, capture_output=True)
    subprocess.run(["mcopy", "-s", "-i", f"{image}@@1M", *sorted(str(p) for p in files.iterdir()),
                    "::"], check=True, capture_output=True)
    return image


def test_rpi3_boots_on_qemu_raspi3b(arm64_outputs: Path, tmp_path: Path) -> None:
    """QEMU has no VideoCore, so bootcode.bin/start.elf cannot run: QEMU starts the card's
    u-boot.bin itself (as the firmware would, at 0x80000, with the Pi 3 B device tree); from
    there it is the card's own boot: u-boot finds boot.scr on mmc 0:1, which loads and checks
    kernel.uimg, the device tree and initrd.uimg and boots them; the kernel's console is the
    PL011 (ttyAMA0, QEMU's first serial), u-boot's the mini UART (the second). It stops when
    rc.init starts the first onboot container."""
    qemu_bin = require_tool("qemu-system-aarch64", "qemu-system-arm")
    image = sd_card(arm64_outputs / "services.tar", tmp_path)
    card = tmp_path / "card"
    uart0, uart1 = tmp_path / "uart0.log", tmp_path / "uart1.log"
    started = time.monotonic()
    proc = subprocess.Popen(
        [qemu_bin, "-M", "raspi3b", "-kernel", str(card / "u-boot.bin"),
         "-dtb", str(card / "dtb" / "broadcom" / "bcm2837-rpi-3-b.dtb"),
         "-drive", f"file={image},if=sd,format=raw", "-serial", f"file:{uart0}",
         "-serial", f"file:{uart1}", "-display", "none", "-monitor", "none", "-no-reboot"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        booted = None
        while time.monotonic() - started < 400:
            assert proc.poll() is None, (f"QEMU ended early: {proc.stdout.read()!r}\n"  # type: ignore[union-attr]
                                         + uart1.read_text(errors="replace")[-3000:])
            if uart0.exists() and ONBOOT in uart0.read_text(errors="replace"):
                booted = time.monotonic() - started
                break
            time.sleep(1)
    finally:
        proc.kill()
        proc.wait()
    boot = uart1.read_text(errors="replace")
    console = uart0.read_text(errors="replace") if uart0.exists() else ""
    assert booted is not None, boot[-3000:] + "\n----\n" + console[-3000:]
    print(f"rpi3 on QEMU raspi3b (TCG): the init's first container started {booted:.1f} s "
          f"after QEMU started")
    assert "Found U-Boot script /boot.scr" in boot
    assert boot.count("Verifying Checksum ... OK") == 2  # kernel.uimg, initrd.uimg
    assert "Image Type:   AArch64 Linux Kernel Image (gzip compressed)" in boot
    assert "Booting using the fdt blob" in boot and "Starting kernel ..." in boot
    assert "Machine model: Raspberry Pi 3 Model B" in console
    assert console.index("Run /init as init process") < console.index(ONBOOT)
