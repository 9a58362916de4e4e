"""Local image sources: OCI archives, ``docker save`` archives and the local Docker engine.

``oci-archive:FILE[:TAG]`` is a tar of an OCI image layout; it is read in place (members opened
as streams, nothing extracted) and walked like a layout. ``docker-archive:FILE[:NAME:TAG]`` and
``docker-daemon:NAME[:TAG]`` are both ``docker save`` streams (the engine's comes through the
``docker`` SDK): every file in the stream is hashed into the cache as it goes by, then the image's
real config and layers are named by a Docker schema 2 manifest written here, compact sorted JSON,
so the same engine image always gives the same manifest digest. Nothing is flattened: the layers
are the engine's own layer tars.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from composer import canonjson
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.oci.media import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST
from composer.oci.refs import RefError, parse_registry_ref
from composer.streams.digest import check_digest
from composer.tar.guard import StrictTarInfo

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
PREFIXES = ("oci-archive:", "docker-archive:", "docker-daemon:")
_METADATA_LIMIT = 16 << 20  # manifest.json and friends are small; refuse to buffer huge ones


@dataclass(frozen=True)
class SourceRef:
    """``kind`` is one of oci-archive, docker-archive, docker-daemon; ``name`` the tag or image
    name inside it (None: the only one)."""

    kind: str
    path: str
    name: str | None

    def __str__(self) -> str:
        if self.kind == "docker-daemon":
            return f"docker-daemon:{self.path}"
        return f"{self.kind}:{self.path}" + (f":{self.name}" if self.name else "")


def parse_source(text: str) -> SourceRef | None:
    """A local-source ref, or None when ``text`` is not one (registry refs, ``oci:``)."""
    kind, sep, rest = text.partition(":")
    if not sep or f"{kind}:" not in PREFIXES:
        return None
    if not rest:
        raise RefError(f"invalid reference {text!r}: nothing after {kind}:")
    if kind == "docker-daemon":
        try:
            parse_registry_ref(rest)
        except RefError as exc:
            raise RefError(f"invalid reference {text!r}: {exc}") from None
        return SourceRef(kind, rest, None)
    if kind == "oci-archive":
        head, sep, tail = rest.rpartition(":")
        if sep and head and "/" not in tail:
            return SourceRef(kind, head, tail)
        return SourceRef(kind, rest, None)
    # docker-archive:FILE[:NAME[:TAG]]: the file name ends at the first colon
    path, sep, name = rest.partition(":")
    if sep and not name:
        raise RefError(f"invalid reference {text!r}: empty image name")
    return SourceRef(kind, path, name or None)


def local_path(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir if base_dir is not None else Path.cwd()) / p


# -- tar files read in place ------------------------------------------------------------------
def _member_name(name: str) -> str:
    return posixpath.normpath(name).lstrip("/") if name not in (".", "./") else ""


class ArchiveReader:
    """A tar file whose members are opened by name as streams (nothing is extracted)."""

    def __init__(self, tar: tarfile.TarFile, path: Path):
        self._tar = tar
        self._path = path
        self._members = {_member_name(m.name): m for m in tar.getmembers()}

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path) -> Iterator[ArchiveReader]:
        try:
            tar = tarfile.open(path, "r:*", tarinfo=StrictTarInfo)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise ComposerError(f"{path}: no such file") from None
        except (tarfile.TarError, OSError) as exc:
            raise ComposerError(f"{path}: not a readable tar archive: {exc}") from None
        with tar:
            try:
                reader = cls(tar, path)
            except (tarfile.TarError, OSError) as exc:
                raise ComposerError(f"{path}: not a readable tar archive: {exc}") from None
            yield reader

    def has(self, name: str) -> bool:
        return name in self._members

    def open_member(self, name: str, what: str) -> IO[bytes]:
        member = self._members.get(name)
        fh = self._tar.extractfile(member) if member is not None else None
        if fh is None:
            raise ComposerError(f"{what}: {name} is missing from {self._path}")
        return fh

    def read_json(self, name: str, what: str) -> object:
        with self.open_member(name, what) as fh:
            data = fh.read(_METADATA_LIMIT + 1)
        if len(data) > _METADATA_LIMIT:
            raise ComposerError(f"{what}: {name} is too large")
        try:
            return canonjson.loads(data)
        except ValueError as exc:
            raise ComposerError(f"{what}: {name} is not valid JSON: {exc}") from None

    def oci_index(self, what: str) -> dict:
        if not self.has("oci-layout"):
            raise ComposerError(f"{what}: not an OCI archive (no oci-layout in {self._path})")
        marker = self.read_json("oci-layout", what)
        if not isinstance(marker, dict) or marker.get("imageLayoutVersion") != "1.0.0":
            raise ComposerError(f"{what}: unsupported OCI layout version in {self._path}")
        index = self.read_json("index.json", what)
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise ComposerError(f"{what}: index.json has no manifests list")
        return index

    def closure(self, desc: dict, what: str) -> list[tuple[str, int]]:
        """Every blob a descriptor reaches in the archive (all platforms), children first."""
        digest, size = desc["digest"], desc["size"]
        name = f"blobs/sha256/{check_digest(digest)}"
        doc = self.read_json(name, what)
        out: list[tuple[str, int]] = []
        if not isinstance(doc, dict):
            raise ComposerError(f"{what}: {name} is not a JSON object")
        # by content, not by the descriptor's word: linuxkit's ``cache export`` calls an image
        # manifest an index in its index.json
        if "manifests" in doc and "layers" not in doc:
            for child in doc.get("manifests") or []:
                out += self.closure(child, what)
        else:
            for part in [doc.get("config"), *(doc.get("layers") or [])]:
                if isinstance(part, dict):
                    out.append((part["digest"], part["size"]))
        out.append((digest, size))
        return out


# -- docker save streams ----------------------------------------------------------------------
@dataclass(frozen=True)
class Ingested:
    """What a ``docker save`` stream held: its manifest.json, and every file's blob."""

    manifest: list
    files: dict[str, tuple[str, int]]  # member name -> (digest, size) in the cache
    links: dict[str, str]  # symlink member -> the member it points at


