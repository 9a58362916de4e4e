"""Format ``kernel+erofs``: ``NAME-kernel``, ``NAME-cmdline`` and ``NAME-erofs.img``.

linuxkit runs ``mkfs.erofs`` (erofs-utils 1.8) on an unpacked tree; Debian 12's erofs-utils 1.5
cannot read a tar, so the image is written here, in Python, from two streaming passes over the
canonical rootfs tar (metadata first, then file contents in tar order). Uncompressed, like
linuxkit's ``mkfs.erofs`` with its defaults, but laid out more simply (no compact inodes, no
tail packing), using only what every kernel since 5.4 reads:

- 4 KiB blocks; superblock at byte 1024 of block 0; ``meta_blkaddr`` 0, so inodes follow the
  superblock (the root is nid 36);
- every inode is extended (64 bytes: 32-bit uid/gid, 64-bit mtime), 32-byte aligned and never
  across a block boundary, followed by its xattrs inline (``user.``, ``trusted.``,
  ``security.`` and the POSIX ACLs; there is no shared xattr area);
- every file, directory and symlink is ``FLAT_PLAIN``: its data in whole blocks of its own
  (directories first, then symlinks, then regular files in tar order); hard links share one
  inode; devices keep their numbers in the inode;
- directories: ``.``, ``..`` and the entries, sorted bytewise, packed into blocks.

Identity: the UUID is derived from the rootfs tar's sha256 and ``Options.mtime``
(:func:`volume_uuid`); the build time is ``Options.mtime``; nothing else in the image is
variable. Memory grows with the number of entries (their metadata), never with content.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from composer import canonjson
from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.streams.digest import sha256_file
from composer.tar.canon import COPY_CHUNK, Entry, Kind
from outputs.fsimage.rootfs import ROOT_MODE, kernel_files, tree_entries
from outputs.initrd.formats import CMDLINE, KERNEL
from outputs.options import Options

FILES = ("{name}-kernel", "{name}-cmdline", "{name}-erofs.img")
MAGIC = 0xE0F5E1E2
BLKSZBITS = 12
BLOCK = 1 << BLKSZBITS
SUPER_OFFSET = 1024
SUPER_SIZE = 128
FEATURE_COMPAT_MTIME = 0x2  # extended inodes carry their own mtime
INODE_SIZE = 64  # extended inode
SLOT = 32  # nid = byte offset / 32
FORMAT_EXTENDED_FLAT_PLAIN = 1  # version bit 1 (extended), data layout 0 (flat plain)
XATTR_HEADER = 12
SEED_VERSION = "image-composer erofs 1"
S_IFMT = {Kind.FILE: 0o100000, Kind.DIR: 0o040000, Kind.SYMLINK: 0o120000,
          Kind.CHAR: 0o020000, Kind.BLOCK: 0o060000, Kind.FIFO: 0o010000}
FILE_TYPE = {Kind.FILE: 1, Kind.DIR: 2, Kind.CHAR: 3, Kind.BLOCK: 4, Kind.FIFO: 5,
             Kind.SYMLINK: 7}
# xattr name prefixes EROFS can store, by index (erofs_fs.h); a full name for the ACLs
XATTR_PREFIXES = (("system.posix_acl_access", 2), ("system.posix_acl_default", 3),
                  ("user.", 1), ("trusted.", 4), ("security.", 6))
MAX_U32 = 0xFFFFFFFF


@dataclass(eq=False)
class Node:
    """One inode: the entry that made it, where it lives, and (directories) its entries."""

    entry: Entry
    parent: Node | None = None
    children: dict[bytes, Node] = field(default_factory=dict)
    nlink: int = 1
    nid: int = 0
    ino: int = 0
    blkaddr: int = 0
    size: int = 0  # bytes of data (a directory's packed dirents, a symlink's target)
    xattrs: bytes = b""


def blocks(size: int) -> int:
    return -(-size // BLOCK)


def xattr_name(entry: Entry, name: str) -> tuple[int, bytes]:
    """(prefix index, the rest of the name)."""
    for prefix, index in XATTR_PREFIXES:
        if name.startswith(prefix):
            return index, name[len(prefix):].encode("utf-8", "surrogateescape")
    raise ComposerError(f"{entry.path}: xattr {name!r}: erofs stores only user., trusted., "
                        "security. and POSIX ACL attributes")


def xattr_body(entry: Entry) -> bytes:
    """The inline xattr area of ``entry``: a 12-byte header, then 4-byte aligned entries."""
    if not entry.xattrs:
        return b""
    out = bytearray(XATTR_HEADER)
    for name, value in entry.xattrs:
        index, suffix = xattr_name(entry, name)
        if len(suffix) > 255 or len(value) > 0xFFFF:
            raise ComposerError(f"{entry.path}: xattr {name!r} is too long for erofs")
        out += struct.pack("<BBH", len(suffix), index, len(value)) + suffix + value
        out += bytes(-len(out) % 4)
    return bytes(out)


def dirent_blocks(node: Node) -> list[bytes]:
    """A directory's entries (with ``.`` and ``..``) sorted bytewise, packed into blocks; each
    block is its 12-byte dirents, then their names (``nameoff`` points at each)."""
    names = dict(node.children)
    names[b"."] = node
    names[b".."] = node.parent or node
    out: list[bytes] = []
    batch: list[tuple[bytes, Node]] = []
    used = 0
    for name in sorted(names):
        if used + 12 + len(name) > BLOCK:
            out.append(_pack_dirents(batch, node))
            batch, used = [], 0
        batch.append((name, names[name]))
        used += 12 + len(name)
    out.append(_pack_dirents(batch, node))
    return out


def _pack_dirents(batch: list[tuple[bytes, Node]], directory: Node) -> bytes:
    heads = bytearray()
    nameoff = 12 * len(batch)
    for name, child in batch:
        kind = child.entry.kind
        heads += struct.pack("<QHBB", child.nid, nameoff, FILE_TYPE[kind], 0)
        nameoff += len(name)
    return bytes(heads) + b"".join(name for name, _ in batch)


def rdev(entry: Entry) -> int:
    """The kernel's ``new_encode_dev``."""
    major, minor = entry.devmajor, entry.devminor
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def inode_bytes(node: Node) -> bytes:
    e = node.entry
    icount = (len(node.xattrs) - XATTR_HEADER) // 4 + 1 if node.xattrs else 0
    union = rdev(e) if e.kind in (Kind.CHAR, Kind.BLOCK) else node.blkaddr
    if e.uid > MAX_U32 or e.gid > MAX_U32:
        raise ComposerError(f"{e.path}: uid/gid past 32 bits, which erofs cannot store")
    return struct.pack("<HHHHQIIIIQII16x", FORMAT_EXTENDED_FLAT_PLAIN, icount,
                       S_IFMT[e.kind] | (e.mode & 0o7777), 0, node.size, union, node.ino,
                       e.uid, e.gid, e.mtime, 0, node.nlink) + node.xattrs


