"""Output files appear whole or not at all.

Each output is written to a hidden temporary file in the destination directory and renamed into
place only when the whole build succeeded, so a failed or interrupted build leaves nothing behind.
Output files get mode 0644 whatever the umask is.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class OutputSet:
    """Collects the temporary files of one build; ``commit`` renames them all into place."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._pending: list[tuple[str, Path]] = []

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".partial")
        self._pending.append((name, Path(tmp)))
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())

    def commit(self) -> list[Path]:
        done = []
        for name, tmp in self._pending:
            os.chmod(tmp, 0o644)
            dest = self.directory / name
            os.replace(tmp, dest)
            done.append(dest)
        self._pending.clear()
        return done

    def abort(self) -> None:
        for _, tmp in self._pending:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._pending.clear()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
