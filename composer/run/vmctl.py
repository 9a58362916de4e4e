"""What ``run qemu`` adds around a boot: the machine's devices and its supervision.

Devices (:func:`machine_args`): ``--cpus``, a user-mode network on a virtio NIC (always there,
``restrict=on`` so the guest reaches nothing outside; ``--publish HOST:GUEST`` forwards a port
of **127.0.0.1 only** to the guest), extra disks (``--disk FILE[,format=F]``, virtio, never
created for you), a copy of the serial console in a file (``--console-log``) and a QMP socket.

Supervision (:func:`supervise`): qemu runs as a child; ``--shutdown-after S`` or a SIGTERM to
image-composer asks the guest to power off through QMP's ``system_powerdown`` (the ACPI power
button, so the guest's shutdown steps run), ``--timeout`` kills a guest that never ends. The
result is qemu's exit status (0 when the guest powered off).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from composer import tools
from composer.errors import ComposerError, UsageError
from composer.run import console

QEMU = "qemu-system-x86_64"


def kernel_cmdline(text: str, console: str = "ttyS0") -> str:
    """The file's command line plus ``console=CONSOLE`` (the board's serial port: ttyS0 on a
    PC, ttyAMA0 on arm64 virt) unless it names that one, and panic=-1."""
    words = text.split()
    if console == "ttyS0" and not any(w.startswith("console=") for w in words):
        words.append("console=ttyS0")
    elif console != "ttyS0" and not any(w.startswith(f"console={console}") for w in words):
        words.append(f"console={console}")
    if not any(w.startswith("panic=") for w in words):
        words.append("panic=-1")
    return " ".join(words)

_PUBLISH = re.compile(r"^([0-9]{1,5}):([0-9]{1,5})(?:/(tcp|udp))?$")
_FORMAT = re.compile(r"^[a-z0-9]+$")
POLL = 0.2  # seconds between looks at the child


@dataclass(frozen=True)
class Publish:
    host: int
    guest: int
    proto: str = "tcp"

    def hostfwd(self) -> str:
        return f"hostfwd={self.proto}:127.0.0.1:{self.host}-:{self.guest}"


@dataclass(frozen=True)
class Disk:
    path: Path
    format: str


@dataclass(frozen=True)
class Machine:
    """The devices and supervision of one boot, beyond kernel, firmware and boot media."""

    cpus: int = 1
    publish: tuple[Publish, ...] = ()
    disks: tuple[Disk, ...] = ()
    console_log: Path | None = None
    shutdown_after: float | None = None


def parse_publish(text: str) -> Publish:
    """``HOST:GUEST[/tcp|udp]``, both ports 1-65535. The host side is always 127.0.0.1."""
    m = _PUBLISH.match(text.strip())
    if not m:
        raise UsageError(f"--publish {text!r}: give HOST_PORT:GUEST_PORT[/tcp|udp]")
    host, guest = int(m.group(1)), int(m.group(2))
    for port in (host, guest):
        if not 1 <= port <= 65535:
            raise UsageError(f"--publish {text!r}: port {port} is not in 1-65535")
    return Publish(host, guest, m.group(3) or "tcp")


def parse_disk(text: str) -> Disk:
    """``FILE[,format=F]``: an existing image file; the format defaults to qcow2 for
    ``*.qcow2`` and raw otherwise (qemu would guess, and refuses to write block 0 of a
    guessed raw image)."""
    path, _, rest = text.partition(",")
    fmt = "qcow2" if path.endswith(".qcow2") else "raw"
    for option in filter(None, rest.split(",")):
        key, _, value = option.partition("=")
        if key != "format" or not _FORMAT.match(value):
            raise UsageError(f"--disk {text!r}: the only option is format=FORMAT")
        fmt = value
    if not path:
        raise UsageError(f"--disk {text!r}: no file named")
    if not Path(path).is_file():
        raise ComposerError(f"--disk {path}: no such file (make one, e.g. qemu-img create "
                            f"-f {fmt} {path} 1G)")
    return Disk(Path(path), fmt)


def machine_args(machine: Machine, qmp: Path) -> list[str]:
    """qemu arguments for ``machine``; ``qmp`` is the control socket to create."""
    if machine.cpus < 1:
        raise UsageError("--cpus must be at least 1")
    netdev = ",".join(["user", "id=net0", "restrict=on",
                       *(p.hostfwd() for p in machine.publish)])
    args = ["-smp", str(machine.cpus), "-netdev", netdev,
            "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-qmp", f"unix:{qmp},server=on,wait=off"]
    for n, disk in enumerate(machine.disks):
        for value in (str(disk.path),):
            if "," in value:
                raise UsageError(f"--disk {value}: qemu cannot take a file name with a comma")
        args += ["-drive", f"file={disk.path},format={disk.format},if=virtio,id=disk{n}"]
    if machine.console_log is not None:
        if "," in str(machine.console_log):
            raise UsageError(f"--console-log {machine.console_log}: qemu cannot take a file "
                             "name with a comma")
        args += ["-chardev", f"stdio,id=con0,mux=on,signal=off,logfile={machine.console_log}",
                 "-serial", "chardev:con0", "-mon", "chardev=con0,mode=readline"]
    return args


@contextlib.contextmanager
def qmp_path() -> Iterator[Path]:
    """A fresh directory for the QMP socket (short: unix socket paths are limited)."""
    with tempfile.TemporaryDirectory(prefix="ic-qmp.", dir="/tmp") as tmp:
        yield Path(tmp) / "qmp.sock"


def powerdown(qmp: Path, timeout: float = 10.0) -> bool:
    """Press the guest's ACPI power button (QMP ``system_powerdown``); False if qemu is not
    listening (yet, or any more)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(qmp))
            stream = sock.makefile("rw", encoding="utf-8")
            stream.readline()  # the greeting
            for command in ("qmp_capabilities", "system_powerdown"):
                stream.write(json.dumps({"execute": command}) + "\n")
                stream.flush()
                while True:  # skip events until this command's answer
                    reply = json.loads(stream.readline() or "{}")
                    if "return" in reply or "error" in reply or not reply:
                        break
                if "return" not in reply:
                    return False
            return True
    except (OSError, ValueError):
        return False


