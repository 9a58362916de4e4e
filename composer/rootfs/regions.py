"""Regions of the rootfs tar reused byte for byte, so a rebuild costs what changed.

The canon sorts by path, so everything below one directory is one contiguous byte range. Two
kinds of directory are regions: a container's image directory (``containers/SECTION/NAME/lower``
or ``.../rootfs``), and each top-level directory an init image puts at the root (``usr``, say).
A region's bytes are a function of nothing but the image (by digest), its ref (the provenance
records), the spec location, the directory, the epoch and the phase-one code: :func:`region_key`
hashes exactly those. After a rootfs is written, each region that is *isolated* (every entry
below the directory came from that image, and no hard link crosses its edge) is recorded under
``CACHE/rootfs/regions/KEY.json``: which stored rootfs tar holds it, at which bytes, and what
the rest of phase one needs to know of it without reading it (the records of its first child,
for an implicit directory; its paths and kinds, for a container's read-only mount-point check;
its packages, for the SBOM). For an init image, what of its filesystem is outside its regions
(the residue: top-level entries, and directories something else also wrote to, like ``etc``
with a ``files:`` entry) is kept too, with its content, in ``KEY.residue.json`` and ``.data``.

A later build whose image has the same keys overlays the residue (an init image) or nothing (a
container) instead of reading any layer, and splices the ranges from the earlier tar
(:meth:`composer.tar.canon.CanonicalTarWriter.splice`). The earlier tar is trusted only as far as
:func:`composer.rootfs.memo.lookup` verifies it and the residue only as far as its recorded
digest, so a tampered entry is never reused (the pointer files themselves are trusted as
``index.json`` is). If anything else put a path below a spliced directory (a ``files:`` entry,
an earlier section, a symlink leading there), the build flattens everything again: spliced and
from-scratch outputs are the same bytes by construction, and tests compare them.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from composer import canonjson
from composer.epoch import Epoch
from composer.images.model import Image
from composer.rootfs import memo
from composer.rootfs.tree import Node, Span, Tree
from composer.spec.model import Spec
from composer.streams.digest import sha256_file
from composer.tar.canon import Entry, Kind, sort_key

SCHEMA = "image-composer/rootfs-region/v1"


def region_key(image: Image, location: str, lower: str, epoch: Epoch) -> str:
    document = {"schema": SCHEMA, "code": memo.code_fingerprint(), "image": image.digest,
                "source": image.ref, "location": location, "lower": lower,
                "source_date_epoch": epoch.source_date_epoch}
    return hashlib.sha256(canonjson.compact(document)).hexdigest()


def _pointer(cache_root: Path, key: str) -> Path:
    return memo.directory(cache_root) / "regions" / f"{key}.json"


@dataclass(frozen=True)
class Region:
    """A recorded region: bytes ``start``..``end`` of the verified rootfs ``tar``."""

    key: str
    lower: str
    tar: Path
    start: int
    end: int
    count: int
    last: str
    shadow: tuple[tuple[str, str, str], ...]  # (path below lower, dir|symlink|other, target)
    packages: tuple[dict[str, str], ...]
    head: tuple[str, str] = ("", "")  # records of the first direct child that has them


def find(cache_root: Path, key: str, lower: str) -> Region | None:
    try:
        info = canonjson.loads(_pointer(cache_root, key).read_bytes())
        stored = memo.lookup(cache_root, info["rootfs"])
        if stored is None or stored.sha256 != info["sha256"] or info["lower"] != lower \
                or not info["last"].startswith(lower + "/") or info["end"] > stored.size:
            return None
        return Region(key, lower, stored.path, info["start"], info["end"], info["count"],
                      info["last"], tuple(tuple(s) for s in info["shadow"]),
                      tuple(info["packages"]), tuple(info["head"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class Found:
    """A region as written into the current tar (offsets in it)."""

    lower: str
    key: str
    start: int
    end: int = 0
    count: int = 0
    last: str = ""
    shadow: list[tuple[str, str, str]] = field(default_factory=list)
    isolated: bool = True
    head: tuple[str, str] = ("", "")


class Plan:
    """Which container overlays a build made or spliced, and where they went in its tar."""

    def __init__(self, cache_root: Path, epoch: Epoch, enabled: bool = True):
        self.cache_root, self.epoch, self.enabled = Path(cache_root), epoch, enabled
        self.overlays: dict[str, tuple[str, str, str]] = {}  # lower -> (key, location, source)
        self.spliced: dict[str, Region] = {}
        self.conflict = False
        self.found: dict[str, Found] = {}
        self.bad: set[str] = set()  # regions a hard link crosses the edge of
        self.shared: set[str] = set()  # top-level directories two init images write to
        self.init_fs: dict[str, tuple[Image, Tree]] = {}  # location -> init image overlaid

    def reuse(self, image: Image, location: str, lower: str) -> Region | None:
        """Called where the container's image would be overlaid at ``lower``: the recorded
        region to splice instead, if any."""
        key = region_key(image, location, lower, self.epoch)
        if lower in self.overlays:
            self.conflict = True  # two overlays in one directory: never splice
        self.overlays[lower] = (key, location, image.ref)
        if not self.enabled:
            return None
        region = find(self.cache_root, key, lower)
        if region is not None:
            self.spliced[lower] = region
        return region

    def init_overlaid(self, image: Image, location: str, fs: Tree) -> None:
        """An init image was overlaid at the root from its layers: each of its top-level
        directories is a region candidate (kept apart by the canon's path order)."""
        self.init_fs[location] = (image, fs)
        for top in sorted(fs.children.get("", ())):
            node = fs.nodes[top]
            if node.entry.kind is not Kind.DIR or top == "containers":
                continue
            if top in self.overlays or top in self.shared:
                self.shared.add(top)
                self.overlays.pop(top, None)
                continue
            self.overlays[top] = (region_key(image, location, top, self.epoch), location,
                                  image.ref)

    def init_residue(self, image: Image, location: str, root: Tree) -> Tree | None:
        """An init image's filesystem without its recorded regions (those are spliced), from
        the residue an earlier build kept; None when it cannot stand in for the whole."""
        if not self.enabled:
            return None
        key = region_key(image, location, "", self.epoch)
        try:
            info = canonjson.loads(_pointer(self.cache_root, key + ".residue").read_bytes())
            data = _pointer(self.cache_root, key + ".residue").with_suffix(".data")
            if info["data"] != sha256_file(data)[0]:
                return None
            found = {}
            for top in info["regions"]:
                if top in self.overlays or top in self.shared:
                    return None
                old = root.get(top)
                if root.children.get(top) or (old is not None and old.entry.kind is not Kind.DIR):
                    return None  # something below it already: an overlay would mix with it
                region = find(self.cache_root, region_key(image, location, top, self.epoch),
                              top)
                if region is None:
                    return None
                found[top] = region
            fs = _residue_tree(info, data)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        for top, region in found.items():
            self.overlays[top] = (region.key, location, image.ref)
            self.spliced[top] = region
        return fs

    def fill(self, tree: Tree) -> None:
        """A spliced directory the tree made implicitly takes the records of its first child,
        as :func:`composer.rootfs.assemble._fill_provenance` would have given it."""
        for lower, region in self.spliced.items():
            node = tree.get(lower)
            if node is not None and not node.source and region.head[0]:
                node.source, node.location = region.head

    def usable(self, tree: Tree) -> bool:
        """Whether the spliced tree is what a full flatten makes: nothing else was put below
        a spliced directory, and no directory got two overlays."""
        return not self.conflict and all(
            tree.get(lower) is not None and tree.get(lower).entry.kind is Kind.DIR  # type: ignore[union-attr]
            and not tree.children.get(lower) for lower in self.spliced)

    def shadow(self, lower: str) -> Tree:
        """A spliced region's paths and kinds, without content (what the read-only
        mount-point check looks at)."""
        tree = Tree(0)
        for rel, kind, target in self.spliced[lower].shadow:
            entry = Entry("", Kind.DIR) if kind == "dir" else Entry(
                "", Kind.SYMLINK, linkname=target) if kind == "symlink" else Entry("", Kind.FILE)
            tree.nodes[f"{lower}/{rel}"] = Node(entry)
        return tree

    def likely(self, spec: Spec, images: dict[str, Image]) -> set[str]:
        """Image texts whose layers phase one will probably not read: used only by containers
        whose region is recorded (a wrong guess only costs decompressing on demand)."""
        if not self.enabled:
            return set()
        elsewhere = {v.image.text for v in spec.volumes if v.image is not None}
        for index, ref in enumerate(spec.init):
            image = images.get(ref.text)
            if image is None or not _pointer(self.cache_root, region_key(
                    image, f"init[{index}]", "", self.epoch) + ".residue").is_file():
                elsewhere.add(ref.text)
        if spec.kernel is not None:
            elsewhere.add(spec.kernel.image.text)
        spliceable: set[str] = {r.text for r in spec.init} - elsewhere
        blocked: set[str] = set(elsewhere)
        for section, containers, numbered in (("onboot", spec.onboot, True),
                                              ("onshutdown", spec.onshutdown, True),
                                              ("services", spec.services, False)):
            for index, container in enumerate(containers):
                text = container.image.text
                image = images.get(text)
                if image is None:
                    continue
                name = f"{index:03d}-{container.name}" if numbered else container.name
                hit = any(_pointer(self.cache_root, region_key(
                    image, f"{section}[{index}]", f"containers/{section}/{name}/{sub}",
                    self.epoch)).is_file() for sub in ("rootfs", "lower"))
                (spliceable if hit else blocked).add(text)
        return spliceable - blocked

    # -- while the tar is written --------------------------------------------------------
    def region_of(self, path: str) -> str | None:
        top, slash, _ = path.partition("/")
        if slash and top in self.overlays:
            return top
        parts = path.split("/", 4)
        if len(parts) >= 5 and parts[0] == "containers":
            lower = "/".join(parts[:4])
            if lower in self.overlays:
                return lower
        return None


class Recorder:
    """Follows the entries as :func:`composer.rootfs.assemble.write_tree` writes them and
    notes each overlay region's byte range and whether it is isolated."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.open: Found | None = None
        # of the open region: "LOWER/", and the location and source its entries must have
        self._below, self._location, self._source = "", "", ""

    def before(self, entry: Entry, node: Node, offset: int) -> None:
        current = self.open
        path = entry.path
        if current is not None and not path.startswith(self._below):
            self._close(offset)
            current = None
        if entry.kind is Kind.HARDLINK:
            here, there = self.plan.region_of(path), self.plan.region_of(entry.linkname)
            if here != there:
                self.plan.bad.update(r for r in (here, there) if r)
        if current is None:
            return
        current.count += 1
        current.last = path
        # (an empty implicit directory has no records: nothing below it to take them from)
        if current.isolated and (node.location not in (self._location, "")
                                 or node.source not in (self._source, "")):
            current.isolated = False
        if not current.head[0] and node.source and "/" not in path[len(self._below):]:
            current.head = (node.source, node.location)
        if not self._below.startswith("containers/"):
            return  # (the shadow serves the read-only check of containers only)
        rel = path[len(self._below):]
        kind = "dir" if entry.kind is Kind.DIR else "symlink" if entry.kind is Kind.SYMLINK \
            else "other"
        current.shadow.append((rel, kind, entry.linkname if kind == "symlink" else ""))

    def after(self, path: str, offset: int) -> None:
        """``path`` was just written, ending at ``offset``."""
        if path in self.plan.overlays and self.open is None:
            key, self._location, self._source = self.plan.overlays[path]
            self.open = Found(path, key, offset)
            self._below = path + "/"

    def spliced(self, region: Region, offset: int) -> None:
        found = self.open
        assert found is not None and found.lower == region.lower
        found.count, found.last, found.shadow = region.count, region.last, list(region.shadow)
        found.head = region.head
        self._close(offset)

    def finish(self, offset: int) -> None:
        if self.open is not None:
            self._close(offset)

    def _close(self, offset: int) -> None:
        assert self.open is not None
        self.open.end = offset
        self.plan.found[self.open.lower] = self.open
        self.open = None


def record(plan: Plan, rootfs_key: str, sha256: str, packages: list[dict[str, str]]) -> None:
    """Keep a pointer to every isolated region of the rootfs just stored (best-effort)."""
    from composer.atomic import atomic_file

    for lower, found in sorted(plan.found.items()):
        if not found.isolated or lower in plan.bad or not found.count:
            continue
        mine = [p for p in packages if p.get("location", "").startswith(lower + "/")
                or p.get("location") == lower]
        path = _pointer(plan.cache_root, found.key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as fh:
                fh.write(canonjson.compact({
                    "schema": SCHEMA, "rootfs": rootfs_key, "sha256": sha256, "lower": lower,
                    "start": found.start, "end": found.end, "count": found.count,
                    "last": found.last, "shadow": [list(s) for s in found.shadow],
                    "packages": mine, "head": list(found.head)}))
        except OSError:
            return
    for location, (image, fs) in sorted(plan.init_fs.items()):
        tops = sorted(top for top, (_k, loc, _s) in plan.overlays.items()
                      if loc == location and top in plan.found and plan.found[top].isolated
                      and top not in plan.bad and plan.found[top].count)
        if tops:
            with contextlib.suppress(OSError):
                _keep_residue(plan, image, location, fs, tops)


def _keep_residue(plan: Plan, image: Image, location: str, fs: Tree, tops: list[str]) -> None:
    """Keep what of an init image's filesystem is not in its regions: nodes (with hard-link
    groups and the implicit flag) and their content, so a later build needs no layer."""
    from composer.atomic import atomic_file
    from composer.rootfs.tree import read_content

    key = region_key(image, location, "", plan.epoch)
    meta = _pointer(plan.cache_root, key + ".residue")
    meta.parent.mkdir(parents=True, exist_ok=True)
    groups: dict[int, int] = {}
    nodes = []
    offset = 0
    with atomic_file(meta.with_suffix(".data")) as data:
        for number, path in enumerate(_outside(fs, set(tops))):
            node = fs.nodes[path]
            group = groups.setdefault(id(node), number)
            entry = node.entry
            content = None
            if group == number and entry.kind is Kind.FILE and node.content is not None:
                blob = read_content(node.content, entry.size)
                data.write(blob)
                content = [offset, len(blob)]
                offset += len(blob)
            nodes.append([path, entry.kind.value.decode(), entry.mode, entry.uid, entry.gid,
                          entry.mtime, entry.size, entry.linkname, entry.devmajor,
                          entry.devminor, [[k, v.hex()] for k, v in entry.xattrs],
                          [list(r) for r in entry.records], node.source, node.location,
                          node.implicit, group, content])
    digest = sha256_file(meta.with_suffix(".data"))[0]
    with atomic_file(meta) as fh:
        fh.write(canonjson.compact({
            "schema": SCHEMA, "data": digest, "regions": tops,
            "pointers": [region_key(image, location, top, plan.epoch) for top in tops],
            "implicit_mtime": fs.implicit_mtime, "nodes": nodes}))


def _outside(fs: Tree, tops: set[str]) -> list[str]:
    """``fs``'s paths not below any of ``tops`` (they themselves included), in path order:
    walked from the root, so the regions' own entries are never visited."""
    found: list[str] = []
    stack = [""]
    while stack:
        current = stack.pop()
        for child in fs.children.get(current, ()):
            found.append(child)
            if child not in tops:
                stack.append(child)
    return sorted(found, key=sort_key)


def _residue_tree(info: dict, data: Path) -> Tree:
    tree = Tree(info["implicit_mtime"])
    by_number: dict[int, Node] = {}
    for (path, kind, mode, uid, gid, mtime, size, linkname, devmajor, devminor, xattrs,
         records, source, location, implicit, group, content) in info["nodes"]:
        node = by_number.get(group)
        if node is None:
            entry = Entry("", Kind(kind.encode()), mode=mode, uid=uid, gid=gid, mtime=mtime,
                          size=size, linkname=linkname, devmajor=devmajor, devminor=devminor,
                          xattrs=tuple((k, bytes.fromhex(v)) for k, v in xattrs),
                          records=tuple((k, v) for k, v in records))
            span = Span(str(data), content[0], content[1]) if content is not None else None
            node = by_number[group] = Node(entry, span, source, location, implicit)
        tree.nodes[path] = node
        parent = path.rpartition("/")[0]
        tree.children.setdefault(parent, set()).add(path)
        if node.entry.kind is Kind.DIR:
            tree.children.setdefault(path, set())
    return tree
