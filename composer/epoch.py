"""Which timestamps go into outputs: never the wall clock.

With SOURCE_DATE_EPOCH set (environment or ``--source-date-epoch``), generated entries get it and
every image entry's mtime is clamped to it. Without it, generated entries get linuxkit's fixed
default (2017-04-18T16:30:00Z) and image entries keep their own times.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from composer.errors import UsageError

DEFAULT_EPOCH = 1492533000  # 2017-04-18T16:30:00Z, linuxkit's defaultModTime


@dataclass(frozen=True)
class Epoch:
    """The time policy of one build."""

    source_date_epoch: int | None

    @property
    def generated(self) -> int:
        """mtime for entries we synthesise (dirs, config.json, files: ...)."""
        return DEFAULT_EPOCH if self.source_date_epoch is None else self.source_date_epoch

    def clamp(self, mtime: int) -> int:
        """mtime for an entry taken from an image."""
        sde = self.source_date_epoch
        return mtime if sde is None or mtime <= sde else sde


def resolve_epoch(cli_value: int | None, environ: dict[str, str] | None = None) -> Epoch:
    """The command line wins over the SOURCE_DATE_EPOCH environment variable."""
    if cli_value is not None:
        if cli_value < 0:
            raise UsageError("--source-date-epoch must be a non-negative integer")
        return Epoch(cli_value)
    raw = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return Epoch(None)
    if not raw.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a non-negative integer, not {raw!r}")
    return Epoch(int(raw))
