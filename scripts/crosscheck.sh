#!/usr/bin/env bash
# The README's promise on fresh machines: in stock Debian 12 (bookworm) and Debian 13 (trixie)
# roots made by debootstrap (minbase, plus git, ca-certificates and sudo), clone this checkout,
# run the README's setup as a new user would (scripts/setup.sh --test as that user, apt through
# sudo), build the example for every format, run the unit tests, and compare every output byte
# (records included) across the roots and this host. The Debian 13 root also builds the example
# a second time, from a fresh image cache (pkg build included), with Python's zlib replaced by
# another implementation (tests/fixtures/zlibswap: ISA-L by default), and those outputs must be
# byte-identical too: no output byte may come from the machine's zlib. (Only there by default:
# the suite's tests/golden/test_zlib_swap.py already swaps the host's zlib, and Debian 13 is the
# root whose Python (3.13) and zlib (1.3.1) differ from the host's; CROSSCHECK_SWAP_IN=
# "bookworm trixie host" swaps everywhere, as this check once did.)
#
#   sudo scripts/crosscheck.sh            # needs root: debootstrap, chroot, mounts
#   sudo scripts/crosscheck.sh --demo     # only time the README's scripts/demo.sh in each
#                                         # fresh root, as root, nothing cached but the root
#
# The roots and the host run side by side (each root: debootstrap if not cached, setup, build,
# unit tests; the host: setup and build), then every output is compared. Stamps on stderr say
# when each stage of each starts ("[SECONDS] SUITE: stage"). Only this test machinery uses
# root; inside each root the builds and tests run as an unprivileged user. The stock roots are
# cached under $CROSSCHECK_CACHE (default /var/cache/image-composer-crosscheck) and each run
# works in an overlay over them (a copy without overlayfs), so it always starts from a stock
# system. Downloads are cached there
# too and shared by the roots, each verified by its own tool: apt's .debs (per suite;
# debootstrap uses the same directory, and the Debian 12 one is seeded from this host's apt
# cache when the host runs Debian 12), pip's wheels, and the pinned Debian packages
# image-composer fetches (the example's, the bootloaders and tools), which are sha256-checked on
# every use; the host builds with its own (the checkout's examples/debs, as the suite does).
# dpkg in the roots runs with force-unsafe-io (no fsync per file: the roots are thrown away).
# What is compared is the committed HEAD (git clone), not uncommitted changes. On exit (or
# Ctrl-C) nothing is left behind: every process still running in a root is ended and every
# mount under the work directory unmounted.
#
# A network that intercepts TLS: the host's extra CA certificates (/usr/local/share/
# ca-certificates) are trusted in the roots too, and pip and requests told to use the system
# store there, as the host does.
#
# Environment: CROSSCHECK_SUITES (default "bookworm trixie"), CROSSCHECK_MIRROR (debootstrap's
# mirror, default Debian's), CROSSCHECK_KEEP=1 (keep the work directory), CROSSCHECK_TESTS=0
# (skip the unit tests), CROSSCHECK_PYTEST (extra pytest arguments), CROSSCHECK_ZLIB_SWAP (the
# replacement zlib of the second builds: isal (default) or zlib-ng; "none" skips them),
# CROSSCHECK_SWAP_IN (where the second builds run: suites and/or "host"; default "trixie"),
# CROSSCHECK_SERIAL=1 (one root after another, then the host: to time a stage alone),
# CROSSCHECK_EXCLUDE (formats left out of every build; none need to be).
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
swap_in=" ${CROSSCHECK_SWAP_IN-trixie} "
serial=${CROSSCHECK_SERIAL:-0}
case $zlib_swap in
    isal | zlib-ng | none) ;;
    *) echo "crosscheck: CROSSCHECK_ZLIB_SWAP must be isal, zlib-ng or none" >&2; exit 2 ;;
