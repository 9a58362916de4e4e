"""The bundles we generate, run by a real OCI runtime: Debian's runc in a QEMU (TCG) guest.

Two boots, both through the real commands (``pkg build``, ``build``, ``run qemu``):

- **probes**: one spec with many onboot containers (plus services and an onshutdown entry),
  each printing tagged lines ``P NAME KEY=VALUE`` about what it sees from inside: capabilities,
  a read-only or overlay root, binds, tmpfs and mounts with options, namespaces, sysctl,
  rlimits, ids, env, cwd, and runtime.json's mounts, mkdir, cgroups, interfaces and bindNS.
  Every expectation below is derived from the same dict the spec is written from.
- **services**: examples/services.yml as the README's demo runs it: the page its httpd service
  serves is fetched from the host through QEMU's port forward, then an ACPI power-off runs the
  onshutdown container.

TCG boots are slow (about 20-40 s each on a loaded 2-core machine): all probes share one boot.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from composer.spec.schema import CAPABILITIES
from tests.integration.conftest import free_port, require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "examples" / "packages"
ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|c)")
HELLO = f"@pkg:{PACKAGES / 'hello'}"
LOWER = "/containers/onboot/000-caps/rootfs"  # where the shared hello image is unpacked
CAPS = ["CAP_NET_ADMIN", "CAP_SYS_TIME"]
IDS = {"uid": 1000, "gid": 1001, "additionalGids": [1002, 1003]}
ENV = ["PROBE_A=one", "PROBE_B=two words"]
RLIMIT = ("nofile", 1024, 2048)
SYSCTL = {"net.ipv4.ip_forward": "1"}
BIND_DATA = "bind-data-42\n"


def sh(*lines: str) -> list[str]:
    return ["/bin/sh", "-c", "\n".join(lines)]


def netlist(tag: str) -> str:
    return f'echo "P {tag} ifaces=$(ls /sys/class/net | sort | tr "\\n" " ")"'


def mount_of(tag: str, dest: str) -> str:
    return (f"awk '$2==\"{dest}\" {{print \"P {tag} {dest}=\" $3 \":\" $4}}' /proc/mounts"
            " | tail -n 1")


ONBOOT = [
    {"name": "caps", "image": HELLO, "readonly": True, "capabilities": CAPS,
     "command": sh("echo \"P caps capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status)\"",
                   "echo \"P caps capbnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status)\"")},
    {"name": "ro", "image": HELLO, "readonly": True,
     "command": sh("if touch /probe 2>/dev/null; then echo P ro write=ok; "
                   "else echo P ro write=failed; fi", mount_of("ro", "/"))},
    {"name": "rw", "image": HELLO,
     "command": sh("echo written > /newfile && echo \"P rw write=$(cat /newfile)\"",
                   mount_of("rw", "/"))},
    {"name": "rwcheck", "image": HELLO, "binds": [f"{LOWER}:/lowerview:ro"],
     "command": sh("for f in /newfile /lowerview/newfile /lowerview/bin/busybox; do "
                   "if [ -e $f ]; then echo P rwcheck $f=present; "
                   "else echo P rwcheck $f=absent; fi; done")},
    {"name": "mounts", "image": HELLO, "binds": ["/etc/probe:/probe-bind:ro"],
     "tmpfs": ["/scratch:size=1m,mode=0700"],
     "mounts": [{"type": "tmpfs", "destination": "/mnt2",
                 "options": ["nosuid", "nodev", "size=2m"]}],
     "command": sh("echo \"P mounts data=$(cat /probe-bind/data)\"",
                   "if touch /probe-bind/x 2>/dev/null; then echo P mounts bindwrite=ok; "
                   "else echo P mounts bindwrite=failed; fi",
                   *(mount_of("mounts", d) for d in ("/probe-bind", "/scratch", "/mnt2")))},
    {"name": "netnew", "image": HELLO, "net": "new", "uts": "new", "hostname": "probe-host",
     "sysctl": SYSCTL, "readonly": True,
     "command": sh(netlist("netnew"), "echo \"P netnew hostname=$(hostname)\"",
                   "echo \"P netnew pid=$$\"",
                   "echo \"P netnew ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)\"")},
    {"name": "nethost", "image": HELLO, "pid": "host", "readonly": True,
     "command": sh(netlist("nethost"), "echo \"P nethost init=$(cat /proc/1/comm)\"",
                   "[ $$ = 1 ] && echo P nethost pid=1 || echo P nethost pid=not-1",
                   "echo \"P nethost ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)\"")},
    {"name": "ids", "image": HELLO, "readonly": True, **IDS, "env": ENV, "cwd": "/etc",
     "rlimits": [",".join(map(str, RLIMIT))],
     "command": sh("awk '/^(Uid|Gid|Groups):/ {$1=$1; sub(\":\", \"\"); "
                   "k=$1; $1=\"\"; print \"P ids \" k \"=\" substr($0, 2)}' /proc/self/status",
                   "echo \"P ids env_a=$PROBE_A\"", "echo \"P ids env_b=$PROBE_B\"",
                   "echo \"P ids cwd=$(pwd)\"",
                   "awk '/^Max open files/ {print \"P ids nofile=\" $4 \",\" $5}' "
                   "/proc/self/limits")},
    {"name": "iface", "image": HELLO, "readonly": True, "net": "new", "uts": "new",
     "hostname": "iface-host", "cgroupsPath": "/probegroup/iface",
     "runtime": {"interfaces": [{"name": "vc0", "peer": "vh0"}, {"name": "dm0", "add": "dummy"}],
                 "bindNS": {"net": "/run/netns/probe", "uts": "/run/uts/probe"},
                 "mkdir": ["/run/probe-made"], "cgroups": ["probegroup"],
                 "mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "/run/probe-rt",
                             "options": ["size=1m"]}]},
     "command": sh(netlist("iface"), "echo \"P iface cgroup=$(cat /proc/self/cgroup)\"")},
    {"name": "joiner", "image": HELLO, "net": "/run/netns/probe", "uts": "/run/uts/probe",
     "binds": ["/run/probe-made:/made", "/run/probe-rt:/rt"],
     "command": sh(netlist("joiner"), "echo \"P joiner hostname=$(hostname)\"",
                   "[ -d /made ] && echo P joiner made=dir", mount_of("joiner", "/rt"))},
    {"name": "hostview", "image": HELLO, "pid": "host",  # writable: runc makes /hostrun
     "binds": ["/run:/hostrun:ro"],
     "command": sh(netlist("hostview"),
                   "echo \"P hostview netns=$(ls /hostrun/netns | tr '\\n' ' ')\"")},
    {"name": "fail", "image": HELLO, "readonly": True, "command": ["/nonexistent"]},
    # read-only, and the image has no /hostrun: `build` warns, and runc indeed cannot start it
    {"name": "nomnt", "image": HELLO, "readonly": True, "binds": ["/run:/hostrun"],
     "command": ["/bin/echo", "P nomnt ran=yes"]},
    # a hostname in the host's uts namespace: `build` warns, and runc refuses it
    {"name": "nouts", "image": HELLO, "readonly": True, "hostname": "nope",
     "command": ["/bin/echo", "P nouts ran=yes"]},
]
FAILING = {"fail", "nomnt", "nouts"}
SERVICES = [
    {"name": "alive", "image": HELLO, "readonly": True,
     "command": ["/bin/busybox", "sleep", "100000"]},
    {"name": "die", "image": HELLO, "readonly": True,
     "command": sh("echo P die started=yes", "sleep 2", "exit 3")},
]
# "caps" again, at index 0: its directory 000-caps collides with onboot's (a build warning;
# our runner deletes each one-shot container, so it still runs)
ONSHUTDOWN = [{"name": "caps", "image": HELLO, "readonly": True,
               "command": ["/bin/echo", "P shutdown ran=yes"]}]


def probe_spec() -> dict:
    return {
        "kernel": {"image": f"@pkg:{PACKAGES / 'kernel'}", "cmdline": "console=ttyS0 panic=-1"},
        "init": [f"@pkg:{PACKAGES / 'rcinit'}", f"@pkg:{PACKAGES / 'runc'}"],
        "onboot": ONBOOT, "services": SERVICES, "onshutdown": ONSHUTDOWN,
        "files": [{"path": "etc/probe/data", "contents": BIND_DATA, "mode": "0644"}],
    }


# ---- running the real commands ---------------------------------------------------------------

def composer(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "composer", *args], cwd=ROOT, text=True,
                          errors="replace", capture_output=True, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def runtime_cache(example_packages, debs_dir: Path) -> Path:
    """The example packages' cache, with rcinit and runc built into it too."""
    cache = next(iter(example_packages.values()))[0].root
    composer("pkg", "build", "--cache", str(cache), "--debs", str(debs_dir),
             str(PACKAGES / "rcinit"), str(PACKAGES / "runc"))
    return cache


