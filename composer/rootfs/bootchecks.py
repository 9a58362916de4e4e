"""Build-time checks that save a boot: bundles that we can tell cannot start.

- A **read-only** container's root is its image, and linuxkit's init has made ``/`` read-only:
  runc cannot create a missing mount point there (``mkdir .../rootfs/dev: read-only file
  system``). Every mount destination of its ``config.json`` must exist in the image, unless it
  lies below an earlier mount that makes its own directories (a tmpfs, or the kernel's proc
  and sysfs), or below a bind (its host side is not known here). A warning, printed by
  ``build`` with the container's position (not an error: the image may be meant for another
  init that does not remount ``/`` read-only).

- **runc's own refusals** (``libcontainer/configs/validate``), from the generated ``config.json``
  (so the image label counts): a ``hostname`` without a new uts namespace, and sysctls outside
  a namespace of their own (``net.*`` need a new net namespace, the SysV IPC and
  ``fs.mqueue.*`` ones a new ipc namespace, ``kernel.domainname`` a new uts namespace;
  ``kernel.hostname`` and everything else are always refused). Warnings.

(The other such check, onshutdown ids that collide with onboot ones, needs only the spec:
:mod:`composer.spec.collisions`.)
"""

from __future__ import annotations

from composer.rootfs.tree import Tree
from composer.tar.canon import Kind

#: mount types below which runc never needs a directory in the image
SELF_MADE = ("tmpfs", "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "bind")
MAX_HOPS = 40


def _exists(tree: Tree, base: str, dest: str) -> bool:
    """Is ``dest`` (absolute, inside the container) in the image at ``base``? Symlinks are
    followed inside the image, as runc's securejoin does."""
    parts = [p for p in dest.split("/") if p]
    current: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        node = tree.get("/".join([base, *current, part]))
        if node is None:
            return False
        if node.entry.kind is Kind.SYMLINK:
            hops += 1
            if hops > MAX_HOPS:
                return False
            link = node.entry.linkname
            if link.startswith("/"):
                current = []
            parts = [p for p in link.split("/") if p] + parts
            continue
        current.append(part)
    return True


def missing_mountpoints(config: dict, tree: Tree, base: str) -> list[str]:
    """The mount destinations of ``config`` a read-only root at ``base`` in ``tree`` lacks."""
    missing = []
    made: list[str] = []  # destinations of earlier mounts that make their own directories
    for mount in sorted(config.get("mounts", []), key=lambda m: m["destination"]):
        dest = "/" + mount["destination"].strip("/")
        options = mount.get("options") or []
        kind = "bind" if "bind" in options or "rbind" in options else mount.get("type", "")
        below_made = any(dest.startswith(f"{d.rstrip('/')}/") for d in made)
        if not below_made and dest != "/" and not _exists(tree, base, dest):
            missing.append(dest)
        if kind in SELF_MADE:
            made.append(dest)
    return missing


#: sysctls runc allows in a new ipc namespace (besides ``fs.mqueue.*``)
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def runc_refusals(config: dict) -> list[str]:
    """Why runc (1.1, as 1.3) would refuse this ``config.json`` before starting anything."""
    linux = config.get("linux") or {}
    new = {ns["type"] for ns in linux.get("namespaces", [])}
    out = []
    if config.get("hostname") and "uts" not in new:
        out.append("hostname is set but the uts namespace is the host's (add uts: new)")
    for key in sorted(linux.get("sysctl") or {}):
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" not in new:
                out.append(f"sysctl {key} needs a new ipc namespace (ipc: new)")
        elif key.startswith("net."):
            if "network" not in new:
                out.append(f"sysctl {key} needs a new network namespace (net: new or a path)")
        elif key == "kernel.domainname":
            if "uts" not in new:
                out.append(f"sysctl {key} needs a new uts namespace (uts: new)")
        elif key == "kernel.hostname":
            out.append("sysctl kernel.hostname is refused by runc; use hostname")
        else:
            out.append(f"sysctl {key} is not in a namespace of its own; runc refuses it")
    return out
