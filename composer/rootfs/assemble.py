"""Phase one: a spec plus its resolved images become the rootfs tree, then the canonical tar.

linuxkit's layout: ``boot/kernel``, ``boot/cmdline`` and the kernel's ``kernel.tar`` at ``/``;
init images at ``/``; ``containers/onboot/NNN-NAME/``, ``containers/onshutdown/NNN-NAME/`` and
``containers/services/NAME/`` bundles; then ``files``. Unlike linuxkit, which streams sections in
order and leaves duplicate paths for the unpacker to resolve, everything lands in one tree first,
so the tar has exactly one entry per path, sorted.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from composer import canonjson
from composer.epoch import Epoch
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.model import Image
from composer.rootfs import bundle
from composer.rootfs.flatten import image_tree, nested_tar
from composer.rootfs.tree import HostFile, Node, Tree, open_content
from composer.spec.model import Container, File, Spec
from composer.tarcanon import CanonicalTarWriter, Entry, Kind

RESOLV_SYMLINK = "/run/resolvconf/resolv.conf"
EXCLUDE = ("dev/console", "dev/pts", "dev/shm", "etc/hostname", ".dockerenv", "Dockerfile")
HOSTS = (b"127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\n"
         b"fe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\n"
         b"ff02::2 ip6-allrouters\n")
NO_RESOLV = b"\n# no resolv.conf configured\n"


@dataclass(frozen=True)
class Context:
    cache: Cache
    epoch: Epoch
    images: dict[str, Image]  # spec image text -> resolved image


def _dir(mtime: int, source: str, location: str, mode: int = 0o755) -> Node:
    return Node(Entry("", Kind.DIR, mode=mode, mtime=mtime), None, source, location)


def _file(data: bytes, mtime: int, source: str, location: str, mode: int = 0o644,
          uid: int = 0, gid: int = 0) -> Node:
    entry = Entry("", Kind.FILE, mode=mode, uid=uid, gid=gid, mtime=mtime, size=len(data))
    return Node(entry, data, source, location)


def _image_fs(ctx: Context, text: str, location: str, resolv: bytes | str) -> tuple[Tree, str]:
    """An image's filesystem with linuxkit's fixups: excluded paths, fixed hosts/resolv.conf/
    mtab, and the dev, proc, sys mount points."""
    image = ctx.images[text]
    source = image.ref
    t = ctx.epoch.generated
    tree = image_tree(image, ctx.cache, implicit_mtime=t, source=source, location=location)
    for path in EXCLUDE:
        tree.remove(path)
    for path in ("dev", "dev/pts", "dev/shm", "etc", "proc", "sys"):
        tree.put(path, _dir(t, source, location))
    tree.put("etc/hosts", _file(HOSTS, t, source, location))
    tree.put("etc/mtab", Node(Entry("", Kind.SYMLINK, mode=0o777, mtime=t,
                                    linkname="/proc/mounts"), None, source, location))
    if isinstance(resolv, str):
        tree.put("etc/resolv.conf", Node(Entry("", Kind.SYMLINK, mode=0o777, mtime=t,
                                               linkname=resolv), None, source, location))
    else:
        tree.put("etc/resolv.conf", _file(resolv, t, source, location))
    return tree, source


def _kernel(ctx: Context, spec: Spec, root: Tree) -> None:
    kernel = spec.kernel
    if kernel is None:
        return
    image = ctx.images[kernel.image.text]
    t = ctx.epoch.generated
    source = image.ref
    ktree = image_tree(image, ctx.cache, implicit_mtime=t, source=source, location="kernel")
    binary = ktree.get(kernel.binary.lstrip("/"))
    if binary is None or binary.entry.kind is not Kind.FILE:
        raise ComposerError(f"{image.ref}: kernel image has no file {kernel.binary!r}")
    root.put("boot", _dir(t, source, "kernel"))
    root.put("boot/kernel", Node(binary.entry, binary.content, source, "kernel"))
    root.put("boot/cmdline", _file(kernel.cmdline.encode(), t, source, "kernel"))
    if kernel.tar:
        tar_node = ktree.get(kernel.tar.lstrip("/"))
        if tar_node is None or tar_node.entry.kind is not Kind.FILE:
            raise ComposerError(f"{image.ref}: kernel image has no file {kernel.tar!r} "
                                "(set `tar: none` if it has no modules)")
        nested_tar(tar_node, root, what=f"{image.ref} {kernel.tar}", source=source,
                   location="kernel")
    if kernel.ucode:
        ucode = ktree.get(kernel.ucode.lstrip("/"))
        if ucode is None or ucode.entry.kind is not Kind.FILE:
            raise ComposerError(f"{image.ref}: kernel image has no file {kernel.ucode!r}")
        root.put("boot/ucode.cpio", Node(ucode.entry, ucode.content, source, "kernel"))


def _containers(ctx: Context, spec: Spec, root: Tree) -> None:
    t = ctx.epoch.generated
    extracted: dict[str, str] = {}  # image text -> where its files already are (linuxkit dupMap)
    sections: list[tuple[str, tuple[Container, ...], bool]] = [
        ("onboot", spec.onboot, True), ("onshutdown", spec.onshutdown, True),
        ("services", spec.services, False),
    ]
    for section, containers, numbered in sections:
        for index, container in enumerate(containers):
            location = f"{section}[{index}]"
            image = ctx.images[container.image.text]
            what = f"{location} {container.name} ({image.ref})"
            name = f"{index:03d}-{container.name}" if numbered else container.name
            prefix = f"containers/{section}/{name}"
            readonly = bundle.is_readonly(container, image.config, what)
            config = bundle.oci_config(container, image.config, what)
            source = image.ref
            root.put(prefix, _dir(t, source, location))
            lower = extracted.get(container.image.text)
            if lower is None:
                lower = f"{prefix}/{'rootfs' if readonly else 'lower'}"
                fs, _ = _image_fs(ctx, container.image.text, location, NO_RESOLV)
                root.put(lower, _dir(t, source, location))
                root.graft(fs, lower)
                extracted[container.image.text] = lower
            if not readonly:
                root.put(f"{prefix}/tmp", _dir(t, source, location))
            if lower != f"{prefix}/rootfs":
                root.put(f"{prefix}/rootfs", _dir(t, source, location))
            root.put(f"{prefix}/config.json",
                     _file(canonjson.pretty(config), t, source, location))
            runtime = bundle.runtime_config(prefix, lower, readonly)
            root.put(f"{prefix}/runtime.json",
                     _file(canonjson.pretty(runtime), t, source, location))


def _files(ctx: Context, spec: Spec, root: Tree) -> None:
    t = ctx.epoch.generated
    for index, f in enumerate(spec.files):
        location = f"files[{index}]"
        source = "linuxkit.files"
        node = _file_node(f, t, source, location)
        if node is None:
            continue
        mode = node.entry.mode
        dir_mode = mode | (0o100 if mode & 0o700 else 0) | (0o010 if mode & 0o070 else 0) | (
            0o001 if mode & 0o007 else 0)
        parts = f.path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if root.get(root.resolve_parent(parent)) is None:
                root.put(parent, Node(Entry("", Kind.DIR, mode=dir_mode, uid=f.uid, gid=f.gid,
                                            mtime=t), None, source, location))
        root.put(f.path, node)


def _file_node(f: File, t: int, source: str, location: str) -> Node | None:
    common = {"uid": f.uid, "gid": f.gid, "mtime": t}
    if f.directory:
        mode = 0o700 if f.mode is None else f.mode
        return Node(Entry("", Kind.DIR, mode=mode, **common), None, source, location)
    mode = 0o600 if f.mode is None else f.mode
    if f.symlink is not None:
        return Node(Entry("", Kind.SYMLINK, mode=mode, linkname=f.symlink, **common), None,
                    source, location)
    if f.contents is not None:
        data = f.contents.encode()
        return Node(Entry("", Kind.FILE, mode=mode, size=len(data), **common), data, source,
                    location)
    if f.source is not None:
        try:
            size = _host_file_size(f.source)
        except OSError as exc:
            if f.optional:
                return None
            raise ComposerError(f"{location}: cannot read source {f.source}: "
                                f"{exc.strerror}") from None
        return Node(Entry("", Kind.FILE, mode=mode, size=size, **common), HostFile(f.source),
                    source, location)
    raise ComposerError(f"{location}: metadata files are not supported yet")


def _host_file_size(path: str) -> int:
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(21, "not a regular file")
    with open(path, "rb"):
        pass
    return st.st_size


def build_tree(spec: Spec, ctx: Context) -> Tree:
    root = Tree(ctx.epoch.generated)
    _kernel(ctx, spec, root)
    for index, ref in enumerate(spec.init):
        fs, _ = _image_fs(ctx, ref.text, f"init[{index}]", RESOLV_SYMLINK)
        root.graft(fs, "")
    _containers(ctx, spec, root)
    _files(ctx, spec, root)
    return root


def write_tree(tree: Tree, out: BinaryIO, epoch: Epoch,
               progress: Callable[[int], None] | None = None) -> int:
    """Write ``tree`` as the canonical rootfs tar; returns the number of entries."""
    writer = CanonicalTarWriter(out)
    handles: dict[str, BinaryIO] = {}
    count = 0
    try:
        for entry, node in tree.entries(clamp=epoch.clamp):
            data = None
            if entry.kind is Kind.FILE and node.content is not None:
                data = open_content(node.content, handles)
            try:
                writer.add(entry, data)
            finally:
                if isinstance(node.content, HostFile) and hasattr(data, "close"):
                    data.close()  # type: ignore[union-attr]
            count += 1
            if progress and count % 10000 == 0:
                progress(count)
        writer.close()
    finally:
        for fh in handles.values():
            fh.close()
    return count