def supervise(argv: Sequence[str], *, timeout: float, shutdown_after: float | None,
              qmp: Path, log=None) -> int:
    """Run qemu to its end; power it down after ``shutdown_after`` s or on SIGTERM; kill it and
    fail after ``timeout`` s. Returns qemu's exit status."""
    say = log or (lambda text: print(f"image-composer: {text}", file=sys.stderr, flush=True))
    argv = [str(a) for a in argv]
    requested = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: requested.set())
    try:
        # a VM shapes no output bytes: it sees the user's environment (inherit); its console
        # reaches ours through the filter that keeps the terminal as it was (console.pump)
        proc = tools.spawn(argv, inherit=True, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        pumping = threading.Thread(target=console.pump, args=(proc.stdout,), daemon=True)
        pumping.start()
        try:
            return _wait(proc, timeout, shutdown_after, qmp, requested, say)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            pumping.join(timeout=10)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _wait(proc: subprocess.Popen, timeout: float, shutdown_after: float | None, qmp: Path,
          requested: threading.Event, say) -> int:
    start = time.monotonic()
    asked = False
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(timeout=POLL)
        elapsed = time.monotonic() - start
        due = shutdown_after is not None and elapsed >= shutdown_after
        if not asked and (due or requested.is_set()):
            why = f"after {shutdown_after:g} s" if due else "on SIGTERM"
            if powerdown(qmp):
                say(f"{why}: pressed the guest's power button (ACPI system_powerdown)")
                asked = True
            elif requested.is_set():
                say(f"{why}: qemu's monitor does not answer; stopping qemu")
                proc.terminate()
                asked = True
        if elapsed >= timeout:
            proc.kill()
            proc.wait()
            raise ComposerError(f"qemu timed out after {timeout:g}s (killed)")