def ingest_docker_save(stream: BinaryIO, cache: Cache, what: str) -> Ingested:
    """Hash every file of the stream into the cache, keeping only manifest.json in memory."""
    files: dict[str, tuple[str, int]] = {}
    links: dict[str, str] = {}
    manifest = None
    try:
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=StrictTarInfo) as tar:
            for member in tar:
                name = _member_name(member.name)
                if member.issym():
                    links[name] = posixpath.normpath(
                        posixpath.join(posixpath.dirname(name), member.linkname))
                elif member.islnk():
                    links[name] = _member_name(member.linkname)
                elif member.isfile():
                    fh = tar.extractfile(member)
                    assert fh is not None
                    if name == "manifest.json":
                        data = fh.read(_METADATA_LIMIT + 1)
                        if len(data) > _METADATA_LIMIT:
                            raise ComposerError(f"{what}: manifest.json is too large")
                        try:
                            manifest = canonjson.loads(data)
                        except ValueError as exc:
                            raise ComposerError(f"{what}: manifest.json is not valid JSON: "
                                                f"{exc}") from None
                        continue
                    expect = None
                    if name.startswith("blobs/sha256/"):
                        expect = "sha256:" + name.rsplit("/", 1)[1]
                    files[name] = cache.put_stream(fh, f"{what}: {name}", expect)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ComposerError(f"{what}: not a readable docker save archive: {exc}") from None
    if not isinstance(manifest, list) or not manifest:
        raise ComposerError(f"{what}: no manifest.json (is this a `docker save` archive?)")
    return Ingested(manifest, files, links)


