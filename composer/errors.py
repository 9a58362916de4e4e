"""The three ways a command can fail, each with its own exit status.

Every failure the user can cause is one of these; the CLI turns them into one line on stderr
(``FILE:LINE:COL: message`` for spec errors, ``error: ...`` for the rest) and never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """Where in a spec file something is (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class ComposerError(Exception):
    """A failure that is not the spec's fault: exit status 1, printed as ``error: ...``."""

    exit_status = 1

    def lines(self) -> list[str]:
        return [f"error: {self}"]


class UsageError(ComposerError):
    """Bad command-line usage: exit status 2."""

    exit_status = 2


class SpecError(ComposerError):
    """One or more problems in spec files: exit status 2, one ``FILE:LINE:COL: msg`` line each."""

    exit_status = 2

    def __init__(self, problems: list[tuple[Position | None, str]]):
        files: dict[str, int] = {}
        for pos, _ in problems:
            if pos is not None:
                files.setdefault(pos.file, len(files))
        # files in the order they were given, positions in file order within each
        self.problems = sorted(
            problems,
            key=lambda p: (files[p[0].file], p[0].line, p[0].col) if p[0] else (-1, 0, 0),
        )
        super().__init__("; ".join(m for _, m in self.problems))

    @classmethod
    def at(cls, pos: Position | None, message: str) -> SpecError:
        return cls([(pos, message)])

    def lines(self) -> list[str]:
        return [f"{pos}: {msg}" if pos else f"error: {msg}" for pos, msg in self.problems]
