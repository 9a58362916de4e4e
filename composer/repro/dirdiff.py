"""``image-composer diff DIR_A DIR_B``: two output directories compared file by file.

Every path under either directory (files, symlinks, subdirectories such as an ``oci-dir``
output; symlinks are compared as links, never followed) is paired by its relative path. A path
on one side only, or of another kind, is a difference; two files that differ are compared with
:func:`composer.repro.diff.diff_files`, so the report says where inside the tar, initrd, ISO or
record they differ.
"""

from __future__ import annotations

import os
from pathlib import Path

from composer.errors import ComposerError
from composer.repro.diff import Difference, Report, diff_files


def _entries(root: Path) -> dict[str, tuple[str, str]]:
    """relative path -> (kind, link target) of everything under ``root``, unsorted."""
    out: dict[str, tuple[str, str]] = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(base) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("symlink", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("directory", "")
            elif path.is_file():
                out[rel] = ("file", "")
            else:
                out[rel] = ("special", "")
    return out


def diff_dirs(a: Path, b: Path) -> Report:
    for p in (a, b):
        if not Path(p).is_dir():
            raise ComposerError(f"{p}: not a directory")
    ea, eb = _entries(Path(a)), _entries(Path(b))
    found: list[Difference] = []
    same = 0
    for rel in sorted(ea.keys() | eb.keys(), key=lambda p: p.encode("utf-8", "surrogateescape")):
        if rel not in eb:
            found.append(Difference(rel, "missing"))
        elif rel not in ea:
            found.append(Difference(rel, "added"))
        elif ea[rel][0] != eb[rel][0]:
            found.append(Difference(rel, "kind", ea[rel][0], eb[rel][0]))
        elif ea[rel][0] == "symlink" and ea[rel][1] != eb[rel][1]:
            found.append(Difference(rel, "link target", ea[rel][1], eb[rel][1]))
        elif ea[rel][0] == "file":
            report = diff_files(Path(a) / rel, Path(b) / rel)
            if report.identical:
                same += 1
                continue
            found.append(Difference(rel, f"{report.format} differs: "
                                    f"{len(report.differences)} difference(s)"
                                    + (f" ({report.note})" if report.note else "")))
            found += [Difference(f"{rel}: {d.where}" if d.where else rel, d.what, d.a, d.b)
                      for d in report.differences]
    return Report("directory", tuple(found), f"{same} file(s) identical")
