#!/usr/bin/env bash
# Install everything image-composer needs on a fresh Debian/Ubuntu machine, then create .venv.
#   scripts/setup.sh          runtime + demo tools (qemu, apt-get download works without root)
#   scripts/setup.sh --test   also the test oracles and services (registry, skopeo, cpio, ...)
#                             and qemu-system-aarch64 + AAVMF (also with ARCH=arm64)
# Safe to run again: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# sudo resets the environment: DEBIAN_FRONTEND reaches apt through env
SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo env DEBIAN_FRONTEND=noninteractive); fi
export DEBIAN_FRONTEND=noninteractive

# runtime: QEMU and OVMF for `run qemu`. The bootloaders and the tools whose version shapes
# bytes (tar2sqfs for kernel+squashfs, mtools for the syslinux disks) are pinned Debian 12
# packages that image-composer fetches and runs itself, whatever the host runs.
packages=(python3 python3-venv python3-pip ca-certificates qemu-system-x86 ovmf cpio)
if [ "${1:-}" = "--test" ]; then
    # oracles and services the tests start: registry, skopeo, umoci, dockerd, xorriso, objdump...
    packages+=(docker-registry skopeo umoci xorriso mtools dosfstools genisoimage faketime
               time tar docker.io apache2-utils zstd lz4 chromium fdisk gdisk qemu-utils
               squashfs-tools erofs-utils openssl binutils u-boot-tools)
fi
if [ "${1:-}" = "--test" ] || [ "${ARCH:-}" = arm64 ]; then
    # arm64 guests: qemu-system-aarch64 (-M virt, TCG) and AAVMF for the EFI formats
    packages+=(qemu-system-arm qemu-efi-aarch64)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "${1:-}" = "--test" ]; then
    .venv/bin/python -m pip install -q -e '.[test]'
else
    .venv/bin/python -m pip install -q -e .
fi
echo "setup: ready ($(.venv/bin/image-composer --version))" >&2
