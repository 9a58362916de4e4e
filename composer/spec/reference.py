"""Default and one-line meaning of every spec key: the text of docs/yaml.md's key reference and
of the ``description``/``default`` fields of docs/schema.json.

Keys are named by object: ``kernel.*``, ``image.*`` (the objects of onboot, onshutdown and
services), ``file.*``, ``volume.*``, ``trust.*``; ``[]`` marks list items. A test checks that this
table and the converter tables name exactly the same keys.
"""

from __future__ import annotations

from typing import Any

Doc = tuple[Any, str]  # (default or None, meaning)


def _idmap(prefix: str, what: str) -> dict[str, Doc]:
    return {
        prefix: (None, f"{what}: ranges of ids mapped into the user namespace"),
        f"{prefix}[].hostID": (0, "first id on the host"),
        f"{prefix}[].containerID": (0, "first id in the container"),
        f"{prefix}[].size": (0, "how many ids"),
    }


def _mount(prefix: str) -> dict[str, Doc]:
    return {
        f"{prefix}[].destination": (None, "where to mount, in the container"),
        f"{prefix}[].type": (None, "filesystem type (bind, tmpfs, proc, overlay, ...)"),
        f"{prefix}[].source": (None, "what to mount: a path, or a filesystem name"),
        f"{prefix}[].options": (None, "mount options"),
        **_idmap(f"{prefix}[].uidmappings", "id-mapped mount, uids"),
        **_idmap(f"{prefix}[].gidmappings", "id-mapped mount, gids"),
    }


def _throttle(key: str, what: str) -> dict[str, Doc]:
    prefix = f"image.resources.blockio.{key}"
    return {
        prefix: (None, f"per-device {what} limits"),
        f"{prefix}[].major": (0, "device major number"),
        f"{prefix}[].minor": (0, "device minor number"),
        f"{prefix}[].rate": (0, f"limit ({what})"),
    }


