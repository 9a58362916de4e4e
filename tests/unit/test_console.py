"""The guest console filter: the terminal is left as it was found after ``run qemu``."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import pytest

from composer.run import qemu
from composer.run.console import ConsoleFilter, pump

# what SeaBIOS and a Linux guest really print: a reset, wrapping off, colours, cursor moves
STREAM = (b"\x1bc\x1b[?7l\x1b[2J\x1b[01;01HSeaBIOS (version 1.16.2)\r\n"
          b"Booting from ROM...\r\n\x1b[0m[    0.000000] Linux version 6.1\r\n"
          b"\x1bc keep: \x1b[?7h \x1b[A \x1bx \x1b[?7 tail\x1b")
CLEAN = (b"\x1b[2J\x1b[01;01HSeaBIOS (version 1.16.2)\r\n"
         b"Booting from ROM...\r\n\x1b[0m[    0.000000] Linux version 6.1\r\n"
         b" keep: \x1b[?7h \x1b[A \x1bx \x1b[?7 tail\x1b")


def filtered(pieces: list[bytes]) -> bytes:
    console = ConsoleFilter()
    return b"".join(console.feed(p) for p in pieces) + console.flush()


def test_drops_exactly_the_reset_and_wrap_off():
    assert filtered([STREAM]) == CLEAN


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_whatever_the_reads_split(size):
    pieces = [STREAM[i:i + size] for i in range(0, len(STREAM), size)]
    assert filtered(pieces) == CLEAN


def test_every_single_split_point():
    for cut in range(len(STREAM) + 1):
        assert filtered([STREAM[:cut], STREAM[cut:]]) == CLEAN, cut


def fake_program(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bin" / "fake-qemu"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_pump_passes_the_rest_through_a_pipe_in_any_pieces():
    """What run qemu's supervisor runs beside the VM: a pipe copied through the filter."""
    read_fd, write_fd = os.pipe()
    for i in range(0, len(STREAM), 4):
        os.write(write_fd, STREAM[i:i + 4])
    os.close(write_fd)
    out = io.BytesIO()
    with os.fdopen(read_fd, "rb") as src:
        pump(src, out)
    assert out.getvalue() == CLEAN


def test_run_qemu_output_is_filtered(tmp_path, monkeypatch, capfdbinary):
    """Through ``run qemu``: the console reaches our stdout without the reset."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "qemu-system-x86_64"
    fake.write_text("#!/bin/sh\nprintf '\\033c\\033[?7lhello from the guest\\n'\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "x-kernel").write_bytes(b"k")
    (tmp_path / "x-initrd.img").write_bytes(b"i")
    (tmp_path / "x-cmdline").write_text("quiet")
    assert qemu.run_qemu(tmp_path / "x", memory="256", timeout=60, accel="tcg") == 0
    assert capfdbinary.readouterr().out == b"hello from the guest\n"
