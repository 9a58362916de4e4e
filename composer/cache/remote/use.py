"""What ``build`` asks of the remote cache: look an entry up before doing the work, offer
what it made, publish the offers when the build has succeeded, and say what came from where.

A hit is downloaded into a temporary directory of the local cache, every file verified by the
signed digest while it streams, and handed to the caller to install into the local cache
(:mod:`composer.rootfs.memo`, :mod:`composer.cache.outputs`); nothing unverified is kept.
A registry that cannot be reached or refuses is noted once and skipped for the rest of the
build; an entry that fails a check is skipped with a warning naming why. Both are errors
instead with ``required`` (``--cache-from-required``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer import canonjson
from composer.errors import ComposerError, UsageError
from composer.images.registry import RegistryClient, RegistryError
from composer.repro import attest
from composer.streams.digest import DigestMismatch

from . import entry
from .transport import Repo, default_client, repository

Log = Callable[[str], None]
ENV = {"cache_to": "IMAGE_COMPOSER_CACHE_TO", "cache_from": "IMAGE_COMPOSER_CACHE_FROM",
       "key": "IMAGE_COMPOSER_CACHE_KEY", "trust": "IMAGE_COMPOSER_CACHE_TRUST",
       "required": "IMAGE_COMPOSER_CACHE_FROM_REQUIRED"}


@dataclass(frozen=True)
class Settings:
    """The remote cache flags of one build (see docs/remote-cache.md)."""

    cache_to: tuple[str, ...] = ()
    cache_from: tuple[str, ...] = ()
    key: Path | None = None
    trust: tuple[Path, ...] = ()
    required: bool = False
    insecure: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.cache_to or self.cache_from)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def settings_from(cache_to: list[str] | None, cache_from: list[str] | None,
                  key: Path | None, trust: list[Path] | None, required: bool,
                  insecure: tuple[str, ...], environ: Mapping[str, str] | None = None) -> Settings:
    """Flags first; each one left out is taken from its environment variable (comma-separated
    lists), so a CI job can set them once for every build."""
    env = os.environ if environ is None else environ
    to = tuple(v for item in cache_to or [] for v in _split(item)) \
        or _split(env.get(ENV["cache_to"]))
    frm = tuple(v for item in cache_from or [] for v in _split(item)) \
        or _split(env.get(ENV["cache_from"]))
    trusted = tuple(trust or ()) or tuple(Path(p) for p in _split(env.get(ENV["trust"])))
    signing = key or (Path(env[ENV["key"]]) if env.get(ENV["key"]) else None)
    need = required or env.get(ENV["required"], "").lower() in ("1", "true", "yes")
    for ref in (*to, *frm):
        repository(ref)  # a usage error now, not a warning later
    if to and signing is None:
        raise UsageError("--cache-to needs --cache-key KEY (entries are signed; readers use "
                         "only entries signed by a key they trust)")
    return Settings(to, frm, signing, trusted, need, insecure)


def trusted_keys(paths: tuple[Path, ...]) -> dict[str, Any]:
    """key id -> public key, from ``.pub`` files and directories of them."""
    keys: dict[str, Any] = {}
    for path in paths:
        if Path(path).is_dir():
            keys.update(attest.load_public_keys(Path(path)))
        else:
            key = attest.load_public_key(Path(path))
            keys[attest.key_id(key)] = key
    return keys


@dataclass
class Hit:
    """One entry a build used: which, from where, signed by whom, which of its files."""

    kind: str
    key: str
    format: str
    source: str
    manifest: str
    signer: str
    files: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "format": self.format,
                "from": self.source, "manifest": self.manifest, "signer": self.signer,
                "files": list(self.files)}


@dataclass(frozen=True)
class Found:
    """A trusted entry, not downloaded yet."""

    repo: Repo
    payload: entry.Payload
    manifest: str
    signer: str


@dataclass
class _Offer:
    payload: entry.Payload
    files: dict[str, Path]


@dataclass
class RemoteCache:
    """The remote caches of one build."""

    settings: Settings
    log: Log
    client: RegistryClient | None = None
    hits: list[Hit] = field(default_factory=list)
    published: list[dict[str, str]] = field(default_factory=list)
    _offers: list[_Offer] = field(default_factory=list)
    _down: set[tuple[str, bool]] = field(default_factory=set)
    _found: dict[tuple[str, str], Found | None] = field(default_factory=dict)
    _bad: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        s = self.settings
        self.client = self.client or default_client(s.insecure)
        self._signing = attest.load_private_key(s.key) if s.key else None
        self._trusted = trusted_keys(s.trust)
        if self._signing is not None:  # a builder trusts what it signs itself
            public = self._signing.public_key()
            self._trusted.setdefault(attest.key_id(public), public)
        self._readers = [Repo(repository(r), self.client) for r in s.cache_from]
        self._writers = [Repo(repository(r), self.client) for r in s.cache_to]
        if self._readers and not self._trusted:
            self.log("note: --cache-from ignored: no --cache-trust key (remote entries are "
                     "used only when signed by a key you trust)")
            self._readers = []

    # -- failures --------------------------------------------------------------------------
    def _unreachable(self, repo: Repo, exc: ComposerError, reading: bool) -> None:
        """Note a registry that failed once, and use it no more in this build (for reading
        or for writing: one may work without the other)."""
        if reading and self.settings.required:
            raise ComposerError(f"remote cache {exc} (--cache-from-required)")
        mode = (repo.name, reading)
        if mode not in self._down:
            self.log(f"warning: remote cache {exc}; "
                     + ("building instead" if reading else "not published"))
        self._down.add(mode)

    def _rejected(self, exc: ComposerError) -> None:
        if self.settings.required:
            raise ComposerError(f"{exc} (--cache-from-required)")
        self.log(f"warning: remote cache: rejected {exc}; building instead")

    # -- reading ---------------------------------------------------------------------------
    def fetch(self, kind: str, key: str, scratch: Path
              ) -> tuple[entry.Payload, dict[str, Path]] | None:
        """The first trusted, intact entry for ``key`` among the ``--cache-from`` caches,
        downloaded into temporary files under ``scratch`` (the caller installs them and
        removes what is left with :func:`discard`)."""
        while (found := self.find(kind, key)) is not None:
            paths = self.download(found, scratch)
            if paths is not None:
                return found.payload, paths
        return None

    def find(self, kind: str, key: str) -> Found | None:
        """The first ``--cache-from`` entry for ``key`` that a trusted key signed (manifest
        and envelope only; answers are remembered for the rest of the build)."""
        if (kind, key) in self._found:
            return self._found[(kind, key)]
        result = None
        for repo in self._readers:
            if (repo.name, True) in self._down or (repo.name, kind, key) in self._bad:
                continue
            try:
                result = self._verified(repo, kind, key)
            except entry.Rejected as exc:
                self._rejected(exc)
                continue
            except RegistryError as exc:
                self._unreachable(repo, exc, reading=True)
                continue
            if result is not None:
                break
        self._found[(kind, key)] = result
        return result

    def download(self, found: Found, scratch: Path, names: tuple[str, ...] | None = None
                 ) -> dict[str, Path] | None:
        """Download an entry's files (or those named), each verified against the signed
        digest while it streams; None (with a warning) if any fails, and then the entry is
        not used again in this build (:meth:`find` looks at the next ``--cache-from``)."""
        try:
            paths = self._download(found, scratch, names)
        except (entry.Rejected, RegistryError) as exc:
            if isinstance(exc, entry.Rejected):
                self._rejected(exc)
            else:
                self._unreachable(found.repo, exc, reading=True)
            self._bad.add((found.repo.name, found.payload.kind, found.payload.key))
            self._found.pop((found.payload.kind, found.payload.key), None)
            return None
        hit = next((h for h in self.hits if h.manifest == found.manifest
                    and h.source == found.repo.name), None)
        if hit is None:
            hit = Hit(found.payload.kind, found.payload.key, found.payload.format,
                      found.repo.name, found.manifest, found.signer, [])
            self.hits.append(hit)
        hit.files[:] = sorted(set(hit.files) | set(paths))
        return paths

    def _verified(self, repo: Repo, kind: str, key: str) -> Found | None:
        """The tagged entry if a trusted key signed it (and its manifest lists its files)."""
        tag = entry.tag(kind, key)
        what = f"{repo.name}:{tag[:19]}"
        found = repo.manifest(tag)
        if found is None:
            return None
        data, digest = found
        doc = entry.parse_manifest(data, what)
        env_desc = doc["layers"][0]
        try:
            env = canonjson.loads(repo.blob_bytes(env_desc["digest"], env_desc["size"],
                                                  f"{what}: envelope"))
        except DigestMismatch as exc:
            raise entry.Rejected(str(exc)) from None
        except ValueError:
            raise entry.Rejected(f"{what}: the envelope is not JSON") from None
        verified = attest.verify_payload(env, entry.PAYLOAD_TYPE, self._trusted)
        if verified is None:
            signers = sorted(str(s.get("keyid"))[:16] for s in env.get("signatures") or []
                             if isinstance(s, dict)) if isinstance(env, dict) else []
            raise entry.Rejected(f"{what}: signed by no trusted key "
                                 f"(signer {', '.join(signers) or 'none'})")
        payload = entry.parse_payload(verified[0], kind, key, what)
        entry.check_layers(doc, payload, what)
        return Found(repo, payload, digest, verified[1])

    def _download(self, found: Found, scratch: Path, names: tuple[str, ...] | None
                  ) -> dict[str, Path]:
        repo, payload = found.repo, found.payload
        scratch.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        try:
            for f in payload.files:
                if names is not None and f.name not in names:
                    continue
                # plain files in the cache's tmp/ (what ``cache clean`` sweeps if we are killed)
                fd, name = tempfile.mkstemp(dir=scratch, prefix=f"remote-{payload.key[:12]}-")
                paths[f.name] = Path(name)
                os.fchmod(fd, 0o644)  # as every cache file and output, whatever the umask
                with os.fdopen(fd, "wb") as fh:
                    repo.download(f.digest, f.size, fh,
                                  f"{repo.name}:{payload.kind}-{payload.key[:12]}: {f.name}")
                    fh.flush()
                    os.fsync(fh.fileno())
        except DigestMismatch as exc:
            discard(paths)
            raise entry.Rejected(str(exc)) from None
        except BaseException:
            discard(paths)
            raise
        return paths

    # -- writing ---------------------------------------------------------------------------
    def offer(self, kind: str, key: str, fmt: str, files: dict[str, tuple[Path, str, int]],
              meta: dict[str, Any] | None = None) -> None:
        """Publish this entry after the build (name -> (path, hex sha256, size)). The files
        must stay in place until :meth:`publish` (they are the local cache's)."""
        if not self._writers:
            return
        payload = entry.Payload(kind, key, fmt, tuple(
            entry.File(n, f"sha256:{h}", s) for n, (_p, h, s) in sorted(files.items())),
            dict(meta or {}))
        self._offers.append(_Offer(payload, {n: p for n, (p, _h, _s) in files.items()}))

    @property
    def writing(self) -> bool:
        return bool(self._writers)

    def publish(self) -> None:
        """Push every offer to every ``--cache-to`` cache, unless a trusted entry for its key
        is already there. Failures are warnings: the build has its outputs already."""
        if not self._offers or self._signing is None:
            return
        signer = attest.key_id(self._signing.public_key())
        created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for repo in self._writers:
            for offer in self._offers:
                if (repo.name, False) in self._down:
                    break
                p = offer.payload
                try:
                    existing = self._existing(repo, p)
                    if existing:
                        continue
                    envelope = canonjson.compact(attest.sign_payload(
                        self._signing, entry.PAYLOAD_TYPE, p.to_bytes()))
                    digest = repo.publish(p, envelope, signer, created, offer.files)
                    self.published.append({"to": repo.name, "tag": entry.tag(p.kind, p.key),
                                           "manifest": digest})
                    self.log(f"remote cache {repo.name}: published {p.kind} {p.format} "
                             f"{p.key[:12]}")
                except RegistryError as exc:
                    self._unreachable(repo, exc, reading=False)
                except ComposerError as exc:
                    self.log(f"warning: remote cache {repo.name}: {p.kind} {p.key[:12]} not "
                             f"published: {exc}")

    def _existing(self, repo: Repo, p: entry.Payload) -> bool:
        """Whether a trusted entry for ``p``'s key is there (one valid entry per key: racing
        builders publishing the same key find the first one's and leave it)."""
        try:
            found = self._verified(repo, p.kind, p.key)
        except entry.Rejected:
            return False  # a broken or foreign entry: ours replaces it
        if found is None:
            return False
        if sorted(found.payload.files, key=lambda f: f.name) != \
                sorted(p.files, key=lambda f: f.name):
            self.log(f"warning: remote cache {repo.name}: {p.kind} {p.key[:12]} is there with "
                     "other bytes than this build made (not reproducible?); left as it is")
        return True

    def provenance(self) -> dict[str, Any] | None:
        """What NAME.build-env.json says about the remote cache (None if none was used)."""
        if not self.hits:
            return None
        return {"entries": [h.to_json() for h in self.hits]}


def discard(paths: dict[str, Path]) -> None:
    """Remove a fetched entry's temporary files (after installing them: they were linked or
    moved into the local cache)."""
    for path in paths.values():
        with contextlib.suppress(OSError):
            path.unlink()