DOCS: dict[str, Doc] = {
    # ---- top level --------------------------------------------------------------------------
    "kernel": (None, "the kernel image: its binary becomes boot/kernel, its modules tar is "
               "unpacked at /"),
    "init": ([], "images unpacked at / in order (linuxkit/init, runc, containerd, ...)"),
    "onboot": ([], "containers run once at boot, in order: containers/onboot/NNN-NAME/"),
    "onshutdown": ([], "containers run at shutdown, in order: containers/onshutdown/NNN-NAME/"),
    "services": ([], "long-running containers: containers/services/NAME/ (names unique)"),
    "files": ([], "files, directories and symlinks added last, in order"),
    "trust": (None, "accepted for compatibility and ignored, with a warning"),
    "volumes": ([], "volumes containers can bind: containers/volumes/NAME/{lower,tmp,merged}"),
    # ---- kernel -----------------------------------------------------------------------------
    "kernel.image": (None, "image reference (required once the files are merged)"),
    "kernel.cmdline": ("", "kernel command line, written to boot/cmdline"),
    "kernel.binary": ("kernel", "file in the image that is the kernel"),
    "kernel.tar": ("kernel.tar", "tar of modules in the image, unpacked at /; \"none\" or \"\" "
                   "for none"),
    "kernel.ucode": (None, "CPU microcode cpio in the image, copied to boot/ucode.cpio"),
    # ---- image objects ----------------------------------------------------------------------
    "image.name": (None, "container name (letters, digits, '_', '.', '-')"),
    "image.image": (None, "image reference; \"@pkg:DIR\" for a package directory"),
    "image.capabilities": (None, "CAP_* names, or just all or none; replaces the label's"),
    "image.capabilities.add": (None, "CAP_* names appended to the label's capabilities"),
    "image.ambient": (None, "ambient capabilities (CAP_*, all or none)"),
    "image.mounts": (None, "OCI mounts; type is inferred from a source of proc, sysfs, devpts, "
                     "mqueue or cgroup, destination from the type"),
    **_mount("image.mounts"),
    "image.binds": (None, "SOURCE:DEST[:OPTS] bind mounts, replacing the label's; a SOURCE "
                    "not starting with / names a volume; default options rw,rbind,rshared"),
    "image.binds.add": (None, "binds appended to the label's binds"),
    "image.devices": (None, "device nodes to create and allow; path all allows a whole class"),
    "image.devices[].path": (None, "absolute path of the device node, or all"),
    "image.devices[].type": (None, "c, b, u or p (with path all: a, b or c)"),
    "image.devices[].major": (0, "major number"),
    "image.devices[].minor": (0, "minor number"),
    "image.devices[].mode": (None, "octal mode such as \"0666\" (required unless path is all)"),
    "image.tmpfs": (None, "DEST[:OPTS] tmpfs mounts"),
    "image.command": (None, "argv; default: the label's, else the image's Entrypoint + Cmd"),
    "image.env": (None, "NAME=VALUE list; default: the label's, else the image's Env"),
    "image.cwd": ("/", "working directory; default: the label's, else the image's WorkingDir"),
    "image.net": ("host", "network namespace: host, new, none, or a path to join"),
    "image.pid": ("new", "pid namespace: new, host, or a path to join"),
    "image.ipc": ("host", "ipc namespace: host, new, or a path to join"),
    "image.uts": ("host", "uts namespace: host, new, or a path to join"),
    "image.userns": ("host", "user namespace: host, new, or a path to join"),
    "image.hostname": (None, "hostname (needs a new uts namespace)"),
    "image.readonly": (False, "read-only root: the image goes to rootfs/ (else lower/ with an "
                       "overlay)"),
    "image.maskedPaths": (None, "paths hidden in the container"),
    "image.readonlyPaths": (None, "paths made read-only in the container"),
    "image.uid": (0, "user id, or the name of a container whose id to use"),
    "image.gid": (0, "group id, or the name of a container whose id to use"),
    "image.additionalGids": (None, "more group ids or container names"),
    "image.noNewPrivileges": (False, "set no_new_privs"),
    "image.oomScoreAdj": (None, "OOM score adjustment, -1000 to 1000"),
    "image.rootfsPropagation": (None, "root mount propagation: shared, slave, private, "
                                "unbindable or their r* forms"),
    "image.cgroupsPath": (None, "cgroup path"),
    "image.resources": (None, "OCI cgroup resource limits"),
    "image.resources.devices": (None, "device cgroup rules (devices: adds allow rules too)"),
    "image.resources.devices[].allow": (False, "allow (true) or deny"),
    "image.resources.devices[].type": (None, "a, b or c"),
    "image.resources.devices[].major": (None, "major number (all if unset)"),
    "image.resources.devices[].minor": (None, "minor number (all if unset)"),
    "image.resources.devices[].access": (None, "r, w, m combination"),
    "image.resources.memory": (None, "memory limits (bytes)"),
    "image.resources.memory.limit": (None, "memory limit"),
    "image.resources.memory.reservation": (None, "soft limit"),
    "image.resources.memory.swap": (None, "memory plus swap limit"),
    "image.resources.memory.kernel": (None, "kernel memory limit (deprecated)"),
    "image.resources.memory.kernelTCP": (None, "kernel TCP buffer limit (deprecated)"),
    "image.resources.memory.swappiness": (None, "swappiness, 0 to 100"),
    "image.resources.memory.disableOOMKiller": (None, "disable the OOM killer"),
    "image.resources.cpu": (None, "CPU limits"),
    "image.resources.cpu.shares": (None, "relative CPU weight"),
    "image.resources.cpu.quota": (None, "CPU time per period (microseconds)"),
    "image.resources.cpu.period": (None, "period for quota (microseconds)"),
    "image.resources.cpu.realtimeRuntime": (None, "realtime runtime (microseconds)"),
    "image.resources.cpu.realtimePeriod": (None, "realtime period (microseconds)"),
    "image.resources.cpu.cpus": (None, "CPUs to run on, e.g. \"0-3\""),
    "image.resources.cpu.mems": (None, "memory nodes, e.g. \"0\""),
    "image.resources.pids": (None, "process limits"),
    "image.resources.pids.limit": (0, "maximum number of tasks"),
    "image.resources.blockio": (None, "block I/O limits (blockIO in config.json)"),
    "image.resources.blockio.weight": (None, "I/O weight, 10 to 1000"),
    "image.resources.blockio.leafWeight": (None, "I/O weight for the cgroup's own tasks"),
    "image.resources.blockio.weightDevice": (None, "per-device weights"),
    "image.resources.blockio.weightDevice[].major": (0, "device major number"),
    "image.resources.blockio.weightDevice[].minor": (0, "device minor number"),
    "image.resources.blockio.weightDevice[].weight": (None, "weight"),
    "image.resources.blockio.weightDevice[].leafWeight": (None, "leaf weight"),
    **_throttle("throttleReadBpsDevice", "read bytes per second"),
    **_throttle("throttleWriteBpsDevice", "write bytes per second"),
    **_throttle("throttleReadIOPSDevice", "read operations per second"),
    **_throttle("throttleWriteIOPSDevice", "write operations per second"),
    "image.resources.hugepageLimits": (None, "hugetlb limits"),
    "image.resources.hugepageLimits[].pageSize": (None, "page size, e.g. \"2MB\""),
    "image.resources.hugepageLimits[].limit": (0, "limit in bytes"),
    "image.resources.network": (None, "network cgroup settings"),
    "image.resources.network.classID": (None, "net_cls class id"),
    "image.resources.network.priorities": (None, "net_prio priorities"),
    "image.resources.network.priorities[].name": (None, "interface name"),
    "image.resources.network.priorities[].priority": (0, "priority"),
    "image.sysctl": (None, "sysctl settings (values are strings)"),
    "image.rlimits": (None, "TYPE,SOFT,HARD (e.g. nofile,1024,4096; unlimited allowed)"),
    **_idmap("image.uidMappings", "uids"),
    **_idmap("image.gidMappings", "gids"),
    "image.annotations": (None, "OCI annotations"),
    "image.runtime": (None, "what linuxkit's init does around the container (runtime.json)"),
    "image.runtime.cgroups": ([], "cgroups to create"),
    "image.runtime.mounts": ([], "mounts made before the container starts (as written: no "
                             "inference)"),
    **_mount("image.runtime.mounts"),
    "image.runtime.mkdir": ([], "directories to create before the container starts"),
    "image.runtime.interfaces": ([], "network interfaces to create or move in"),
    "image.runtime.interfaces[].name": (None, "interface name in the container"),
    "image.runtime.interfaces[].add": (None, "type of interface to create (veth, wireguard...)"),
    "image.runtime.interfaces[].peer": (None, "peer name for a veth"),
    "image.runtime.interfaces[].createInRoot": (False, "create in the root namespace, then "
                                                "move in"),
    "image.runtime.bindNS": (None, "bind-mount the container's namespaces at these paths"),
    **{f"image.runtime.bindNS.{ns}": ("", f"path for the {ns} namespace")
       for ns in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")},
    "image.runtime.namespace": ("", "containerd namespace for a service"),
    # ---- files ------------------------------------------------------------------------------
    "file.path": (None, "path in the image; a leading / is ignored"),
    "file.directory": (False, "make a directory"),
    "file.symlink": (None, "make a symlink to this target"),
    "file.contents": (None, "file contents"),
    "file.source": (None, "host file to copy; relative to the spec file; ~/ is your home"),
    "file.metadata": (None, "yaml or json: the merged spec itself"),
    "file.optional": (False, "skip a source that does not exist"),
    "file.mode": (None, "octal string; default \"0600\" (\"0700\" for a directory)"),
    "file.uid": (0, "owner: a number, root, or a container name"),
    "file.gid": (0, "group: a number, root, or a container name"),
    # ---- volumes ----------------------------------------------------------------------------
    "volume.name": (None, "volume name (lowercase letters, digits, '_', '-'); binds name it as "
                    "their source"),
    "volume.image": (None, "image whose files fill the volume (blank if unset)"),
    "volume.readonly": (False, "binds must then use the ro option"),
    "volume.format": ("filesystem", "filesystem (the image unpacked) or oci (its index as an "
                      "OCI image layout)"),
    "volume.platforms": (None, "format oci: only these OS/ARCH[/VARIANT] (default: all)"),
    # ---- trust ------------------------------------------------------------------------------
    "trust.image": (None, "ignored"),
    "trust.org": (None, "ignored"),
}
