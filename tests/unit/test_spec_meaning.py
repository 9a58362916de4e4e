"""Meaning checks (what linuxkit finds late in ConfigToOCI, or never), names that refer across the
merged spec (container ids, volumes), the id map, and the merged spec written back out
(``metadata:`` files and ``build --dry-run``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from composer.cli import main
from composer.errors import SpecError
from composer.spec import load_spec
from composer.spec.document import spec_document, spec_json, spec_yaml
from composer.spec.model import Volume, resolve_id
from composer.spec.schema import CAPABILITIES


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text)
    return path


def errors(*paths: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(list(paths))
    assert info.value.exit_status == 2
    return info.value.lines()


def one_error(text: str) -> str:
    lines = errors(write("s.yml", text))
    assert len(lines) == 1, lines
    return lines[0]


def onboot(extra: str) -> str:
    return f"onboot:\n  - name: a\n    image: b\n    {extra}\n"


# ---- capabilities (linuxkit: "unknown capability", only when writing config.json) -------------

def test_linuxkit_knows_41_capabilities_in_number_order() -> None:
    assert len(CAPABILITIES) == 41
    assert CAPABILITIES[:3] == ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH")
    assert CAPABILITIES[21] == "CAP_SYS_ADMIN" and CAPABILITIES[-1] == "CAP_CHECKPOINT_RESTORE"


@pytest.mark.parametrize(("value", "expected"), [
    ("[CAP_SYS_ADMN]", "4:20: onboot[0].capabilities[0]: unknown capability 'CAP_SYS_ADMN' "
                       "(did you mean 'CAP_SYS_ADMIN'?)"),
    ("[sys_admin]", "4:20: onboot[0].capabilities[0]: unknown capability 'sys_admin' "
                    "(did you mean 'CAP_SYS_ADMIN'?)"),
    ("[cap_chown]", "4:20: onboot[0].capabilities[0]: unknown capability 'cap_chown' "
                    "(did you mean 'CAP_CHOWN'?)"),
    ("[all, CAP_CHOWN]", "4:20: onboot[0].capabilities[0]: 'all' must be the only entry"),
    ("[CAP_CHOWN, none]", "4:31: onboot[0].capabilities[1]: 'none' must be the only entry"),
    ("[42]", "4:20: onboot[0].capabilities[0]: expected a string, got an integer (quote it)"),
])
def test_bad_capabilities(value: str, expected: str) -> None:
    assert one_error(onboot(f"capabilities: {value}")) == f"s.yml:{expected}"


@pytest.mark.parametrize("key", ["capabilities", "capabilities.add", "ambient"])
@pytest.mark.parametrize("value", ["[all]", "[ALL]", "[None]", "[]", "[CAP_NET_ADMIN, CAP_BPF]"])
def test_good_capabilities(key: str, value: str) -> None:
    load_spec([write("s.yml", onboot(f"{key}: {value}"))])


# ---- rlimits, binds, tmpfs, mounts, devices ---------------------------------------------------

@pytest.mark.parametrize(("value", "message"), [
    ("nofile,10", "expected TYPE,SOFT,HARD (e.g. nofile,1024,4096), got 'nofile,10'"),
    ("nofiles,1,2", "unknown limit 'nofiles' (did you mean 'RLIMIT_NOFILE'?)"),
    ("nofile,x,2", "limit 'x' is not a number from 0 to 18446744073709551615 or 'unlimited'"),
    ("nofile,1,18446744073709551616", "limit '18446744073709551616' is not a number from 0 to "
                                      "18446744073709551615 or 'unlimited'"),
    ("nofile,1,2,3", "limit '2,3' is not a number from 0 to 18446744073709551615 or "
                     "'unlimited'"),
])
def test_bad_rlimits(value: str, message: str) -> None:
    assert one_error(onboot(f"rlimits: ['{value}']")) == \
        f"s.yml:4:15: onboot[0].rlimits[0]: {message}"


def test_good_rlimits() -> None:
    load_spec([write("s.yml", onboot("rlimits: ['RLIMIT_NOFILE, 10 , unlimited', "
                                     "'memlock,UNLIMITED,0', 'rttime,1,2']"))])


@pytest.mark.parametrize(("key", "value", "message"), [
    ("binds", "/a", "expected SOURCE:DESTINATION[:OPTIONS], got '/a' (missing ':')"),
    ("binds", "/a:/b:ro:x", "expected SOURCE:DESTINATION[:OPTIONS], got '/a:/b:ro:x' "
                            "(too many ':')"),
    ("binds", "/a:", "'/a:' has an empty destination"),
    ("binds", "/a:/b:ro,", "'/a:/b:ro,' has an empty mount option"),
    ("binds.add", "vol:/v", "no volume named 'vol'; a source not starting with / names a "
                            "volume (volumes: none)"),
    ("binds", ":/v", "no volume named '' (empty source); a source not starting with / names a "
                     "volume (volumes: none)"),
    ("tmpfs", "/a:b:c", "expected DESTINATION[:OPTIONS], got '/a:b:c' (too many ':')"),
    ("tmpfs", ":size=1", "':size=1' has an empty destination"),
])
def test_bad_binds_and_tmpfs(key: str, value: str, message: str) -> None:
    col = 8 + len(key)
    assert one_error(onboot(f"{key}: ['{value}']")) == \
        f"s.yml:4:{col}: onboot[0].{key}[0]: {message}"


@pytest.mark.parametrize(("mount", "col", "message"), [
    ("{source: /x}", "14", "mount needs a type (or a source of mqueue, devpts, proc, sysfs or "
                           "cgroup, or destination /dev)"),
    ("{type: bind, source: /x}", "14", "mount of type 'bind' needs a destination"),
    ("{type: bind, source: v, destination: /v}", "35",
     "source: no volume named 'v'; a source not starting with / names a volume (volumes: "
     "none)"),
    ("{type: bind, source: /x, destination: /v, optoins: []}", "56",
     "unknown key 'optoins' (did you mean 'options'?)"),
])
def test_bad_mounts(mount: str, col: str, message: str) -> None:
    line = one_error(onboot(f"mounts: [{mount}]"))
    sep = "." if message.startswith("source") else ": "
    assert line == f"s.yml:4:{col}: onboot[0].mounts[0]{sep}{message}"


@pytest.mark.parametrize("mount", ["{source: proc}", "{type: cgroup}", "{destination: /dev}",
                                   "{source: mqueue, options: [nosuid]}",
                                   "{type: overlay, source: overlay, destination: rel}"])
def test_good_mounts(mount: str) -> None:
    load_spec([write("s.yml", onboot(f"mounts: [{mount}]"))])


@pytest.mark.parametrize(("device", "where", "message"), [
    ("{path: /dev/x, type: c}", "4:15: onboot[0].devices[0]",
     "missing required key 'mode' (an octal string such as \"0666\")"),
    ("{path: all, type: u}", "4:33: onboot[0].devices[0].type",
     "with path 'all', type must be a (all), b (block) or c (char); got 'u'"),
    ("{path: dev/x, type: c, mode: '0666'}", "4:22: onboot[0].devices[0].path",
     "must be 'all' or an absolute path, got 'dev/x'"),
    ("{path: /dev/x, type: z, mode: '0666'}", "4:36: onboot[0].devices[0].type",
     "must be b (block), c (char), u (unbuffered char) or p (fifo); got 'z'"),
    ("{path: /dev/x, type: c, mode: '999'}", "4:45: onboot[0].devices[0].mode",
     "expected an octal mode such as \"0666\", got '999'"),
    ("{path: /dev/x, type: c, mode: 0666}", "4:45: onboot[0].devices[0].mode",
     "expected a string, got an integer (quote it)"),
    ("{type: c, mode: '0666'}", "4:15: onboot[0].devices[0]", "missing required key 'path'"),
])
def test_bad_devices(device: str, where: str, message: str) -> None:
    assert one_error(onboot(f"devices: [{device}]")) == f"s.yml:{where}: {message}"


def test_good_devices() -> None:
    load_spec([write("s.yml", onboot("devices: [{path: all, type: a}, {path: all, type: c, "
                                     "major: 13}, {path: /dev/tty0, type: c, major: 4, "
                                     "minor: 0, mode: '0666'}]"))])


# ---- namespaces, paths, ranges ----------------------------------------------------------------

@pytest.mark.parametrize(("extra", "expected"), [
    ("net: bridge", "4:10: onboot[0].net: must be host, root, new, none or the absolute path "
                    "of a namespace to join; got 'bridge'"),
    ("ipc: none", "4:10: onboot[0].ipc: must be host, root, new or the absolute path of a "
                  "namespace to join; got 'none'"),
    ("cwd: tmp", "4:10: onboot[0].cwd: must be an absolute path, got 'tmp'"),
    ("maskedPaths: [proc/kcore]", "4:19: onboot[0].maskedPaths[0]: must be an absolute path, "
                                  "got 'proc/kcore'"),
    ("oomScoreAdj: 5000", "4:18: onboot[0].oomScoreAdj: 5000 is out of range (-1000 to 1000)"),
    ("rootfsPropagation: shard", "4:24: onboot[0].rootfsPropagation: must be one of shared, "
                                 "slave, private, unbindable, rshared, rslave, rprivate, "
                                 "runbindable; got 'shard'"),
    ("uidMappings: [{hostID: -1, size: 1}]", "4:28: onboot[0].uidMappings[0].hostID: -1 is out "
                                             "of range (0 to 4294967295)"),
    ("resources: {blockio: {weight: 70000}}", "4:35: onboot[0].resources.blockio.weight: "
                                              "70000 is out of range (0 to 65535)"),
    ("sysctl: {'': '1'}", "4:14: onboot[0].sysctl: keys must not be empty"),
])
def test_bad_values(extra: str, expected: str) -> None:
    assert one_error(onboot(extra)) == f"s.yml:{expected}"


@pytest.mark.parametrize("extra", ["net: none", "net: new", "net: /run/netns/wg0", "pid: host",
                                   "ipc: new", "uts: root", "userns: new", "cwd: /data",
                                   "oomScoreAdj: -1000", "rootfsPropagation: rslave"])
def test_good_values(extra: str) -> None:
    load_spec([write("s.yml", onboot(extra))])


# ---- names that refer across the merged spec --------------------------------------------------

def test_ids_by_container_name_across_files() -> None:
    a = write("a.yml", "onboot:\n  - {name: a, image: x, uid: svc, gid: root, "
                       "additionalGids: [b, 7]}\n"
                       "files:\n  - {path: f, contents: x, uid: svc, gid: a}\n")
    b = write("b.yml", "onshutdown: [{name: b, image: y}]\nservices: [{name: svc, image: z}]\n")
    spec = load_spec([a, b])
    assert spec.id_map() == {"a": 100, "b": 101, "svc": 102}
    assert dict(spec.onboot[0].extra)["uid"] == "svc"
    assert (spec.files[0].uid, spec.files[0].gid) == ("svc", "a")
    assert resolve_id("svc", spec.id_map()) == 102 and resolve_id("root", {}) == 0
    # alone, a.yml names containers it does not have
    assert errors(a) == [
        "a.yml:2:30: onboot[0].uid: no container named 'svc' to take the id of (containers: a)",
        "a.yml:2:63: onboot[0].additionalGids[0]: no container named 'b' to take the id of "
        "(containers: a)",
        "a.yml:4:33: files[0].uid: no container named 'svc' to take the id of (containers: a)",
    ]


def test_id_map_numbers_every_container_in_linuxkit_order() -> None:
    """linuxkit's Build: id 100 upwards over onboot, onshutdown, services; a name used twice
    takes the later number (its map is simply overwritten)."""
    spec = load_spec([write("s.yml", """\
