"""``pkg build``: turn a package directory into a one-layer OCI image, reproducibly.

A package directory holds a ``build.yml`` (small and strict; unknown keys are errors)::

    image: kernel                  # image name (required)
    org: image-composer            # default "image-composer"; the ref is ORG/IMAGE:TAG
    debs:                          # pinned Debian packages, read from the debs dir (optional)
      - name: linux-image-6.1.0-50-amd64
        version: 6.1.176-1
        sha256: 7b5597...          # of the .deb file; checked before it is read
        arch: amd64                # optional; default: the build's architecture (Debian name)
        source: linux-signed-amd64 # optional: its source package (Debian's pool directory),
                                   # default the name; examples/fetch-debs downloads by it
        include: ["boot/vmlinuz-*", "lib/modules/*/modules.order"]   # default ["**"]
        exclude: ["usr/share/doc/**"]                                # default []
    rootfs: rootfs                 # a directory in the package copied in (optional)
    rename:                        # move one entry each (optional)
      - {from: "boot/vmlinuz-*", to: kernel}
    nested:                        # move entries into a tar inside the image (optional)
      - {path: kernel.tar, include: ["lib/**"], exclude: []}
    config:                        # the OCI image config (optional)
      Entrypoint: [...]; Cmd: [...]; Env: ["K=V"]; WorkingDir: /; User: "0"; Labels: {k: v}

Globs match whole entry paths (relative, no leading ``/``): ``*`` and ``?`` stay within one
component, ``**`` spans any number of components (``a/**`` matches ``a`` and all below it).

Order of work: each deb in turn, then ``rootfs`` (a later source replaces an earlier entry at the
same path; directories merge), then ``rename``, then ``nested``. Parent directories of kept entries
keep their metadata from the deb that had them, else are synthesised (0755, 0:0).

Determinism: every mtime is ``min(mtime, epoch.generated)`` (SOURCE_DATE_EPOCH if set, else
linuxkit's 2017 default), so the image is the same on every machine and checkout. ``rootfs``
entries are owned 0:0 and get the modes git can carry: directories 0755, files 0755 if executable
else 0644, symlinks as they are. Hard links inside a deb stay hard links; in each tar the first
path in sorted order holds the data. Nothing is extracted onto the host: file contents are spooled
to one temporary file and only offsets are kept in memory.

TAG is 40 hex digits of a sha256 over a canonical listing of the package directory (paths,
git-style modes, file hashes, symlink targets) and, if ``DEBS/overrides.yml`` replaces a pin (see
``examples/fetch-debs --allow-newer``), the replacements. It changes exactly when the inputs do;
it names the inputs, the printed digest names the bytes (which also depend on the epoch and arch).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import posixpath
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import yaml

from composer import deb
from composer.epoch import Epoch
from composer.errors import ComposerError, Position, SpecError
from composer.images.cache import Cache
from composer.images.write import Written, export_layout, write_image
from composer.refs import Ref, RefError, parse_ref
from composer.tarcanon import CanonicalTarWriter, Entry, Kind, normalise, sort_key

BUILD_FILE = "build.yml"
OVERRIDES_FILE = "overrides.yml"
DEFAULT_ORG = "image-composer"
TREE_HASH_VERSION = b"image-composer pkg tree v1\n"
CONFIG_KEYS = {"Entrypoint": "list", "Cmd": "list", "Env": "list", "WorkingDir": "str",
               "User": "str", "Labels": "map"}
DEBIAN_ARCH = {"amd64": "amd64", "arm64": "arm64", "s390x": "s390x", "riscv64": "riscv64",
               "ppc64le": "ppc64el", "386": "i386", "arm": "armhf"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# -- build.yml ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DebPin:
    name: str
    version: str
    sha256: str
    arch: str | None = None
    source: str | None = None  # the source package, where Debian's pool keeps the file
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Rename:
    source: str  # a glob that must match exactly one non-directory entry
    dest: str
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Nested:
    path: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PackageSpec:
    directory: Path
    image: str
    org: str = DEFAULT_ORG
    debs: tuple[DebPin, ...] = ()
    rootfs: str | None = None
    renames: tuple[Rename, ...] = ()
    nested: tuple[Nested, ...] = ()
    config: dict = field(default_factory=dict, hash=False)


class _Yaml:
    """Strict readers over PyYAML nodes; every problem is a SpecError at the node's position."""

    def __init__(self, file: str):
        self.file = file

    def pos(self, node: yaml.Node) -> Position:
        return Position(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: yaml.Node, message: str) -> SpecError:
        return SpecError.at(self.pos(node), message)

    def mapping(self, node: yaml.Node, what: str, required: tuple[str, ...],
                optional: tuple[str, ...] | None) -> dict[str, yaml.Node]:
        """Keys to nodes; ``optional=None`` allows any string key."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            key = self.text(key_node, f"{what} key", empty=True)
            if optional is not None and key not in required and key not in optional:
                allowed = ", ".join(sorted((*required, *optional)))
                raise self.fail(key_node, f"{what}: unknown key {key!r} (allowed: {allowed})")
            if key in out:
                raise self.fail(key_node, f"{what}: duplicate key {key!r}")
            out[key] = value
        for key in required:
            if key not in out:
                raise self.fail(node, f"{what}: missing required key {key!r}")
        return out

    def text(self, node: yaml.Node, what: str, *, empty: bool = False) -> str:
        """A scalar's text as written (so ``1.10`` stays ``1.10``, not a float)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            raise self.fail(node, f"{what} must be a string")
        if not node.value and not empty:
            raise self.fail(node, f"{what} must not be empty")
        return node.value

    def texts(self, node: yaml.Node, what: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list of strings")
        return tuple(self.text(item, f"{what} item") for item in node.value)

    def path(self, node: yaml.Node, what: str) -> str:
        raw = self.text(node, what)
        path = normalise(raw)
        if not path or ".." in raw.split("/"):
            raise self.fail(node, f"{what}: {raw!r} is not a path inside the image")
        return path


def load_spec(directory: Path) -> PackageSpec:
    """Read and validate ``DIRECTORY/build.yml``."""
    directory = Path(directory)
    path = directory / BUILD_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise ComposerError(f"{directory}: not a package directory (no {BUILD_FILE})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposerError(f"{path}: cannot read: {exc}") from None
    y = _Yaml(str(path))
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(str(path), mark.line + 1, mark.column + 1) if mark else None
        raise SpecError.at(pos, f"invalid YAML: {exc.problem or exc.context}") from None
    if root is None:
        raise SpecError.at(Position(str(path), 1, 1), f"{BUILD_FILE} is empty")
    top = y.mapping(root, BUILD_FILE, ("image",),
                    ("org", "debs", "rootfs", "rename", "nested", "config"))
    image = y.text(top["image"], "image")
    org = y.text(top["org"], "org") if "org" in top else DEFAULT_ORG
    try:
        parse_ref(f"{org}/{image}:latest")
    except RefError as exc:
        raise y.fail(top["image"], f"org/image do not form an image name: {exc}") from None
    spec = PackageSpec(directory=directory, image=image, org=org,
                       debs=_debs(y, top["debs"]) if "debs" in top else (),
                       renames=_renames(y, top["rename"]) if "rename" in top else (),
                       nested=_nested(y, top["nested"]) if "nested" in top else (),
                       config=_config(y, top["config"]) if "config" in top else {})
    if "rootfs" in top:
        rootfs = y.text(top["rootfs"], "rootfs")
        real = os.path.realpath(directory / rootfs)
        # inside the package, also after symlinks: the tag only covers the package directory
        if (normalise(rootfs) != rootfs.rstrip("/") or not os.path.isdir(real)
                or not real.startswith(os.path.realpath(directory) + os.sep)):
            raise y.fail(top["rootfs"], f"rootfs: {rootfs!r} is not a directory in the package")
        spec = replace(spec, rootfs=rootfs.rstrip("/"))
    return spec


def _list(y: _Yaml, node: yaml.Node, what: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise y.fail(node, f"{what} must be a list")
    return node.value


def _debs(y: _Yaml, node: yaml.Node) -> tuple[DebPin, ...]:
    out = []
    for i, item in enumerate(_list(y, node, "debs")):
        what = f"debs[{i}]"
        m = y.mapping(item, what, ("name", "version", "sha256"), ("arch", "source", "include",
                                                                    "exclude"))
        sha = y.text(m["sha256"], f"{what}.sha256")
        if not _HEX64.match(sha):
            raise y.fail(m["sha256"], f"{what}.sha256 must be 64 lowercase hex digits")
        out.append(DebPin(
            name=y.text(m["name"], f"{what}.name"),
            version=y.text(m["version"], f"{what}.version"),
            sha256=sha,
            arch=y.text(m["arch"], f"{what}.arch") if "arch" in m else None,
            source=y.text(m["source"], f"{what}.source") if "source" in m else None,
            include=_globs(y, m["include"], f"{what}.include") if "include" in m else ("**",),
            exclude=_globs(y, m["exclude"], f"{what}.exclude") if "exclude" in m else (),
            pos=y.pos(item)))
    return tuple(out)


def _globs(y: _Yaml, node: yaml.Node, what: str) -> tuple[str, ...]:
    globs = y.texts(node, what)
    for glob, item in zip(globs, node.value, strict=True):
        if glob.startswith("/") or ".." in glob.split("/"):
            raise y.fail(item, f"{what}: {glob!r}: globs are relative paths without '..'")
    return globs


def _renames(y: _Yaml, node: yaml.Node) -> tuple[Rename, ...]:
    out = []
    for i, item in enumerate(_list(y, node, "rename")):
        m = y.mapping(item, f"rename[{i}]", ("from", "to"), ())
        source = y.text(m["from"], f"rename[{i}].from")
        out.append(Rename(source, y.path(m["to"], f"rename[{i}].to"), y.pos(item)))
    return tuple(out)


def _nested(y: _Yaml, node: yaml.Node) -> tuple[Nested, ...]:
    out = []
    for i, item in enumerate(_list(y, node, "nested")):
        what = f"nested[{i}]"
        m = y.mapping(item, what, ("path", "include"), ("exclude",))
        out.append(Nested(y.path(m["path"], f"{what}.path"),
                          _globs(y, m["include"], f"{what}.include"),
                          _globs(y, m["exclude"], f"{what}.exclude") if "exclude" in m else (),
                          y.pos(item)))
    return tuple(out)


def _config(y: _Yaml, node: yaml.Node) -> dict:
    m = y.mapping(node, "config", (), tuple(CONFIG_KEYS))
    out: dict = {}
    for key, value in m.items():
        kind = CONFIG_KEYS[key]
        if kind == "list":
            out[key] = list(y.texts(value, f"config.{key}"))
            if key == "Env":
                for text, item in zip(out[key], value.value, strict=True):
                    if "=" not in text:
                        raise y.fail(item, f"config.Env: {text!r} is not NAME=VALUE")
        elif kind == "str":
            out[key] = y.text(value, f"config.{key}")
        else:
            labels = y.mapping(value, "config.Labels", (), None)
            out[key] = {k: y.text(v, f"config.Labels.{k}", empty=True) for k, v in labels.items()}
    return out


# -- globs ----------------------------------------------------------------------------------

def glob_regex(glob: str) -> re.Pattern[str]:
    """``*``/``?`` within one component, ``**`` across components; everything else literal."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("(?:/.*)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@dataclass(frozen=True)
class _Filter:
    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, include: tuple[str, ...], exclude: tuple[str, ...]) -> _Filter:
        return cls(tuple(map(glob_regex, include)), tuple(map(glob_regex, exclude)))

    def __call__(self, path: str) -> bool:
        return (any(p.match(path) for p in self.include)
                and not any(p.match(path) for p in self.exclude))


# -- the tag --------------------------------------------------------------------------------

def _git_mode(st: os.stat_result) -> int:
    if stat.S_ISDIR(st.st_mode):
        return 0o755
    if stat.S_ISLNK(st.st_mode):
        return 0o777
    return 0o755 if st.st_mode & stat.S_IXUSR else 0o644


def walk(root: Path) -> Iterator[tuple[str, os.stat_result, Path]]:
    """Every entry under ``root`` (not root itself) in canonical order, as (relpath, lstat, path).

    Only directories, regular files and symlinks may appear: a package is source, not a system.
    """
    def rec(directory: Path, prefix: str) -> Iterator[tuple[str, os.stat_result, Path]]:
        try:
            names = os.listdir(directory)
        except OSError as exc:
            raise ComposerError(f"{directory}: cannot list: {exc.strerror}") from None
        for name in sorted(names, key=sort_key):
            path = directory / name
            rel = f"{prefix}{name}"
            st = path.lstat()
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)
                    or stat.S_ISLNK(st.st_mode)):
                raise ComposerError(f"{path}: only files, directories and symlinks may be in "
                                    "a package directory")
            yield rel, st, path
            if stat.S_ISDIR(st.st_mode):
                yield from rec(path, rel + "/")

    yield from rec(root, "")


def _file_sha256(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return deb.file_sha256(fh)
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None


def tree_hash(directory: Path) -> str:
    """sha256 (hex) over a canonical listing of the package directory."""
    digest = hashlib.sha256(TREE_HASH_VERSION)
    for rel, st, path in walk(Path(directory)):
        if stat.S_ISDIR(st.st_mode):
            kind, payload = "d", ""
        elif stat.S_ISLNK(st.st_mode):
            kind, payload = "l", os.readlink(path)
        else:
            kind, payload = "f", _file_sha256(path)
        line = f"{kind} {_git_mode(st):o} {rel}\0{payload}\n"
        digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


@dataclass(frozen=True)
class Override:
    """A pin replaced by ``fetch-debs --allow-newer`` because Debian no longer serves it."""

    name: str
    pinned: str
    version: str
    sha256: str


def load_overrides(debs_dir: Path) -> dict[tuple[str, str], Override]:
    """``DEBS/overrides.yml`` keyed by (name, pinned version); empty if there is none."""
    path = Path(debs_dir) / OVERRIDES_FILE
    if not path.is_file():
        return {}
    y = _Yaml(str(path))
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise SpecError.at(None, f"{path}: invalid YAML: {exc.problem}") from None
    if root is None:
        return {}
    top = y.mapping(root, OVERRIDES_FILE, ("overrides",), ())
    out = {}
    for i, item in enumerate(_list(y, top["overrides"], "overrides")):
        m = y.mapping(item, f"overrides[{i}]", ("name", "pinned", "version", "sha256"), ())
        o = Override(*(y.text(m[k], f"overrides[{i}].{k}")
                       for k in ("name", "pinned", "version", "sha256")))
        if not _HEX64.match(o.sha256):
            raise y.fail(m["sha256"], f"overrides[{i}].sha256 must be 64 lowercase hex digits")
        out[(o.name, o.pinned)] = o
    return out


def default_debs_dir(directory: Path) -> Path:
    """``DIRECTORY/../../debs``: examples/packages/NAME -> examples/debs."""
    return Path(os.path.abspath(directory)).parent.parent / "debs"


def _applied(spec: PackageSpec, overrides: dict[tuple[str, str], Override]) -> list[Override]:
    return [overrides[(p.name, p.version)] for p in spec.debs if (p.name, p.version) in overrides]


def _tag(spec: PackageSpec, overrides: dict[tuple[str, str], Override]) -> str:
    digest = hashlib.sha256(tree_hash(spec.directory).encode())
    for o in _applied(spec, overrides):
        digest.update(f"\0override {o.name} {o.pinned} {o.version} {o.sha256}".encode())
    return digest.hexdigest()[:40]


def _ref(spec: PackageSpec, tag: str) -> str:
    return f"{spec.org}/{spec.image}:{tag}"


def package_ref(directory: Path) -> str:
    """``ORG/IMAGE:TAG`` of a package (using the default debs dir's overrides, if any)."""
    spec = load_spec(directory)
    return _ref(spec, _tag(spec, load_overrides(default_debs_dir(directory))))


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

    def spool_from(self, reader: BinaryIO, size: int, what: str) -> int:
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
    keep = _Filter.of(pin.include, pin.exclude)
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


def _stage_rootfs(stage: _Stage, spec: PackageSpec) -> None:
    root = spec.directory / spec.rootfs  # type: ignore[operator]
    t = stage.epoch.generated
    for rel, st, path in walk(root):
        origin = f"{spec.rootfs}/"
        mode = _git_mode(st)
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
    keep = _Filter.of(rule.include, rule.exclude)
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
    written: Written
    overrides: tuple[Override, ...] = ()

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
    with tempfile.TemporaryFile() as spool:
        stage = _Stage(spool, epoch)
        for index, pin in enumerate(spec.debs):
            version, sha = pin.version, pin.sha256
            o = overrides.get((pin.name, pin.version))
            if o is not None:
                version, sha = o.version, o.sha256
            path = _deb_path(debs_dir, pin.name, version, pin.arch or debian_arch)
            _stage_deb(stage, index, pin, path, sha)
        if spec.rootfs is not None:
            _stage_rootfs(stage, spec)
        for rule in spec.renames:
            _rename(stage, rule)
        for rule in spec.nested:
            _nest(stage, rule)
        _write_tar(stage.items, stage, out)


def build_package(directory: Path, cache: Cache, *, epoch: Epoch, arch: str,
                  debs_dir: Path | None, layout: Path | None,
                  log: Callable[[str], None] = _warn) -> PackageResult:
    """Build ``directory`` into the cache as ``docker.io/ORG/IMAGE:TAG`` (and ``layout``)."""
    spec = load_spec(directory)
    debs_dir = Path(debs_dir) if debs_dir is not None else default_debs_dir(directory)
    overrides = load_overrides(debs_dir) if spec.debs else {}
    applied = _applied(spec, overrides)
    for o in applied:
        log(f"{spec.image}: using {o.name} {o.version} instead of the pinned {o.pinned} "
            f"(from {debs_dir / OVERRIDES_FILE})")
    tag = _tag(spec, overrides)
    with tempfile.TemporaryFile() as layer:
        build_layer(spec, layer, epoch=epoch, arch=arch, debs_dir=debs_dir, overrides=overrides)
        layer.seek(0)
        written = write_image(cache, [layer], arch=arch, config=spec.config,
                              created=_created(epoch))
    ref = _ref(spec, tag)
    parsed = parse_ref(ref)
    assert isinstance(parsed, Ref)
    cache.tag(parsed.cache_name, written.descriptor)
    if layout is not None:
        export_layout(cache, written, Path(layout), tag)
    return PackageResult(ref, parsed.cache_name, written.digest, written, tuple(applied))

