"""Phase one: a spec plus its resolved images become the rootfs tree, then the canonical tar.

linuxkit's layout, in linuxkit's order: ``boot/kernel``, ``boot/cmdline``, ``boot/ucode.cpio`` and
the kernel's ``kernel.tar`` at ``/``; init images at ``/``; ``containers/volumes/NAME/`` volumes;
``containers/onboot/NNN-NAME/``, ``containers/onshutdown/NNN-NAME/`` and
``containers/services/NAME/`` bundles; then ``files``. A later section wins where two write the
same path. Every entry carries linuxkit's ``LINUXKIT.source``/``LINUXKIT.location`` records.

Where we deliberately differ from linuxkit (also in docs/yaml.md):

- Everything lands in one tree first, so the tar has exactly one entry per path, sorted (linuxkit
  streams sections and leaves duplicates for the unpacker, which breaks ``docker import``).
- A symlink that replaces a directory keeps that directory's contents reachable through it: an
  init image with ``lib -> usr/lib`` over the kernel's ``lib/modules`` leaves the modules at
  ``usr/lib/modules``, so ``/lib/modules`` still works (linuxkit issue 3153). Entries the image
  itself has at those paths still win.
- ``files`` create missing parent directories only; directories that exist (from an image) keep
  their mode and owner (linuxkit emits the parents again with the file's mode and owner).
- Identical images (same manifest digest) are extracted once, whatever refs name them (linuxkit:
  the same ref string).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, BinaryIO

from composer import canonjson
from composer.epoch import Epoch
from composer.errors import ComposerError
from composer.images import sources
from composer.images.cache import Cache
from composer.images.model import Image, IndexLayout
from composer.oci.media import OCI_INDEX
from composer.oci.refs import Ref, linuxkit_name, parse_ref
from composer.rootfs import bootchecks, bundle, sbom
from composer.rootfs.flatten import image_tree, nested_tar
from composer.rootfs.packages import APK_INSTALLED, MAX_DB, is_database
from composer.rootfs.tree import (
    HostFile,
    Node,
    ReadAhead,
    Span,
    Tree,
    open_content,
    read_content,
)
from composer.spec.document import spec_metadata
from composer.spec.model import File, Spec, resolve_id
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key

if TYPE_CHECKING:
    from composer.rootfs.regions import Plan

RESOLV_SYMLINK = "/run/resolvconf/resolv.conf"
EXCLUDE = ("dev/console", "dev/pts", "dev/shm", "etc/hostname", ".dockerenv", "Dockerfile")
TOUCH_DIRS = ("dev", "dev/pts", "dev/shm", "etc", "proc", "sys")
HOSTS = (b"127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\n"
         b"fe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\n"
         b"ff02::2 ip6-allrouters\n")
NO_RESOLV = b"\n# no resolv.conf configured\n"
FILES_SOURCE = "linuxkit.files"
VOLUMES_SOURCE = "linuxkit.volumes"
APK_SOURCE = "LINUXKIT.apkinit"  # linuxkit's source for the merged apk database of init images
EMPTY_SOURCE = "empty"  # linuxkit's source for the directories of a volume with no image


@dataclass(frozen=True)
class Context:
    cache: Cache
    epoch: Epoch
    images: dict[str, Image]  # spec image text -> resolved image
    #: problems that do not stop the build (composer.rootfs.bootchecks), for the caller to print
    warnings: list[str] = field(default_factory=list)
    #: container regions spliced from an earlier rootfs instead of overlaid (rootfs.regions)
    regions: Plan | None = None
    #: where linuxkit's merged SBOM goes in the rootfs ("" for none: ``--no-sbom``)
    sbom_path: str = ""
    #: (rootfs prefix, image) of each image unpacked, in linuxkit's order, for the SBOM
    unpacked: list[tuple[str, Image]] = field(default_factory=list)
    #: volume index -> the index layout of a ``format: oci`` volume
    #: (:func:`composer.images.resolve.index_layout`)
    layouts: dict[int, IndexLayout] = field(default_factory=dict)
    #: ``--decompress-kernel``: boot/kernel is the kernel file decompressed (rootfs.kernelgz)
    decompress_kernel: bool = False


def _dir(mtime: int, source: str, location: str, mode: int = 0o755) -> Node:
    return Node(Entry("", Kind.DIR, mode=mode, mtime=mtime), None, source, location)


def _file(data: bytes, mtime: int, source: str, location: str, mode: int = 0o644,
          uid: int = 0, gid: int = 0) -> Node:
    entry = Entry("", Kind.FILE, mode=mode, uid=uid, gid=gid, mtime=mtime, size=len(data))
    return Node(entry, data, source, location)


def _prefix(root: Tree, path: str, t: int, source: str, location: str) -> None:
    """linuxkit's ``tarPrefix``: each directory of ``path`` (re)written with this provenance."""
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        root.put("/".join(parts[:depth]), _dir(t, source, location))


