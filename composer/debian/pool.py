"""Pinned Debian packages, fetched straight from Debian's archive whatever the host runs.

A pin names a binary package by name, exact version, architecture and the sha256 of its .deb.
The file is taken from the archive's ``pool/`` (where every version Debian still serves lives,
whatever a release's indices say), never through the host's apt sources, so a Debian 13 or
Ubuntu host gets the same Debian 12 bytes as a Debian 12 host. Each download is verified as it
streams in and kept in a cache (``$IMAGE_COMPOSER_DEB_CACHE``, else
``$XDG_CACHE_HOME/image-composer-debs``), so it is fetched once per machine.

The archive bases are ``$IMAGE_COMPOSER_DEBIAN_MIRRORS`` (space-separated), else Debian's
default mirror of the main archive and of its security archive; each is tried in turn.
Everything that goes wrong across a set of pins is reported at once, in one error.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from composer.atomic import atomic_file
from composer.errors import ComposerError
from composer.streams.digest import DigestMismatch, VerifyingReader, drain

DEFAULT_MIRRORS = ("https://deb.debian.org/debian", "https://deb.debian.org/debian-security")
MIRRORS_ENV = "IMAGE_COMPOSER_DEBIAN_MIRRORS"
CACHE_ENV = "IMAGE_COMPOSER_DEB_CACHE"
TIMEOUT = 60  # seconds without a byte before a download is given up
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]*")
COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")  # Debian 12's archive areas


#: set by ``build --offline`` for what it calls (the bootloader files of phase two): no download
_OFFLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("debian_pool_offline",
                                                                default=False)


@contextlib.contextmanager
def offline_mode(offline: bool = True) -> Iterator[None]:
    """Within the block (and this thread), :func:`fetch` never downloads: a .deb not cached
    is an error that says so."""
    token = _OFFLINE.set(offline)
    try:
        yield
    finally:
        _OFFLINE.reset(token)


class PoolError(ComposerError):
    """Pinned packages that could not be fetched or are not the pinned bytes (all of them)."""


@dataclass(frozen=True)
class PoolDeb:
    """One pinned .deb: ``source`` is its source package (the pool directory), default the
    package's own name; ``component`` the archive area it is in (``main``, or
    ``non-free-firmware`` for the Raspberry Pi firmware)."""

    package: str
    version: str
    arch: str
    sha256: str
    source: str = ""
    component: str = "main"

    def __post_init__(self) -> None:
        if self.component not in COMPONENTS:
            raise ComposerError(f"{self.package}: unknown archive component "
                                f"{self.component!r} (known: {', '.join(COMPONENTS)})")
        for value in (self.package, self.source or self.package, self.arch):
            if not _NAME.fullmatch(value):
                raise ComposerError(f"{self.package}: not a Debian package or arch name: "
                                    f"{value!r}")
        if not _HEX64.fullmatch(self.sha256):
            raise ComposerError(f"{self.package}: sha256 must be 64 lowercase hex digits")

    @property
    def filename(self) -> str:
        """The pool's file name (the version without its epoch)."""
        return f"{self.package}_{self.version.partition(':')[2] or self.version}_{self.arch}.deb"

    @property
    def label(self) -> str:
        return f"{self.package}={self.version} ({self.arch})"

    def pool_paths(self) -> tuple[str, ...]:
        """Where the archive keeps it: ``pool/COMPONENT/...``, and ``pool/updates/COMPONENT/...``
        in the security archive."""
        source = self.source or self.package
        prefix = source[:4] if source.startswith("lib") else source[0]
        rest = f"{self.component}/{prefix}/{source}/{self.filename}"
        return (f"pool/{rest}", f"pool/updates/{rest}")


