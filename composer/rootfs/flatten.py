"""Flatten an image's layers into a :class:`Tree`, following the OCI image-spec layer rules.

Each layer is read from its uncompressed, diff_id-verified copy in the cache, headers only: file
content is referenced by offset, never loaded. Per layer, whiteouts are applied first and only to
the layers below (``.wh.NAME`` removes NAME and its subtree; ``.wh..wh..opq`` empties its directory
but keeps it), then the layer's own entries are applied in order (the last of duplicates wins).
Hard links point at the node their target has at that moment, so a link keeps its content even if
a later layer replaces or deletes the target.
"""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.model import Image, Layer
from composer.rootfs.tree import Node, Span, SparseSpan, Tree
from composer.tar import guard as targuard
from composer.tar.canon import CanonError, Entry, Kind, entry_from_tarinfo, normalise
from composer.tar.headers import GiveUp, members
from composer.tar.read import tarfile_errors, tarfile_members

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class LayerError(ComposerError):
    pass


class Window(io.RawIOBase):
    """A seekable read-only view of ``size`` bytes at ``offset`` of an open file (a nested tar)."""

    random_access = True  # cheap to seek anywhere: composer.tar.headers may read it in place

    def __init__(self, fh, offset: int, size: int):
        super().__init__()
        self._fh, self._base, self._size, self._pos = fh, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, min(self._size, base + pos))
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._base + self._pos)
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def apply_tar(tree: Tree, fh, file_path: str, base_offset: int, *, what: str, source: str,
              location: str, whiteouts: bool = True) -> None:
    """Apply one plain tar (open as ``fh``; content spans refer to ``file_path``) onto ``tree``."""
    scan = _PRESCANNED.pop(file_path, None) if base_offset == 0 and whiteouts else None
    entries, removals, opaque = scan or _scan(fh, base_offset, what, whiteouts)
    for path in opaque:
        tree.clear_children(tree.resolve_parent(path) if path else "")
    for path in removals:
        tree.remove(tree.resolve_parent(path))
    for entry, offset, sparse in entries:
        if not entry.path:
            if entry.kind is not Kind.DIR:
                raise LayerError(f"{what}: the entry for the root ('.') is a "
                                 f"{entry.kind.name.lower()}, not a directory")
            continue  # the root directory itself
        path = entry.path
        if entry.kind is Kind.HARDLINK:
            target_path = tree.resolve_parent(entry.linkname)
            target = tree.get(target_path)
            if target is None or target.entry.kind is Kind.DIR:
                raise LayerError(f"{what}: {entry.path}: hard link to missing or non-file "
                                 f"{entry.linkname!r}")
            tree.put(path, target)
            continue
        content: Span | SparseSpan | None = None
        if entry.kind is Kind.FILE:
            content = (SparseSpan(file_path, offset, entry.size, sparse) if sparse is not None
                       else Span(file_path, offset, entry.size))
        tree.put(path, Node(entry, content, source, location))


_Scan = tuple[list[tuple[Entry, int, tuple | None]], list[str], list[str]]
#: headers of layer files read ahead by :func:`prescan`, by path; taken by :func:`apply_tar`
_PRESCANNED: dict[str, _Scan] = {}


def prescan(path: Path) -> None:
    """Read a just-stored layer file's headers now, in the thread that stored it, so phase one
    finds them ready: the reading overlaps the other layers' downloads instead of following
    them. The file is content-addressed, so the result is what :func:`apply_tar` would read;
    if anything is wrong with the layer, nothing is kept and apply_tar reports it in its words.
    """
    try:
        with open(path, "rb") as fh:
            scan = _scan_fast(fh, 0, str(path), True)
    except (GiveUp, ComposerError, CanonError, OSError, ValueError):
        return
    _PRESCANNED[str(path)] = scan  # one dict store: atomic under the GIL


def forget_prescans() -> None:
    """Drop what :func:`prescan` read and no build used (a failed build, a reused rootfs)."""
    _PRESCANNED.clear()


