"""``run qemu``'s machine options and supervision (composer.run.vmctl), without booting: a fake
qemu on PATH records its arguments and speaks enough QMP to be powered down."""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from pathlib import Path

import pytest

from composer.cli import main
from composer.errors import ComposerError, UsageError
from composer.run import vmctl

FAKE = '''#!{python}
"""A qemu stand-in: writes its argv, serves QMP on the -qmp socket, exits 0 on powerdown."""
import json, os, socket, sys, time
here = os.path.dirname(os.path.abspath(__file__))
open(os.path.join(here, "args"), "w").write("\\n".join(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_QEMU_EXIT"):
    sys.exit(int(os.environ["FAKE_QEMU_EXIT"]))
path = sys.argv[sys.argv.index("-qmp") + 1].split(",")[0].removeprefix("unix:")
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(1)
server.settimeout(30)
conn, _ = server.accept()
stream = conn.makefile("rw")
stream.write(json.dumps({{"QMP": {{"version": {{}}}}}}) + "\\n"); stream.flush()
for line in stream:
    command = json.loads(line)["execute"]
    if command == "system_powerdown":
        stream.write(json.dumps({{"event": "POWERDOWN"}}) + "\\n")
    stream.write(json.dumps({{"return": {{}}}}) + "\\n"); stream.flush()
    if command == "system_powerdown":
        open(os.path.join(here, "powerdown"), "w").write("pressed\\n")
        time.sleep(0.3)
        sys.exit(0)
'''


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "qemu-system-x86_64"
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return bindir


def outputs(tmp_path: Path) -> Path:
    prefix = tmp_path / "img"
    for suffix, data in (("kernel", "K"), ("initrd.img", "I"), ("cmdline", "quiet\n")):
        Path(f"{prefix}-{suffix}").write_text(data)
    return prefix


@pytest.mark.parametrize(("text", "expected"), [
    ("8080:80", vmctl.Publish(8080, 80, "tcp")),
    ("53:5353/udp", vmctl.Publish(53, 5353, "udp")),
])
def test_publish(text: str, expected: vmctl.Publish) -> None:
    assert vmctl.parse_publish(text) == expected


@pytest.mark.parametrize("text", ["80", "0.0.0.0:8080:80", "8080:80/sctp", "0:80",
                                  "8080:70000", "a:b"])
def test_bad_publish(text: str) -> None:
    with pytest.raises(UsageError, match="--publish"):
        vmctl.parse_publish(text)


def test_disk(tmp_path: Path) -> None:
    raw, qcow = tmp_path / "d.img", tmp_path / "d.qcow2"
    raw.write_bytes(b"")
    qcow.write_bytes(b"")
    assert vmctl.parse_disk(str(raw)) == vmctl.Disk(raw, "raw")
    assert vmctl.parse_disk(str(qcow)) == vmctl.Disk(qcow, "qcow2")
    assert vmctl.parse_disk(f"{raw},format=qcow2") == vmctl.Disk(raw, "qcow2")
    with pytest.raises(UsageError, match="format="):
        vmctl.parse_disk(f"{raw},cache=none")
    with pytest.raises(ComposerError, match="no such file"):
        vmctl.parse_disk(str(tmp_path / "missing.img"))


def test_machine_args_forward_loopback_only(tmp_path: Path) -> None:
    disk = vmctl.Disk(tmp_path / "d.img", "raw")
    args = vmctl.machine_args(vmctl.Machine(
        cpus=2, publish=(vmctl.Publish(8080, 80), vmctl.Publish(5353, 53, "udp")),
        disks=(disk,), console_log=tmp_path / "console.log"), tmp_path / "q.sock")
    assert args[:2] == ["-smp", "2"]
    netdev = args[args.index("-netdev") + 1]
    assert netdev == ("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80,"
                      "hostfwd=udp:127.0.0.1:5353-:53")
    assert f"file={disk.path},format=raw,if=virtio,id=disk0" in args
    assert f"unix:{tmp_path / 'q.sock'},server=on,wait=off" in args
    assert (f"stdio,id=con0,mux=on,signal=off,logfile={tmp_path / 'console.log'}"
            in args)
    with pytest.raises(UsageError, match="--cpus"):
        vmctl.machine_args(vmctl.Machine(cpus=0), tmp_path / "q.sock")


def test_cli_passes_the_machine_options(tmp_path: Path, fake_qemu: Path,
                                        monkeypatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_EXIT", "7")
    disk = tmp_path / "data.qcow2"
    disk.write_bytes(b"")
    assert main(["run", "qemu", str(outputs(tmp_path)), "--accel", "tcg", "--cpus", "3",
                 "--publish", "18080:80", "--disk", str(disk), "--mem", "1G"]) == 7
    args = (fake_qemu / "args").read_text().splitlines()
    assert args[:4] == ["-accel", "tcg", "-m", "1G"]
    assert args[args.index("-smp") + 1] == "3"
    assert "hostfwd=tcp:127.0.0.1:18080-:80" in args[args.index("-netdev") + 1]
    assert f"file={disk},format=qcow2,if=virtio,id=disk0" in args


def test_shutdown_after_presses_the_power_button(tmp_path: Path, fake_qemu: Path,
                                                 capsys) -> None:
    from composer.run import qemu

    status = qemu.run_qemu(outputs(tmp_path), memory="256", timeout=60, accel="tcg",
                           machine=vmctl.Machine(shutdown_after=0.5))
    assert status == 0
    assert (fake_qemu / "powerdown").read_text() == "pressed\n"
    assert "after 0.5 s: pressed the guest's power button" in capsys.readouterr().err


def test_sigterm_presses_the_power_button(tmp_path: Path, fake_qemu: Path, capsys) -> None:
    from composer.run import qemu

    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        status = qemu.run_qemu(outputs(tmp_path), memory="256", timeout=60, accel="tcg")
    finally:
        timer.cancel()
    assert status == 0
    assert (fake_qemu / "powerdown").exists()
    assert "on SIGTERM: pressed the guest's power button" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


def test_timeout_kills(tmp_path: Path, fake_qemu: Path) -> None:
    from composer.run import qemu

    with pytest.raises(ComposerError, match="timed out after 1s"):
        qemu.run_qemu(outputs(tmp_path), memory="256", timeout=1, accel="tcg")


def test_bad_shutdown_after(tmp_path: Path) -> None:
    from composer.run import qemu

    with pytest.raises(UsageError, match="--shutdown-after"):
        qemu.run_qemu(outputs(tmp_path), memory="256", timeout=1, accel="tcg",
                      machine=vmctl.Machine(shutdown_after=0))