services: [{name: s1, image: i}, {name: s2, image: i}]
onshutdown: [{name: down, image: i}]
onboot: [{name: x, image: i}, {name: y, image: i}, {name: x, image: i}]
""")])
    assert spec.id_map() == {"x": 102, "y": 101, "down": 103, "s1": 104, "s2": 105}


def test_volumes_merge_and_their_checks() -> None:
    a = write("a.yml", """\
volumes:
  - {name: data, image: alpine:3.21}
  - {name: ro, readonly: true}
onboot:
  - name: a
    image: b
    binds: ["data:/data", "ro:/ro:ro", "ro:/ro2:rbind,ro"]
    mounts: [{type: bind, source: ro, destination: /m, options: [rw, ro]}]
""")
    b = write("b.yml", "volumes: [{name: more, format: filesystem, platforms: [linux/amd64]}]\n")
    spec = load_spec([a, b])
    assert spec.volumes == (Volume("data", spec.volumes[0].image, False),
                            Volume("ro", readonly=True),
                            Volume("more", platforms=("linux/amd64",)))
    assert spec.volumes[0].image is not None and spec.volumes[0].image.text == "alpine:3.21"
    assert [r.text for r in spec.image_refs()] == ["b", "alpine:3.21"]
    c = write("c.yml", """\