class _Sorter:
    """Splits a layer's members into entries, whiteouts and opaque markers, in order."""

    def __init__(self, what: str, whiteouts: bool):
        self.what, self.whiteouts = what, whiteouts
        self.entries: list[tuple[Entry, int, tuple | None]] = []
        self.removals: list[str] = []
        self.opaque: list[str] = []

    def is_whiteout(self, raw_name: str, path: str) -> bool:
        if not self.whiteouts or WHITEOUT not in path:
            return False
        base = posixpath.basename(path)
        if not base.startswith(WHITEOUT):
            return False
        parent = posixpath.dirname(path)
        if base == OPAQUE:
            self.opaque.append(parent)
            return True
        hidden = base[len(WHITEOUT):]
        if hidden in ("", ".", "..") or "/" in hidden:
            raise LayerError(f"{self.what}: invalid whiteout {raw_name!r}")
        self.removals.append(posixpath.join(parent, hidden))
        return True

    def result(self) -> _Scan:
        return self.entries, self.removals, self.opaque


def _scan(fh, base_offset: int, what: str, whiteouts: bool) -> _Scan:
    try:
        try:
            return _scan_fast(fh, base_offset, what, whiteouts)
        except GiveUp:
            fh.seek(0)
            return _scan_tarfile(fh, base_offset, what, whiteouts)
    except CanonError as exc:
        raise LayerError(f"{what}: {exc}") from exc


def _scan_fast(fh, base_offset: int, what: str, whiteouts: bool) -> _Scan:
    """The layer's headers through :mod:`composer.tar.headers` (GiveUp: ask tarfile instead)."""
    sorter = _Sorter(what, whiteouts)
    entries = sorter.entries
    # it ends only at a zero block or at the end of the data: nothing for check_end to see
    for member in members(fh):
        entry = member.entry  # entry.path is normalise(member.name)
        if not sorter.is_whiteout(member.name, entry.path):
            entries.append((entry, base_offset + member.offset_data, None))
    return sorter.result()


def _scan_tarfile(fh, base_offset: int, what: str, whiteouts: bool) -> _Scan:
    sorter = _Sorter(what, whiteouts)
    with tarfile_errors(LayerError, f"{what}: "), targuard.open_tar(fh, "r:") as tf:
        for info in tarfile_members(tf, fh):
            if sorter.is_whiteout(info.name, normalise(info.name)):
                continue
            entry = entry_from_tarinfo(info)
            segments = cast("list[tuple[int, int]] | None", info.sparse)  # typeshed says bytes
            sparse = tuple((o, n) for o, n in segments or () if n) if segments else None
            sorter.entries.append((entry, base_offset + info.offset_data, sparse))
    return sorter.result()


def prepare_layers(images: Iterable[Image], cache: Cache, workers: int | None = None) -> None:
    """Decompress and verify every distinct layer into the cache, several at a time.

    zlib and hashlib release the GIL, so threads use every core. Each layer is independent and
    content-addressed, so nothing depends on which finishes first or how many workers there are.
    """
    jobs: dict[str, tuple[str, Layer]] = {}
    for image in images:
        for number, layer in enumerate(image.layers):
            jobs.setdefault(layer.diff_id, (f"{image.ref} layer {number} ({layer.digest})", layer))
    pending = [(what, layer) for what, layer in jobs.values()
               if not cache.uncompressed_path(layer.diff_id).is_file()]
    if not pending:
        return
    count = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(cache.uncompressed_layer, layer.digest, layer.size,
                               layer.media_type, layer.diff_id, what)
                   for what, layer in pending]
        for future in futures:
            future.result()


def image_tree(image: Image, cache: Cache, *, implicit_mtime: int, source: str,
               location: str) -> Tree:
    """The flattened filesystem of ``image``."""
    tree = Tree(implicit_mtime)
    for number, layer in enumerate(image.layers):
        what = f"{image.ref} layer {number} ({layer.digest})"
        path = cache.uncompressed_layer(layer.digest, layer.size, layer.media_type,
                                        layer.diff_id, what)
        with open(path, "rb") as fh:
            apply_tar(tree, fh, str(path), 0, what=what, source=source, location=location)
    return tree


def nested_tar(node: Node, dest: Tree, *, what: str, source: str, location: str) -> None:
    """Apply a tar stored as a file inside an image (a kernel's ``kernel.tar``) onto ``dest``."""
    content = node.content
    if not isinstance(content, Span):
        raise LayerError(f"{what}: not a file inside an image layer")
    with open(content.path, "rb") as fh:
        apply_tar(dest, Window(fh, content.offset, content.size), content.path, content.offset,
                  what=what, source=source, location=location, whiteouts=False)