def _source(text: str, image: Image) -> str:
    """The ``LINUXKIT.source`` of an image the spec names as ``text``: linuxkit's spelling of
    it (a domain added, no ``:latest``), so records match the spec by string; a local layout or
    archive (not linuxkit's) by our normalised name."""
    if sources.parse_source(text) is not None or not isinstance(parse_ref(text), Ref):
        return image.ref
    return linuxkit_name(text)


def _image_fs(ctx: Context, image: Image, location: str, resolv: bytes | str,
              source: str) -> Tree:
    """An image's filesystem with linuxkit's fixups (``ImageTar``): excluded paths, fixed
    hosts/resolv.conf, and the dev, etc, proc, sys directories and etc/mtab made to exist.

    As in linuxkit's output once unpacked: the directories are always (re)made 0755 root-owned
    (its "touch" list never matches an image's directory, so it re-emits them); an image's own
    etc/mtab is kept; etc/hosts and etc/resolv.conf keep the image's mode and owner but get new
    content. All of these get the generated mtime."""
    t = ctx.epoch.generated
    tree = image_tree(image, ctx.cache, implicit_mtime=t, source=source, location=location)
    for path in EXCLUDE:
        tree.remove(path)
    for path in TOUCH_DIRS:
        tree.put(path, _dir(t, source, location))
    mtab = tree.get("etc/mtab")
    tree.put("etc/mtab", Node(replace(mtab.entry, mtime=t), mtab.content, source, location)
             if mtab is not None else Node(Entry("", Kind.SYMLINK, mode=0o755, mtime=t,
                                                 linkname="/proc/mounts"), None, source,
                                           location))
    for path, data in (("etc/hosts", HOSTS), ("etc/resolv.conf", resolv)):
        old = tree.get(path)
        base = old.entry if old is not None and old.entry.kind is Kind.FILE else Entry(
            "", Kind.FILE, mode=0o644)
        if isinstance(data, str):
            entry = replace(base, kind=Kind.SYMLINK, size=0, linkname=data, mtime=t)
            tree.put(path, Node(entry, None, source, location))
        else:
            entry = replace(base, size=len(data), mtime=t)
            tree.put(path, Node(entry, data, source, location))
    return tree


def _subtree(root: Tree, path: str) -> list[tuple[str, Node]]:
    """Everything below ``path``, parents first, as (relative path, node)."""
    out: list[tuple[str, Node]] = []
    stack = [path]
    while stack:
        current = stack.pop()
        for child in root.children.get(current, ()):
            out.append((child[len(path) + 1:], root.nodes[child]))
            stack.append(child)
    return sorted(out, key=lambda item: sort_key(item[0]))


def _overlay(root: Tree, fs: Tree, prefix: str = "") -> None:
    """Apply ``fs`` onto ``root`` under ``prefix`` (like :meth:`Tree.graft`), except that a
    symlink replacing a directory keeps the directory's contents reachable through the symlink:
    they are put back under it afterwards wherever ``fs`` did not put something itself."""
    if _empty_below(root, fs, prefix):
        _copy_below(root, fs, prefix)
        return
    fresh: dict[int, Node] = {}
    displaced: list[tuple[str, list[tuple[str, Node]]]] = []
    for path in fs.sorted_paths():
        node = fs.nodes[path]
        copy = fresh.get(id(node))
        if copy is None:
            copy = Node(node.entry, node.content, node.source, node.location, node.implicit)
            fresh[id(node)] = copy
        dest = f"{prefix}/{path}" if prefix else path
        if node.entry.kind is Kind.SYMLINK:
            where = root.resolve_parent(dest)
            old = root.get(where)
            if old is not None and old.entry.kind is Kind.DIR and root.children.get(where):
                displaced.append((where, _subtree(root, where)))
        root.put(dest, copy)
    for link, entries in displaced:
        for rel, node in entries:
            if root.get(root.resolve_parent(f"{link}/{rel}")) is None:
                root.put(f"{link}/{rel}", node)


