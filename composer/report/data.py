"""The data a report page is made of, as plain values: no I/O, no HTML.

Every rootfs entry becomes an :class:`Item` that says which *section* of the image it belongs to
(``kernel``, ``init``, ``onboot/NAME``, ``services/NAME``, ``onshutdown/NAME``,
``volumes/NAME``, ``files``), which source image and which layer of it. The section and source
come from the entry's provenance records through :func:`composer.tar.check.origin`, the same
reading ``explain`` gives one path at a time; the layer from a map of image paths to layers
(:mod:`composer.report.scan` builds it from the cache).

Sizes are the bytes of regular files (what the tar stores as content): hard links, directories,
symlinks and devices count as entries, not bytes, so the sections add up to the tar's file bytes.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from composer.tar.check import UNKNOWN, Origin
from composer.tar.sections import (
    container_dir,
    section_names,
    section_of,
)

LARGEST = 25
GENERATED = None  # the layer of an entry no layer holds: made by image-composer

LayerOf = Callable[[str, str], "int | None"]  # (source, image-relative path) -> layer number


@dataclass(frozen=True, slots=True)
class Item:
    """One rootfs entry, reduced to what the report shows and compares."""

    path: str
    kind: str  # file, dir, symlink, hardlink, char, block, fifo
    size: int  # content bytes (0 unless kind == "file")
    mode: int
    uid: int
    gid: int
    link: str
    sha256: str | None  # of the content (files only)
    section: str
    source: str  # image ref, or linuxkit.files / linuxkit.volumes / empty
    layer: int | None  # which layer of ``source`` holds it; None: generated; -1: unknown
    rel: str  # the path inside its section (below containers/SECTION/NAME/ for containers)


# -- attribution -------------------------------------------------------------------------------
def relative(path: str, section: str) -> str:
    """The path inside its section: below the bundle directory for containers."""
    found = container_dir(path)
    if found is not None and "/" in section and section.split("/", 1)[0] == found[0]:
        return found[2]
    return path


@dataclass(frozen=True)
class KernelNames:
    """Where the kernel image's files are (the spec's ``binary``, ``tar`` and ``ucode``)."""

    binary: str = "kernel"
    tar: str | None = "kernel.tar"
    ucode: str | None = None


def image_path(item_path: str, section: str, rel: str, kernel: KernelNames) -> str | None:
    """The path in its source image that a rootfs entry was taken from, if any."""
    if section == "kernel":
        if item_path == "boot/kernel":
            return kernel.binary.lstrip("/")
        if item_path == "boot/ucode.cpio":
            return kernel.ucode.lstrip("/") if kernel.ucode else None
        if item_path in ("boot", "boot/cmdline") or kernel.tar is None:
            return None
        return kernel.tar.lstrip("/")  # unpacked from the modules tar
    if "/" in section:  # a container bundle: its image is in lower/ or rootfs/
        head, _, rest = rel.partition("/")
        return rest if head in ("lower", "rootfs") and rest else None
    if section == "init":
        return item_path
    return None


def attribute(members: Iterable[tuple[str, dict[str, Any]]], layer_of: LayerOf,
              kernel: KernelNames = KernelNames()) -> list[Item]:
    """Items for the (path, member) pairs :func:`composer.repro.diff.tar_members` yields, in
    order."""
    from composer.tar.check import LOCATION_RECORD, SOURCE_RECORD, origin

    origins: dict[tuple[str | None, str | None], Origin] = {}  # one object per spec entry
    raw: list[tuple[str, tuple, Origin]] = []  # no member dict is kept: they are large
    for path, m in members:
        pax = m.get("pax") or {}
        key = (pax.get(SOURCE_RECORD), pax.get(LOCATION_RECORD))
        where = origins.get(key)
        if where is None:
            where = origins[key] = origin(pax)
        kind = sys.intern(m["type"])
        raw.append((path, (kind, m["size"] if kind == "file" else 0, int(m["mode"], 8),
                           m["uid"], m["gid"], m.get("link", ""),
                           m.get("sha256") if kind == "file" else None), where))
    # an implicit parent (made while putting a file below it) has no provenance of its own:
    # it belongs where its first child does (in tar order, the next entry)
    for i in range(len(raw) - 2, -1, -1):
        path, fields, where = raw[i]
        if where.location == UNKNOWN and raw[i + 1][0].startswith(path + "/"):
            raw[i] = (path, fields, raw[i + 1][2])
    known = {path: where for path, _, where in raw}  # an empty one: where its parent is
    for i, (path, fields, where) in enumerate(raw):
        if where.location == UNKNOWN and "/" in path:
            known[path] = known.get(path.rpartition("/")[0], where)
            raw[i] = (path, fields, known[path])
    names = section_names((path, where) for path, _, where in raw)
    out = []
    sections: dict[Origin, str] = {}
    for path, fields, where in raw:
        section = sections.get(where)
        if section is None:
            section = sections[where] = section_of(where, names)
        rel = relative(path, section)
        inner = image_path(path, section, rel, kernel)
        layer = layer_of(where.source, inner) if inner is not None else GENERATED
        kind, size, mode, uid, gid, link, sha256 = fields
        out.append(Item(path, kind, size, mode, uid, gid, link, sha256, section, where.source,
                        layer, rel))
    return out


# -- summaries ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SectionTotal:
    section: str
    bytes: int
    files: int
    entries: int
    sources: tuple[str, ...]


def section_totals(items: Iterable[Item]) -> list[SectionTotal]:
    """Per section: file bytes, regular files, entries and source images; biggest first."""
    acc: dict[str, list] = defaultdict(lambda: [0, 0, 0, set()])
    for it in items:
        row = acc[it.section]
        row[0] += it.size
        row[1] += it.kind == "file"
        row[2] += 1
        row[3].add(it.source)
    return sorted((SectionTotal(s, b, f, e, tuple(sorted(src))) for s, (b, f, e, src)
                   in acc.items()), key=lambda t: (-t.bytes, t.section))


def largest(items: Iterable[Item], n: int = LARGEST) -> list[Item]:
    import heapq

    return heapq.nsmallest(n, (it for it in items if it.kind == "file"),
                           key=lambda it: (-it.size, it.path))


@dataclass(frozen=True)
class SharedContent:
    """One content (sha256) stored as separate files in several sections."""

    sha256: str
    size: int
    paths: tuple[tuple[str, str], ...]  # (section, path), sorted

    @property
    def sections(self) -> tuple[str, ...]:
        return tuple(sorted({s for s, _ in self.paths}))

    @property
    def reclaimable(self) -> int:
        """Bytes saved if each section after the first shared one copy."""
        return self.size * (len(self.sections) - 1)


def shared_content(items: Iterable[Item]) -> list[SharedContent]:
    """Non-empty files whose content appears in more than one section, most bytes first."""
    by_digest: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if it.kind == "file" and it.size and it.sha256:
            by_digest[it.sha256].append(it)
    out = [SharedContent(digest, group[0].size, tuple(sorted((i.section, i.path) for i in group)))
           for digest, group in by_digest.items() if len({i.section for i in group}) > 1]
    return sorted(out, key=lambda s: (-s.reclaimable, s.sha256))


# -- the treemap -------------------------------------------------------------------------------
NOT_IMAGES = ("linuxkit.files", "linuxkit.volumes", "empty", "(unknown)")


def group_label(source: str, layer: int | None) -> str:
    """"layer N · IMAGE" ("generated" for what no layer holds); a source that is not an
    image (``files:`` entries, volume directories) by its name alone."""
    if source in NOT_IMAGES:
        return source
    word = "generated" if layer is None else "layer ?" if layer < 0 else f"layer {layer}"
    return f"{word} \u00b7 {source}"


def treemap_data(items: Iterable[Item], marks: dict[str, str] | None = None) -> dict[str, Any]:
    """Compact JSON for the page's treemap: section -> source and layer -> directories -> files.

    ``e`` is a flat list of (group, directory, name, bytes, mark) per non-directory entry;
    directories are implied by their files' paths (and counted by the page). ``mark`` is 0, or
    1/2 for added/changed in a diff report.
    """
    sections: dict[str, int] = {}
    groups: dict[tuple[str, str], int] = {}
    dirs: dict[str, int] = {}
    flat: list[Any] = []
    code = {"added": 1, "changed": 2}
    for it in items:
        if it.kind == "dir":
            continue
        sections.setdefault(it.section, len(sections))
        grp = groups.setdefault((it.section, group_label(it.source, it.layer)), len(groups))
        head, _, base = it.rel.rpartition("/")
        flat += [grp, dirs.setdefault(head, len(dirs)), base, it.size,
                 code.get((marks or {}).get(it.path, ""), 0)]
    return {"sections": list(sections), "groups": [[sections[s], label] for s, label in groups],
            "dirs": list(dirs), "e": flat}


# -- the record ----------------------------------------------------------------------------
def packages_by_source(spdx: dict[str, Any] | None, sections: dict[str, str]
                       ) -> list[tuple[str, list[dict[str, str]]]]:
    """The SBOM's packages grouped by the section their database is in (``sourceInfo``)."""
    if not spdx:
        return []
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for pkg in spdx.get("packages", []):
        info = str(pkg.get("sourceInfo", ""))
        kind, sep, where = info.partition(" database in ")
        if not sep:
            continue
        section = sections.get(where.strip("/"), "init" if where == "/" else where)
        purl = next((r.get("referenceLocator", "") for r in pkg.get("externalRefs", [])
                     if r.get("referenceType") == "purl"), "")
        groups[section].append({"name": str(pkg.get("name", "")),
                                "version": str(pkg.get("versionInfo", "")), "type": kind,
                                "purl": purl})
    return sorted((s, sorted(p, key=lambda x: x["name"])) for s, p in groups.items())


