"""Download progress on stderr: bars on a terminal, one line per image otherwise, or nothing.

``for_stream(stream, quiet)`` picks the mode: ``quiet`` prints nothing (errors still go through
the CLI); a TTY gets a live line per layer (bytes, rate) redrawn in place; anything else (CI
logs, pipes) gets one summary line per image that downloaded something. Only stderr is touched
and nothing here reaches an output, so the wall clock (for rates) is fine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

Advance = Callable[[int], None]


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


@dataclass
class _Layer:
    label: str
    total: int | None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False


@dataclass
class _Image:
    started: float = field(default_factory=time.monotonic)
    layers: dict[str, _Layer] = field(default_factory=dict)


class Progress:
    """Thread-safe: layers of one image download concurrently."""

    def __init__(self, stream: TextIO | None, mode: str = "lines",
                 clock: Callable[[], float] = time.monotonic):
        assert mode in ("tty", "lines", "quiet")
        self._out = stream
        self._mode = mode
        self._clock = clock
        self._lock = threading.Lock()
        self._images: dict[str, _Image] = {}
        self._drawn = 0
        self._last_draw = 0.0

    # -- called by the resolver ------------------------------------------------------------
    def layer(self, image: str, digest: str, total: int | None) -> Advance:
        """Start a layer download; returns the function to call with each chunk's size."""
        with self._lock:
            state = self._images.setdefault(image, _Image(self._clock()))
            entry = state.layers[digest] = _Layer(f"{image} {digest[7:19]}", total,
                                                  started=self._clock())

        def advance(n: int) -> None:
            with self._lock:
                entry.done += n
                if self._mode == "tty":
                    self._draw(force=False)

        return advance

    def layer_done(self, image: str, digest: str) -> None:
        with self._lock:
            state = self._images.get(image)
            if state and digest in state.layers:
                state.layers[digest].finished = True
                if self._mode == "tty":
                    self._draw(force=True)

    def image_done(self, image: str) -> None:
        """Print the image's summary (if it downloaded anything) and forget it."""
        with self._lock:
            state = self._images.pop(image, None)
            if state is None or self._mode == "quiet" or self._out is None:
                return
            if self._mode == "tty":
                self._erase()
            total = sum(la.done for la in state.layers.values())
            seconds = max(self._clock() - state.started, 1e-6)
            count = len(state.layers)
            self._out.write(f"pulled {image}: {count} layer{'s' if count != 1 else ''}, "
                            f"{human(total)} in {seconds:.1f}s ({human(total / seconds)}/s)\n")
            self._out.flush()
            if self._mode == "tty":
                self._draw(force=True)

    # -- terminal drawing ----------------------------------------------------------------
    def _lines(self) -> list[str]:
        now = self._clock()
        out = []
        for state in self._images.values():
            for layer in state.layers.values():
                rate = layer.done / max(now - layer.started, 1e-6)
                size = f"{human(layer.done)}/{human(layer.total)}" if layer.total \
                    else human(layer.done)
                status = "done" if layer.finished else f"{human(rate)}/s"
                bar = ""
                if layer.total:
                    filled = min(20, layer.done * 20 // max(layer.total, 1))
                    bar = "[" + "#" * filled + "." * (20 - filled) + "] "
                out.append(f"{layer.label} {bar}{size} {status}")
        return out

    def _erase(self) -> None:
        if self._drawn and self._out is not None:
            self._out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self, force: bool) -> None:
        now = self._clock()
        if self._out is None or (not force and now - self._last_draw < 0.1):
            return
        self._last_draw = now
        self._erase()
        lines = self._lines()
        for line in lines:
            self._out.write(line[:200] + "\n")
        self._drawn = len(lines)
        self._out.flush()


def for_stream(stream: TextIO, quiet: bool) -> Progress:
    """The right mode for ``stream`` (normally sys.stderr)."""
    if quiet:
        return Progress(None, "quiet")
    isatty = getattr(stream, "isatty", None)
    return Progress(stream, "tty" if isatty is not None and isatty() else "lines")