def _file(ing: Ingested, name: object, what: str) -> tuple[str, int]:
    if not isinstance(name, str):
        raise ComposerError(f"{what}: malformed manifest.json entry")
    path = _member_name(name)
    for _ in range(16):
        if path in ing.files:
            return ing.files[path]
        if path not in ing.links:
            break
        path = ing.links[path]
    raise ComposerError(f"{what}: {name} is missing from the archive")


def _choose(ing: Ingested, wanted: str | None, what: str) -> dict:
    entries = [e for e in ing.manifest if isinstance(e, dict)]
    if wanted is None:
        if len(entries) != 1:
            raise ComposerError(f"{what}: archive holds {len(entries)} images; name one "
                                "with docker-archive:FILE:NAME:TAG")
        return entries[0]
    want = str(parse_registry_ref(wanted))
    for entry in entries:
        for tag in entry.get("RepoTags") or []:
            with contextlib.suppress(RefError):
                if str(parse_registry_ref(tag)) == want:
                    return entry
    tags = sorted(t for e in entries for t in (e.get("RepoTags") or []) if isinstance(t, str))
    raise ComposerError(f"{what}: no image tagged {wanted!r} in the archive"
                        + (f" (tags: {', '.join(tags)})" if tags else ""))


def _is_gzip(cache: Cache, digest: str) -> bool:
    with open(cache.blob_path(digest), "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def docker_manifest(ing: Ingested, cache: Cache, wanted: str | None, what: str
                    ) -> tuple[str, int]:
    """Write the schema 2 manifest naming the chosen image's config and layers: (digest, size)."""
    entry = _choose(ing, wanted, what)
    config_digest, config_size = _file(ing, entry.get("Config"), what)
    layer_names = entry.get("Layers")
    if not isinstance(layer_names, list):
        raise ComposerError(f"{what}: manifest.json entry has no Layers list")
    layers = []
    for name in layer_names:
        digest, size = _file(ing, name, what)
        media_type = DOCKER_LAYER_GZIP if _is_gzip(cache, digest) else DOCKER_LAYER
        layers.append({"mediaType": media_type, "digest": digest, "size": size})
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers,
    }
    data = canonjson.compact(manifest)
    return cache.put_bytes(data), len(data)


class _Chunks(io.RawIOBase):
    """An iterator of byte chunks (the SDK's ``save()``) as a readable stream."""

    def __init__(self, chunks: Iterator[bytes]):
        super().__init__()
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _engine_error(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def docker_engine():
    """A client for the local engine ($DOCKER_HOST or the default socket)."""
    import docker
    import docker.errors

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise ComposerError(f"cannot reach the Docker engine: {_engine_error(exc)}") from None
    return client


def engine_has(name: str) -> bool:
    """Whether the local engine is reachable and has ``name`` (for ``--docker``)."""
    import docker.errors

    try:
        docker_engine().images.get(name)
    except (ComposerError, docker.errors.DockerException):
        return False
    return True


def from_engine(name: str, cache: Cache, what: str) -> tuple[str, int]:
    """Save ``name`` from the engine into the cache; returns the manifest (digest, size)."""
    import docker.errors
    import requests

    client = docker_engine()
    try:
        image = client.images.get(name)
        stream = _Chunks(iter(image.save(chunk_size=1 << 20)))
        ing = ingest_docker_save(io.BufferedReader(stream, 1 << 20), cache, what)
    except docker.errors.ImageNotFound:
        raise ComposerError(f"{what}: no such image in the Docker engine") from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise ComposerError(f"{what}: Docker engine: {_engine_error(exc)}") from None
    return docker_manifest(ing, cache, None, what)


def from_docker_archive(path: Path, wanted: str | None, cache: Cache, what: str
                        ) -> tuple[str, int]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise ComposerError(f"{what}: {path}: no such file") from None
    with fh:
        ing = ingest_docker_save(io.BufferedReader(fh, 1 << 20), cache, what)
    return docker_manifest(ing, cache, wanted, what)
