"""The one JSON serialisation for everything we generate.

Two styles, both fixed: ``pretty`` (sorted keys, 4-space indent, trailing newline; for files a
person reads, like config.json) and ``compact`` (sorted keys, no spaces; for OCI blobs whose digest
is their identity). ASCII-only output so the bytes never depend on an encoding setting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def pretty(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=4, ensure_ascii=True) + "\n").encode()


def compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON, refusing duplicate keys (a digest must mean exactly one document)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    return json.loads(data, object_pairs_hook=no_duplicates)


def load_file(path: Path, what: str) -> Any:
    """A JSON file we are handed (a record, an envelope), or one clean error naming it."""
    from composer.errors import ComposerError

    try:
        return loads(Path(path).read_bytes())
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ComposerError(f"{path}: not {what}: {exc}") from None
