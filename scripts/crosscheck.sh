#!/usr/bin/env bash
# The README's promise on fresh machines: in stock Debian 12 (bookworm) and Debian 13 (trixie)
# roots made by debootstrap (minbase, plus git and ca-certificates), clone this checkout, run the
# README's setup as a new user would, build the example for every format, run the unit tests, and
# compare every output byte (records included) across the roots and this host. Each root and the
# host also build the example a second time, from a fresh image cache (pkg build included), with
# Python's zlib replaced by another implementation (tests/fixtures/zlibswap: ISA-L by default),
# and those outputs must be byte-identical too: no output byte may come from the machine's zlib.
#
#   sudo scripts/crosscheck.sh            # needs root: debootstrap, chroot, mounts
#   sudo scripts/crosscheck.sh --demo     # only time the README's scripts/demo.sh in each
#                                         # fresh root, as root, nothing cached but the root
#
# Only this test machinery uses root; inside each root the builds and tests run as an
# unprivileged user. The stock roots are cached under $CROSSCHECK_CACHE (default
# /var/cache/image-composer-crosscheck) and copied afresh for every run, so a run always starts
# from a stock system; downloaded .debs (apt) and wheels (pip) are cached there too. What is
# compared is the committed HEAD (git clone), not uncommitted changes.
#
# A network that intercepts TLS: the host's extra CA certificates (/usr/local/share/
# ca-certificates) are trusted in the roots too, and pip and requests told to use the system
# store there, as the host does.
#
# Environment: CROSSCHECK_SUITES (default "bookworm trixie"), CROSSCHECK_MIRROR (debootstrap's
# mirror, default Debian's), CROSSCHECK_KEEP=1 (keep the work directory), CROSSCHECK_TESTS=0
# (skip the unit tests), CROSSCHECK_PYTEST (extra pytest arguments), CROSSCHECK_ZLIB_SWAP (the
# replacement zlib of the second builds: isal (default) or zlib-ng; "none" skips them),
# CROSSCHECK_EXCLUDE (formats left out of every build: trixie's squashfs-tools-ng 1.3.2 and
# mtools 4.0.48 are refused by the kernel+squashfs and syslinux-disk pins, so a trixie check is
# CROSSCHECK_SUITES=trixie CROSSCHECK_EXCLUDE="kernel+squashfs raw-bios aws qcow2-bios vhd
# dynamic-vhd vmdk gcp").
set -euo pipefail
mode=check
if [ "${1:-}" = --demo ]; then mode=demo; fi
repo=${CROSSCHECK_REPO:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
cache=${CROSSCHECK_CACHE:-/var/cache/image-composer-crosscheck}
mirror=${CROSSCHECK_MIRROR:-http://deb.debian.org/debian}
suites=${CROSSCHECK_SUITES:-bookworm trixie}
run_tests=${CROSSCHECK_TESTS:-1}
pytest_args=${CROSSCHECK_PYTEST:-}
zlib_swap=${CROSSCHECK_ZLIB_SWAP:-isal}
case $zlib_swap in
    isal | zlib-ng | none) ;;
    *) echo "crosscheck: CROSSCHECK_ZLIB_SWAP must be isal, zlib-ng or none" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
    echo "crosscheck: needs root (debootstrap, chroot, mounts); try: sudo $0" >&2
    exit 2
fi
for tool in debootstrap chroot git; do
    command -v "$tool" >/dev/null || { echo "crosscheck: $tool is missing (apt-get install $tool)" >&2; exit 2; }
done