def _empty_below(root: Tree, fs: Tree, prefix: str) -> bool:
    """Whether ``root`` has nothing where ``fs`` goes: ``prefix`` an empty directory (reached
    without a symlink), or at the root, none of ``fs``'s top-level names taken. Then
    overlaying is plain copying: no put can replace, displace or follow anything."""
    if prefix:
        node = root.get(prefix)
        return node is not None and node.entry.kind is Kind.DIR and not root.children.get(
            prefix) and root.resolve_parent(f"{prefix}/x") == f"{prefix}/x"
    return not any(top in root.nodes for top in fs.children.get("", ()))


def _copy_below(root: Tree, fs: Tree, prefix: str) -> None:
    """:func:`_overlay` where :func:`_empty_below` holds: every node copied (hard-link groups
    kept as groups of fresh nodes, as :meth:`Tree.graft` does) with its children. ``fs`` is a
    tree put together by :meth:`Tree.put`: every path's parent is a directory in it, and no
    symlink is among any path's parents."""
    fresh: dict[int, Node] = {}
    nodes, children = root.nodes, root.children
    base = f"{prefix}/" if prefix else ""
    for path, node in fs.nodes.items():
        copy = fresh.get(id(node))
        if copy is None:
            copy = Node(node.entry, node.content, node.source, node.location, node.implicit)
            fresh[id(node)] = copy
        nodes[base + path] = copy
        if node.entry.kind is Kind.DIR:
            children[base + path] = {base + child for child in fs.children.get(path, ())}
    children[prefix].update(base + top for top in fs.children.get("", ()))


def _kernel(ctx: Context, spec: Spec, root: Tree) -> None:
    """linuxkit's ``kernelFilter``: only the binary, the modules tar and the ucode are used."""
    kernel = spec.kernel
    if kernel is None:
        return
    image = ctx.images[kernel.image.text]
    t = ctx.epoch.generated
    source, location = _source(kernel.image.text, image), "kernel"
    ktree = image_tree(image, ctx.cache, implicit_mtime=t, source=source, location=location)

    def member(name: str, what: str, hint: str = "") -> Node:
        node = ktree.get(name.lstrip("/"))
        if node is None or node.entry.kind is not Kind.FILE:
            raise ComposerError(f"{image.ref}: kernel image has no {what} {name!r}{hint}")
        return node

    ctx.unpacked.append(("", image))
    binary = member(kernel.binary, "kernel file")
    if ctx.decompress_kernel:
        from composer.rootfs.kernelgz import decompressed

        binary = decompressed(binary, ctx.cache, f"{image.ref} {kernel.binary}")
    root.put("boot", _dir(t, source, location))
    root.put("boot/cmdline", _file(kernel.cmdline.encode(), t, source, location))
    root.put("boot/kernel", _file_like(binary, t, source, location))
    if kernel.ucode:
        ucode = member(kernel.ucode, "ucode file")
        root.put("boot/ucode.cpio", _file_like(ucode, t, source, location))
    if kernel.tar:
        tar_node = member(kernel.tar, "modules tar", " (set `tar: none` if it has no modules)")
        nested_tar(tar_node, root, what=f"{image.ref} {kernel.tar}", source=source,
                   location=location)


def _file_like(node: Node, t: int, source: str, location: str) -> Node:
    """A file taken out of an image as linuxkit writes it: its mode, owner root, generated
    mtime."""
    entry = Entry("", Kind.FILE, mode=node.entry.mode, mtime=t, size=node.entry.size)
    return Node(entry, node.content, source, location)


def _init(ctx: Context, spec: Spec, root: Tree) -> None:
    """Init images at ``/``, in order; their apk databases are merged, not replaced.

    linuxkit's ``apkTarWriter``: when more than one init image has ``lib/apk/db/installed``,
    the result is every image's database in image order, each followed by an empty line pair,
    recorded as written by ``LINUXKIT.apkinit`` at ``init``. With one, it stays as it is."""
    t = ctx.epoch.generated
    databases: list[bytes] = []
    for index, ref in enumerate(spec.init):
        image = ctx.images[ref.text]
        location = f"init[{index}]"
        fs = ctx.regions.init_residue(image, location, root) if ctx.regions else None
        if fs is None:
            fs = _image_fs(ctx, image, location, RESOLV_SYMLINK, _source(ref.text, image))
            if ctx.regions is not None:
                ctx.regions.init_overlaid(image, location, fs)
        ctx.unpacked.append(("", image))
        # (several apk databases mean a shared lib/: never a spliced region, so fs holds each)
        db = fs.get(APK_INSTALLED)
        if db is not None and db.entry.kind is not Kind.DIR:
            databases.append(_read_small(db, f"{image.ref} {APK_INSTALLED}"))
        _overlay(root, fs)
    if len(databases) > 1:
        merged = b"".join(db + b"\n\n" for db in databases)
        root.put(APK_INSTALLED, _file(merged, t, APK_SOURCE, "init"))