def mirrors(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    given = tuple(m.rstrip("/") for m in env.get(MIRRORS_ENV, "").split())
    return given or DEFAULT_MIRRORS


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    xdg = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(xdg) / "image-composer-debs"


def _sha256(path: Path) -> str:
    from composer.debian.deb import file_sha256

    with open(path, "rb") as fh:
        return file_sha256(fh)


def _download(deb: PoolDeb, dest: Path, bases: tuple[str, ...], session) -> str | None:
    """Fetch ``deb`` into ``dest`` from the first base that has it; None, or why not."""
    tried = []
    for base in bases:
        for pool_path in deb.pool_paths():
            url = f"{base}/{pool_path}"
            try:
                response = session.get(url, stream=True, timeout=TIMEOUT)
            except Exception as exc:  # requests' connection errors, DNS, TLS ...
                tried.append(f"{url}: {type(exc).__name__}")
                break  # this base is unreachable: its other pool paths would be too
            with response:
                if response.status_code == 404:
                    tried.append(f"{url}: 404")
                    continue
                if response.status_code != 200:
                    tried.append(f"{url}: HTTP {response.status_code}")
                    continue
                response.raw.decode_content = True
                try:
                    with atomic_file(dest) as out, \
                            VerifyingReader(response.raw, f"sha256:{deb.sha256}", None,
                                            url, close_raw=False) as reader:
                        drain(reader, out)
                except DigestMismatch:
                    return (f"{url} is not the pinned file (sha256 differs from "
                            f"{deb.sha256}); refusing it")
                except OSError as exc:
                    tried.append(f"{url}: {exc}")
                    continue
                return None
    return "not found: " + "; ".join(tried)


def fetch(debs: Iterable[PoolDeb], directory: Path | None = None, *,
          names: Mapping[PoolDeb, str] | None = None, offline: bool = False,
          environ: Mapping[str, str] | None = None, session=None) -> dict[PoolDeb, Path]:
    """Every pinned .deb as a verified file in ``directory`` (default :func:`cache_dir`),
    downloading the ones missing or wrong; ``names`` gives each its file name there (default
    the pool's). Raises one :class:`PoolError` listing every problem."""
    directory = directory or cache_dir(environ)
    offline = offline or _OFFLINE.get()
    wanted = sorted(set(debs), key=lambda d: (d.package, d.version, d.arch))
    out: dict[PoolDeb, Path] = {}
    problems: list[str] = []
    bases = mirrors(environ)
    for deb in wanted:
        path = directory / ((names or {}).get(deb) or deb.filename)
        if path.is_file() and _sha256(path) == deb.sha256:
            out[deb] = path
            continue
        if offline:
            problems.append(f"{deb.label}: not in {directory} (offline)")
            continue
        if session is None:
            import requests

            session = requests.Session()
        directory.mkdir(parents=True, exist_ok=True)
        why = _download(deb, path, bases, session)
        if why is None:
            out[deb] = path
        else:
            problems.append(f"{deb.label}: {why}")
    if problems:
        raise PoolError(f"{len(problems)} pinned Debian package(s) unavailable: "
                        + " | ".join(problems))
    return out


@dataclass(frozen=True)
class DebFile:
    """One file inside a pinned .deb, itself pinned: ``member`` is its path in the package
    (``usr/lib/ISOLINUX/isolinux.bin``), ``sha256`` its content's digest."""

    deb: PoolDeb
    member: str
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.deb.package}={self.deb.version}:/{self.member}"


MAX_FILE = 64 << 20  # the files taken out this way are small (bootloaders)


def extract(files: Mapping[str, DebFile], *, offline: bool = False,
            environ: Mapping[str, str] | None = None, session=None) -> dict[str, bytes]:
    """The bytes of every pinned file, by key (a role), from the cached .debs; a .deb that
    cannot be had, a member missing, or a member with other content is one :class:`PoolError`
    naming every such file."""
    import hashlib

    from composer.debian.deb import open_deb
    from composer.tar.canon import Kind

    got: dict[str, bytes] = {key: _SEEN[f] for key, f in files.items() if f in _SEEN}
    todo = {key: f for key, f in files.items() if key not in got}
    paths = fetch({f.deb for f in todo.values()}, offline=offline, environ=environ,
                  session=session)
    by_deb: dict[PoolDeb, dict[str, list[str]]] = {}
    for key, f in todo.items():
        by_deb.setdefault(f.deb, {}).setdefault(f.member, []).append(key)
    problems = []
    for deb in sorted(by_deb, key=lambda d: (d.package, d.version, d.arch)):
        wanted = by_deb[deb]
        with open_deb(paths[deb], deb.sha256) as reader:
            for entry, data in reader.data_entries():
                if entry.path in wanted and entry.kind is Kind.FILE and data is not None:
                    if entry.size > MAX_FILE:
                        continue
                    content = data.read()
                    for key in wanted[entry.path]:
                        got[key] = content
    for key in sorted(files):
        f = files[key]
        if key not in got:
            problems.append(f"{key}: {f.label} is not a file in the package")
            continue
        actual = hashlib.sha256(got[key]).hexdigest()
        if actual != f.sha256:
            problems.append(f"{key}: {f.label} has sha256 {actual}, pinned {f.sha256}")
        else:
            _SEEN[f] = got[key]
    if problems:
        raise PoolError(f"{len(problems)} pinned file(s) wrong: " + " | ".join(problems))
    return got


_SEEN: dict[DebFile, bytes] = {}  # verified files already taken out, in this process
