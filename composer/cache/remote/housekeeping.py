"""``cache remote ls|rm|prune``: look after a remote cache repository.

Entries are found by their tags (``rootfs-<key>``, ``outputs-<key>``) and described by their
manifests' annotations (kind, format, signer, when published) and layer sizes. Removing an
entry deletes its manifest (with its tag); the blobs it alone used are then unreferenced and
go at the registry's own garbage collection (``registry garbage-collect`` for distribution).
``prune`` removes what is older than ``--older-than``, then the oldest entries until the rest
fit in ``--max-size`` (sizes summed per entry, a blob shared by two entries counted twice):
what a cron job runs.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from composer import canonjson
from composer.errors import ComposerError, UsageError

from . import entry
from .transport import Repo

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Listed:
    tag: str
    kind: str
    key: str
    format: str
    size: int
    created: str  # as published (UTC, RFC 3339); "" if unknown
    signer: str
    digest: str

    def line(self) -> str:
        return "\t".join([self.tag, self.format, str(self.size), self.created or "-",
                          self.signer[:16] or "-"])


def parse_size(text: str) -> int:
    """``500M``, ``10G``, ``1.5GiB``, ``123`` (bytes; units are powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", text)
    if not m:
        raise UsageError(f"{text!r}: not a size (e.g. 500M, 10G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(text: str) -> datetime.timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w``."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw])\s*", text)
    if not m:
        raise UsageError(f"{text!r}: not a duration (e.g. 12h, 7d, 2w)")
    return datetime.timedelta(seconds=float(m.group(1)) * _SECONDS[m.group(2)])


def describe(repo: Repo, tag: str) -> Listed | None:
    """The entry a tag names, from its manifest (None if it is not an entry's)."""
    parsed = entry.parse_tag(tag)
    if parsed is None:
        return None
    found = repo.manifest(tag)
    if found is None:
        return None
    data, digest = found
    try:
        doc = canonjson.loads(data)
        notes = doc.get("annotations") or {}
        size = sum(int(d.get("size", 0)) for d in doc.get("layers") or [])
    except (ValueError, AttributeError, TypeError):
        return None
    if doc.get("artifactType") != entry.ARTIFACT_TYPE:
        return None
    return Listed(tag, parsed[0], parsed[1], str(notes.get(entry.A_FORMAT, "")), size,
                  str(notes.get(entry.CREATED, "")), str(notes.get(entry.A_SIGNER, "")),
                  digest)


def list_entries(repo: Repo) -> list[Listed]:
    """Every entry, sorted by tag."""
    return [e for e in (describe(repo, t) for t in repo.tags()) if e is not None]


def remove(repo: Repo, key: str) -> list[str]:
    """Remove the entries a key (or a tag) names; the tags removed."""
    tags = [key] if entry.parse_tag(key) else [f"{k}-{key}" for k in entry.KINDS]
    if not any(entry.parse_tag(t) for t in tags):
        raise UsageError(f"{key!r}: not a cache key (64 hex digits) or an entry's tag")
    removed = []
    for tag in tags:
        found = describe(repo, tag)
        if found is not None and repo.delete(found.digest):
            removed.append(tag)
    if not removed:
        raise ComposerError(f"{repo.name}: no entry {key}")
    return removed


def _created(item: Listed) -> datetime.datetime:
    try:
        return datetime.datetime.strptime(item.created, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC)
    except ValueError:  # no time: treated as the oldest, so it goes first
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)


def choose(entries: list[Listed], now: datetime.datetime,
           older_than: datetime.timedelta | None, max_size: int | None) -> list[Listed]:
    """What prune removes: older than ``older_than``, then oldest first beyond ``max_size``."""
    ordered = sorted(entries, key=lambda e: (_created(e), e.tag))
    doomed = [e for e in ordered if older_than is not None and now - _created(e) > older_than]
    kept = [e for e in ordered if e not in doomed]
    if max_size is not None:
        total = sum(e.size for e in kept)
        while kept and total > max_size:
            oldest = kept.pop(0)
            doomed.append(oldest)
            total -= oldest.size
    return doomed


def prune(repo: Repo, older_than: datetime.timedelta | None, max_size: int | None,
          dry_run: bool = False, now: datetime.datetime | None = None) -> list[Listed]:
    """Remove what :func:`choose` picks (nothing with ``dry_run``); returns it."""
    if older_than is None and max_size is None:
        raise UsageError("prune needs --older-than DURATION and/or --max-size SIZE")
    doomed = choose(list_entries(repo), now or datetime.datetime.now(datetime.UTC),
                    older_than, max_size)
    if not dry_run:
        for item in doomed:
            repo.delete(item.digest)
    return doomed