def build(spec: Path, cache: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return composer("build", "--cache", str(cache), "-f", "kernel+initrd", "-o", str(out),
                    str(spec))


class Boot:
    """``run qemu`` in the background, its console copied to a file we can poll."""

    def __init__(self, prefix: Path, *extra: str):
        require_tool("qemu-system-x86_64", "qemu-system-x86")
        self.log = Path(f"{prefix}-console.log")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "composer", "run", "qemu", str(prefix), "--mem", "512",
             "--timeout", "900", "--console-log", str(self.log), *extra],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)

    def lines(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [ANSI.sub("", line).strip() for line in text.splitlines()]

    def wait_for(self, needle: str, limit: float = 600) -> float:
        while time.monotonic() - self.started < limit:
            if any(needle in line for line in self.lines()):
                return time.monotonic() - self.started
            assert self.proc.poll() is None, "the VM ended early:\n" + self.tail()
            time.sleep(1)
        pytest.fail(f"no {needle!r} on the console after {limit} s:\n{self.tail()}")

    def power_off(self) -> int:
        """SIGTERM to run qemu: it presses the ACPI power button; the guest shuts down."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("the VM did not power off within 300 s:\n" + self.tail())
        assert "pressed the guest's power button" in err, err
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        return "\n".join(self.lines()[-80:])


def probes(lines: list[str]) -> dict[tuple[str, str], str]:
    out = {}
    for line in lines:
        m = re.search(r"(?:^|\s)P ([a-z]+) ([^=\s]+)=(.*)$", line)
        if m:
            out[(m.group(1), m.group(2))] = m.group(3).strip()
    return out


def cap_mask(names: list[str]) -> str:
    bits = 0
    for name in names:
        bits |= 1 << CAPABILITIES.index(name)
    return f"{bits:016x}"


# ---- the probes boot -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probe_boot(runtime_cache: Path, tmp_path_factory) -> tuple[dict, list[str], int, str]:
    work = tmp_path_factory.mktemp("probes")
    spec = work / "probes.yml"
    spec.write_text(json.dumps(probe_spec(), indent=1))
    built = build(spec, runtime_cache, work / "out")
    boot = Boot(work / "out" / "probes")
    try:
        boot.wait_for("rc.init: done")
        boot.wait_for("runc: service die: died", limit=700)
        status = boot.power_off()
    finally:
        boot.kill()
    lines = boot.lines()
    print("probes boot:", *[ln for ln in lines if "rc.init: done" in ln])
    return probes(lines), lines, status, built.stderr


def test_capabilities(probe_boot) -> None:
    seen, lines, *_ = probe_boot
    assert seen[("caps", "capeff")] == cap_mask(CAPS), "\n".join(lines[-80:])
    assert seen[("caps", "capbnd")] == cap_mask(CAPS)


def test_readonly_root_refuses_writes(probe_boot) -> None:
    seen, *_ = probe_boot
    assert seen[("ro", "write")] == "failed"
    assert seen[("ro", "/")].split(":")[1].split(",")[0] == "ro"


def test_writable_root_is_a_throwaway_overlay(probe_boot) -> None:
    seen, *_ = probe_boot
    assert seen[("rw", "write")] == "written"
    assert seen[("rw", "/")].startswith("overlay:rw,")
    assert f"lowerdir={LOWER}" in seen[("rw", "/")]
    # another container of the same image, and the image's files themselves, never see it
    assert seen[("rwcheck", "/newfile")] == "absent"
    assert seen[("rwcheck", "/lowerview/newfile")] == "absent"
    assert seen[("rwcheck", "/lowerview/bin/busybox")] == "present"


def test_binds_tmpfs_and_mounts_with_options(probe_boot) -> None:
    seen, *_ = probe_boot
    assert seen[("mounts", "data")] == BIND_DATA.strip()
    assert seen[("mounts", "bindwrite")] == "failed"
    _, bind_opts = seen[("mounts", "/probe-bind")].split(":")
    assert bind_opts.split(",")[0] == "ro"
    scratch_type, scratch_opts = seen[("mounts", "/scratch")].split(":")
    assert scratch_type == "tmpfs"
    assert {"size=1024k", "mode=700"} <= set(scratch_opts.split(","))
    mnt_type, mnt_opts = seen[("mounts", "/mnt2")].split(":")
    assert mnt_type == "tmpfs"
    assert {"nosuid", "nodev", "size=2048k"} <= set(mnt_opts.split(","))


def test_namespaces_hostname_and_sysctl(probe_boot) -> None:
    seen, *_ = probe_boot
    assert seen[("netnew", "ifaces")] == "lo"  # net: new
    assert seen[("netnew", "hostname")] == "probe-host"  # uts: new + hostname
    assert seen[("netnew", "pid")] == "1"  # pid: new (the default)
    assert seen[("netnew", "ip_forward")] == SYSCTL["net.ipv4.ip_forward"]
    host_ifaces = seen[("nethost", "ifaces")].split()
    assert {"eth0", "lo"} <= set(host_ifaces)  # net: host (the default)
    assert seen[("nethost", "pid")] == "not-1"  # pid: host
    assert seen[("nethost", "init")] == "init"  # busybox init, the host's pid 1
    assert seen[("nethost", "ip_forward")] == "0"  # the sysctl stayed in netnew's netns


def test_ids_env_cwd_and_rlimits(probe_boot) -> None:
    seen, *_ = probe_boot
    uid, gid = str(IDS["uid"]), str(IDS["gid"])
    assert seen[("ids", "Uid")].split() == [uid] * 4
    assert seen[("ids", "Gid")].split() == [gid] * 4
    assert seen[("ids", "Groups")].split() == [str(g) for g in IDS["additionalGids"]]
    assert seen[("ids", "env_a")] == ENV[0].split("=", 1)[1]
    assert seen[("ids", "env_b")] == ENV[1].split("=", 1)[1]
    assert seen[("ids", "cwd")] == "/etc"
    assert seen[("ids", "nofile")] == f"{RLIMIT[1]},{RLIMIT[2]}"


def test_runtime_interfaces_bindns_mkdir_mounts_cgroups(probe_boot) -> None:
    seen, *_ = probe_boot
    # veth vc0 moved in, its peer vh0 left in the root netns; dummy dm0 made inside
    assert seen[("iface", "ifaces")].split() == ["dm0", "lo", "vc0"]
    assert "vh0" in seen[("hostview", "ifaces")].split()
    assert "vc0" not in seen[("hostview", "ifaces")].split()
    assert seen[("iface", "cgroup")] == "0::/probegroup/iface"
    # bindNS kept the netns and uts ns alive for a later container to join
    assert seen[("hostview", "netns")] == "probe"
    assert seen[("joiner", "ifaces")].split() == ["dm0", "lo", "vc0"]
    assert seen[("joiner", "hostname")] == "iface-host"
    assert seen[("joiner", "made")] == "dir"  # runtime mkdir
    assert seen[("joiner", "/rt")].startswith("tmpfs:")  # runtime mount, on the host


def test_exit_statuses_services_and_shutdown(probe_boot) -> None:
    seen, lines, status, build_log = probe_boot
    text = "\n".join(lines)
    for n, container in enumerate(ONBOOT):
        name = f"{n:03d}-{container['name']}"
        assert f"runc: onboot {name}: exit status" in text
        ok = f"runc: onboot {name}: exit status 0" in text
        assert ok == (container["name"] not in FAILING), name
    assert "runc: service alive: started" in text
    assert ("die", "started") in seen  # from its log, shown when it died
    assert "runc: service die: died" in text
    assert "runc: service alive: died" not in text  # kept running until the power-off
    assert seen[("shutdown", "ran")] == "yes"
    assert text.index("runc: onshutdown 000-caps: exit status 0") < text.index(
        "Requesting system poweroff")
    assert status == 0
    assert "onshutdown[0]" in build_log and "000-caps" in build_log  # the collision warning
    # the build-time warning for nomnt, and what runc said at boot
    [warning] = [ln for ln in build_log.splitlines() if "onboot[12] nomnt" in ln]
    assert ": warning: " in warning and "has no /hostrun to mount on" in warning
    assert ("nomnt", "ran") not in seen
    assert re.search(r"mkdir \S*/containers/onboot/012-nomnt/rootfs/hostrun: read-only file "
                     "system", text)
    [warning] = [ln for ln in build_log.splitlines() if "onboot[13] nouts" in ln]
    assert "runc will refuse to start it: hostname is set but the uts namespace" in warning
    assert ("nouts", "ran") not in seen
    assert "unable to set hostname without a private UTS namespace" in text


# ---- the services example, as the README's demo runs it ---------------------------------------

def test_services_example_serves_its_page_to_the_host(runtime_cache: Path, tmp_path) -> None:
    spec_path = ROOT / "examples" / "services.yml"
    spec = yaml.safe_load(spec_path.read_text())
    [page] = [f["contents"] for f in spec["files"] if f["path"] == "etc/httpd/index.html"]
    build(spec_path, runtime_cache, tmp_path)
    port = free_port()
    boot = Boot(tmp_path / "services", "--publish", f"{port}:80")
    try:
        body = None
        while time.monotonic() - boot.started < 600 and body is None:
            assert boot.proc.poll() is None, "the VM ended early:\n" + boot.tail()
            try:
                body = requests.get(f"http://127.0.0.1:{port}/", timeout=3).text
            except requests.RequestException:
                time.sleep(1)
        answered = time.monotonic() - boot.started
        assert body == page, boot.tail()
        status = boot.power_off()
    finally:
        boot.kill()
    text = "\n".join(boot.lines())
    [done] = [ln for ln in boot.lines() if "rc.init: done" in ln]
    print(f"services example: the page answered {answered:.1f} s after run qemu started; "
          f"{done}; initrd {(tmp_path / 'services-initrd.img').stat().st_size} bytes")
    assert status == 0, text
    assert "net: eth0 is 10.0.2.15/24" in text
    assert text.index("runc: service httpd: started") < text.index("acpid: power button")
    assert text.index("acpid: power button") < text.index(
        "goodbye from the onshutdown container") < text.index("reboot: Power down")
    assert "runc: service httpd: died" not in text