start=$SECONDS
stamp() { echo "crosscheck: [$((SECONDS - start))s] $*" >&2; }
work=$(mktemp -d /var/tmp/image-composer-crosscheck.XXXXXX)
mounted=()
cleanup() {
    local status=$?
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -R "${mounted[i]}" 2>/dev/null || umount -lR "${mounted[i]}" 2>/dev/null || true
    done
    if [ "${CROSSCHECK_KEEP:-0}" = 1 ]; then
        echo "crosscheck: kept $work" >&2
    else
        rm -rf --one-file-system "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
mkdir -p "$cache"
# every format, in as few builds as possible: formats that write the same file (kernel+iso and
# iso-bios, vhd and dynamic-vhd) go to different builds; groups separated by ";"
formats=$(cd "$repo" && python3 - ${CROSSCHECK_EXCLUDE:-} <<'PY'
import sys
sys.path.insert(0, ".")
from composer.errors import UsageError
from outputs import FORMATS, check_clashes
groups = []
for fmt in (f for f in FORMATS if f not in sys.argv[1:]):
    for group in groups:
        try:
            check_clashes([*group, fmt])
        except UsageError:
            continue
        group.append(fmt)
        break
    else:
        groups.append([fmt])
print(";".join(" ".join(group) for group in groups))
PY
)

# The example, built as the README's demo does (fetch the pinned debs, pkg build, build), for
# every format, into OUT/build1, OUT/build2, ... (one per group of FORMATS). Runs inside a clone at SRC whose .venv is set up. With SWAP set (isal
# or zlib-ng), Python's zlib is that replacement (the sitecustomize on PYTHONPATH) and the image
# cache is a fresh one, so pkg build compresses its layers again under the swap.
build_example='
set -euo pipefail
cd "$SRC"
export PATH="$PWD/.venv/bin:$PATH"
if [ -n "${SWAP:-}" ]; then
    export PYTHONPATH=$PWD/tests/fixtures/zlibswap IMAGE_COMPOSER_ZLIB_SWAP=$SWAP
    export IMAGE_COMPOSER_CACHE=$OUT.cache
    python -c "import sys, zlib; assert zlib.SWAPPED == sys.argv[1], zlib" "$SWAP"
fi
examples/fetch-debs
image-composer pkg build examples/packages/kernel examples/packages/init examples/packages/hello
IFS=";" read -ra groups <<< "$FORMATS"
for i in "${!groups[@]}"; do
    args=()
    for f in ${groups[i]}; do args+=(-f "$f"); done
    image-composer build "${args[@]}" -o "$OUT/build$((i + 1))" examples/hello.yml
done
'

extra_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${extra_cas[0]}" ] || extra_cas=()
ca_env=()
if [ "${#extra_cas[@]}" -gt 0 ]; then
    bundle=/etc/ssl/certs/ca-certificates.crt
    ca_env=(PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle SSL_CERT_FILE=$bundle)
fi

in_root() {  # SUITE USER COMMAND...: run a command in the root, as root or the test user
    local root=$work/$1 user=$2
    shift 2
    if [ "$user" = root ]; then
        chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            LANG=C.UTF-8 "${ca_env[@]}" "$@"
    else
        chroot "$root" /usr/sbin/runuser -u "$user" -- /usr/bin/env -i HOME="/home/$user" \
            PATH=/usr/bin:/bin LANG=C.UTF-8 "${ca_env[@]}" "$@"
    fi
}

prepare_root() {  # SUITE: a fresh copy of the cached stock root, mounted, with the checkout
    local suite=$1 base=$cache/base-$1 root=$work/$1
    if [ ! -d "$base" ]; then
        stamp "$suite: debootstrap (minbase) into $base"
        rm -rf "$base.tmp"
        debootstrap --variant=minbase --include=git,ca-certificates "$suite" "$base.tmp" \
            "$mirror" > "$cache/debootstrap-$suite.log" 2>&1 \
            || { tail -20 "$cache/debootstrap-$suite.log" >&2; exit 1; }
        mv "$base.tmp" "$base"
    fi
    stamp "$suite: fresh copy of the stock root"
    cp -a --reflink=auto "$base" "$root"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"  # no daemons start in it
    chmod 755 "$root/usr/sbin/policy-rc.d"
    mount -t proc proc "$root/proc"; mounted+=("$root/proc")
    mount -t sysfs sys "$root/sys"; mounted+=("$root/sys")
    mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"; mounted+=("$root/dev")
    if [ "${#extra_cas[@]}" -gt 0 ]; then
        cp "${extra_cas[@]}" "$root/usr/local/share/ca-certificates/"
        in_root "$suite" root update-ca-certificates > /dev/null 2>&1
    fi
    in_root "$suite" root useradd -m -s /bin/bash builder
    if [ "$mode" != demo ]; then  # downloads cached between runs
        mkdir -p "$cache/apt-$suite" "$cache/pip-$suite" "$root/home/builder/.cache/pip"
        mount --bind "$cache/apt-$suite" "$root/var/cache/apt/archives"
        mounted+=("$root/var/cache/apt/archives")
        mount --bind "$cache/pip-$suite" "$root/home/builder/.cache/pip"
        mounted+=("$root/home/builder/.cache/pip")
    fi
    git clone -q --no-hardlinks "$repo" "$root/home/builder/src"
    in_root "$suite" root chown -R builder:builder /home/builder
}

setup_root() {  # SUITE: the README's setup, as a new user would (root for apt, then the user)
    local suite=$1 root=$work/$1
    stamp "$suite: scripts/setup.sh --test (system packages as root)"
    # setup.sh installs the packages (needs root) and makes .venv; as root here, so the venv
    # is then rebuilt by the user who runs everything else
    in_root "$suite" root /bin/bash -c 'cd /home/builder/src && apt-get update -qq &&
        scripts/setup.sh --test && rm -rf .venv ./*.egg-info' > "$work/$suite-setup-root.log" \
        2>&1 || { tail -30 "$work/$suite-setup-root.log" >&2; exit 1; }
    in_root "$suite" root chown -R builder:builder /home/builder
    stamp "$suite: scripts/setup.sh --test (the .venv, as the user)"
    in_root "$suite" builder /bin/bash -c 'cd ~/src && scripts/setup.sh --test' \
        > "$work/$suite-setup.log" 2>&1 || { tail -30 "$work/$suite-setup.log" >&2; exit 1; }
    if grep -i "deprecat" "$work/$suite-setup.log"; then
        echo "crosscheck: $suite: the setup printed deprecation warnings (above)" >&2
        exit 1
    fi
    in_root "$suite" builder /home/builder/src/.venv/bin/python -c \
        'import sys, zlib; print("python", sys.version.split()[0], "zlib", zlib.ZLIB_RUNTIME_VERSION)' >&2
}

build_root() {  # SUITE: the example for every format, into $work/out-SUITE
    local suite=$1 root=$work/$1
    stamp "$suite: build the example, every format"
    in_root "$suite" builder /usr/bin/env SRC=/home/builder/src OUT=/home/builder/out \
        FORMATS="$formats" /bin/bash -c "$build_example" > "$work/$suite-build.log" 2>&1 \
        || { tail -30 "$work/$suite-build.log" >&2; exit 1; }
    if grep -q "Exception ignored\|Warning" "$work/$suite-build.log"; then
        grep "Exception ignored\|Warning" "$work/$suite-build.log" >&2
        echo "crosscheck: $suite: the build printed noise on stderr" >&2
        exit 1
    fi
    ln -s "$root/home/builder/out" "$work/out-$suite"
    [ "$zlib_swap" = none ] && return
    stamp "$suite: build the example again, Python's zlib swapped for $zlib_swap"
    in_root "$suite" builder /usr/bin/env SRC=/home/builder/src OUT=/home/builder/out-swap \
        FORMATS="$formats" SWAP="$zlib_swap" /bin/bash -c "$build_example" \
        > "$work/$suite-swap-build.log" 2>&1 \
        || { tail -30 "$work/$suite-swap-build.log" >&2; exit 1; }
    if grep -q "Exception ignored\|Warning" "$work/$suite-swap-build.log"; then
        grep "Exception ignored\|Warning" "$work/$suite-swap-build.log" >&2
        echo "crosscheck: $suite: the swapped build printed noise on stderr" >&2
        exit 1
    fi
    ln -s "$root/home/builder/out-swap" "$work/out-$suite-swap"
}

test_root() {  # SUITE: the unit tests
    local suite=$1
    stamp "$suite: unit tests"
    # shellcheck disable=SC2086
    in_root "$suite" builder /bin/bash -c "cd ~/src && PATH=\$PATH:/usr/sbin:/sbin CI=true \
        .venv/bin/python -m pytest \
        tests/unit -q -p no:cacheprovider -x $pytest_args" > "$work/$suite-tests.log" 2>&1 \
        || { tail -40 "$work/$suite-tests.log" >&2; exit 1; }
    tail -1 "$work/$suite-tests.log" >&2
}

build_host() {  # the same example on this host, from a clone of the same commit
    stamp "host: setup and build the example, every format"
    git clone -q --no-hardlinks "$repo" "$work/host"
    (cd "$work/host" && scripts/setup.sh --test) > "$work/host-setup.log" 2>&1 \
        || { tail -30 "$work/host-setup.log" >&2; exit 1; }
    SRC=$work/host OUT=$work/out-host FORMATS=$formats bash -c "$build_example" \
        > "$work/host-build.log" 2>&1 || { tail -30 "$work/host-build.log" >&2; exit 1; }
    [ "$zlib_swap" = none ] && return
    stamp "host: build the example again, Python's zlib swapped for $zlib_swap"
    SRC=$work/host OUT=$work/out-host-swap FORMATS=$formats SWAP=$zlib_swap \
        bash -c "$build_example" > "$work/host-swap-build.log" 2>&1 \
        || { tail -30 "$work/host-swap-build.log" >&2; exit 1; }
}

listing() {  # DIR: "sha256  path" of every file under DIR, sorted (the env file left out)
    (cd "$1/" && find . -type f ! -name '*.build-env.json' -print0 | LC_ALL=C sort -z \
        | xargs -0 sha256sum)
}

if [ "$mode" = demo ]; then
    for suite in $suites; do
        prepare_root "$suite"
        stamp "$suite: scripts/demo.sh (as root, as on a fresh machine)"
        t0=$SECONDS
        in_root "$suite" root /bin/bash -c 'cd /home/builder/src && scripts/demo.sh' \
            < /dev/null > "$work/$suite-demo.log" 2>&1 \
            || { tail -30 "$work/$suite-demo.log" >&2; exit 1; }
        grep -q "hello from the onboot container" "$work/$suite-demo.log" \
            || { tail -30 "$work/$suite-demo.log" >&2; exit 1; }
        echo "crosscheck: $suite: scripts/demo.sh took $((SECONDS - t0)) s on a fresh root" >&2
    done
    exit 0
fi

for suite in $suites; do
    prepare_root "$suite"
    setup_root "$suite"
    build_root "$suite"
done
build_host

stamp "compare every output byte"
listing "$work/out-host" > "$work/host.sums"
status=0
compared=$suites
if [ "$zlib_swap" != none ]; then
    compared="$compared host-swap"
    for suite in $suites; do compared="$compared $suite-swap"; done
fi
for suite in $compared; do
    listing "$work/out-$suite" > "$work/$suite.sums"
    if cmp -s "$work/host.sums" "$work/$suite.sums"; then
        echo "crosscheck: $suite: every output byte-identical to the host's ($(wc -l < "$work/host.sums") files, records included)" >&2
    else
        status=1
        echo "crosscheck: $suite: outputs DIFFER from the host's:" >&2
        diff "$work/host.sums" "$work/$suite.sums" >&2 || true
        while read -r _ name; do
            [ -f "$work/out-$suite/$name" ] && "$work/host/.venv/bin/image-composer" diff \
                "$work/out-host/$name" "$work/out-$suite/$name" >&2 || true
        done < <(diff <(cat "$work/host.sums") <(cat "$work/$suite.sums") | sed -n 's/^< //p')
    fi
    echo "crosscheck: $suite environment: $(tr -d '\n ' < "$work/out-$suite/build1/hello.build-env.json" | head -c 300)" >&2
done
[ "$status" = 0 ] || exit 1

if [ "$run_tests" = 1 ]; then
    for suite in $suites; do
        test_root "$suite"
    done
fi
stamp "done: outputs identical across ${compared// /, } and the host"