@dataclass
class Layout:
    root: Node
    order: list[Node]  # every inode, root first, in tar order
    files: list[Node]  # regular files with data, in tar order (the order of pass two)
    dir_blocks: dict[int, list[bytes]]
    data_start: int  # first block after the inodes
    total_blocks: int


def read_tree(rootfs: Path, mtime: int, name: str, fmt: str,
              sinks: dict[str, BinaryIO] | None) -> tuple[Node, list[Node]]:
    """Pass one: every entry's metadata (never content) as a tree of inodes."""
    root = Node(Entry("", Kind.DIR, mode=ROOT_MODE, mtime=mtime))
    order = [root]
    by_path: dict[str, Node] = {"": root}
    for entry, _ in tree_entries(rootfs, name, fmt, sinks):
        parent_path, _, base = entry.path.rpartition("/")
        parent = by_path[parent_path]
        key = base.encode("utf-8", "surrogateescape")
        if len(key) > 255:
            raise ComposerError(f"{entry.path}: a name longer than 255 bytes")
        if entry.kind is Kind.HARDLINK:
            target = by_path[entry.linkname]
            target.nlink += 1
            parent.children[key] = target
            continue
        if entry.kind not in S_IFMT:
            raise ComposerError(f"{entry.path}: erofs cannot store a {entry.kind.name.lower()}")
        node = Node(entry, parent=parent if entry.kind is Kind.DIR else None,
                    xattrs=xattr_body(entry))
        if entry.kind is Kind.DIR:
            node.nlink = 2
            parent.nlink += 1
            node.parent = parent
        parent.children[key] = node
        by_path[entry.path] = node
        order.append(node)
    return root, order


def lay_out(root: Node, order: list[Node]) -> Layout:
    offset = SUPER_OFFSET + SUPER_SIZE
    for ino, node in enumerate(order, 1):
        size = INODE_SIZE + len(node.xattrs)
        if size > BLOCK:
            raise ComposerError(f"{node.entry.path}: xattrs too large for an erofs inode")
        offset += -offset % SLOT
        if offset % BLOCK + size > BLOCK:
            offset += -offset % BLOCK
        node.nid, node.ino = offset // SLOT, ino
        offset += size
    if root.nid > 0xFFFF:
        raise ComposerError("erofs root inode out of range")  # cannot happen: it is first
    block = blocks(offset)
    data_start = block
    dir_blocks: dict[int, list[bytes]] = {}
    for node in order:
        if node.entry.kind is Kind.DIR:
            packed = dirent_blocks(node)
            dir_blocks[id(node)] = packed
            node.blkaddr = block
            node.size = (len(packed) - 1) * BLOCK + len(packed[-1])
            block += len(packed)
    for node in order:
        if node.entry.kind is Kind.SYMLINK:
            node.size = len(node.entry.linkname.encode("utf-8", "surrogateescape"))
            node.blkaddr = block
            block += blocks(node.size)
    files = []
    for node in order:
        if node.entry.kind is Kind.FILE:
            node.size = node.entry.size
            if node.size:
                node.blkaddr = block
                block += blocks(node.size)
                files.append(node)
    if block > MAX_U32:
        raise ComposerError("the root filesystem is too large for erofs (2^32 blocks)")
    return Layout(root, order, files, dir_blocks, data_start, block)