def _read_small(node: Node, what: str) -> bytes:
    """The content of a small file node (a package database), bounded so memory stays small."""
    if node.entry.kind is not Kind.FILE or node.content is None:
        return b""  # a link: linuxkit's writer sees its header and no data
    if node.entry.size > MAX_DB:
        raise ComposerError(f"{what}: {node.entry.size} bytes, larger than the {MAX_DB} a "
                            "package database may be")
    return read_content(node.content, node.entry.size)


def _volumes(ctx: Context, spec: Spec, root: Tree) -> None:
    """``containers/volumes/NAME/``: the image (if any) in ``lower``, empty ``tmp`` and
    ``merged`` for the overlay linuxkit's init mounts at boot."""
    t = ctx.epoch.generated
    for index, volume in enumerate(spec.volumes):
        location = f"volume[{index}]"  # sic: linuxkit's location for volumes
        base = bundle.volume_dir(volume.name)
        image = None
        if volume.image is not None:
            image = ctx.images.get(volume.image.text)
            if image is None:
                raise ComposerError(f"{volume.image.pos}: volumes[{index}]: image "
                                    f"{volume.image.text} was not resolved")
        source = EMPTY_SOURCE if image is None or volume.image is None else _source(
            volume.image.text, image)
        _prefix(root, f"{base}/lower", t, source, location)
        if image is not None and volume.format == "oci":
            _oci_layout(ctx, root, f"{base}/lower", ctx.layouts[index], source, location)
        elif image is not None:
            _overlay(root, _image_fs(ctx, image, location, RESOLV_SYMLINK, source),
                     f"{base}/lower")
            ctx.unpacked.append((f"{base}/lower/", image))
        for sub in ("tmp", "merged"):
            root.put(f"{base}/{sub}", _dir(t, VOLUMES_SOURCE, location))


OCI_LAYOUT = b'{\n\t\t"imageLayoutVersion": "1.0.0"\n\t}'  # linuxkit's, tabs included
REF_NAME = "org.opencontainers.image.ref.name"


def _oci_layout(ctx: Context, root: Tree, lower: str, layout: IndexLayout, source: str,
                location: str) -> None:
    """linuxkit's ``ImageOCITar``: the image's index as an OCI image layout in ``lower``
    (``oci-layout``, every blob under ``blobs/sha256/``, an ``index.json`` naming the index by
    the image's name), file contents read from the cache's blobs."""
    t = ctx.epoch.generated
    root.put(f"{lower}/oci-layout", _file(OCI_LAYOUT, t, source, location))
    root.put(f"{lower}/blobs", _dir(t, source, location))
    root.put(f"{lower}/blobs/sha256", _dir(t, source, location))
    digest, size, _media_type = layout.index
    for blob, blob_size in (*layout.blobs, (digest, size)):
        entry = Entry("", Kind.FILE, mode=0o644, mtime=t, size=blob_size)
        content = Span(str(ctx.cache.blob_path(blob)), 0, blob_size)
        root.put(f"{lower}/blobs/sha256/{blob.split(':', 1)[1]}",
                 Node(entry, content, source, location))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_INDEX, "size": size, "digest": digest,
                            "annotations": {REF_NAME: source}}]}
    root.put(f"{lower}/index.json", _file(_go_indent(index), t, source, location))


def _go_indent(value: object, depth: int = 0) -> bytes:
    """Go's ``json.MarshalIndent(v, "", "   ")`` for plain JSON values (keys in the given
    order, ``<>&`` escaped as Go does, no final newline)."""
    pad, inner = "   " * depth, "   " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return b"{}"
        items = [inner.encode() + _go_indent(str(k)) + b": " + _go_indent(v, depth + 1)
                 for k, v in value.items()]
        return b"{\n" + b",\n".join(items) + b"\n" + pad.encode() + b"}"
    if isinstance(value, list):
        if not value:
            return b"[]"
        items = [inner.encode() + _go_indent(v, depth + 1) for v in value]
        return b"[\n" + b",\n".join(items) + b"\n" + pad.encode() + b"]"
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026").encode()