esac
if [ "$zlib_swap" = none ]; then swap_in=" "; fi

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
pids=()
rooted() {  # the processes whose root directory is inside the work directory
    local proc root
    for proc in /proc/[0-9]*; do
        root=$(readlink "$proc/root" 2>/dev/null) || continue
        case $root in "$work"/*) echo "${proc#/proc/}" ;; esac
    done
}
unmount_all() {  # every mount under the work directory, innermost first
    local where
    awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r \
        | while read -r where; do
            umount "$where" 2>/dev/null || umount -l "$where" 2>/dev/null || true
        done
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do  # each side's process group (job control is on)
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    local left tries=0
    left=$(rooted)
    while [ -n "$left" ] && [ "$tries" -lt 10 ]; do
        # shellcheck disable=SC2086
        kill "-$([ "$tries" -lt 5 ] && echo TERM || echo KILL)" $left 2>/dev/null || true
        sleep 1
        tries=$((tries + 1))
        left=$(rooted)
    done
    if [ -n "$left" ]; then
        echo "crosscheck: processes still running in the roots: $left" >&2
    fi
    wait 2>/dev/null || true
    unmount_all
    if awk -v w="$work/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        echo "crosscheck: could not unmount everything under $work; left it in place" >&2
        exit 1
    fi
    if [ "${CROSSCHECK_KEEP:-0}" = 1 ]; then
        echo "crosscheck: kept $work" >&2
    else
        rm -rf --one-file-system "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$cache"
# every format, in as few builds as possible: formats that write the same file (kernel+iso and
# iso-bios, vhd and dynamic-vhd) go to different builds; groups separated by ";"
formats=$(cd "$repo" && python3 - ${CROSSCHECK_EXCLUDE:-} <<'PY'
import sys
sys.path.insert(0, ".")
from composer.errors import UsageError
from outputs import FORMATS, check_clashes
groups = []
# the host's formats (the example is built for amd64; rpi3 and the like are arm64 only)
for fmt in (f for f, v in FORMATS.items()
            if f not in sys.argv[1:] and (v.arches is None or "amd64" in v.arches)):
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
# every format, into OUT/build1, OUT/build2, ... (one per group of FORMATS). Runs inside a clone
# at SRC whose .venv is set up. With SWAP set (isal or zlib-ng), Python's zlib is that
# replacement (the sitecustomize on PYTHONPATH) and the image cache is a fresh one, so pkg build
# compresses its layers again under the swap.
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
            LANG=C.UTF-8 "${ca_env[@]}" "$@" < /dev/null
    else
        chroot "$root" /usr/sbin/runuser -u "$user" -- /usr/bin/env -i HOME="/home/$user" \
            PATH=/usr/bin:/bin LANG=C.UTF-8 "${ca_env[@]}" "$@" < /dev/null
    fi
}

host_codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")

stock_root() {  # SUITE: the cached stock root (debootstrap it the first time)
    local suite=$1 base=$cache/root-$1 debs=$cache/apt-$1
    [ -d "$base" ] && return
    mkdir -p "$debs/partial"
    seed_apt_cache "$suite"
    stamp "$suite: debootstrap (minbase + git, ca-certificates, sudo) into $base"
    rm -rf "$base.tmp"
    debootstrap --variant=minbase --include=git,ca-certificates,sudo --cache-dir="$debs" \
        "$suite" "$base.tmp" "$mirror" > "$cache/debootstrap-$suite.log" 2>&1 \
        || { tail -20 "$cache/debootstrap-$suite.log" >&2; exit 1; }
    mv "$base.tmp" "$base"
}

seed_apt_cache() {  # SUITE: this host's downloaded .debs, when the host runs that suite
    [ "$1" = "$host_codename" ] || return 0
    find /var/cache/apt/archives -maxdepth 1 -name '*.deb' -print0 2>/dev/null \
        | xargs -0r cp -n -l -t "$cache/apt-$1" 2>/dev/null \
        || find /var/cache/apt/archives -maxdepth 1 -name '*.deb' -print0 2>/dev/null \
        | xargs -0r cp -n -t "$cache/apt-$1" || true
}

bind() {  # SOURCE TARGET
    mkdir -p "$1" "$2"
    mount --bind "$1" "$2"
}

prepare_root() {  # SUITE: a fresh copy of the cached stock root, mounted, with the checkout
    local suite=$1 root=$work/$1
    stock_root "$suite"
    stamp "$suite: fresh copy of the stock root"
    # an overlay over the cached root (it stays stock; the run writes only the upper layer),
    # or where overlayfs is missing, a copy
    mkdir -p "$root" "$work/$suite.upper" "$work/$suite.overlay-work"
    mount -t overlay overlay -o "lowerdir=$cache/root-$suite,upperdir=$work/$suite.upper,workdir=$work/$suite.overlay-work" "$root" 2>/dev/null \
        || { rmdir "$root"; cp -a --reflink=auto "$cache/root-$suite" "$root"; }
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"  # no daemons start in it
    chmod 755 "$root/usr/sbin/policy-rc.d"
    echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/crosscheck-unsafe-io"
    mount -t proc proc "$root/proc"
    mount -t sysfs sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount --make-rslave "$root/dev"
    if [ "${#extra_cas[@]}" -gt 0 ]; then
        cp "${extra_cas[@]}" "$root/usr/local/share/ca-certificates/"
        in_root "$suite" root update-ca-certificates > /dev/null 2>&1
    fi
    # the same uid in every root: the roots share their download caches
    in_root "$suite" root useradd -m -u 1000 -s /bin/bash builder
    echo "builder ALL=(ALL) NOPASSWD: ALL" > "$root/etc/sudoers.d/builder"
    chmod 440 "$root/etc/sudoers.d/builder"
    git clone -q --no-hardlinks "$repo" "$root/home/builder/src"
    if [ "$mode" != demo ]; then  # downloads cached between runs, and shared
        seed_apt_cache "$suite"
        bind "$cache/apt-$suite" "$root/var/cache/apt/archives"
        bind "$cache/pip" "$root/home/builder/.cache/pip"
        bind "$cache/pool-debs" "$root/home/builder/.cache/image-composer-debs"
        bind "$cache/example-debs" "$root/home/builder/src/examples/debs"
    fi
    in_root "$suite" root chown -R builder:builder /home/builder
}

setup_root() {  # SUITE: the README's setup, as a new user with sudo would
    local suite=$1
    stamp "$suite: scripts/setup.sh --test (as the user; apt through sudo)"
    in_root "$suite" builder /bin/bash -c 'cd ~/src && scripts/setup.sh --test' \
        > "$work/$suite-setup.log" 2>&1 || { tail -30 "$work/$suite-setup.log" >&2; exit 1; }
    if grep -i "deprecat" "$work/$suite-setup.log"; then
        echo "crosscheck: $suite: the setup printed deprecation warnings (above)" >&2
        exit 1
    fi
    stamp "$suite: $(in_root "$suite" builder /home/builder/src/.venv/bin/python -c \
        'import sys, zlib; print("python", sys.version.split()[0], "zlib", zlib.ZLIB_RUNTIME_VERSION)')"
}

quiet_build() {  # WHAT LOG: fail if the build printed noise on stderr
    if grep -q "Exception ignored\|Warning" "$2"; then
        grep "Exception ignored\|Warning" "$2" >&2
        echo "crosscheck: $1 printed noise on stderr" >&2
        exit 1
    fi
}

build_root() {  # SUITE: the example for every format, into $work/out-SUITE (and -swap)
    local suite=$1 root=$work/$1
    stamp "$suite: build the example, every format"
    in_root "$suite" builder /usr/bin/env SRC=/home/builder/src OUT=/home/builder/out \
        FORMATS="$formats" /bin/bash -c "$build_example" > "$work/$suite-build.log" 2>&1 \
        || { tail -30 "$work/$suite-build.log" >&2; exit 1; }
    quiet_build "$suite: the build" "$work/$suite-build.log"
    ln -s "$root/home/builder/out" "$work/out-$suite"
    case $swap_in in *" $suite "*) ;; *) return 0 ;; esac
    stamp "$suite: build the example again, Python's zlib swapped for $zlib_swap"
    in_root "$suite" builder /usr/bin/env SRC=/home/builder/src OUT=/home/builder/out-swap \
        FORMATS="$formats" SWAP="$zlib_swap" /bin/bash -c "$build_example" \
        > "$work/$suite-swap-build.log" 2>&1 \
        || { tail -30 "$work/$suite-swap-build.log" >&2; exit 1; }
    quiet_build "$suite: the swapped build" "$work/$suite-swap-build.log"
    ln -s "$root/home/builder/out-swap" "$work/out-$suite-swap"
}

test_root() {  # SUITE: the unit tests
    local suite=$1
    stamp "$suite: unit tests"
    # shellcheck disable=SC2086
    in_root "$suite" builder /bin/bash -c "cd ~/src && PATH=\$PATH:/usr/sbin:/sbin CI=true \
        .venv/bin/python -m pytest \
        tests/unit -q -p no:cacheprovider -x $pytest_args" > "$work/$suite-tests.log" 2>&1 \
        || { tail -40 "$work/$suite-tests.log" >&2
             grep -E "^(FAILED|ERROR) " "$work/$suite-tests.log" | sed "s/^/crosscheck: $suite: /" >&2
             exit 1; }
    stamp "$suite: unit tests: $(tail -1 "$work/$suite-tests.log")"
}

root_side() {  # SUITE: everything in one root
    prepare_root "$1"
    setup_root "$1"
    build_root "$1"
    if [ "$run_tests" = 1 ]; then test_root "$1"; fi
    stamp "$1: finished"
}

host_side() {  # the same example on this host, from a clone of the same commit
    stamp "host: setup and build the example, every format"
    git clone -q --no-hardlinks "$repo" "$work/host"
    # this host's own download caches (root's, and the checkout's examples/debs, which the
    # suite uses too), not the roots': those belong to their unprivileged user
    bind "$repo/examples/debs" "$work/host/examples/debs"
    (cd "$work/host" && scripts/setup.sh --test) > "$work/host-setup.log" 2>&1 \
        || { tail -30 "$work/host-setup.log" >&2; exit 1; }
    SRC=$work/host OUT=$work/out-host FORMATS=$formats bash -c "$build_example" \
        > "$work/host-build.log" 2>&1 || { tail -30 "$work/host-build.log" >&2; exit 1; }
    quiet_build "host: the build" "$work/host-build.log"
    case $swap_in in
        *" host "*)
            stamp "host: build the example again, Python's zlib swapped for $zlib_swap"
            SRC=$work/host OUT=$work/out-host-swap FORMATS=$formats SWAP=$zlib_swap \
                bash -c "$build_example" > "$work/host-swap-build.log" 2>&1 \
                || { tail -30 "$work/host-swap-build.log" >&2; exit 1; }
            quiet_build "host: the swapped build" "$work/host-swap-build.log" ;;
    esac
    stamp "host: finished"
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
            > "$work/$suite-demo.log" 2>&1 \
            || { tail -30 "$work/$suite-demo.log" >&2; exit 1; }
        grep -q "hello from the" "$work/$suite-demo.log" \
            || { tail -30 "$work/$suite-demo.log" >&2; exit 1; }
        echo "crosscheck: $suite: scripts/demo.sh took $((SECONDS - t0)) s on a fresh root" >&2
        unmount_all
    done
    exit 0
fi

mkdir -p "$cache/pip" "$cache/pool-debs" "$cache/example-debs"
sides=()
set -m  # each side in its own process group, so that cleanup can end all of it
if [ "$serial" = 1 ]; then
    for suite in $suites; do (root_side "$suite"); done
    (host_side)
else
    (host_side) & pids+=($!); sides+=(host)
    for suite in $suites; do
        (root_side "$suite") & pids+=($!); sides+=("$suite")
    done
fi
set +m
failed=()
for i in "${!pids[@]}"; do
    wait "${pids[i]}" || failed+=("${sides[i]}")
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crosscheck: FAILED in: ${failed[*]} (see above)" >&2
    exit 1
fi

stamp "compare every output byte"
listing "$work/out-host" > "$work/host.sums"
status=0
compared=$suites
for side in $swap_in; do
    case " $suites host " in *" $side "*) compared="$compared $side-swap" ;; esac
done
for side in $compared; do
    listing "$work/out-$side" > "$work/$side.sums"
    if cmp -s "$work/host.sums" "$work/$side.sums"; then
        echo "crosscheck: $side: every output byte-identical to the host's ($(wc -l < "$work/host.sums") files, records included)" >&2
    else
        status=1
        echo "crosscheck: $side: outputs DIFFER from the host's:" >&2
        diff "$work/host.sums" "$work/$side.sums" >&2 || true
        while read -r _ name; do
            [ -f "$work/out-$side/$name" ] && "$work/host/.venv/bin/image-composer" diff \
                "$work/out-host/$name" "$work/out-$side/$name" >&2 || true
        done < <(diff <(cat "$work/host.sums") <(cat "$work/$side.sums") | sed -n 's/^< //p')
    fi
    echo "crosscheck: $side environment: $(tr -d '\n ' < "$work/out-$side/build1/hello.build-env.json" | head -c 300)" >&2
done
[ "$status" = 0 ] || exit 1
stamp "done: outputs identical across ${compared// /, } and the host$([ "$run_tests" = 1 ] && echo "; unit tests passed in every root")"