def database_sections(items: Iterable[Item]) -> dict[str, str]:
    """The directory (``sourceInfo`` of an SBOM package) -> the section it belongs to."""
    from composer.rootfs.packages import APK_INSTALLED, DPKG_STATUS

    out = {}
    for it in items:
        for db in (DPKG_STATUS, APK_INSTALLED):
            if it.path == db or it.path.endswith("/" + db):
                out[it.path[: -len(db)].rstrip("/")] = it.section
    return out


@dataclass(frozen=True)
class Input:
    kind: str  # image, file, spec, epoch, option
    name: str
    digest: str
    detail: str = ""


def inputs(record: dict[str, Any]) -> list[Input]:
    """Every pinned input the record names: images, host files, spec files, options."""
    out = [Input("image", str(i.get("ref")), str(i.get("digest")),
                 " ".join(x for x in (str(i.get("name") or ""),
                                      f"index {i['index_digest']}" if i.get("index_digest")
                                      else "") if x))
           for i in record.get("images", [])]
    out += [Input("file", str(f.get("path")), f"sha256:{f.get('sha256')}",
                  f"{f.get('size')} bytes") for f in record.get("files", [])]
    out += [Input("spec", str(s.get("name")), f"sha256:{s.get('sha256')}")
            for s in record.get("specs", [])]
    for role, digest in sorted((record.get("options") or {}).get("bootloaders", {}).items()):
        out.append(Input("bootloader", role, str(digest)))
    build = record.get("build", {})
    out.append(Input("epoch", "SOURCE_DATE_EPOCH", str(build.get("source_date_epoch")),
                     "None: generated entries use the fixed linuxkit time"
                     if build.get("source_date_epoch") is None else ""))
    return out


