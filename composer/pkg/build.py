"""``pkg build``: turn a package directory (:mod:`composer.pkg.package`) into a one-layer OCI
image, reproducibly.

Order of work: each deb in turn, then ``rootfs`` (a later source replaces an earlier entry at the
same path; directories merge), then ``rename``, then ``nested``. Parent directories of kept entries
keep their metadata from the deb that had them, else are synthesised (0755, 0:0).

Determinism: every mtime is ``min(mtime, epoch.generated)`` (SOURCE_DATE_EPOCH if set, else
linuxkit's 2017 default), so the image is the same on every machine and checkout. ``rootfs``
entries are owned 0:0 and get the modes git can carry: directories 0755, files 0755 if executable
else 0644, symlinks as they are. Hard links inside a deb stay hard links; in each tar the first
path in sorted order holds the data. Nothing is extracted onto the host: file contents are spooled
to one temporary file and only offsets are kept in memory.
"""

from __future__ import annotations

import datetime
import os
import posixpath
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from composer.debian import deb
from composer.epoch import Epoch
from composer.errors import ComposerError, SpecError
from composer.images.cache import Cache
from composer.images.write import Written, export_layout, write_image, write_index
from composer.oci.refs import Ref, parse_ref
from composer.pkg.package import (
    DEBIAN_ARCH,
    OVERRIDES_FILE,
    DebPin,
    Filter,
    Nested,
    Override,
    PackageSpec,
    Rename,
    applied_overrides,
    default_debs_dir,
    git_mode,
    glob_regex,
    load_overrides,
    load_spec,
    ref_for,
    tag_for,
    walk,
)
from composer.streams.types import Readable
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key

# -- staging --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Item:
    """A staged entry: metadata, where its content is in the spool, and its hard-link group."""

    entry: Entry
    offset: int = 0
    group: tuple[int, str] | None = None  # (source index, first path) for files from debs
    origin: str = ""


class _Stage:
    """Entries staged for the image, with content in one spool file (never in memory)."""

    def __init__(self, spool: BinaryIO, epoch: Epoch):
        self.spool = spool
        self.epoch = epoch
        self.items: dict[str, _Item] = {}
        self.dir_meta: dict[str, Entry] = {}  # every directory seen in a deb, kept or not

    def clamp(self, mtime: int) -> int:
        return min(mtime, self.epoch.generated)

    def spool_from(self, reader: Readable, size: int, what: str) -> int:
        offset = self.spool.seek(0, os.SEEK_END)
        left = size
        while left:
            chunk = reader.read(min(left, 1 << 20))
            if not chunk:
                raise ComposerError(f"{what}: content ended {left} bytes short")
            self.spool.write(chunk)
            left -= len(chunk)
        return offset

    def put(self, item: _Item) -> None:
        """Stage ``item``; it replaces an earlier entry at its path unless only one is a dir."""
        path = item.entry.path
        old = self.items.get(path)
        if old is not None and (old.entry.kind is Kind.DIR) != (item.entry.kind is Kind.DIR):
            raise ComposerError(f"{path}: a directory in one of {old.origin} and {item.origin} "
                                "but not in the other")
        self.items[path] = item


def _deb_path(debs_dir: Path, name: str, version: str, arch: str) -> Path:
    path = debs_dir / deb.deb_filename(name, version, arch)
    if not path.is_file():
        arch_all = debs_dir / deb.deb_filename(name, version, "all")
        if arch_all.is_file():
            return arch_all
        raise ComposerError(
            f"{path}: no such .deb; fetch it with examples/fetch-debs or "
            f"`apt-get download {name}={version}` into {debs_dir} (or pass --debs DIR)")
    return path


