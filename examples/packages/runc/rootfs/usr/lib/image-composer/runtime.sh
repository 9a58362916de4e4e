# shellcheck shell=sh
# What linuxkit's `service` tool does around runc, in busybox sh + gojq. Sourced by
# /etc/init.d/010-onboot, /etc/init.d/020-services, /etc/shutdown.d/010-onshutdown and the
# prepare-process hook. runtime.json is read with gojq, which turns it into shell commands
# (@sh quoting) that are then eval'd here.
#   prepare_fs BUNDLE       runtime.json mounts, mkdir, cgroups (before runc create)
#   prepare_process B PID   runtime.json interfaces, bindNS (after create, before start)
#   run_oneshot B KIND      onboot/onshutdown: prepare, run, wait, log, report the exit status
#   start_service B         services: prepare, create, prepare_process, start, watch
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
IC_RUN=/run/image-composer
IC_LIB=/usr/lib/image-composer

say() { echo "runc: $*"; }

# ic_mount BUNDLE DEST TYPE SOURCE OPTIONS: one runtime.json mount. Propagation keywords are
# applied with --make-* after the mount (a remount with "private" as data makes tmpfs fail).
ic_mount() {
    local b="$1" dest="$2" type="$3" src="$4" opts="$5" o rest="" props="" remount="" oldifs
    case "$dest" in /*) ;; *) dest="$b/rootfs/$dest" ;; esac
    mkdir -p "$dest" || return 1
    oldifs=$IFS
    IFS=,
    for o in $opts; do
        case "$o" in
        upperdir=*|workdir=*) mkdir -p "${o#*=}" || { IFS=$oldifs; return 1; } ;;
        esac
        case "$o" in
        shared|rshared|private|rprivate|slave|rslave|unbindable|runbindable)
            props="$props $o" ;;
        remount) remount=1 ;;
        *) rest="$rest,$o" ;;
        esac
    done
    IFS=$oldifs
    rest=${rest#,}
    if [ -n "$remount" ]; then
        mount -o "remount${rest:+,$rest}" "$dest" || return 1
    else
        mount ${type:+-t "$type"} ${rest:+-o "$rest"} "${src:-none}" "$dest" || return 1
    fi
    for o in $props; do
        mount "--make-$o" "$dest" || return 1
    done
}

ic_mkdir() {
    case "$2" in /*) mkdir -p "$2" ;; *) mkdir -p "$1/rootfs/$2" ;; esac
}

prepare_fs() {
    local cmds
    cmds=$(gojq -r --arg b "$1" '
        ((.mounts // [])[] | "ic_mount \($b|@sh) \(.destination|@sh) \(.type // ""|@sh) "
            + "\(.source // ""|@sh) \((.options // []) | join(",") | @sh) || return 1"),
        ((.mkdir // [])[] | "ic_mkdir \($b|@sh) \(.|@sh) || return 1"),
        ((.cgroups // [])[] | "mkdir -p /sys/fs/cgroup/\(.|@sh) || "
            + "say \("warning: cannot make cgroup " + .|@sh)")' "$1/runtime.json") || return 1
    eval "$cmds"
}

# ic_iface PID NAME ADD PEER CREATEINROOT: one runtime.json interface, as linuxkit: a veth is
# made in the root namespace and its NAME end moved into the container (the peer stays);
# createInRoot makes another type in the root and moves it; any other type is made inside the
# container's netns; no type moves an existing interface in.
ic_iface() {
    local pid="$1" name="$2" add="$3" peer="$4" inroot="$5" idx dev
    [ -n "$name" ] || { echo "interface without a name" >&2; return 1; }
    [ -n "$peer" ] && [ -z "$add" ] && add=veth
    if [ "$add" = veth ]; then
        [ -n "$peer" ] || { echo "$name: a veth needs a peer" >&2; return 1; }
        ip link add "$name" type veth peer name "$peer" || return 1
        if [ ! -e "/sys/class/net/$peer" ]; then  # busybox ip ignores the peer's name
            idx=$(cat "/sys/class/net/$name/iflink")
            for dev in /sys/class/net/*; do
                if [ "$(cat "$dev/ifindex")" = "$idx" ]; then
                    ip link set "${dev##*/}" name "$peer" || return 1
                fi
            done
        fi
        ip link set "$name" netns "$pid" || return 1
    elif [ -n "$add" ] && [ "$inroot" = true ]; then
        ip link add "$name" type "$add" && ip link set "$name" netns "$pid" || return 1
    elif [ -n "$add" ]; then
        nsenter -t "$pid" -n ip link add "$name" type "$add" || return 1
    else
        ip link set "$name" netns "$pid" || return 1
    fi
}

