"""Build-time checks that save a boot (composer.rootfs.bootchecks, composer.spec.collisions):
a read-only container whose image lacks a mount point its config.json needs is an error with
its spec position; an onshutdown id equal to an onboot id is a warning with its position."""

from __future__ import annotations

from pathlib import Path

from composer.rootfs.bootchecks import missing_mountpoints, runc_refusals
from composer.rootfs.tree import Node, Tree
from composer.spec import load_spec
from composer.tar.canon import Entry, Kind
from tests.fixtures.images import directory, file, layer_tar, symlink
from tests.unit.test_linuxkit_rootfs import Env

BASE = "containers/onboot/000-c/rootfs"


def image_tree(*dirs: str, links: dict[str, str] | None = None) -> Tree:
    tree = Tree(0)
    for d in ("", *dirs):
        tree.put(f"{BASE}/{d}".rstrip("/"), Node(Entry("", Kind.DIR, 0o755)))
    for path, target in (links or {}).items():
        tree.put(f"{BASE}/{path}", Node(Entry("", Kind.SYMLINK, 0o777, linkname=target)))
    return tree


def config(*mounts: tuple[str, str, list[str]]) -> dict:
    return {"mounts": [{"destination": d, "type": t, "source": t, "options": o}
                       for d, t, o in mounts]}


DEFAULTS = [("/proc", "proc", []), ("/dev", "tmpfs", ["ro"]), ("/dev/pts", "devpts", []),
            ("/sys", "sysfs", ["ro"]), ("/sys/fs/cgroup", "cgroup", ["ro"])]


def test_defaults_need_dev_proc_sys_only() -> None:
    assert missing_mountpoints(config(*DEFAULTS), image_tree("dev", "proc", "sys"), BASE) == []
    assert missing_mountpoints(config(*DEFAULTS), image_tree("dev"), BASE) == ["/proc", "/sys"]


def test_binds_need_their_target_unless_below_a_self_made_mount() -> None:
    cfg = config(*DEFAULTS, ("/data", "bind", ["rbind", "ro"]), ("/run", "tmpfs", []),
                 ("/run/x", "bind", ["rbind"]), ("/dev/shm", "tmpfs", []),
                 ("/srv", "bind", ["rbind"]), ("/srv/deeper", "tmpfs", []))
    tree = image_tree("dev", "proc", "sys", "srv")
    assert missing_mountpoints(cfg, tree, BASE) == ["/data", "/run"]


def test_symlinks_are_followed_inside_the_image() -> None:
    cfg = config(("/data", "bind", ["rbind"]), ("/var/log", "tmpfs", []))
    tree = image_tree("srv", "srv/data", "real", "real/log", links={"data": "/srv/data",
                                                                    "var": "real"})
    assert missing_mountpoints(cfg, tree, BASE) == []
    dangling = image_tree(links={"data": "/nowhere", "var": "var"})  # and a loop
    assert missing_mountpoints(cfg, dangling, BASE) == ["/data", "/var/log"]


BUSYBOX = [layer_tar([directory("bin"), file("bin/busybox", b"\x7fELF", mode=0o755),
                      symlink("bin/sh", "busybox")])]


def test_build_warns_of_a_readonly_container_missing_a_mount_point(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.image("bb:1", BUSYBOX)
    # the image fixups give every image dev, etc, proc and sys, so the defaults are fine
    env.build("onboot:\n  - {name: ok, image: 'bb:1', readonly: true, binds: ['/etc:/etc']}\n")
    assert env.warnings == []
    env.build("onboot:\n  - {name: ok, image: 'bb:1', readonly: true}\n"
              "services:\n  - name: web\n    image: 'bb:1'\n    readonly: true\n"
              "    binds: ['/var/www:/www', '/run:/run']\n")
    [message] = env.warnings
    assert message.startswith(f"{tmp_path / 's.yml'}:4:")  # the service's position
    assert "services[0] web" in message and "has no /run, /www to mount on" in message
    # the same container writable: runc makes the mount points in the overlay
    env.build("services:\n  - {name: web, image: 'bb:1', binds: ['/var/www:/www']}\n")
    assert env.warnings == []


def test_build_prints_it_as_a_warning() -> None:
    from composer.build import _as_warning

    assert _as_warning("s.yml:4:5: services[0] web: x") == "s.yml:4:5: warning: services[0] web: x"
    assert _as_warning("services[0] web: x") == "warning: services[0] web: x"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yml"
    path.write_text(text)
    return path


def test_onshutdown_id_colliding_with_onboot_is_a_warning(tmp_path: Path) -> None:
    spec = load_spec([write(tmp_path, "onboot:\n  - {name: a, image: i}\n  - {name: b, image: i}\n"
                            "onshutdown:\n  - {name: x, image: i}\n  - {name: b, image: i}\n")])
    [(pos, message)] = spec.warnings
    assert (pos.line, pos.col) == (6, 5)
    assert message.startswith("onshutdown[1] b: its container id 001-b is also onboot[1]'s")
    # same name at another index: different directories, no warning
    spec = load_spec([write(tmp_path, "onboot:\n  - {name: a, image: i}\n  - {name: b, image: i}\n"
                            "onshutdown:\n  - {name: b, image: i}\n")])
    assert spec.warnings == ()


def ns_config(*types: str, hostname: str = "", sysctl: dict | None = None) -> dict:
    cfg: dict = {"linux": {"namespaces": [{"type": t} for t in (*types, "mount")]}}
    if hostname:
        cfg["hostname"] = hostname
    if sysctl:
        cfg["linux"]["sysctl"] = sysctl
    return cfg


def test_runc_refusals_hostname_and_sysctls() -> None:
    assert runc_refusals(ns_config("uts", hostname="h")) == []
    assert runc_refusals(ns_config(hostname="h")) == [
        "hostname is set but the uts namespace is the host's (add uts: new)"]
    ok = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "1",
          "kernel.domainname": "d"}
    assert runc_refusals(ns_config("network", "ipc", "uts", sysctl=ok)) == []
    assert runc_refusals(ns_config(sysctl={**ok, "kernel.hostname": "h", "vm.swappiness": "1"})
                         ) == [
        "sysctl fs.mqueue.msg_max needs a new ipc namespace (ipc: new)",
        "sysctl kernel.domainname needs a new uts namespace (uts: new)",
        "sysctl kernel.hostname is refused by runc; use hostname",
        "sysctl kernel.shmmax needs a new ipc namespace (ipc: new)",
        "sysctl net.ipv4.ip_forward needs a new network namespace (net: new or a path)",
        "sysctl vm.swappiness is not in a namespace of its own; runc refuses it"]


def test_build_warns_of_what_runc_refuses(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.image("bb:1", BUSYBOX)
    env.build("onboot:\n  - {name: a, image: 'bb:1', hostname: h, uts: new,"
              " net: new, sysctl: {net.ipv4.ip_forward: '1'}}\n")
    assert env.warnings == []
    env.build("onboot:\n  - {name: a, image: 'bb:1', hostname: h,"
              " sysctl: {net.ipv4.ip_forward: '1'}}\n")
    assert [w.split(": runc will refuse to start it: ")[1] for w in env.warnings] == [
        "hostname is set but the uts namespace is the host's (add uts: new)",
        "sysctl net.ipv4.ip_forward needs a new network namespace (net: new or a path)"]
    assert env.warnings[0].startswith(f"{tmp_path / 's.yml'}:2:")
