"""Format ``kernel+iso``: ``NAME-kernel``, ``NAME-cmdline`` and ``NAME.iso``, the rootfs minus
``boot/`` as a plain ISO 9660 image (no El Torito) with Rock Ridge and Joliet, to mount as
``root=/dev/sr0``. linuxkit runs ``genisoimage -l -J -R -joliet-long`` on an unpacked tree;
this one is written by the project's pinned pycdlib wrapper (:mod:`outputs.iso.iso9660`) straight
from the tar: file contents are read in place from the rootfs tar when the image is written.

- Rock Ridge (1.09) carries the real names, modes (setuid, sticky), uid/gid, link counts,
  symlink targets, fifos and each entry's mtime (every date of a record is its mtime).
- ISO 9660: interchange level 4 (ISO 9660:1999: no depth limit, so no ``RR_MOVED``); names are
  the Rock Ridge names upper-cased, other characters as ``_``, cut to 30 characters and made
  unique within a directory with a ``_N`` suffix.
- Joliet: names cut to 64 UCS-2 characters (Joliet's limit), ``* / : ; ? \\`` as ``_``, made
  unique the same way.
- Volume dates: ``Options.mtime``; identifiers from :func:`outputs.iso.formats.seed`.

Not representable, as with genisoimage: extended attributes are left out (Rock Ridge has no
xattrs); device nodes are an error (pycdlib writes no Rock Ridge ``PN`` records).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO, cast

from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.streams.digest import sha256_file
from composer.tar.canon import Kind
from outputs.fsimage.rootfs import ROOT_MODE, kernel_files
from outputs.initrd.formats import CMDLINE, KERNEL, in_initrd
from outputs.iso.formats import Layout, seed
from outputs.options import Options

LAYOUT = Layout("kernel+iso", bios=False, efi=False, isohybrid=False)
INTERCHANGE_LEVEL = 4
JOLIET_LEVEL = 3
ISO_NAME_MAX = 30
JOLIET_NAME_MAX = 64
_NOT_D = re.compile(r"[^A-Z0-9_]")
_NOT_JOLIET = re.compile(r"[*/:;?\\]")
S_IFMT = {Kind.FILE: stat.S_IFREG, Kind.DIR: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK,
          Kind.FIFO: stat.S_IFIFO}


class TarSlice(io.RawIOBase):
    """``size`` bytes at ``offset`` of an open file, seekable, read with ``pread`` (so many
    slices share one descriptor): a file's content inside the rootfs tar, for pycdlib."""

    __slots__ = ("_fd", "_offset", "_pos", "_size")

    def __init__(self, fd: int, offset: int, size: int):
        super().__init__()
        self._fd, self._offset, self._size, self._pos = fd, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._offset + self._pos)
        if len(data) != n:
            raise ComposerError("the rootfs tar changed while the ISO was written")
        buffer[:n] = data
        self._pos += n
        return n


class Names:
    """Unique ISO 9660 and Joliet names per directory, chosen in tar (sorted) order."""

    def __init__(self) -> None:
        self._used: dict[tuple[str, str], set[str]] = {}

    def _unique(self, space: str, parent: str, name: str, limit: int) -> str:
        used = self._used.setdefault((space, parent), set())
        candidate, n = name[:limit], 0
        while candidate.upper() in used:
            n += 1
            suffix = f"_{n}"
            candidate = name[:limit - len(suffix)] + suffix
        used.add(candidate.upper())
        return candidate

    def iso(self, parent: str, name: str) -> str:
        return self._unique("iso", parent, _NOT_D.sub("_", name.upper()) or "_", ISO_NAME_MAX)

    def joliet(self, parent: str, name: str) -> str:
        return self._unique("joliet", parent, _NOT_JOLIET.sub("_", name) or "_",
                            JOLIET_NAME_MAX)


