"""linuxkit's own specs, built with generated stand-in images.

The specs are copied unchanged from linuxkit (tests/data/linuxkit/, see its README.md): its
build-only test cases, and every system spec of its examples/, test/cases/ and projects/
(SPECS.txt). Each image they name is generated (tests/fixtures/linuxkit.py: small layers,
linuxkit's real ``org.mobyproject.config`` labels and image configs from
tests/data/linuxkit/packages.yml) and tagged in a cache under the name the spec's ref normalises
to, so ``build --offline`` resolves every ref from the cache. Every spec builds into ``tar`` and
passes linuxkit's tarheaders check; several init images' apk databases are merged in order.
The builds go through the real CLI, in process. Then we assert what linuxkit's own checks assert:

- ``001_tarheaders/tarheaders.py`` (run as is, on every tar we build): every entry carries the
  ``LINUXKIT.source`` and ``LINUXKIT.location`` pax records;
- ``020_binds/check.sh``: the ``binds.add`` binds *and* the label's default binds are there;
- ``010_reproducible``: the same spec twice gives the same bytes;
- ``070_volumes``: the volume layout and binds, and ``002_rw_on_ro`` fails at build;
- ``091_validate_linuxkit_yaml``: an unknown key fails;

plus the config.json/runtime.json facts that follow from linuxkit's ``ConfigToOCI``.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from composer import canonjson
from composer.cli import main
from composer.images.cache import Cache
from composer.images.write import write_image
from composer.oci.refs import Ref, parse_ref
from composer.spec import load_spec
from composer.spec.goyaml import linuxkit_yaml
from composer.tar.canon import Kind
from composer.tar.read import read_entries
from tests.fixtures.linuxkit import KVER, roles, stand_in

DATA = Path(__file__).resolve().parents[1] / "data" / "linuxkit"
CASES = DATA / "test" / "cases" / "000_build"
TARHEADERS = CASES / "001_tarheaders" / "tarheaders.py"
VOLUME_CASES = ["000_rw_on_rw", "001_ro_on_ro", "003_ro_on_rw", "004_blank", "005_image",
                "006_mount_types"]
BUILD_SPECS = {
    "000_formats": CASES / "000_formats" / "test.yml",
    "001_tarheaders": CASES / "001_tarheaders" / "test.yml",
    "010_reproducible": CASES / "010_reproducible" / "test.yml",
    "020_binds": CASES / "020_binds" / "test.yml",
    **{f"070_{c}": CASES / "070_volumes" / c / "test.yml" for c in VOLUME_CASES},
    **{f"examples/{p.stem}": p for p in sorted((DATA / "examples").glob("*.yml"))},
}
# Every other system spec of linuxkit's examples/, test/cases/ and projects/ (SPECS.txt): they
# build too, and pass the tarheaders check. Left out, with the reason:
NOT_BUILT = {
    "test/cases/000_build/070_volumes/002_rw_on_ro/test.yml": "must fail (tested below)",
    "test/cases/000_build/091_validate_linuxkit_yaml/linuxkit.yml": "must fail (tested below)",
    "projects/compose/docker-compose.yml": "not a spec: a file compose-dynamic.yml puts in",
}
ALL_SPECS = sorted(
    rel for rel in (DATA / "SPECS.txt").read_text().split()
    if rel.endswith((".yml", ".yaml")) and rel not in NOT_BUILT
    and rel not in {str(p.relative_to(DATA)) for p in BUILD_SPECS.values()})


# ---- stand-in images (tests/fixtures/linuxkit.py) ---------------------------------------------

@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding a stand-in for every image the specs name, tagged by normalised ref."""
    root = tmp_path_factory.mktemp("lkcache")
    store = Cache(root)
    used = roles(load_spec([path]) for path in [*BUILD_SPECS.values(),
                                                *(DATA / rel for rel in ALL_SPECS)])
    for text, role in sorted(used.items()):
        ref = parse_ref(text)
        assert isinstance(ref, Ref)
        layers, config = stand_in(text, role=role)
        written = write_image(store, layers, config=config)
        store.tag(ref.cache_name, written.descriptor)
    return root


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # examples/sshd.yml reads ~/.ssh/id_rsa.pub (optional): never the real home.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    # Volume images must be resolved too; Spec.image_refs() lists them (see report to lead).


def build(specs: list[Path], out: Path, cache: Path, capsys) -> tuple[int, str]:
    code = main(["build", "-f", "tar", "--offline", "--arch", "amd64", "--cache", str(cache),
                 "-o", str(out), "--name", "lk", *map(str, specs)])
    return code, capsys.readouterr().err


