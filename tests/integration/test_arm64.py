"""arm64, cross-built on this machine and booted under emulation (qemu-system-aarch64, TCG).

The example packages are built for amd64 and arm64 at once (``two_arch_packages``: each tag a
two-platform index), so ``examples/services.yml`` builds unchanged for either architecture.
Each distinct thing boots once, through the real commands (``build --arch arm64``, ``run
qemu``): the kernel and initrd by direct kernel boot on ``-M virt -cpu cortex-a57``, and the
raw-efi disk (systemd-boot and a UKI on arm64's systemd-stub) and the iso-efi CD (GRUB) under
AAVMF, which ``run qemu`` implies for media on arm64 (no BIOS). In each, the page
the httpd service serves is fetched from the host through the port forward and the power
button runs the onshutdown container. A two-architecture build pushed to a real registry is
one index whose manifests are, byte for byte, the ones each architecture's build wrote
(``skopeo inspect --raw``, and ``umoci`` unpacks each: its runc is that architecture's).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from composer import canonjson
from tests.integration.conftest import free_port, require_tool
from tests.integration.test_runtime_boot import ROOT, Boot, composer

pytestmark = pytest.mark.integration

SPEC = ROOT / "examples" / "services.yml"


@pytest.fixture(scope="module")
def arm64_outputs(two_arch_packages, tmp_path_factory) -> Path:
    """``build --arch arm64 -f kernel+initrd,raw-efi,iso-efi examples/services.yml``."""
    cache = next(iter(two_arch_packages.values()))[0].root
    out = tmp_path_factory.mktemp("arm64") / "out"
    started = time.monotonic()
    composer("build", "--cache", str(cache), "--arch", "arm64", "-f",
             "kernel+initrd,raw-efi,iso-efi", "-o", str(out), str(SPEC))
    print(f"arm64 cross-build of services.yml (kernel+initrd, raw-efi, iso-efi): "
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
    # the arm64 builds of GRUB (iso-efi), systemd-boot and its stub (raw-efi), from arm64 debs
    assert sorted(record["options"]["bootloaders"]) == ["bootaa64.efi", "efiaa64.stub",
                                                        "sd-bootaa64.efi"]


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


def test_two_arch_build_pushes_one_index(two_arch_packages, registry, tmp_path: Path) -> None:
    """``build --arch amd64,arm64 -f oci --push``: NAME-amd64-oci.tar and NAME-arm64-oci.tar,
    and the registry serves one index whose entries are exactly those two manifests."""
    skopeo = require_tool("skopeo")
    umoci = require_tool("umoci")
    cache = next(iter(two_arch_packages.values()))[0].root
    ref = f"{registry.host}/composer-test/services:two-arch"
    out = composer("build", "--cache", str(cache), "--arch", "amd64,arm64", "-f", "oci",
                   "-o", str(tmp_path), "--name", "services", "--insecure-registry",
                   registry.host, "--push", ref, str(SPEC)).stdout
    wrote = {Path(line).name for line in out.splitlines() if line.startswith("/")}
    assert {"services-amd64-oci.tar", "services-arm64-oci.tar", "services-amd64.build.json",
            "services-arm64.build.json"} <= wrote
    built = {}
    for arch in ("amd64", "arm64"):
        with tarfile.open(tmp_path / f"services-{arch}-oci.tar") as tf:
            index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        [desc] = index["manifests"]
        built[arch] = desc["digest"]
        layout = tmp_path / f"layout-{arch}"
        layout.mkdir()
        with tarfile.open(tmp_path / f"services-{arch}-oci.tar") as tf:
            tf.extractall(layout, filter="data")
        tag = desc.get("annotations", {}).get("org.opencontainers.image.ref.name", "latest")
        subprocess.run([umoci, "unpack", "--rootless", "--image", f"{layout}:{tag}",
                        str(tmp_path / f"bundle-{arch}")], check=True, capture_output=True)
        # the image is the rootfs minus boot/: its runc is each architecture's (ELF e_machine)
        runc = (tmp_path / f"bundle-{arch}" / "rootfs" / "usr" / "sbin" / "runc").read_bytes()
        assert int.from_bytes(runc[18:20], "little") == {"amd64": 62, "arm64": 183}[arch]
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, check=True).stdout
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]} == built
    assert out.splitlines()[-1].endswith("@sha256:" + hashlib.sha256(raw).hexdigest())