def _members(fh: BinaryIO):
    """(entry, content offset) of every member, by the fast reader or else tarfile."""
    import tarfile

    from composer.tar import headers as tarread
    from composer.tar.canon import entry_from_tarinfo
    from composer.tar.read import tarfile_members

    start = fh.tell()
    done = 0
    try:
        for member in tarread.members(fh):
            yield member.entry, member.offset_data
            done += 1
        return
    except tarread.GiveUp:
        fh.seek(start)
    with tarfile.open(fileobj=fh, mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tf:
        for info in tarfile_members(tf):
            if done:
                done -= 1
                continue
            yield entry_from_tarinfo(info), info.offset_data


def _px(record):
    rr = record.rock_ridge
    return rr.dr_entries.px_record or rr.ce_entries.px_record


def _records(iso, iso_path: str, directory: bool) -> list:
    """The records that carry a path's attributes: its entry in the parent and, for a
    directory, its own ``.`` (which is all the root has)."""
    record = iso.get_record(iso_path=iso_path)
    out = [] if record.rock_ridge is None else [record]
    if directory:
        out.append(record.children[0])
    return out


def _own(iso, iso_path: str, mode: int, uid: int, gid: int) -> None:
    for record in _records(iso, iso_path, stat.S_ISDIR(mode)):
        px = _px(record)
        px.posix_file_mode = mode
        px.posix_user_id, px.posix_group_id = uid, gid


def build_iso(rootfs: Path, out: BinaryIO, options: Options, seed_bytes: bytes, *,
              name: str = "rootfs", sinks: dict[str, BinaryIO] | None = None) -> None:
    """The ISO of the rootfs minus ``boot/``; ``boot/kernel`` and ``boot/cmdline`` to ``sinks``."""
    from outputs.iso.iso9660 import PinnedIso

    fmt = "kernel+iso"
    names = Names()
    dirs: dict[str, tuple[str, str]] = {"": ("", "")}  # path -> ISO 9660 and Joliet paths
    # (record, mode, uid, gid, mtime) of every record, owners set once all are added; files
    # maps a non-directory's path to its row (hard links need the target's record and dates)
    owners: list[tuple[str, int, int, int, int]] = [("/", stat.S_IFDIR | ROOT_MODE, 0, 0, 0)]
    files: dict[str, int] = {}
    links: dict[str, list[str]] = {}  # hard-link target -> the records of all its names
    found = set()
    with open(rootfs, "rb") as tar, \
            PinnedIso(mtime=options.mtime, seed=seed_bytes, interchange_level=INTERCHANGE_LEVEL,
                      joliet=JOLIET_LEVEL) as pinned:
        iso = pinned.iso
        fd = tar.fileno()
        for entry, offset in _members(tar):
            path = entry.path
            if not in_initrd(path):
                if sinks is not None and path in sinks and entry.kind is Kind.FILE:
                    sinks[path].write(os.pread(fd, entry.size, offset))  # kernel: ~10 MiB
                    found.add(path)
                continue
            if entry.kind is Kind.HARDLINK and not in_initrd(entry.linkname):
                raise ComposerError(f"{path}: hard link into boot/ ({entry.linkname}), which "
                                    f"format {fmt} leaves out")
            parent, _, base = path.rpartition("/")
            iso_parent, joliet_parent = dirs[parent]
            iso_path = f"{iso_parent}/{names.iso(parent, base)}"
            joliet_path = f"{joliet_parent}/{names.joliet(parent, base)}"
            if entry.kind is Kind.HARDLINK:
                target = owners[files[entry.linkname]]
                record = iso_path + ";1"
                pinned.clock.set(target[4])  # one inode: the target's dates
                iso.add_hard_link(iso_old_path=target[0], iso_new_path=record, rr_name=base)
                iso.add_hard_link(iso_old_path=target[0], joliet_new_path=joliet_path)
                links.setdefault(entry.linkname, [target[0]]).append(record)
                owners.append((record, *target[1:]))
                continue
            if entry.kind not in S_IFMT:
                raise ComposerError(f"{path}: format {fmt} cannot store a "
                                    f"{entry.kind.name.lower()} (no Rock Ridge PN records)")
            pinned.clock.set(entry.mtime)
            mode = S_IFMT[entry.kind] | (entry.mode & 0o7777)
            if entry.kind is Kind.DIR:
                iso.add_directory(iso_path, rr_name=base, joliet_path=joliet_path,
                                  file_mode=mode, creation_time=entry.mtime)
                record = iso_path
                dirs[path] = (iso_path, joliet_path)
            elif entry.kind is Kind.SYMLINK:
                record = iso_path + ";1"
                iso.add_symlink(symlink_path=record, rr_symlink_name=base,
                                rr_path=entry.linkname, joliet_path=joliet_path,
                                creation_time=entry.mtime)
            else:
                record = iso_path + ";1"
                size = entry.size if entry.kind is Kind.FILE else 0
                iso.add_fp(cast(BinaryIO, TarSlice(fd, offset, size)), size, record, rr_name=base,
                           joliet_path=joliet_path, file_mode=mode, creation_time=entry.mtime)
            if entry.kind is not Kind.DIR:
                files[path] = len(owners)
            owners.append((record, mode, entry.uid, entry.gid, entry.mtime))
        files.clear()
        # after every add: pycdlib lays out all extents again on the first lookup that
        # follows an add, so looking records up as we go would cost O(n^2)
        for record, mode, uid, gid, _ in owners:
            _own(iso, record, mode, uid, gid)
        owners.clear()
        for records in links.values():
            for record in records:
                _px(iso.get_record(iso_path=record)).posix_file_links = len(records)
        if sinks is not None and KERNEL not in found:
            raise ComposerError(f"{name}: the root filesystem has no {KERNEL}: the spec needs a "
                                f"kernel section for format {fmt}")
        pinned.write(out)


def write_kernel_iso(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    kernel, cmdline = kernel_files(name)
    rootfs_sha256 = (outset.known_digest(rootfs) or sha256_file(rootfs))[0]
    with contextlib.ExitStack() as stack:
        sinks = {KERNEL: stack.enter_context(outset.create(kernel)),
                 CMDLINE: stack.enter_context(outset.create(cmdline))}
        out = stack.enter_context(outset.create(f"{name}.iso"))
        build_iso(rootfs, out, options, seed(rootfs_sha256, LAYOUT, (), options), name=name,
                  sinks=sinks)
