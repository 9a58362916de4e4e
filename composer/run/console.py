"""The guest's serial console, passed to the user's terminal without what would wreck it.

SeaBIOS and the guest's firmware write ``ESC c`` (a full terminal reset: the screen, and the
scrollback of what ran before, is wiped) and ``ESC [ ? 7 l`` (line wrapping off, never turned
back on). ``run qemu`` pipes qemu's output through :class:`ConsoleFilter`, which drops exactly
those two sequences, also when a read splits one; every other byte passes unchanged.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

DROPPED = (b"\x1bc", b"\x1b[?7l")


class ConsoleFilter:
    """Removes :data:`DROPPED` from a byte stream given in pieces of any size."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        data = self._held + data
        for seq in DROPPED:
            data = data.replace(seq, b"")
        # keep back a tail that could be the start of a dropped sequence
        self._held = b""
        for cut in range(min(len(data), max(map(len, DROPPED)) - 1), 0, -1):
            tail = data[-cut:]
            if any(seq.startswith(tail) for seq in DROPPED):
                data, self._held = data[:-cut], tail
                break
        return data

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


def pump(src: BinaryIO, out: BinaryIO | None = None) -> None:
    """Copy ``src`` (a pipe) to ``out`` (default: our stdout) through a :class:`ConsoleFilter`
    until its end; ``run qemu`` runs it on a thread beside the VM it supervises."""
    sink = out if out is not None else sys.stdout.buffer
    console = ConsoleFilter()
    fd = src.fileno()
    while data := os.read(fd, 1 << 16):
        sink.write(console.feed(data))
        sink.flush()
    sink.write(console.flush())
    sink.flush()