def tools(record: dict[str, Any]) -> list[tuple[str, str]]:
    composer = record.get("composer", {})
    out = [("image-composer", str(composer.get("version")))]
    out += [(k, str(v)) for k, v in sorted((composer.get("libraries") or {}).items())]
    out.append(("compressor", str(record.get("build", {}).get("compressor"))))
    return out


# -- two builds ------------------------------------------------------------------------------
FIELDS = (("type", "kind"), ("content", "sha256"), ("content", "size"), ("mode", "mode"),
          ("owner", "uid"), ("owner", "gid"), ("link", "link"))


@dataclass(frozen=True)
class Change:
    path: str
    change: str  # added, removed, changed
    what: tuple[str, ...]  # for changed: type, content, mode, owner, link
    section: str
    source: str
    a_size: int
    b_size: int

    @property
    def delta(self) -> int:
        return self.b_size - self.a_size


@dataclass(frozen=True)
class TreeDiff:
    changes: tuple[Change, ...]
    gained: int  # bytes of added files and of files that grew
    lost: int  # bytes of removed files and of files that shrank
    groups: tuple[tuple[str, str, tuple[Change, ...]], ...] = field(default=())

    def count(self, change: str) -> int:
        return sum(c.change == change for c in self.changes)

    def marks(self) -> dict[str, str]:
        return {c.path: c.change for c in self.changes if c.change != "removed"}