def entries(tar: Path) -> dict[str, tuple]:
    out = {}
    with open(tar, "rb") as fh:
        for entry, reader in read_entries(fh):
            assert entry.path not in out, f"duplicate entry {entry.path}"
            out[entry.path] = (entry, reader.read() if reader else None)
    return out


def built(name: str, tmp_path: Path, cache_dir: Path, capsys) -> dict[str, tuple]:
    code, err = build([BUILD_SPECS[name]], tmp_path / "out", cache_dir, capsys)
    assert code == 0, err
    return entries(tmp_path / "out" / "lk.tar")


def config_of(tree: dict, bundle: str) -> dict:
    return canonjson.loads(tree[f"containers/{bundle}/config.json"][1])


def runtime_of(tree: dict, bundle: str) -> dict:
    return canonjson.loads(tree[f"containers/{bundle}/runtime.json"][1])


def mounts_by_dest(config: dict) -> dict[str, dict]:
    return {m["destination"]: m for m in config["mounts"]}


# ---- every build-only spec builds, and passes linuxkit's tarheaders check -------------------

@pytest.mark.parametrize("name", list(BUILD_SPECS))
def test_builds_and_every_entry_has_linuxkit_pax_records(name, tmp_path, cache_dir, capsys):
    tree = built(name, tmp_path, cache_dir, capsys)
    proc = subprocess.run([sys.executable, str(TARHEADERS), str(tmp_path / "out" / "lk.tar")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr
    spec = load_spec([BUILD_SPECS[name]])
    for section, numbered in (("onboot", True), ("onshutdown", True), ("services", False)):
        for i, c in enumerate(getattr(spec, section)):
            bundle = f"{section}/{i:03d}-{c.name}" if numbered else f"{section}/{c.name}"
            config = config_of(tree, bundle)
            runtime = runtime_of(tree, bundle)
            assert config["ociVersion"] == "1.2.1"
            assert config["root"]["path"] == "rootfs"
            dests = [m["destination"] for m in config["mounts"]]
            assert dests == sorted(dests)
            assert config["linux"]["namespaces"][-1] == {"type": "mount"}
            assert set(runtime) == {"cgroups", "mounts", "mkdir", "interfaces", "bindNS",
                                    "namespace"}
            assert tree[f"containers/{bundle}/rootfs"][0].kind is Kind.DIR
    if spec.kernel is not None:
        assert tree["boot/kernel"][1].startswith(b"stand-in bzImage")
        assert tree[f"lib/modules/{KVER}/modules.dep"][0].kind is Kind.FILE
        assert "System.map" not in tree and "kernel.tar" not in tree
    # linuxkit's fixups on every image: excluded paths gone, fixed files in place
    assert "etc/hostname" not in tree and ".dockerenv" not in tree
    assert "dev/console" not in tree
    if spec.init:  # (examples/platform-equinixmetal.arm64.yml is a snippet without init)
        assert tree["etc/resolv.conf"][0].linkname == "/run/resolvconf/resolv.conf"
        assert tree["etc/hosts"][1].startswith(b"127.0.0.1       localhost\n")
        assert tree["etc/mtab"][0].linkname == "/proc/mounts"


def _tarheaders(tar: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    """linuxkit's tarheaders.py, as is, in this process (a subprocess per spec costs seconds)."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", [str(TARHEADERS), str(tar)])
    runpy.run_path(str(TARHEADERS), run_name="__main__")
    return capsys.readouterr().out


@pytest.mark.parametrize("rel", ALL_SPECS)
def test_every_linuxkit_spec_builds(rel, tmp_path, cache_dir, capsys, monkeypatch):
    spec_path = DATA / rel
    code, err = build([spec_path], tmp_path / "out", cache_dir, capsys)
    assert code == 0, err
    tar = tmp_path / "out" / "lk.tar"
    assert _tarheaders(tar, monkeypatch, capsys) == ""
    tree = entries(tar)
    spec = load_spec([spec_path])
    for section, numbered in (("onboot", True), ("onshutdown", True), ("services", False)):
        for i, c in enumerate(getattr(spec, section)):
            bundle = f"{section}/{i:03d}-{c.name}" if numbered else f"{section}/{c.name}"
            assert config_of(tree, bundle)["root"]["path"] == "rootfs"
            assert set(runtime_of(tree, bundle)) >= {"mounts", "mkdir", "namespace"}
    for i, f in enumerate(spec.files):
        if f.optional and f.source and not Path(f.source).exists():
            continue
        node = tree.get(f.path.strip("/"))
        assert node is not None, f"files[{i}] {f.path}"
    if len(spec.init) > 1:  # every init image's apk database, in order (apkTarWriter)
        db = tree["lib/apk/db/installed"][1].decode()
        names = [line[2:] for line in db.splitlines() if line.startswith("P:")]
        assert names == [parse_ref(r.text).repository.rsplit("/", 1)[-1]  # type: ignore[union-attr]
                         for r in spec.init]


# ---- 001_tarheaders / 010_reproducible -------------------------------------------------------

def test_tarheaders_spec_configs(tmp_path, cache_dir, capsys):
    tree = built("001_tarheaders", tmp_path, cache_dir, capsys)
    dhcpcd = config_of(tree, "onboot/000-dhcpcd")
    caps = dhcpcd["process"]["capabilities"]
    # The YAML's capabilities replace the label's; effective keeps the YAML order.
    assert caps["effective"] == ["CAP_SETGID", "CAP_DAC_OVERRIDE"]
    assert caps["bounding"] == caps["permitted"] == caps["inheritable"] == [
        "CAP_DAC_OVERRIDE", "CAP_SETGID"]
    assert "ambient" not in caps
    assert dhcpcd["process"]["args"] == ["/sbin/dhcpcd", "--nobackground", "-f",
                                         "/dhcpcd.conf", "-1"]
    # the label's bind survives: the YAML sets no binds
    assert mounts_by_dest(dhcpcd)["/etc"] == {"destination": "/etc", "type": "bind",
                                              "source": "/run/resolvconf",
                                              "options": ["rw", "rbind", "rshared"]}
    assert dhcpcd["process"]["user"] == {"uid": 0, "gid": 0}
    svc = config_of(tree, "services/testservice")
    assert svc["process"]["env"] == ["BENV=true", "ARANDOMENV=foobar"]
    mounts = mounts_by_dest(svc)
    assert [m["destination"] for m in svc["mounts"]] == [
        "/dev", "/dev/pts", "/etc/aaa", "/etc/foobar", "/foobar", "/proc", "/sys",
        "/sys/fs/cgroup", "/var/run", "writeable-host-etc"]
    # a cgroup mount without destination replaces the default /sys/fs/cgroup one
    assert mounts["/sys/fs/cgroup"] == {"destination": "/sys/fs/cgroup", "type": "cgroup",
                                        "source": "cgroup",
                                        "options": ["rw", "nosuid", "noexec", "nodev",
                                                    "relatime"]}
    assert mounts["writeable-host-etc"]["type"] == "overlay"
    assert mounts["/foobar"]["options"] == ["rw", "rbind", "rshared"]
    # the label's capabilities apply (the YAML sets none)
    assert svc["process"]["capabilities"]["effective"] == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    runtime = runtime_of(tree, "services/testservice")
    assert runtime["mkdir"] == ["/var/lib/docker", "/var/lib/aaa"]
    assert runtime["mounts"][2]["options"][0] == "lowerdir=/containers/services/testservice/lower"
    # metadata: yaml is the merged spec as written, with refs spelled out
    meta = tree["etc/linuxkit-config"]
    assert meta[0].mode == 0o600
    doc = yaml.safe_load(meta[1])
    assert doc["kernel"]["image"] == "docker.io/linuxkit/kernel:6.12.59"
    assert doc["onboot"][0]["capabilities"] == ["CAP_SETGID", "CAP_DAC_OVERRIDE"]
    assert doc["files"] == [{"path": "etc/linuxkit-config", "directory": False,
                             "metadata": "yaml", "optional": False}]
    # linuxkit's own bytes (tests/unit/test_linuxkit_metadata.py compares with its output),
    # and itself a valid spec that writes the same file again
    assert meta[1] == linuxkit_yaml(load_spec([BUILD_SPECS["001_tarheaders"]]))
    again = tmp_path / "again.yml"
    again.write_bytes(meta[1])
    assert linuxkit_yaml(load_spec([again])) == meta[1]


def test_reproducible_same_spec_same_bytes(tmp_path, cache_dir, capsys):
    outs = []
    for n in range(2):
        code, err = build([BUILD_SPECS["010_reproducible"]], tmp_path / f"o{n}", cache_dir,
                          capsys)
        assert code == 0, err
        outs.append((tmp_path / f"o{n}" / "lk.tar").read_bytes())
    code, err = build([BUILD_SPECS["001_tarheaders"]], tmp_path / "o3", cache_dir, capsys)
    assert code == 0, err
    # 010's spec is 001's, byte for byte: the output is the same too (nothing from the path)
    assert outs[0] == outs[1] == (tmp_path / "o3" / "lk.tar").read_bytes()


# ---- 020_binds --------------------------------------------------------------------------------

def test_binds_add_keeps_the_labels_binds(tmp_path, cache_dir, capsys):
    tree = built("020_binds", tmp_path, cache_dir, capsys)
    config = config_of(tree, "onboot/000-mount")
    mounts = mounts_by_dest(config)
    # check.sh: /dev/mapper (from the label's /dev bind) and /hostroot must be there
    assert mounts["/dev"] == {"destination": "/dev", "type": "bind", "source": "/dev",
                              "options": ["rw", "rbind", "rshared"]}
    assert mounts["/hostroot"]["source"] == "/"
    assert mounts["/var"]["options"] == ["rshared", "rbind", "rbind"]  # explicit opts + rbind
    assert mounts["/check.sh"]["source"] == "/check.sh"
    assert mounts["/var/tmp"]["source"] == "/var/tmp"
    assert config["linux"]["rootfsPropagation"] == "shared"
    assert config["linux"]["resources"]["devices"] == [{"allow": True, "type": "b",
                                                        "access": "rwm"}]
    assert [ns["type"] for ns in config["linux"]["namespaces"]] == ["network", "ipc", "pid",
                                                                    "mount"]
    check = tree["check.sh"]
    assert check[0].mode == 0o700 and check[1].startswith(b"#!/bin/sh")
    poweroff = config_of(tree, "onboot/001-poweroff")
    assert poweroff["process"]["args"] == ["/bin/sh", "/poweroff.sh", "10"]
    assert poweroff["process"]["capabilities"] == {}


# ---- 070_volumes ------------------------------------------------------------------------------

def test_volumes_layout_and_binds(tmp_path, cache_dir, capsys):
    tree = built("070_000_rw_on_rw", tmp_path, cache_dir, capsys)
    for sub in ("lower", "tmp", "merged"):
        entry = tree[f"containers/volumes/vola/{sub}"][0]
        assert entry.kind is Kind.DIR
    assert dict(tree["containers/volumes/vola/lower"][0].records)["LINUXKIT.source"] == "empty"
    assert dict(tree["containers/volumes/vola/tmp"][0].records) == {
        "LINUXKIT.location": "volume[0]", "LINUXKIT.source": "linuxkit.volumes"}
    for bundle in ("onboot/000-test1", "onboot/001-test2"):
        vola = mounts_by_dest(config_of(tree, bundle))["/vola"]
        assert vola["source"] == "/containers/volumes/vola/merged"
        assert vola["options"] == ["rw", "rbind", "rshared"]
    # test1 and test2 run the same image: extracted once, test2 overlays test1's lower
    assert "containers/onboot/001-test2/lower" not in tree
    assert runtime_of(tree, "onboot/001-test2")["mounts"][2]["options"][0] == \
        "lowerdir=/containers/onboot/000-test1/lower"


def test_volume_with_image_and_mount_types(tmp_path, cache_dir, capsys):
    tree = built("070_006_mount_types", tmp_path, cache_dir, capsys)
    lower = "containers/volumes/vola/lower"
    assert tree[f"{lower}/usr/share/alpine/ref"][1] == b"docker.io/library/alpine:3.21\n"
    assert tree[f"{lower}/etc/resolv.conf"][0].linkname == "/run/resolvconf/resolv.conf"
    assert dict(tree[lower][0].records)["LINUXKIT.source"] == "docker.io/library/alpine:3.21"
    for bundle in ("000-testbinds", "001-testmounts", "002-testbindadds"):
        vola = mounts_by_dest(config_of(tree, f"onboot/{bundle}"))["/vola"]
        # linuxkit leaves "vola" in the type: bind mount (a bug); we substitute it everywhere
        assert vola["source"] == "/containers/volumes/vola/merged", bundle
        assert vola["type"] == "bind"


def test_readonly_volume_bound_ro(tmp_path, cache_dir, capsys):
    tree = built("070_001_ro_on_ro", tmp_path, cache_dir, capsys)
    vola = mounts_by_dest(config_of(tree, "onboot/000-test"))["/vola"]
    assert vola["options"] == ["ro", "rbind"]


# ---- negative cases: exit 2 with FILE:LINE:COL ------------------------------------------------

def test_rw_bind_of_readonly_volume_fails(tmp_path, cache_dir, capsys):
    spec = CASES / "070_volumes" / "002_rw_on_ro" / "test.yml"
    code, err = build([spec], tmp_path / "out", cache_dir, capsys)
    assert code == 2
    assert err.splitlines() == [f"{spec}:12:9: onboot[0].binds[1]: volume 'vola' is read-only; "
                                "bind it with the ro option"]
    assert not (tmp_path / "out" / "lk.tar").exists()


def test_unknown_field_fails(tmp_path, cache_dir, capsys):
    spec = CASES / "091_validate_linuxkit_yaml" / "linuxkit.yml"
    code, err = build([spec], tmp_path / "out", cache_dir, capsys)
    assert code == 2
    assert err.splitlines() == [f"{spec}:1:1: unknown top-level key 'unknownField'"]


# ---- examples ---------------------------------------------------------------------------------

def test_example_minimal_ids_and_label_merge(tmp_path, cache_dir, capsys):
    tree = built("examples/minimal", tmp_path, cache_dir, capsys)
    getty = config_of(tree, "services/getty")
    assert getty["process"]["args"] == ["/sbin/tini", "-s", "-v", "--", "/usr/bin/rungetty.sh"]
    assert getty["process"]["env"] == ["INSECURE=true"]
    assert getty["process"]["capabilities"]["effective"][:2] == ["CAP_CHOWN",
                                                                 "CAP_DAC_OVERRIDE"]
    assert len(getty["process"]["capabilities"]["bounding"]) == 41
    assert [ns["type"] for ns in getty["linux"]["namespaces"]] == ["mount"]  # pid, net: host
    devices = getty["linux"]["devices"]
    assert devices[0] == {"path": "/dev/console", "type": "c", "major": 5, "minor": 1,
                          "fileMode": 0o666}
    assert getty["linux"]["resources"]["devices"][0] == {"allow": True, "type": "c",
                                                         "major": 5, "minor": 1,
                                                         "access": "rwm"}


def test_example_wireguard_runtime(tmp_path, cache_dir, capsys):
    tree = built("examples/wireguard", tmp_path, cache_dir, capsys)
    runtime = runtime_of(tree, "onboot/002-wg0")
    assert runtime["interfaces"] == [{"name": "wg0", "add": "wireguard", "createInRoot": True}]
    assert runtime["bindNS"] == {"cgroup": "", "ipc": "", "mnt": "", "net": "/run/netns/wg0",
                                 "pid": "", "user": "", "uts": ""}
    wg0 = config_of(tree, "onboot/002-wg0")
    assert {"type": "network"} in wg0["linux"]["namespaces"]
    nginx = config_of(tree, "services/nginx")
    assert {"type": "network", "path": "/run/netns/wg0"} in nginx["linux"]["namespaces"]
    assert tree["etc/wireguard/wg0.conf"][0].mode == 0o600
    assert tree["etc/wireguard"][0].mode == 0o700  # parent made with the x bits of 0600


def test_example_docker_for_mac(tmp_path, cache_dir, capsys):
    tree = built("examples/docker-for-mac", tmp_path, cache_dir, capsys)
    metadata = config_of(tree, "onboot/000-metadata")
    assert metadata["root"] == {"path": "rootfs", "readonly": True}
    assert "containers/onboot/000-metadata/lower" not in tree
    assert tree["containers/onboot/000-metadata/rootfs/usr/share/metadata/ref"][0].kind is \
        Kind.FILE
    assert mounts_by_dest(metadata)["/tmp"] == {"destination": "/tmp", "type": "tmpfs",
                                                "source": "tmpfs"}
    assert mounts_by_dest(metadata)["/dev"]["source"] == "/dev"  # the bind replaced the tmpfs
    runtime = runtime_of(tree, "onboot/000-metadata")
    assert runtime["mounts"] == [{"destination": "/containers/onboot/000-metadata/rootfs",
                                  "options": ["bind"],
                                  "source": "/containers/onboot/000-metadata/rootfs"}]
    dfm = runtime_of(tree, "services/docker-dfm")
    assert dfm["mkdir"] == ["/var/lib/docker"]
    docker = config_of(tree, "services/docker-dfm")
    assert docker["process"]["args"][:2] == ["/usr/local/bin/docker-init",
                                             "/usr/local/bin/dockerd"]
    assert docker["process"]["env"] == ["DOCKER_TLS_CERTDIR=/certs"]  # from the image config
    mount_vpnkit = config_of(tree, "onboot/007-mount-vpnkit")
    assert mounts_by_dest(mount_vpnkit)["/host_var"]["options"] == ["rbind", "rshared", "rbind"]
    # alpine:3.13 is used twice: extracted once
    assert "containers/onboot/008-move-logs/lower" not in tree


def test_example_redis_cwd_from_image(tmp_path, cache_dir, capsys):
    tree = built("examples/redis-os", tmp_path, cache_dir, capsys)
    redis = config_of(tree, "services/redis")
    assert redis["process"]["cwd"] == "/data"
    assert redis["process"]["args"] == ["docker-entrypoint.sh", "redis-server"]
