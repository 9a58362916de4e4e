"""Write-behind: hand writes to one worker thread so hashing and writing overlap with the caller.

Used wherever many small writes go to a hashing sink (tar headers into a blob or the rootfs
tar); the bytes and their order never depend on the thread.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Iterator
from typing import BinaryIO

from composer.streams.types import Writable


class _WriteBehind(io.RawIOBase):
    """Hands each write to one worker thread, in order, so hashing and writing (which release
    the GIL) overlap with the caller making the next bytes. At most ``depth`` writes wait
    (memory stays bounded); a worker's error surfaces at the next write or flush."""

    def __init__(self, out: Writable, depth: int = 2):
        super().__init__()
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._out.write(item)
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._check()
        self._queue.put(bytes(data))
        return len(data)

    def flush(self) -> None:
        if not self.closed:
            self._queue.join()
            self._check()

    def stop(self) -> None:
        """End the worker (after the queued writes) and close; safe to call twice."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        super().close()


@contextlib.contextmanager
def write_behind(out: Writable) -> Iterator[BinaryIO]:
    """A 1 MiB-buffered writer whose bytes reach ``out`` (say a :class:`HashingWriter`) from a
    worker thread. Everything is written when the block ends normally; on an error the worker
    is stopped and the caller's error wins."""
    raw = _WriteBehind(out)
    writer = io.BufferedWriter(raw, 1 << 20)
    try:
        yield writer
        writer.flush()
        raw.flush()
    finally:
        raw.stop()