def diff_items(a: Iterable[Item], b: Iterable[Item]) -> TreeDiff:
    """Paths added, removed and changed from A to B (mtime and provenance are not changes:
    the first follows the epoch, the second is what the report groups by)."""
    da, db = {it.path: it for it in a}, {it.path: it for it in b}
    changes = []
    for path in sorted(da.keys() | db.keys()):
        x, y = da.get(path), db.get(path)
        if x is None:
            assert y is not None
            changes.append(Change(path, "added", (), y.section, y.source, 0, y.size))
        elif y is None:
            changes.append(Change(path, "removed", (), x.section, x.source, x.size, 0))
        else:
            what = tuple(dict.fromkeys(label for label, attr in FIELDS
                                       if getattr(x, attr) != getattr(y, attr)))
            if what:
                changes.append(Change(path, "changed", what, y.section, y.source, x.size,
                                      y.size))
    gained = sum(max(c.delta, 0) for c in changes)
    lost = sum(max(-c.delta, 0) for c in changes)
    grouped: dict[tuple[str, str], list[Change]] = defaultdict(list)
    for c in changes:
        grouped[(c.section, c.source)].append(c)
    return TreeDiff(tuple(changes), gained, lost,
                    tuple((s, src, tuple(cs)) for (s, src), cs in sorted(grouped.items())))


def changed_inputs(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, in A, in B) for every recorded input that differs: image digests by spec ref,
    host files and spec files by sha256, the epoch, options and tool versions."""
    out: list[tuple[str, str, str]] = []

    def compare(kind: str, xs: dict[str, str], ys: dict[str, str]) -> None:
        for key in sorted(xs.keys() | ys.keys()):
            if xs.get(key) != ys.get(key):
                out.append((f"{kind} {key}", xs.get(key, "(none)"), ys.get(key, "(none)")))

    compare("image", {str(i["ref"]): str(i["digest"]) for i in a.get("images", [])},
            {str(i["ref"]): str(i["digest"]) for i in b.get("images", [])})
    compare("file", {str(f["path"]): str(f["sha256"]) for f in a.get("files", [])},
            {str(f["path"]): str(f["sha256"]) for f in b.get("files", [])})
    compare("spec", {str(s["name"]): str(s["sha256"]) for s in a.get("specs", [])},
            {str(s["name"]): str(s["sha256"]) for s in b.get("specs", [])})
    compare("tool", dict(tools(a)), dict(tools(b)))
    from composer.repro.diff import diff_json

    for key in ("build", "options"):
        for d in diff_json(a.get(key), b.get(key), key):
            out.append((d.where, _text(d.a), _text(d.b)))
    return out


def _text(value: Any) -> str:
    return "(none)" if value is None else str(value)


def outputs_side_by_side(a: dict[str, Any], b: dict[str, Any]
                         ) -> list[tuple[str, dict | None, dict | None]]:
    oa = {o["name"]: o for o in a.get("outputs", [])}
    ob = {o["name"]: o for o in b.get("outputs", [])}
    # outputs are named after the build: pair NAME-x with NAME'-x when the names differ
    na, nb = a.get("build", {}).get("name", ""), b.get("build", {}).get("name", "")

    def rename(n: str) -> str:
        return nb + n[len(na):] if na and n.startswith(na) else n

    out = []
    for name in sorted({rename(n) for n in oa} | set(ob)):
        x = next((o for n, o in oa.items() if rename(n) == name), None)
        out.append((name, x, ob.get(name)))
    return out