def _containers(ctx: Context, spec: Spec, root: Tree) -> None:
    t = ctx.epoch.generated
    ids = spec.id_map()
    extracted: dict[str, str] = {}  # manifest digest -> where its files already are
    sections = (("onboot", spec.onboot, True), ("onshutdown", spec.onshutdown, True),
                ("services", spec.services, False))
    for section, containers, numbered in sections:
        for index, container in enumerate(containers):
            location = f"{section}[{index}]"
            image = ctx.images[container.image.text]
            what = f"{container.pos}: {location} {container.name} ({image.ref})" \
                if container.pos else f"{location} {container.name} ({image.ref})"
            made = bundle.make_bundle(container, image.config, ids, what)
            name = f"{index:03d}-{container.name}" if numbered else container.name
            prefix = f"containers/{section}/{name}"
            source = _source(container.image.text, image)
            lower = extracted.get(image.digest)
            if lower is None:
                lower = f"{prefix}/{'rootfs' if made.readonly else 'lower'}"
                _prefix(root, lower, t, source, location)
                if ctx.regions is None or ctx.regions.reuse(image, location, lower) is None:
                    _overlay(root, _image_fs(ctx, image, location, NO_RESOLV, source), lower)
                extracted[image.digest] = lower
                ctx.unpacked.append((f"{lower}/", image))
            else:
                _prefix(root, prefix, t, source, location)
            for refusal in bootchecks.runc_refusals(made.config):
                ctx.warnings.append(f"{what}: runc will refuse to start it: {refusal}")
            if made.readonly:
                spliced = ctx.regions is not None and lower in ctx.regions.spliced
                missing = bootchecks.missing_mountpoints(
                    made.config, ctx.regions.shadow(lower) if spliced else root,  # type: ignore[union-attr]
                    lower)
                if missing:
                    ctx.warnings.append(
                        f"{what}: readonly, but its image has no {', '.join(missing)} to "
                        "mount on, and runc cannot make mount points in a read-only root "
                        "(it will not start); add them to the image or drop readonly")
            root.put(f"{prefix}/config.json",
                     _file(canonjson.pretty(made.config), t, source, location))
            if not made.readonly:
                root.put(f"{prefix}/tmp", _dir(t, source, location))
            if lower != f"{prefix}/rootfs":
                root.put(f"{prefix}/rootfs", _dir(t, source, location))
            runtime = bundle.runtime_json(made.runtime, prefix, lower, made.readonly)
            root.put(f"{prefix}/runtime.json",
                     _file(canonjson.pretty(runtime), t, source, location))


def _files(ctx: Context, spec: Spec, root: Tree) -> None:
    t = ctx.epoch.generated
    ids = spec.id_map()
    for index, f in enumerate(spec.files):
        location = f"files[{index}]"
        uid, gid = resolve_id(f.uid, ids), resolve_id(f.gid, ids)
        node = _file_node(spec, f, uid, gid, t, location)
        if node is None:
            continue
        mode = node.entry.mode
        dir_mode = mode | (0o100 if mode & 0o700 else 0) | (0o010 if mode & 0o070 else 0) | (
            0o001 if mode & 0o007 else 0)
        parts = f.path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if root.get(root.resolve_parent(parent)) is None:
                root.put(parent, Node(Entry("", Kind.DIR, mode=dir_mode, uid=uid, gid=gid,
                                            mtime=t), None, FILES_SOURCE, location))
        root.put(f.path, node)


def _file_node(spec: Spec, f: File, uid: int, gid: int, t: int, location: str) -> Node | None:
    source = FILES_SOURCE
    if f.directory:
        mode = 0o700 if f.mode is None else f.mode
        return Node(Entry("", Kind.DIR, mode=mode, uid=uid, gid=gid, mtime=t), None, source,
                    location)
    mode = 0o600 if f.mode is None else f.mode
    if f.symlink is not None:
        return Node(Entry("", Kind.SYMLINK, mode=mode, uid=uid, gid=gid, mtime=t,
                          linkname=f.symlink), None, source, location)
    if f.contents is not None or f.metadata is not None:
        data = f.contents.encode() if f.contents is not None else spec_metadata(
            spec, f.metadata or "yaml")
        return Node(Entry("", Kind.FILE, mode=mode, uid=uid, gid=gid, mtime=t, size=len(data)),
                    data, source, location)
    assert f.source is not None  # the loader guarantees one kind per file
    try:
        size = _host_file_size(f.source)
    except OSError as exc:
        if f.optional:
            return None
        where = f"{f.pos}: " if f.pos else ""
        raise ComposerError(f"{where}{location}: cannot read source {f.source}: "
                            f"{exc.strerror}") from None
    return Node(Entry("", Kind.FILE, mode=mode, uid=uid, gid=gid, mtime=t, size=size),
                HostFile(f.source), source, location)


