#!/usr/bin/env bash
# The main job on the bundled example: set up, fetch the pinned Debian packages, build the
# example package images, build examples/services.yml into kernel+initrd, boot it in QEMU,
# fetch the page its httpd service serves from this machine (127.0.0.1:$PORT, QEMU's user-mode
# port forward), print it, then press the VM's ACPI power button so it shuts down cleanly and
# the onshutdown container runs. The smoke-test example is `DEMO=hello scripts/demo.sh`.
# ARCH=arm64 builds the same spec for arm64 (cross-built: the arm64 debs are pinned too) and
# boots it in qemu-system-aarch64 -M virt -cpu cortex-a57 (TCG).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
out=${OUT:-out}
port=${PORT:-8080}
arch=()
if [ -n "${ARCH:-}" ]; then arch=(--arch "$ARCH"); fi

if [ -n "${ARCH:-}" ]; then
    examples/fetch-debs --allow-newer --arch "$ARCH"
else
    examples/fetch-debs --allow-newer --arch "$(dpkg --print-architecture 2>/dev/null || echo amd64)"
fi
if [ "${DEMO:-services}" = hello ]; then
    image-composer pkg build examples/packages/kernel examples/packages/init \
        examples/packages/hello
    image-composer build -f kernel+initrd -o "$out" examples/hello.yml
    echo "--- booting $out/hello in qemu (serial console below) ---" >&2
    exec image-composer run qemu "$out/hello"
fi

image-composer pkg build "${arch[@]}" examples/packages/kernel examples/packages/rcinit \
    examples/packages/runc examples/packages/hello
image-composer build "${arch[@]}" -f kernel+initrd -o "$out" examples/services.yml
echo "--- booting $out/services in qemu (serial console below) ---" >&2
image-composer run qemu "$out/services" --mem 512 --publish "$port:80" --timeout 900 \
    --console-log "$out/services-console.log" </dev/null &
vm=$!
trap 'kill -TERM $vm 2>/dev/null && wait $vm' EXIT
page=$(python3 - "$port" "$vm" <<'PY'
import os, sys, time, urllib.request
port, vm = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    try:
        os.kill(vm, 0)
    except OSError:
        sys.exit("the VM ended before its service answered")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as resp:
            sys.stdout.write(resp.read().decode())
            sys.exit(0)
    except OSError:
        time.sleep(1)
sys.exit("the service did not answer within 600 s")
PY
)
printf -- '--- the page served by the VM (http://127.0.0.1:%s/) ---\n%s\n' "$port" "$page"
printf -- '--- shutting the VM down (ACPI power button) ---\n'
kill -TERM "$vm"
trap - EXIT
wait "$vm"
