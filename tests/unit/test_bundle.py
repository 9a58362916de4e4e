"""config.json and runtime.json: each precedence rule and default of linuxkit's ConfigToOCI
(src/cmd/linuxkit/moby/config.go), with a case derived from its code or its config_test.go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.rootfs.bundle import (
    LABEL,
    make_bundle,
    rootfs_mounts,
    runtime_json,
)
from composer.spec import load_spec
from composer.spec.model import Container
from composer.spec.schema import CAPABILITIES

UNLIMITED = 18446744073709551615


def container(tmp_path: Path, yaml_text: str = "", volumes: str = "") -> Container:
    """The first onboot container of a spec with this image-object YAML (indented 4)."""
    body = "".join(f"    {line}\n" for line in yaml_text.splitlines())
    spec = tmp_path / "s.yml"
    spec.write_text(f"onboot:\n  - name: c\n    image: i\n{body}"
                    "services: [{name: other, image: o}]\n" + volumes)
    return load_spec([spec]).onboot[0]


def image_config(label: dict | str | None = None, **config) -> dict:
    cfg = dict(config)
    if label is not None:
        cfg["Labels"] = {LABEL: label if isinstance(label, str) else json.dumps(label)}
    return {"architecture": "amd64", "os": "linux", "config": cfg}


def bundle(tmp_path: Path, yaml_text: str = "", label: dict | str | None = None,
           ids: dict[str, int] | None = None, volumes: str = "", **config):
    c = container(tmp_path, yaml_text, volumes)
    return make_bundle(c, image_config(label, **config), ids or {"c": 100, "other": 101}, "c")


def oci(tmp_path: Path, yaml_text: str = "", label: dict | str | None = None, **kw) -> dict:
    return bundle(tmp_path, yaml_text, label, **kw).config


def mounts(config: dict) -> dict[str, dict]:
    return {m["destination"]: m for m in config["mounts"]}


# ---- config_test.go ---------------------------------------------------------------------------

def test_overrides(tmp_path):
    """TestOverrides: YAML capabilities replace the label's; the label's cwd still applies."""
    cfg = oci(tmp_path, "capabilities: [CAP_SYS_ADMIN]",
              {"capabilities": ["CAP_SYS_CHROOT"], "cwd": "/label/directory"})
    assert cfg["process"]["capabilities"]["bounding"] == ["CAP_SYS_ADMIN"]
    assert cfg["process"]["cwd"] == "/label/directory"


def test_invalid_cap_in_label(tmp_path):
    """TestInvalidCap: a label naming an unknown capability is an error."""
    with pytest.raises(ComposerError, match=r"invalid org\.mobyproject\.config label: .*unknown "
                                            r"capability 'NOT_A_CAP'"):
        oci(tmp_path, "", {"capabilities": ["NOT_A_CAP"]})


def test_id_map(tmp_path):
    """TestIdMap: a uid by container name, a numeric gid."""
    cfg = oci(tmp_path, "uid: other\ngid: 76")
    assert cfg["process"]["user"] == {"uid": 101, "gid": 76}
    cfg = oci(tmp_path, "additionalGids: [c, 5, root]", ids={"c": 100, "other": 101})
    assert cfg["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [100, 5, 0]}
    # a label may name a container too; an unknown one is an error naming it
    assert oci(tmp_path, "", {"uid": "other"})["process"]["user"]["uid"] == 101
    with pytest.raises(ComposerError, match="cannot find id 'ghost'"):
        oci(tmp_path, "", {"gid": "ghost"})


# ---- command, env, cwd: YAML, else label, else image config -----------------------------------

@pytest.mark.parametrize(("yaml_text", "label", "expected"), [
    ("command: [y]", {"command": ["l"]}, ["y"]),
    ("", {"command": ["l"]}, ["l"]),
    ("", {}, ["/entry", "-x", "cmd"]),
    ("command: []", {"command": ["l"]}, None),  # set but empty: no args (Go omits it)
])
def test_args_precedence(tmp_path, yaml_text, label, expected):
    cfg = oci(tmp_path, yaml_text, label, Entrypoint=["/entry", "-x"], Cmd=["cmd"])
    assert cfg["process"].get("args") == expected


@pytest.mark.parametrize(("yaml_text", "label", "expected"), [
    ("env: [A=y]", {"env": ["A=l"]}, ["A=y"]),
    ("", {"env": ["A=l"]}, ["A=l"]),
    ("", {}, ["PATH=/bin"]),
])
def test_env_precedence(tmp_path, yaml_text, label, expected):
    assert oci(tmp_path, yaml_text, label, Env=["PATH=/bin"])["process"]["env"] == expected


@pytest.mark.parametrize(("yaml_text", "label", "workdir", "expected"), [
    ("cwd: /y", {"cwd": "/l"}, "/w", "/y"),
    ("", {"cwd": "/l"}, "/w", "/l"),
    ("", {}, "/w", "/w"),
    ("", {}, "", "/"),
])
def test_cwd_precedence(tmp_path, yaml_text, label, workdir, expected):
    assert oci(tmp_path, yaml_text, label, WorkingDir=workdir)["process"]["cwd"] == expected


# ---- defaults and Go's omitempty ----------------------------------------------------------------

def test_defaults_and_omitted_keys(tmp_path):
    made = bundle(tmp_path)
    cfg = made.config
    assert set(cfg) == {"ociVersion", "process", "root", "mounts", "linux"}
    assert cfg["ociVersion"] == "1.2.1"
    assert cfg["root"] == {"path": "rootfs"}  # readonly false: omitted, as Go does
    assert cfg["process"] == {"user": {"uid": 0, "gid": 0}, "cwd": "/", "capabilities": {}}
    assert cfg["linux"] == {"namespaces": [{"type": "pid"}, {"type": "mount"}],
                            "resources": {}}
    assert [m["destination"] for m in cfg["mounts"]] == ["/dev", "/dev/pts", "/proc", "/sys",
                                                         "/sys/fs/cgroup"]
    assert mounts(cfg)["/dev"] == {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["nosuid", "strictatime", "mode=755",
                                               "size=65536k"]}
    assert mounts(cfg)["/sys/fs/cgroup"]["options"][-1] == "ro"
    assert made.readonly is False
    assert made.runtime == {"cgroups": [], "mounts": [], "mkdir": [], "interfaces": [],
                            "bindNS": dict.fromkeys(("cgroup", "ipc", "mnt", "net", "pid",
                                                     "user", "uts"), ""),
                            "namespace": ""}


def test_readonly_label_and_yaml(tmp_path):
    made = bundle(tmp_path, "", {"readonly": True})
    assert made.readonly and made.config["root"] == {"path": "rootfs", "readonly": True}
    m = mounts(made.config)
    assert m["/dev"]["options"][-1] == "ro" and m["/sys"]["options"] == ["nosuid", "noexec",
                                                                        "nodev", "ro"]
    assert "ro" not in m["/proc"]["options"]
    # YAML false beats label true (a pointer that is set, even to false, wins)
    assert bundle(tmp_path, "readonly: false", {"readonly": True}).readonly is False


# ---- mounts -----------------------------------------------------------------------------------

def test_binds_add_appends_to_label_binds(tmp_path):
    cfg = oci(tmp_path, "binds.add: [/y:/y, '/dev:/dev:ro']",
              {"binds": ["/dev:/dev", "/l:/l:rshared,rbind"], "binds.add": ["/ignored:/i"]})
    m = mounts(cfg)
    assert m["/l"] == {"destination": "/l", "type": "bind", "source": "/l",
                       "options": ["rshared", "rbind", "rbind"]}
    assert m["/y"]["options"] == ["rw", "rbind", "rshared"]
    assert m["/dev"]["options"] == ["ro", "rbind"]  # the later bind at /dev wins
    assert "/i" not in m  # a label's own binds.add is ignored, as in linuxkit


def test_binds_replace_label_binds_and_ignore_binds_add(tmp_path):
    m = mounts(oci(tmp_path, "binds: [/y:/y]\nbinds.add: [/a:/a]", {"binds": ["/l:/l"]}))
    assert "/y" in m and "/l" not in m and "/a" not in m


def test_mount_order_tmpfs_then_binds_then_mounts_sorted(tmp_path):
    cfg = oci(tmp_path, "\n".join([
        "tmpfs: ['/dev:size=1k,mode=700', /tmp]",
        "binds: [/tmp:/tmp]",
        "mounts: [{source: proc}, {type: cgroup, options: [rw]}, {destination: /dev},",
        "         {source: mqueue}, {type: overlay, source: overlay, destination: rel}]",
    ]))
    assert [m["destination"] for m in cfg["mounts"]] == [
        "/dev", "/dev/mqueue", "/dev/pts", "/proc", "/sys", "/sys/fs/cgroup", "/tmp", "rel"]
    m = mounts(cfg)
    assert m["/dev"] == {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}  # mounts win
    assert m["/tmp"]["type"] == "bind"  # binds replace tmpfs
    assert m["/proc"] == {"destination": "/proc", "type": "proc", "source": "proc"}
    assert m["/sys/fs/cgroup"] == {"destination": "/sys/fs/cgroup", "type": "cgroup",
                                   "source": "cgroup", "options": ["rw"]}
    assert m["/dev/mqueue"]["type"] == "mqueue"
    tmpfs = mounts(oci(tmp_path, "tmpfs: ['/run:size=1k,mode=700']"))["/run"]
    assert tmpfs == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                     "options": ["size=1k", "mode=700"]}


def test_label_mounts_replaced_by_yaml_mounts(tmp_path):
    label = {"mounts": [{"type": "tmpfs", "destination": "/l"}]}
    assert "/l" in mounts(oci(tmp_path, "", label))
    assert "/l" not in mounts(oci(tmp_path, "mounts: [{type: tmpfs, destination: /y}]", label))


def test_mount_idmappings_kept(tmp_path):
    m = mounts(oci(tmp_path, "mounts: [{type: bind, source: /s, destination: /d, "
                             "uidmappings: [{hostID: 1000, containerID: 0, size: 1}]}]"))
    assert m["/d"]["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]


def test_volumes_named_by_yaml_become_paths(tmp_path):
    volumes = "volumes: [{name: data}]\n"
    cfg = oci(tmp_path, "binds: ['data:/d:ro']\nmounts: [{type: bind, source: data, "
                        "destination: /m}]", {"binds": ["lbl:/l"]}, volumes=volumes)
    m = mounts(cfg)
    assert m["/d"]["source"] == "/containers/volumes/data/merged"
    assert m["/m"]["source"] == "/containers/volumes/data/merged"
    cfg = oci(tmp_path, "binds.add: ['data:/d']", {"binds": ["lbl:/l"]}, volumes=volumes)
    m = mounts(cfg)
    assert m["/d"]["source"] == "/containers/volumes/data/merged"
    assert m["/l"]["source"] == "lbl"  # a label's binds are never volume names (linuxkit)


# ---- namespaces -------------------------------------------------------------------------------

@pytest.mark.parametrize(("yaml_text", "label", "expected"), [
    ("", {}, [{"type": "pid"}]),
    ("pid: host", {}, []),
    ("net: new\nipc: new\nuts: new\nuserns: new", {},
     [{"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "pid"},
      {"type": "user"}]),
    ("net: none", {}, [{"type": "network"}, {"type": "pid"}]),
    ("net: /run/netns/wg0\npid: /proc/1/ns/pid", {},
     [{"type": "network", "path": "/run/netns/wg0"}, {"type": "pid", "path": "/proc/1/ns/pid"}]),
    ("", {"net": "new", "ipc": "new"}, [{"type": "network"}, {"type": "ipc"}, {"type": "pid"}]),
    ("net: host", {"net": "new"}, [{"type": "pid"}]),
    ("uts: root", {"pid": "host"}, []),
])
def test_namespaces(tmp_path, yaml_text, label, expected):
    assert oci(tmp_path, yaml_text, label)["linux"]["namespaces"] == [*expected,
                                                                      {"type": "mount"}]


# ---- capabilities -----------------------------------------------------------------------------

def test_capabilities_add_appends_to_label(tmp_path):
    caps = oci(tmp_path, "capabilities.add: [CAP_SYS_ADMIN, CAP_CHOWN]",
               {"capabilities": ["CAP_NET_RAW", "CAP_CHOWN"]})["process"]["capabilities"]
    assert caps["effective"] == ["CAP_NET_RAW", "CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_CHOWN"]
    assert caps["bounding"] == ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
    assert caps["bounding"] == caps["permitted"] == caps["inheritable"]
    caps = oci(tmp_path, "capabilities: [CAP_KILL]\ncapabilities.add: [CAP_CHOWN]",
               {"capabilities": ["CAP_NET_RAW"]})["process"]["capabilities"]
    assert caps["effective"] == ["CAP_KILL"]


def test_capabilities_all_none_and_ambient(tmp_path):
    caps = oci(tmp_path, "", {"capabilities": ["all"]})["process"]["capabilities"]
    assert caps["effective"] == list(CAPABILITIES)
    assert caps["bounding"] == sorted(CAPABILITIES)
    assert oci(tmp_path, "capabilities: [NONE]", {"capabilities": ["all"]})["process"][
        "capabilities"] == {}
    caps = oci(tmp_path, "capabilities: [CAP_KILL]\nambient: [CAP_BPF]")["process"][
        "capabilities"]
    assert caps == {"bounding": ["CAP_BPF", "CAP_KILL"], "effective": ["CAP_KILL"],
                    "inheritable": ["CAP_BPF", "CAP_KILL"], "permitted": ["CAP_BPF", "CAP_KILL"],
                    "ambient": ["CAP_BPF"]}
    with pytest.raises(ComposerError, match="unknown capability 'all'"):
        oci(tmp_path, "capabilities.add: [CAP_KILL]", {"capabilities": ["all"]})


# ---- process and linux settings ---------------------------------------------------------------

def test_rlimits(tmp_path):
    cfg = oci(tmp_path, "rlimits: ['nofile,1024,unlimited', 'RLIMIT_CORE, 0 , 0']")
    assert cfg["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": UNLIMITED, "soft": 1024},
        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}]
    assert oci(tmp_path, "", {"rlimits": ["nproc,1,2"]})["process"]["rlimits"][0]["type"] == \
        "RLIMIT_NPROC"


def test_devices_and_cgroup_rules(tmp_path):
    cfg = oci(tmp_path, "devices: [{path: all, type: b}, {path: /dev/tty0, type: c, major: 4, "
                        "minor: 0, mode: '0666'}]\n"
                        "resources: {devices: [{allow: false, access: rwm}], "
                        "memory: {limit: 1024}, blockio: {weight: 10}, pids: {}}")
    assert cfg["linux"]["devices"] == [{"path": "/dev/tty0", "type": "c", "major": 4,
                                        "minor": 0, "fileMode": 0o666}]
    res = cfg["linux"]["resources"]
    assert res["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "access": "rwm"},
        {"allow": True, "type": "c", "major": 4, "minor": 0, "access": "rwm"}]
    assert res["memory"] == {"limit": 1024}
    assert res["blockIO"] == {"weight": 10}  # OCI's key; linuxkit's YAML says blockio
    assert res["pids"] == {"limit": 0}


def test_label_devices_replaced_by_yaml(tmp_path):
    label = {"devices": [{"path": "all", "type": "b"}]}
    assert oci(tmp_path, "", label)["linux"]["resources"]["devices"] == [
        {"allow": True, "type": "b", "access": "rwm"}]
    assert oci(tmp_path, "devices: []", label)["linux"]["resources"] == {}


def test_scalars_and_maps(tmp_path):
    cfg = oci(tmp_path, "\n".join([
        "hostname: box", "noNewPrivileges: true", "oomScoreAdj: 0", "cgroupsPath: /lk/c",
        "rootfsPropagation: shared", "maskedPaths: [/proc/kcore]", "readonlyPaths: [/proc/sys]",
        "sysctl: {net.ipv4.ip_forward: '1'}", "annotations: {a: b}",
        "uidMappings: [{hostID: 100000, containerID: 0, size: 65536}]",
        "gidMappings: [{size: 1}]",
    ]), {"sysctl": {"kernel.x": "1"}, "annotations": {"l": "m"}, "hostname": "label"})
    assert cfg["hostname"] == "box"
    assert cfg["annotations"] == {"a": "b"}  # maps replace, never merge
    assert cfg["process"]["noNewPrivileges"] is True
    assert cfg["process"]["oomScoreAdj"] == 0  # set, even to 0: kept
    linux = cfg["linux"]
    assert linux["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert linux["cgroupsPath"] == "/lk/c" and linux["rootfsPropagation"] == "shared"
    assert linux["maskedPaths"] == ["/proc/kcore"] and linux["readonlyPaths"] == ["/proc/sys"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 0, "size": 1}]
    label_only = oci(tmp_path, "", {"oomScoreAdj": -800, "hostname": "label"})
    assert label_only["process"]["oomScoreAdj"] == -800 and label_only["hostname"] == "label"


# ---- runtime.json -----------------------------------------------------------------------------

def test_runtime_merges_per_field(tmp_path):
    made = bundle(tmp_path, "runtime: {bindNS: {pid: /run/pid}, mkdir: [/y], "
                            "interfaces: [{name: wg0, add: wireguard, createInRoot: true}]}",
                  {"runtime": {"mkdir": ["/l"], "cgroups": ["c"], "bindNS": {"net": "/run/n"},
                               "namespace": "services.linuxkit",
                               "mounts": [{"destination": "/x", "source": "/y",
                                           "options": ["bind"]}]}})
    rt = made.runtime
    assert rt["mkdir"] == ["/y"] and rt["cgroups"] == ["c"]
    assert rt["bindNS"]["net"] == "/run/n" and rt["bindNS"]["pid"] == "/run/pid"
    assert rt["bindNS"]["uts"] == ""
    assert rt["namespace"] == "services.linuxkit"
    assert rt["interfaces"] == [{"name": "wg0", "add": "wireguard", "createInRoot": True}]
    assert rt["mounts"] == [{"destination": "/x", "source": "/y", "options": ["bind"]}]
    full = runtime_json(rt, "containers/services/c", "containers/services/c/lower", False)
    assert [m["destination"] for m in full["mounts"]] == [
        "/containers/services/c/tmp", "/containers/services/c/tmp",
        "/containers/services/c/rootfs", "/x"]


def test_rootfs_mounts():
    assert rootfs_mounts("containers/onboot/001-b", "containers/onboot/000-a/rootfs", True) == [
        {"destination": "/containers/onboot/001-b/rootfs", "options": ["bind"],
         "source": "/containers/onboot/000-a/rootfs"}]
    overlay = rootfs_mounts("containers/services/s", "containers/services/s/lower", False)
    assert overlay == [
        {"destination": "/containers/services/s/tmp", "source": "tmpfs", "type": "tmpfs"},
        {"destination": "/containers/services/s/tmp", "options": ["remount", "private"]},
        {"destination": "/containers/services/s/rootfs", "source": "overlay", "type": "overlay",
         "options": ["lowerdir=/containers/services/s/lower",
                     "upperdir=/containers/services/s/tmp/upper",
                     "workdir=/containers/services/s/tmp/work"]}]


# ---- the label itself ---------------------------------------------------------------------------

def test_label_may_be_yaml(tmp_path):
    cfg = oci(tmp_path, "", "capabilities: [CAP_KILL]\nnet: new\n")
    assert cfg["process"]["capabilities"]["effective"] == ["CAP_KILL"]


@pytest.mark.parametrize(("label", "message"), [
    ({"name": "x"}, "label: unknown key 'name'"),
    ({"image": "x"}, "label: unknown key 'image'"),
    ({"binds": ["/a"]}, "binds[0]: expected SOURCE:DESTINATION"),
    ("[1, 2]", "expected a mapping, got a list"),
    ("~", "expected a mapping, got null"),
    ("  ", "must be a mapping of linuxkit image keys"),
    ("{capabilities: [", "YAML syntax error"),
])
def test_bad_labels(tmp_path, label, message):
    with pytest.raises(ComposerError, match=r"invalid org\.mobyproject\.config label") as info:
        oci(tmp_path, "", label)
    assert message in str(info.value)