def _host_file_size(path: str) -> int:
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(21, "not a regular file")
    with open(path, "rb"):
        pass
    return st.st_size


def _fill_provenance(root: Tree) -> None:
    """Directories the tree made implicitly (a layer without parent entries, a path put through
    a symlink) take the records of their first child, so every entry has them (linuxkit's
    ``tarheaders`` check)."""
    # (only nodes without records change; children first, as in reversed path order)
    bare = [path for path, node in root.nodes.items() if not node.source]
    for path in sorted(bare, key=sort_key, reverse=True):
        node = root.nodes[path]
        if node.source:  # a hard link of a node filled meanwhile
            continue
        for child in sorted(root.children.get(path, ()), key=sort_key):
            other = root.nodes[child]
            if other.source:
                node.source, node.location = other.source, other.location
                break


def build_tree(spec: Spec, ctx: Context) -> Tree:
    root = Tree(ctx.epoch.generated)
    _kernel(ctx, spec, root)
    _init(ctx, spec, root)
    _volumes(ctx, spec, root)
    _containers(ctx, spec, root)
    _files(ctx, spec, root)
    _sbom(ctx, root)
    _fill_provenance(root)
    return root


def _sbom(ctx: Context, root: Tree) -> None:
    """linuxkit's merged SBOM (:mod:`composer.rootfs.sbom`), written last, as linuxkit does."""
    path = ctx.sbom_path.strip("/")
    if not path:
        return
    docs = []
    for prefix, image in ctx.unpacked:
        for digest, size in image.sboms:
            what = f"{image.ref}: SBOM statement {digest}"
            if size > sbom.MAX_STATEMENT:
                raise ComposerError(f"{what}: {size} bytes, too large for an SBOM")
            docs.append(sbom.prefixed(sbom.predicate(ctx.cache.read_blob(digest, size, what),
                                                     what), prefix))
    data = canonjson.compact(sbom.merged(docs, ctx.epoch.generated))
    root.put(path, _file(data, ctx.epoch.generated, sbom.SOURCE, "sbom"))


def write_tree(tree: Tree, out: BinaryIO, epoch: Epoch,
               progress: Callable[[int], None] | None = None, regions: Plan | None = None,
               databases: list[tuple[Entry, Node]] | None = None, sbom_path: str = "") -> int:
    """Write ``tree`` as the canonical rootfs tar; returns the number of entries.

    With ``regions``, the spliced container regions are copied from their earlier tar right
    after their directory's entry, and every region's byte range is noted in the plan.
    ``databases``, if given, receives the entries that may be package databases or the merged
    image SBOM at ``sbom_path`` (with their nodes), so the SBOM's package list needs no second
    pass over the tree."""
    from composer.rootfs.regions import Recorder

    writer = CanonicalTarWriter(out)
    handles: dict[str, BinaryIO] = {}
    ahead: dict[str, ReadAhead] = {}
    recorder = Recorder(regions) if regions is not None else None
    count = 0
    add, file_kind = writer.add, Kind.FILE
    try:
        for entry, node in tree.entries(clamp=epoch.clamp):
            if databases is not None and is_database(entry, sbom_path):
                databases.append((entry, node))
            if recorder is not None:
                recorder.before(entry, node, writer.written)
            content = node.content
            if entry.kind is not file_kind or content is None:
                add(entry)
            elif isinstance(content, HostFile):
                data = open_content(content, handles)
                try:
                    add(entry, data)
                finally:
                    if not isinstance(data, bytes):
                        data.close()
            else:
                add(entry, open_content(content, handles, ahead))
            count += 1
            if recorder is not None and regions is not None:
                recorder.after(entry.path, writer.written)
                region = regions.spliced.get(entry.path)
                if region is not None:
                    source = handles.get(str(region.tar))
                    if source is None:
                        source = handles[str(region.tar)] = open(region.tar, "rb")  # noqa: SIM115
                    writer.splice(source, region.start, region.end, entry.path, region.last)
                    count += region.count
                    recorder.spliced(region, writer.written)
            if progress and count % 10000 == 0:
                progress(count)
        if recorder is not None:
            recorder.finish(writer.written)
        writer.close()
    finally:
        for fh in handles.values():
            fh.close()
    return count
