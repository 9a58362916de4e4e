"""Programs that shape output bytes, run from pinned Debian packages instead of the host's.

A :class:`PinnedTool` names a program (``usr/bin/tar2sqfs``) and every pinned .deb it needs
(:class:`~composer.debian.pool.PoolDeb`: the program's package and the libraries it links,
compressors included; only the C library is the host's). :func:`unpack` fetches those .debs
through :func:`composer.debian.pool.fetch` (sha256-checked, cached, ``--offline`` honoured),
unpacks their files into a scratch directory of the build, and returns how to run the program
there: its path, a ``bin`` directory for a program that another one finds on ``PATH`` (the
syslinux installer runs ``mcopy``), and ``LD_LIBRARY_PATH`` pointing at the unpacked
libraries. Whatever the host's distribution ships of the same tools is never run, so its
version cannot change a byte. Unpacking is a few MiB from the cached .debs, done per build, so
there is no unpacked cache that could go stale or be tampered with.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from composer.debian.pool import PoolDeb, PoolError, fetch
from composer.errors import ComposerError

#: the Debian architecture of each machine a pinned tool can run on
HOST_ARCHES = {"x86_64": "amd64", "amd64": "amd64"}
#: where Debian 12's packages put their libraries (before and after the /usr merge)
LIB_DIRS = ("lib/{triplet}", "usr/lib/{triplet}")
TRIPLETS = {"amd64": "x86_64-linux-gnu"}


@dataclass(frozen=True)
class PinnedTool:
    """``program`` (a path in one of ``debs``) and every pinned package it runs with."""

    program: str
    debs: tuple[PoolDeb, ...]

    @property
    def name(self) -> str:
        return PurePosixPath(self.program).name

    def record(self) -> str:
        """What the build record keeps: each package and exact version (not the
        architecture, which is the building machine's, nor a path)."""
        return " ".join(f"{d.package}={d.version}" for d in self.debs)


@dataclass(frozen=True)
class Unpacked:
    """A pinned tool ready to run: ``program``, its ``bin_dir`` and the environment it needs."""

    program: Path
    bin_dir: Path
    env: dict[str, str]


def host_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    try:
        return HOST_ARCHES[machine]
    except KeyError:
        raise ComposerError(f"the pinned build tools are Debian 12's amd64 packages; this "
                            f"machine is {machine}") from None


def unpack(tool: PinnedTool, dest: Path, *, environ: Mapping[str, str] | None = None,
           session=None) -> Unpacked:
    """Fetch ``tool``'s pinned .debs (one :class:`PoolError` naming every problem) and unpack
    them all into ``dest`` (created; the caller's scratch space)."""
    arch = host_arch()
    debs = tool.debs
    other = [d.label for d in debs if d.arch not in (arch, "all")]
    if other:
        raise PoolError(f"{tool.name}: pinned for another architecture: {', '.join(other)}")
    paths = fetch(debs, environ=environ, session=session)
    dest.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        extract_all(paths[deb], deb.sha256, dest)
    program = dest / tool.program
    if not program.is_file():
        raise PoolError(f"{tool.name}: /{tool.program} is not a file in "
                        f"{', '.join(d.label for d in debs)}")
    triplet = TRIPLETS[arch]
    libs = [str(dest / d.format(triplet=triplet)) for d in LIB_DIRS]
    return Unpacked(program, program.parent, {"LD_LIBRARY_PATH": ":".join(libs)})


def extract_all(deb: Path, sha256: str, dest: Path) -> None:
    """Every directory, file and symbolic link of the verified .deb under ``dest``; nothing
    is written outside it (no absolute or ``..`` path, no write through a link)."""
    from composer.debian.deb import open_deb
    from composer.tar.canon import Kind

    root = dest.resolve()
    with open_deb(deb, sha256) as reader:
        for entry, data in reader.data_entries():
            parts = PurePosixPath(entry.path).parts
            if not parts or entry.path.startswith("/") or ".." in parts:
                raise PoolError(f"{deb.name}: refusing the path {entry.path!r}")
            target = root.joinpath(*parts)
            parent = target.parent
            parent.mkdir(parents=True, exist_ok=True)
            if parent.resolve() != parent or not parent.is_relative_to(root):
                raise PoolError(f"{deb.name}: {entry.path} would be written through a link")
            if entry.kind is Kind.DIR:
                target.mkdir(exist_ok=True)
            elif entry.kind is Kind.FILE and data is not None:
                target.unlink(missing_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o700)
                with os.fdopen(fd, "wb") as out:
                    while chunk := data.read(1 << 20):
                        out.write(chunk)
                os.chmod(target, entry.mode & 0o755)
            elif entry.kind is Kind.SYMLINK:
                target.unlink(missing_ok=True)
                os.symlink(entry.linkname, target)
            elif entry.kind is Kind.HARDLINK:
                link = PurePosixPath(entry.linkname).parts
                if not link or entry.linkname.startswith("/") or ".." in link:
                    raise PoolError(f"{deb.name}: refusing the link {entry.linkname!r}")
                source = root.joinpath(*link)
                target.unlink(missing_ok=True)
                os.link(source, target, follow_symlinks=False)
            # device nodes and fifos: not in the packages pinned here, never made


def bin_path(unpacked: Iterable[Unpacked], environ: Mapping[str, str] | None = None) -> str:
    """``PATH`` with the unpacked tools' ``bin`` directories first."""
    env = os.environ if environ is None else environ
    dirs = [str(u.bin_dir) for u in unpacked]
    return ":".join([*dirs, *filter(None, env.get("PATH", "").split(":"))])
