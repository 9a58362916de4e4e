"""Keeping the cache lean: derived layer copies dropped after a build, ``cache gc --max-size``.

Uncompressed layers (``uncompressed/``) only serve phase one while it flattens; once the rootfs
tar is written they are derived bytes that cost as much disk as the layers themselves.
:func:`trim` drops them at the end of a build, but only when no other build is using the cache
(a build holds ``gc.lock`` shared; trimming takes it exclusively without waiting, and skips when
it cannot), so it never removes a file another build is reading.

``gc`` brings the cache under a size by evicting least-recently-used entries: phase-one results
(``rootfs/KEY.*``), phase-two results (``outputs/KEY``) and images (a ref, or an untagged
image a build used straight from a layout, and the blobs only it reaches; blobs nothing reaches
go with the first image evicted). Last use is recorded by builds as the mtime of a touch file
``used/KIND-KEY``, so it does not depend on atime (``noatime`` mounts) and touching never
changes an entry's own stat signature. ``gc`` holds the cache exclusively: it waits for running
builds to finish, and builds that start meanwhile wait for it, so it never breaks a build.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from composer.images.cache import Cache
from composer.streams.digest import check_digest

USED = "used"


def touch(cache_root: Path, kind: str, key: str) -> None:
    """Record that entry ``kind``/``key`` was used now (best-effort: a read-only cache still
    builds)."""
    path = Path(cache_root) / USED / f"{kind}-{key.replace(':', '-')}"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
        os.utime(path)


def _last_use(cache_root: Path, kind: str, key: str, fallback: Path) -> float:
    for path in (Path(cache_root) / USED / f"{kind}-{key.replace(':', '-')}", fallback):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return 0.0


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return []


def disk_size(root: Path) -> int:
    """Bytes of the regular files under ``root``, each inode counted once (outputs may be
    hard links of one another)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in _files(Path(root)):
        with contextlib.suppress(OSError):
            st = path.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def trim(cache: Cache) -> int:
    """Drop every uncompressed layer copy if no build is using the cache; bytes removed."""
    directory = cache.root / "uncompressed" / "sha256"
    if not directory.is_dir():
        return 0
    with cache.exclusive_now() as alone:
        if not alone:
            return 0
        return _unlink(_files(directory))


def _unlink(paths: list[Path]) -> int:
    freed = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            freed += path.stat().st_size
            path.unlink()
    return freed


@dataclass(frozen=True)
class Evictable:
    """One entry ``gc`` may remove, with when it was last used."""

    last_use: float
    kind: str  # rootfs, outputs, image
    key: str  # rootfs/outputs key, or the ref name


def candidates(cache: Cache) -> list[Evictable]:
    """Every evictable entry, least recently used first (ties: by kind, then key)."""
    root = cache.root
    found: list[Evictable] = []
    rootfs = root / "rootfs"
    if rootfs.is_dir():
        for meta in sorted(rootfs.glob("*.json")):
            if (rootfs / f"{meta.stem}.tar").is_file():
                found.append(Evictable(_last_use(root, "rootfs", meta.stem, meta), "rootfs",
                                       meta.stem))
    outputs = root / "outputs"
    if outputs.is_dir():
        for meta in sorted(outputs.glob("*.json")):
            found.append(Evictable(_last_use(root, "outputs", meta.stem, meta), "outputs",
                                   meta.stem))
    tagged = set()
    for name, desc in cache.refs():
        tagged.add(desc["digest"])
        found.append(Evictable(_last_use(root, "image", desc["digest"],
                                         cache.blob_path(desc["digest"])), "image", name))
    for digest in _untagged(cache) - tagged:  # images a build used straight from a layout
        found.append(Evictable(_last_use(root, "image", digest, cache.blob_path(digest)),
                               "image", digest))
    return sorted(found, key=lambda e: (e.last_use, e.kind, e.key))


