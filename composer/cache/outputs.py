"""Phase-two results kept in the cache, so an unchanged rebuild of any format converts nothing.

A format's files are a pure function of: the rootfs tar (by digest), the format, the base name
(file names, image tags), the converter options as the record keeps them (bootloaders by
digest), the phase-two code (the bytes of its source files) and the versions of the libraries
that shape bytes. The build hashes exactly those into the key (:func:`output_key`); this module
only keeps and finds entries, and knows nothing of formats.

Layout: ``CACHE/outputs/<key>/`` holds the files under their output names, and
``CACHE/outputs/<key>.json`` (name -> sha256, size, stat signature), written last: an entry
without its ``.json`` is ignored. On a hit the files are placed (reflink, hard link or in-kernel
copy, as ``NAME.tar`` is), so a 1 GiB ISO costs no read or write. A file whose stat signature
(device, inode, size, mtime) changed since it was stored is hashed again, and any mismatch makes
the whole entry a miss, removed and rebuilt: writing to an output that is a hard link of an
entry can never make a later build ship changed bytes. Directory outputs (``oci-dir``) are not
kept. ``cache clean`` removes every entry (derived data); ``cache verify`` re-hashes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer import canonjson
from composer.atomic import OutputSet, atomic_file
from composer.streams.digest import sha256_file

SCHEMA = "image-composer/outputs-entry/v1"


@dataclass(frozen=True)
class Kept:
    """One file of an entry: its output name, where it is in the cache, its digest."""

    name: str
    path: Path
    sha256: str
    size: int


def directory(cache_root: Path) -> Path:
    return Path(cache_root) / "outputs"


def output_key(parts: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of everything that shapes a format's files."""
    return hashlib.sha256(canonjson.compact({"schema": SCHEMA, **parts})).hexdigest()


def code_fingerprint(roots: Iterable[Path]) -> str:
    """sha256 over the source files under ``roots`` (names and bytes, in sorted order)."""
    hasher = hashlib.sha256()
    for root in sorted(Path(r) for r in roots):
        for path in sorted(root.rglob("*.py"), key=lambda p: p.as_posix()):
            hasher.update(f"{root.name}/{path.relative_to(root).as_posix()}".encode() + b"\0")
            hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()


def _signature(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _meta(cache_root: Path, key: str) -> Path:
    return directory(cache_root) / f"{key}.json"


def remove(cache_root: Path, key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _meta(cache_root, key).unlink()
    shutil.rmtree(directory(cache_root) / key, ignore_errors=True)


def lookup(cache_root: Path, key: str) -> list[Kept] | None:
    """The entry for ``key``, each file trusted only as far as its digest (re-hashed unless
    its stat signature shows it untouched); None if absent, incomplete or changed."""
    try:
        info = canonjson.loads(_meta(cache_root, key).read_bytes())
        kept = []
        for name, meta in sorted(info["files"].items()):
            path = directory(cache_root) / key / name
            if meta["stat"] != _signature(path) and \
                    sha256_file(path) != (meta["sha256"], meta["size"]):
                remove(cache_root, key)
                return None
            kept.append(Kept(name, path, meta["sha256"], meta["size"]))
        if not kept:
            return None
        return kept
    except (OSError, ValueError, KeyError, TypeError):
        return None


def place(outs: OutputSet, kept: list[Kept]) -> None:
    """Put an entry's files into the build's outputs, with their digests carried over."""
    for item in kept:
        outs.place(item.name, item.path, digest=(item.sha256, item.size))


def store(cache_root: Path, key: str, files: list[tuple[str, Path, str, int]]) -> None:
    """Keep ``files`` (output name, finished temporary, sha256, size) as the entry ``key``.
    The temporaries are linked, not copied, where the filesystem allows; an entry appears
    whole (its ``.json`` last) or not at all, and a concurrent build storing the same key
    leaves one of the two. Keeping is best-effort: a cache that cannot take the entry (full,
    read-only) costs the next build a conversion, never this build its outputs."""
    # a full or read-only cache: the build's outputs stand; the next build converts again
    with contextlib.suppress(OSError):
        _store(cache_root, key, files)


def _store(cache_root: Path, key: str, files: list[tuple[str, Path, str, int]]) -> None:
    root = directory(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key[:16]}-"))
    try:
        meta = {}
        for name, source, sha256, size in files:
            dest = tmp / name
            try:
                os.link(source, dest)
            except OSError:
                shutil.copyfile(source, dest)
            meta[name] = {"sha256": sha256, "size": size, "stat": None}
        final = root / key
        try:
            os.rename(tmp, final)
        except OSError:
            return  # another build stored it meanwhile (its .json decides)
        for name in meta:
            meta[name]["stat"] = _signature(final / name)
        with atomic_file(_meta(cache_root, key)) as fh:
            fh.write(canonjson.compact({"files": meta, "schema": SCHEMA}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def entries(cache_root: Path) -> list[str]:
    """The keys of every complete entry."""
    root = directory(cache_root)
    if not root.is_dir():
        return []
    return sorted(p.stem for p in root.glob("*.json") if (root / p.stem).is_dir())


def verify(cache_root: Path, key: str) -> list[str]:
    """Every file of the entry whose bytes differ from what its ``.json`` says."""
    try:
        info = canonjson.loads(_meta(cache_root, key).read_bytes())
        files = info["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{_meta(cache_root, key)}: unreadable ({exc})"]
    problems = []
    for name, meta in sorted(files.items()):
        path = directory(cache_root) / key / name
        try:
            if sha256_file(path) != (meta["sha256"], meta["size"]):
                problems.append(f"{path}: content does not match its entry")
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
    return problems
