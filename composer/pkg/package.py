"""A package directory: its ``build.yml``, its pinned debs and its tag (no image is built here).

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
    arches:                        # per-architecture parts (optional), added to the above
      arm64:                       # OCI arch name; its pins default to that Debian arch
        debs: [...]                # as above
        rootfs: rootfs-arm64       # copied in after ``rootfs``
        rename: [...]              # as below, after the top-level ones
    rename:                        # move one entry each (optional)
      - {from: "boot/vmlinuz-*", to: kernel}
    nested:                        # move entries into a tar inside the image (optional)
      - {path: kernel.tar, include: ["lib/**"], exclude: []}
    config:                        # the OCI image config (optional)
      Entrypoint: [...]; Cmd: [...]; Env: ["K=V"]; WorkingDir: /; User: "0"; Labels: {k: v}

Globs match whole entry paths (relative, no leading ``/``): ``*`` and ``?`` stay within one
component, ``**`` spans any number of components (``a/**`` matches ``a`` and all below it).

TAG is 40 hex digits of a sha256 over a canonical listing of the package directory (paths,
git-style modes, file hashes, symlink targets) and, if ``DEBS/overrides.yml`` replaces a pin (see
``examples/fetch-debs --allow-newer``), the replacements. It changes exactly when the inputs do;
it names the inputs, the printed digest names the bytes (which also depend on the epoch and arch).

With ``arches``, a package builds only for the architectures it lists (:meth:`PackageSpec.for_arch`
is the package as one architecture sees it); without, for any (its pins name the files).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from composer.debian import deb
from composer.errors import ComposerError, Position, SpecError
from composer.oci.refs import RefError, parse_ref
from composer.tar.canon import normalise, sort_key

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
    arch_rootfs: str | None = None  # the chosen architecture's rootfs (after for_arch)
    arches: dict[str, ArchPart] = field(default_factory=dict, hash=False)

    def all_debs(self) -> tuple[DebPin, ...]:
        """Every pin, of every architecture (what fetch-debs downloads)."""
        return self.debs + tuple(p for part in self.arches.values() for p in part.debs)

    def for_arch(self, arch: str) -> PackageSpec:
        """The package as a build for ``arch`` (OCI name) sees it: its part added."""
        if not self.arches:
            return self
        part = self.arches.get(arch)
        if part is None:
            raise ComposerError(f"{self.directory}: package {self.image} is not made for {arch} "
                                f"(its build.yml has arches: {', '.join(sorted(self.arches))})")
        return replace(self, debs=self.debs + part.debs, arch_rootfs=part.rootfs,
                       renames=self.renames + part.renames, arches={})


@dataclass(frozen=True)
class ArchPart:
    """One architecture's pins, rootfs directory and renames (``arches.ARCH`` in build.yml;
    its renames run after the top-level ones)."""

    debs: tuple[DebPin, ...] = ()
    rootfs: str | None = None
    renames: tuple[Rename, ...] = ()


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
                    ("org", "debs", "rootfs", "rename", "nested", "config", "arches"))
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
        spec = replace(spec, rootfs=_rootfs(y, top["rootfs"], directory, "rootfs"))
    if "arches" in top:
        spec = replace(spec, arches=_arches(y, top["arches"], directory))
    return spec


def _rootfs(y: _Yaml, node: yaml.Node, directory: Path, what: str) -> str:
    rootfs = y.text(node, what)
    real = os.path.realpath(directory / rootfs)
    # inside the package, also after symlinks: the tag only covers the package directory
    if (normalise(rootfs) != rootfs.rstrip("/") or not os.path.isdir(real)
            or not real.startswith(os.path.realpath(directory) + os.sep)):
        raise y.fail(node, f"{what}: {rootfs!r} is not a directory in the package")
    return rootfs.rstrip("/")


def _arches(y: _Yaml, node: yaml.Node, directory: Path) -> dict[str, ArchPart]:
    out = {}
    for arch, value in y.mapping(node, "arches", (), None).items():
        if arch not in DEBIAN_ARCH:
            raise y.fail(value, f"arches: unknown architecture {arch!r} (known: "
                         f"{', '.join(sorted(DEBIAN_ARCH))})")
        m = y.mapping(value, f"arches.{arch}", (), ("debs", "rootfs", "rename"))
        debs = _debs(y, m["debs"], f"arches.{arch}.debs") if "debs" in m else ()
        out[arch] = ArchPart(
            debs=tuple(p if p.arch else replace(p, arch=DEBIAN_ARCH[arch]) for p in debs),
            rootfs=_rootfs(y, m["rootfs"], directory, f"arches.{arch}.rootfs")
            if "rootfs" in m else None,
            renames=_renames(y, m["rename"], f"arches.{arch}.rename") if "rename" in m else ())
    return out


def _list(y: _Yaml, node: yaml.Node, what: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise y.fail(node, f"{what} must be a list")
    return node.value


def _debs(y: _Yaml, node: yaml.Node, where: str = "debs") -> tuple[DebPin, ...]:
    out = []
    for i, item in enumerate(_list(y, node, where)):
        what = f"{where}[{i}]"
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


def _renames(y: _Yaml, node: yaml.Node, where: str = "rename") -> tuple[Rename, ...]:
    out = []
    for i, item in enumerate(_list(y, node, where)):
        m = y.mapping(item, f"{where}[{i}]", ("from", "to"), ())
        source = y.text(m["from"], f"{where}[{i}].from")
        out.append(Rename(source, y.path(m["to"], f"{where}[{i}].to"), y.pos(item)))
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
class Filter:
    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, include: tuple[str, ...], exclude: tuple[str, ...]) -> Filter:
        return cls(tuple(map(glob_regex, include)), tuple(map(glob_regex, exclude)))

    def __call__(self, path: str) -> bool:
        return (any(p.match(path) for p in self.include)
                and not any(p.match(path) for p in self.exclude))


# -- the tag --------------------------------------------------------------------------------

def git_mode(st: os.stat_result) -> int:
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
        line = f"{kind} {git_mode(st):o} {rel}\0{payload}\n"
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


def applied_overrides(spec: PackageSpec, overrides: dict[tuple[str, str], Override]
                      ) -> list[Override]:
    return [overrides[(p.name, p.version)] for p in spec.all_debs()
            if (p.name, p.version) in overrides]


def tag_for(spec: PackageSpec, overrides: dict[tuple[str, str], Override]) -> str:
    digest = hashlib.sha256(tree_hash(spec.directory).encode())
    for o in applied_overrides(spec, overrides):
        digest.update(f"\0override {o.name} {o.pinned} {o.version} {o.sha256}".encode())
    return digest.hexdigest()[:40]


def ref_for(spec: PackageSpec, tag: str) -> str:
    return f"{spec.org}/{spec.image}:{tag}"


def package_ref(directory: Path) -> str:
    """``ORG/IMAGE:TAG`` of a package (using the default debs dir's overrides, if any)."""
    spec = load_spec(directory)
    return ref_for(spec, tag_for(spec, load_overrides(default_debs_dir(directory))))