# ic_bindns PID NS PATH: keep the container's namespace alive at PATH (a bind of /proc/PID/ns).
ic_bindns() {
    mkdir -p "$(dirname "$3")" && : > "$3" && mount --bind "/proc/$1/ns/$2" "$3"
}

prepare_process() {
    local cmds
    cmds=$(gojq -r --arg pid "$2" '
        ((.interfaces // [])[] | "ic_iface \($pid) \(.name // ""|@sh) \(.add // ""|@sh) "
            + "\(.peer // ""|@sh) \(.createInRoot // false | tostring) || return 1"),
        (["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"][] as $ns
            | (.bindNS // {})[$ns] // "" | select(. != "")
            | "ic_bindns \($pid) \($ns) \(.|@sh) || return 1")' "$1/runtime.json") || return 1
    eval "$cmds"
}

needs_process() {
    gojq -e '((.interfaces // []) | length > 0)
             or ((.bindNS // {}) | map(select(. != "")) | length > 0)' "$1/runtime.json" \
        >/dev/null
}

# run_oneshot BUNDLE KIND: an onboot or onshutdown container, to completion. runc run gives the
# exit status; when runtime.json has interfaces or bindNS, they are done by a createRuntime hook
# (after runc made the namespaces, before the process starts) in a copy of config.json under
# /run whose root.path is absolute, since a shell cannot reap a container started detached.
run_oneshot() {
    local b="$1" kind="$2" name bundle log status
    name=${b##*/}
    log=/var/log/$kind/$name.log
    mkdir -p "/var/log/$kind"
    : > "$log"
    say "$kind $name: starting"
    if ! prepare_fs "$b" >>"$log" 2>&1; then
        cat "$log"
        say "$kind $name: runtime.json mounts/mkdir failed; skipped"
        return 1
    fi
    bundle=$b
    if needs_process "$b"; then
        bundle=$IC_RUN/bundles/$kind/$name
        mkdir -p "$bundle"
        gojq --arg root "$b/rootfs" --arg hook "$IC_LIB/prepare-process" --arg b "$b" '
            .root.path = $root
            | .hooks.createRuntime = [(.hooks.createRuntime // [])[],
                                      {path: $hook, args: [$hook, $b]}]' \
            "$b/config.json" > "$bundle/config.json" || return 1
    fi
    runc run --bundle "$bundle" "$name" >>"$log" 2>&1 </dev/null
    status=$?
    runc delete -f "$name" >/dev/null 2>&1
    umount "$b/rootfs" 2>/dev/null
    cat "$log"
    say "$kind $name: exit status $status"
    return 0
}

# start_service BUNDLE: create, prepare_process with the pid, start; a watcher reports on the
# console when the service's process is gone.
start_service() {
    local b="$1" name log pid
    name=${b##*/}
    log=/var/log/$name.log
    mkdir -p "$IC_RUN"
    if ! prepare_fs "$b" >>"$log" 2>&1; then
        say "service $name: runtime.json mounts/mkdir failed (see $log)"
        return 1
    fi
    if ! runc create --bundle "$b" --pid-file "$IC_RUN/$name.pid" "$name" >>"$log" 2>&1 \
        </dev/null; then
        tail -n 5 "$log"
        say "service $name: runc create failed (see $log)"
        runc delete -f "$name" >/dev/null 2>&1
        return 1
    fi
    pid=$(cat "$IC_RUN/$name.pid")
    if ! prepare_process "$b" "$pid" >>"$log" 2>&1 || ! runc start "$name" >>"$log" 2>&1; then
        tail -n 5 "$log"
        say "service $name: runtime.json interfaces/bindNS or runc start failed (see $log)"
        runc delete -f "$name" >/dev/null 2>&1
        return 1
    fi
    say "service $name: started (pid $pid, log $log)"
    watch_service "$name" "$pid" </dev/null &
    echo $! >> "$IC_RUN/watchers"
}

watch_service() {
    while [ -e "/proc/$2" ] && [ "$(sed 's/.*) //' "/proc/$2/stat" 2>/dev/null | cut -c1)" != Z ]
    do
        sleep 1
    done
    say "service $1: died (pid $2; last lines of /var/log/$1.log below)"
    tail -n 5 "/var/log/$1.log"
}