def _stage_deb(stage: _Stage, index: int, pin: DebPin, path: Path, sha256: str) -> None:
    keep = Filter.of(pin.include, pin.exclude)
    origin = path.name
    files: dict[str, _Item] = {}  # kept files of this deb, for hard links to find
    wanted: dict[str, list[Entry]] = {}  # hard-link target not kept -> links waiting for it
    with deb.open_deb(path, sha256) as pkg:
        for entry, reader in pkg.data_entries():
            entry = replace(entry, mtime=stage.clamp(entry.mtime))
            if entry.kind is Kind.DIR:
                stage.dir_meta[entry.path] = entry
            if not keep(entry.path):
                continue
            if entry.kind is Kind.FILE:
                assert reader is not None
                offset = stage.spool_from(reader, entry.size, f"{origin}: {entry.path}")
                files[entry.path] = _Item(entry, offset, (index, entry.path), origin)
                stage.put(files[entry.path])
            elif entry.kind is Kind.HARDLINK:
                target = files.get(entry.linkname)
                if target is None:
                    wanted.setdefault(entry.linkname, []).append(entry)
                    continue
                stage.put(replace(target, entry=replace(target.entry, path=entry.path)))
            else:
                stage.put(_Item(entry, origin=origin))
        if wanted:  # links kept whose first path was filtered out: read the deb again for it
            for entry, reader in pkg.data_entries():
                if entry.path in wanted and reader is not None:
                    entry = replace(entry, mtime=stage.clamp(entry.mtime))
                    offset = stage.spool_from(reader, entry.size, f"{origin}: {entry.path}")
                    for link in wanted.pop(entry.path):
                        stage.put(_Item(replace(entry, path=link.path), offset,
                                        (index, entry.path), origin))
        if wanted:
            first = sorted(wanted)[0]
            raise ComposerError(f"{path}: hard link to {first!r}, which is not in the package")


