#!/usr/bin/env bash
# The main job on the bundled example: set up, fetch the pinned Debian packages, build the three
# example package images, build examples/hello.yml into kernel+initrd, boot it in QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
out=${OUT:-out}

examples/fetch-debs --allow-newer
image-composer pkg build examples/packages/kernel examples/packages/init examples/packages/hello
image-composer build -f kernel+initrd -o "$out" examples/hello.yml
echo "--- booting $out/hello in qemu (serial console below) ---" >&2
image-composer run qemu "$out/hello"