volumes:
  - {name: ro, readonly: true}
  - {name: Bad}
onboot:
  - name: a
    image: b
    binds: ["ro:/ro", "ro:/x:ro,rw"]
    mounts: [{type: bind, source: ro, destination: /m, options: [ro, rw]}]
""")
    assert errors(a, c) == [
        "c.yml:2:12: duplicate volume name 'ro' (first at a.yml:3:12)",
        "c.yml:3:12: volumes[1].name: invalid volume name 'Bad': use lowercase letters, "
        "digits, '_' and '-'",
        "c.yml:7:13: onboot[0].binds[0]: volume 'ro' is read-only; bind it with the ro option",
        "c.yml:7:23: onboot[0].binds[1]: volume 'ro' is read-only; bind it with the ro option",
        "c.yml:8:35: onboot[0].mounts[0].source: volume 'ro' is read-only; bind it with the ro "
        "option",
    ]


def test_every_problem_listed_in_file_order() -> None:
    lines = errors(write("s.yml", """\
onboot:
  - name: a
    image: b
    capabilities: [CAP_X]
    rlimits: [nofile]
    binds: [/a]
    uid: nobody
services:
  - {name: s, image: i, net: bridge, devices: [{path: /x, type: c}]}
"""))
    assert [line.split(": ", 1)[0] for line in lines] == [
        "s.yml:4:20", "s.yml:5:15", "s.yml:6:13", "s.yml:7:10", "s.yml:9:30", "s.yml:9:48"]


# ---- the merged spec written back out ---------------------------------------------------------

SPEC = """\
kernel: {image: linuxkit/kernel:6.6, cmdline: "console=ttyS0"}
init: [linuxkit/init:v1]
onboot:
  - name: net
    binds.add: ["/a:/a"]
    image: linuxkit/dhcpcd:v1
    capabilities: [CAP_NET_ADMIN]
    command: [dhcpcd, "-1"]