def _untagged(cache: Cache) -> set[str]:
    """Manifests (or indexes) builds recorded a use of, still in the cache."""
    out = set()
    used = cache.root / USED
    for path in sorted(used.glob("image-sha256-*")) if used.is_dir() else []:
        digest = "sha256:" + path.name.removeprefix("image-sha256-")
        with contextlib.suppress(Exception):
            if cache.has_blob(digest):
                out.add(digest)
    return out


def _evict(cache: Cache, entry: Evictable) -> None:
    root = cache.root
    if entry.kind == "rootfs":
        for path in sorted((root / "rootfs").glob(f"{entry.key}.*")):
            path.unlink(missing_ok=True)
        _drop_rootfs_sidecars(root)
    elif entry.kind == "outputs":
        (root / "outputs" / f"{entry.key}.json").unlink(missing_ok=True)
        shutil.rmtree(root / "outputs" / entry.key, ignore_errors=True)
    elif entry.key.startswith("sha256:") and cache.lookup(entry.key) is None:
        cache.blob_path(entry.key).unlink(missing_ok=True)
        (root / USED / f"image-{entry.key.replace(':', '-')}").unlink(missing_ok=True)
        _drop_unreachable_blobs(cache)
    else:
        cache.untag(entry.key)
        _drop_unreachable_blobs(cache)


def _drop_rootfs_sidecars(root: Path) -> None:
    """Region pointers and package lists of rootfs entries that are gone."""
    from composer import canonjson
    from composer.rootfs import memo

    directory = memo.directory(root)
    shas = set()
    for meta in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if (directory / f"{meta.stem}.tar").is_file():
                shas.add(canonjson.loads(meta.read_bytes())["sha256"])
    keep = {memo.packages_path(root, sha).name for sha in shas}
    _unlink([p for p in directory.glob("packages-*.json") if p.name not in keep])
    regions = directory / "regions"
    for pointer in sorted(regions.glob("*.json")):
        if pointer.name.endswith(".residue.json"):
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if canonjson.loads(pointer.read_bytes())["sha256"] not in shas:
                pointer.unlink()
    for residue in sorted(regions.glob("*.residue.json")):  # useless without its regions
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            keys = canonjson.loads(residue.read_bytes())["pointers"]
            if not all((regions / f"{key}.json").is_file() for key in keys):
                residue.with_suffix(".data").unlink(missing_ok=True)
                residue.unlink()


def _drop_unreachable_blobs(cache: Cache) -> None:
    from composer.cache.maintain import reachable

    with cache.locked():
        keep: set[str] = set()
        roots = [desc for _name, desc in cache.refs()]
        roots += [{"digest": d} for d in sorted(_untagged(cache))]
        for desc in roots:
            keep.update(check_digest(d) for d in reachable(cache, desc)[0])
        _unlink([p for p in _files(cache.root / "blobs" / "sha256") if p.name not in keep])


def gc(cache: Cache, max_size: int) -> tuple[list[Evictable], int, int]:
    """Evict least-recently-used entries until the cache holds at most ``max_size`` bytes.

    Uncompressed layer copies and temporary files go first (derived, never needed between
    builds). Returns (entries evicted, bytes before, bytes after)."""
    if not cache.root.is_dir():
        return [], 0, 0
    with cache.exclusive():
        before = disk_size(cache.root)
        _unlink(_files(cache.root / "uncompressed") + _files(cache.root / "tmp"))
        evicted: list[Evictable] = []
        size = disk_size(cache.root)
        for entry in candidates(cache):
            if size <= max_size:
                break
            _evict(cache, entry)
            evicted.append(entry)
            size = disk_size(cache.root)
        return evicted, before, size


def parse_size(text: str) -> int:
    """``1024``, ``500M``, ``2G``, ``1.5GiB`` -> bytes (binary multiples, as ``--size``)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in units and value[-1:] else ""
    number = value[: len(value) - len(unit)] if unit else value
    try:
        result = int(float(number) * units[unit])
    except ValueError:
        raise ValueError(f"not a size: {text!r} (say 500M, 2G)") from None
    if result < 0:
        raise ValueError(f"not a size: {text!r}")
    return result