def _stage_rootfs(stage: _Stage, spec: PackageSpec, rootfs: str) -> None:
    root = spec.directory / rootfs
    t = stage.epoch.generated
    for rel, st, path in walk(root):
        origin = f"{rootfs}/"
        mode = git_mode(st)
        if stat.S_ISDIR(st.st_mode):
            stage.put(_Item(Entry(rel, Kind.DIR, mode, mtime=t), origin=origin))
        elif stat.S_ISLNK(st.st_mode):
            stage.put(_Item(Entry(rel, Kind.SYMLINK, 0o777, mtime=t,
                                  linkname=os.readlink(path)), origin=origin))
        else:
            try:
                with open(path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    offset = stage.spool_from(fh, size, str(path))
            except OSError as exc:
                raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None
            stage.put(_Item(Entry(rel, Kind.FILE, mode, mtime=t, size=size), offset,
                            origin=origin))


def _rename(stage: _Stage, rule: Rename) -> None:
    pattern = glob_regex(rule.source)
    matches = [p for p in stage.items if pattern.match(p)]
    if len(matches) != 1:
        found = ", ".join(sorted(matches, key=sort_key)[:5]) or "nothing"
        raise SpecError.at(rule.pos, f"rename: {rule.source!r} must match exactly one entry, "
                           f"matched {found}")
    item = stage.items[matches[0]]
    if item.entry.kind is Kind.DIR:
        raise SpecError.at(rule.pos, f"rename: {matches[0]!r} is a directory")
    if rule.dest in stage.items and rule.dest != matches[0]:
        raise SpecError.at(rule.pos, f"rename: {rule.dest!r} already exists")
    del stage.items[matches[0]]
    stage.put(replace(item, entry=replace(item.entry, path=rule.dest)))


_DIR_ITEM = _Item(Entry("", Kind.DIR))


def _write_tar(items: dict[str, _Item], stage: _Stage, out: BinaryIO) -> None:
    """One canonical tar of ``items`` plus their parent directories."""
    paths = set(items)
    for path in items:
        parent = posixpath.dirname(path)
        while parent and parent not in paths:
            paths.add(parent)
            parent = posixpath.dirname(parent)
        if parent and items.get(parent, _DIR_ITEM).entry.kind is not Kind.DIR:
            raise ComposerError(f"{path}: its parent {parent!r} is not a directory "
                                f"(from {items[parent].origin})")
    writer = CanonicalTarWriter(out)
    first_of_group: dict[tuple[int, str], str] = {}
    for path in sorted(paths, key=sort_key):
        item = items.get(path)
        if item is None:
            meta = stage.dir_meta.get(path)
            entry = meta if meta is not None else Entry(path, Kind.DIR, 0o755,
                                                        mtime=stage.epoch.generated)
            writer.add(entry)
            continue
        entry = item.entry
        if entry.kind is Kind.FILE and item.group is not None:
            if item.group in first_of_group:
                writer.add(replace(entry, kind=Kind.HARDLINK, size=0,
                                   linkname=first_of_group[item.group]))
                continue
            first_of_group[item.group] = path
        if entry.kind is Kind.FILE:
            stage.spool.seek(item.offset)
            writer.add(entry, stage.spool)
        else:
            writer.add(entry)
    writer.close()


def _nest(stage: _Stage, rule: Nested) -> None:
    keep = Filter.of(rule.include, rule.exclude)
    chosen = {p: i for p, i in stage.items.items() if keep(p)}
    if not chosen:
        raise SpecError.at(rule.pos, f"nested: {rule.path}: the globs match nothing")
    for path in chosen:
        del stage.items[path]
    if rule.path in stage.items:
        raise SpecError.at(rule.pos, f"nested: {rule.path!r} already exists")
    with tempfile.TemporaryFile() as tmp:
        _write_tar(chosen, stage, tmp)
        size = tmp.tell()
        tmp.seek(0)
        offset = stage.spool_from(tmp, size, rule.path)
    stage.put(_Item(Entry(rule.path, Kind.FILE, 0o644, mtime=stage.epoch.generated, size=size),
                    offset, origin="nested"))


# -- build ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackageResult:
    """A built package: ``ref`` is ORG/IMAGE:TAG, ``cache_name`` its name in the cache."""

    ref: str
    cache_name: str
    digest: str
    written: Written  # the first architecture's image
    overrides: tuple[Override, ...] = ()
    platforms: tuple[Written, ...] = ()  # every architecture's image, in the order asked

    def image_for(self, arch: str) -> Written:
        """The image built for ``arch``."""
        for w in self.platforms or (self.written,):
            if w.descriptor["platform"]["architecture"] == arch:
                return w
        raise KeyError(arch)

    def __str__(self) -> str:
        return f"{self.ref}@{self.digest}"


def _created(epoch: Epoch) -> str:
    when = datetime.datetime.fromtimestamp(epoch.generated, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def build_layer(spec: PackageSpec, out: BinaryIO, *, epoch: Epoch, arch: str, debs_dir: Path,
                overrides: dict[tuple[str, str], Override]) -> None:
    """Write the package's one layer (an uncompressed canonical tar) to ``out``."""
    debian_arch = DEBIAN_ARCH.get(arch, arch)
    spec = spec.for_arch(arch)
    with tempfile.TemporaryFile() as spool:
        stage = _Stage(spool, epoch)
        for index, pin in enumerate(spec.debs):
            version, sha = pin.version, pin.sha256
            o = overrides.get((pin.name, pin.version))
            if o is not None:
                version, sha = o.version, o.sha256
            path = _deb_path(debs_dir, pin.name, version, pin.arch or debian_arch)
            _stage_deb(stage, index, pin, path, sha)
        for rootfs in (spec.rootfs, spec.arch_rootfs):
            if rootfs is not None:
                _stage_rootfs(stage, spec, rootfs)
        for rule in spec.renames:
            _rename(stage, rule)
        for nest in spec.nested:
            _nest(stage, nest)
        _write_tar(stage.items, stage, out)


def build_package(directory: Path, cache: Cache, *, epoch: Epoch, arch: str | tuple[str, ...],
                  debs_dir: Path | None, layout: Path | None,
                  log: Callable[[str], None] = _warn) -> PackageResult:
    """Build ``directory`` into the cache as ``docker.io/ORG/IMAGE:TAG`` (and ``layout``).

    One architecture: the tag names its image. Several (``("amd64", "arm64")``): an image each
    and the tag names a multi-platform index over them (sorted by platform), so a spec naming
    the package builds for any of them.
    """
    arches = (arch,) if isinstance(arch, str) else tuple(arch)
    if not arches or len(set(arches)) != len(arches):
        raise ComposerError(f"pkg build: give each architecture once (got {','.join(arches)})")
    spec = load_spec(directory)
    debs_dir = Path(debs_dir) if debs_dir is not None else default_debs_dir(directory)
    overrides = load_overrides(debs_dir) if spec.all_debs() else {}
    applied = applied_overrides(spec, overrides)
    for o in applied:
        log(f"{spec.image}: using {o.name} {o.version} instead of the pinned {o.pinned} "
            f"(from {debs_dir / OVERRIDES_FILE})")
    tag = tag_for(spec, overrides)
    images = []
    for one in arches:
        with tempfile.TemporaryFile() as layer:
            build_layer(spec, layer, epoch=epoch, arch=one, debs_dir=debs_dir,
                        overrides=overrides)
            layer.seek(0)
            images.append(write_image(cache, [layer], arch=one, config=spec.config,
                                      created=_created(epoch)))
    ref = ref_for(spec, tag)
    parsed = parse_ref(ref)
    assert isinstance(parsed, Ref)
    top = images[0].descriptor if len(images) == 1 else write_index(cache, images)
    cache.tag(parsed.cache_name, top)
    if layout is not None:
        export_layout(cache, images, Path(layout), tag, top)
    return PackageResult(ref, parsed.cache_name, top["digest"], images[0], tuple(applied),
                         tuple(images))