def superblock(layout: Layout, mtime: int, uuid: bytes) -> bytes:
    return struct.pack("<IIIBBHQQIIII16s16sI44x", MAGIC, 0, FEATURE_COMPAT_MTIME, BLKSZBITS, 0,
                       layout.root.nid, len(layout.order), mtime, 0, layout.total_blocks, 0, 0,
                       uuid, b"", 0)


class _Out:
    """Sequential writer that can pad to a block boundary."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.pos = 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.pos += len(data)

    def seek_to(self, pos: int) -> None:
        if pos < self.pos:
            raise AssertionError(f"erofs layout went backwards ({pos} < {self.pos})")
        while self.pos < pos:
            self.write(bytes(min(COPY_CHUNK, pos - self.pos)))


def write_erofs(rootfs: Path, out: BinaryIO, mtime: int, uuid: bytes, *, name: str = "rootfs",
                fmt: str = "kernel+erofs", sinks: dict[str, BinaryIO] | None = None) -> None:
    """The erofs image of the rootfs minus ``boot/``, written to ``out`` front to back."""
    root, order = read_tree(rootfs, mtime, name, fmt, sinks)
    layout = lay_out(root, order)
    w = _Out(out)
    w.seek_to(SUPER_OFFSET)
    w.write(superblock(layout, mtime, uuid))
    for node in layout.order:
        w.seek_to(node.nid * SLOT)
        w.write(inode_bytes(node))
    for node in layout.order:
        if node.entry.kind is Kind.DIR:
            for i, packed in enumerate(layout.dir_blocks[id(node)]):
                w.seek_to((node.blkaddr + i) * BLOCK)
                w.write(packed)
    for node in layout.order:
        if node.entry.kind is Kind.SYMLINK and node.size:
            w.seek_to(node.blkaddr * BLOCK)
            w.write(node.entry.linkname.encode("utf-8", "surrogateescape"))
    pending = iter(layout.files)
    nxt = next(pending, None)
    for entry, data in tree_entries(rootfs, name, fmt):  # pass two: contents, in tar order
        if nxt is None:
            break
        if entry.path != nxt.entry.path:
            continue
        w.seek_to(nxt.blkaddr * BLOCK)
        assert data is not None  # a regular file has a reader
        copied = _copy(cast(BinaryIO, data), w, entry.size)
        if copied != entry.size:
            raise ComposerError(f"{entry.path}: content ended {entry.size - copied} bytes short")
        nxt = next(pending, None)
    if nxt is not None:
        raise ComposerError(f"{nxt.entry.path}: vanished from the rootfs tar between passes")
    w.seek_to(layout.total_blocks * BLOCK)


def _copy(data: BinaryIO, w: _Out, size: int) -> int:
    done = 0
    while done < size:
        chunk = data.read(min(COPY_CHUNK, size - done))
        if not chunk:
            break
        w.write(chunk)
        done += len(chunk)
    return done


def volume_uuid(rootfs_sha256: str, mtime: int) -> bytes:
    """A version-4-shaped UUID from the content: same rootfs and epoch, same UUID."""
    digest = bytearray(hashlib.sha256(canonjson.compact(
        {"version": SEED_VERSION, "rootfs": rootfs_sha256, "mtime": mtime})).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return bytes(digest)


def write_kernel_erofs(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    kernel, cmdline = kernel_files(name)
    rootfs_sha256 = (outset.known_digest(rootfs) or sha256_file(rootfs))[0]
    with contextlib.ExitStack() as stack:
        sinks = {KERNEL: stack.enter_context(outset.create(kernel)),
                 CMDLINE: stack.enter_context(outset.create(cmdline))}
        out = stack.enter_context(outset.create(f"{name}-erofs.img"))
        write_erofs(rootfs, out, options.mtime, volume_uuid(rootfs_sha256, options.mtime),
                    name=name, sinks=sinks)


__all__ = ["FILES", "write_erofs", "write_kernel_erofs"]