files:
  - {path: /etc/motd, contents: "hi\\n", mode: "0644", uid: net}
  - {path: etc/key, source: ~/key.pub, optional: true}
  - {path: etc/config, metadata: json}
volumes:
  - {name: v, image: "busybox"}
"""


def test_document_has_linuxkit_order_and_normalised_refs() -> None:
    doc = spec_document(load_spec([write("s.yml", SPEC)]))
    assert list(doc) == ["kernel", "init", "onboot", "onshutdown", "services", "files",
                         "volumes"]
    assert doc["kernel"] == {"image": "docker.io/linuxkit/kernel:6.6", "cmdline": "console=ttyS0",
                             "binary": "kernel", "tar": "kernel.tar"}
    assert doc["init"] == ["docker.io/linuxkit/init:v1"]
    # struct order: capabilities, binds.add, ..., command
    assert list(doc["onboot"][0]) == ["name", "image", "capabilities", "binds.add", "command"]
    assert doc["files"][0] == {"path": "etc/motd", "directory": False, "contents": "hi\n",
                               "optional": False, "mode": "0644", "uid": "net"}
    assert doc["files"][1]["source"] == "~/key.pub"  # as written: never the host path
    assert doc["volumes"] == [{"name": "v", "image": "docker.io/library/busybox:latest"}]


def test_yaml_and_json_round_trip() -> None:
    spec = load_spec([write("s.yml", SPEC)])
    again = load_spec([write("again.yml", spec_yaml(spec).decode())])
    assert spec_document(again) == spec_document(spec)
    assert yaml.safe_load(spec_json(spec)) == spec_document(spec)
    assert spec_json(spec).endswith(b"}\n") and b'\n    "files": [' in spec_json(spec)


def test_dry_run_prints_merged_spec_and_builds_nothing(tmp_path: Path, capsys) -> None:
    a = write("a.yml", SPEC)
    b = write("b.yml", "kernel: {cmdline: quiet}\nservices: [{name: getty, image: g}]\n"
                       "trust: {org: [linuxkit]}\n")
    code = main(["build", "--dry-run", "-o", str(tmp_path / "out"), str(a), str(b)])
    out, err = capsys.readouterr()
    assert code == 0
    doc = yaml.safe_load(out)
    assert doc["kernel"]["cmdline"] == "quiet"
    assert [s["name"] for s in doc["services"]] == ["getty"]
    assert "b.yml:3:1: warning: trust: ignored" in err
    assert not (tmp_path / "out").exists()
    write("bad.yml", "onboot: [{name: a, image: b, capabilities: [CAP_NOPE]}]\n")
    assert main(["build", "--dry-run", "bad.yml"]) == 2
    assert capsys.readouterr().err.startswith("bad.yml:1:45: onboot[0].capabilities[0]: ")
