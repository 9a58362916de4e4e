"""Push an image from an OCI layout (our ``docker``/``oci`` archives or ``oci-dir``) to a registry.

The OCI distribution API's push half: ``HEAD`` each blob and skip those the registry has; upload
the rest with ``POST`` then one ``PUT`` (monolithic) or ``PATCH`` chunks then ``PUT`` (chunked,
for blobs larger than ``chunk_size``); then ``PUT`` the manifest by tag and check that the
registry names it by the digest we computed. Several single-platform archives push as one
multi-platform index (:func:`push_index`).

Blob bytes are read from the archive through the one verifying reader
(:class:`composer.streams.digest.VerifyingReader`) and streamed, never held in memory.

Auth and transport are :class:`composer.images.registry.RegistryClient`'s (its ``send`` and
``with_retries``): a token with ``pull,push`` scope on a Bearer challenge, Basic with the
credentials on a Basic challenge, ``Authorization`` only to the registry's own origin, whole
operations retried on connection failures, 429 and 5xx.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin

import requests

from composer import canonjson
from composer.errors import ComposerError
from composer.images.registry import RegistryClient, RegistryError
from composer.oci.documents import platform_index
from composer.oci.media import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX
from composer.oci.refs import Ref
from composer.streams.digest import CHUNK, VerifyingReader, check_digest
from composer.tar.guard import StrictTarInfo

MAX_JSON = 4 << 20
DEFAULT_CHUNK = 64 << 20  # larger blobs go up in PATCH chunks of this size


# -- reading the source ---------------------------------------------------------------------
class Layout:
    """An OCI image layout in a directory or a tar archive; blobs come out verified."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if self.path.is_dir():
            return
        try:
            # StrictTarInfo: a hostile header is an error, not a short archive or a loop
            self._tar = tarfile.open(self.path, "r:",  # noqa: SIM115 - closed by close()
                                     tarinfo=StrictTarInfo)
            for info in self._tar:
                # headers of a huge wrong file must not pile up (typeshed omits TarFile.members)
                self._tar.members.clear()  # type: ignore[attr-defined]
                if info.isfile():
                    self._members[info.name.removeprefix("./")] = info
        except FileNotFoundError:
            raise ComposerError(f"{self.path}: no such file") from None
        except (tarfile.TarError, OSError) as exc:
            self.close()
            raise ComposerError(f"{self.path}: not a tar archive or directory: {exc}") from None

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> Layout:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self, name: str) -> BinaryIO:
        if self._tar is None:
            try:
                return open(self.path / name, "rb")
            except FileNotFoundError:
                raise ComposerError(f"{self.path}: no {name} in the image layout") from None
        info = self._members.get(name)
        if info is None:
            raise ComposerError(f"{self.path}: no {name} in the archive (not an OCI layout? "
                                "push takes the docker, oci and oci-dir outputs)")
        return self._tar.extractfile(info)  # type: ignore[return-value]

    def index(self) -> dict:
        with self._open("index.json") as fh:
            return _json(fh.read(MAX_JSON + 1), f"{self.path}: index.json")

    def open_blob(self, digest: str, size: int) -> BinaryIO:
        name = "blobs/sha256/" + check_digest(digest)
        return io.BufferedReader(VerifyingReader(self._open(name), digest, size,
                                                 f"{self.path}: {name}"), CHUNK)

    def read_blob(self, desc: dict) -> bytes:
        if desc["size"] > MAX_JSON:
            raise ComposerError(f"{self.path}: {desc['digest']} is too large for a manifest")
        with self.open_blob(desc["digest"], desc["size"]) as fh:
            return fh.read()

    def image(self) -> dict:
        """The descriptor of the one image (or index) in the layout."""
        manifests = self.index().get("manifests") or []
        if len(manifests) != 1:
            raise ComposerError(f"{self.path}: the layout has {len(manifests)} images; "
                                "push needs exactly one")
        return manifests[0]


def _json(data: bytes, what: str) -> dict:
    if len(data) > MAX_JSON:
        raise ComposerError(f"{what}: larger than {MAX_JSON} bytes")
    try:
        value = canonjson.loads(data)
    except ValueError as exc:
        raise ComposerError(f"{what}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ComposerError(f"{what}: not a JSON object")
    return value


class _Body:
    """At most ``length`` bytes of ``reader`` as a request body with a known Content-Length."""

    def __init__(self, reader: BinaryIO, length: int):
        self._reader = reader
        self._left = length
        self._length = length
        self._pos = 0

    def __len__(self) -> int:
        return self._length

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = self._reader.read(size) if size else b""
        if size and not data:
            raise ComposerError("blob ended early while uploading")
        self._left -= len(data)
        self._pos += len(data)
        return data


# -- talking to the registry ----------------------------------------------------------------
PUSH_SCOPE = "pull,push"


@dataclass
class Pusher:
    """Push-side operations over a :class:`RegistryClient` (its credentials, insecure hosts,
    retries). ``uploaded``/``skipped`` record what each push sent."""

    client: RegistryClient = field(default_factory=RegistryClient)
    chunk_size: int = DEFAULT_CHUNK
    timeout: tuple[float, float] = (15.0, 300.0)  # uploads may wait long for an answer
    log: Callable[[str], None] = lambda _message: None
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    # -- operations ----------------------------------------------------------------------
    def blob_exists(self, ref: Ref, digest: str) -> bool:
        url = f"{self.client.repo_url(ref)}/blobs/{digest}"
        resp = self.client.with_retries(lambda: self._send(
            ref, "HEAD", url, f"{ref}: blob {digest}", ok=(200, 404), follow=True))
        return resp.status_code == 200

    def push_blob(self, ref: Ref, digest: str, size: int,
                  opener: Callable[[], BinaryIO]) -> None:
        """Upload a blob unless the registry has it; ``opener`` gives a fresh verified reader."""
        if self.blob_exists(ref, digest):
            self.skipped.append(digest)
            self.log(f"{ref.name}: {digest[:19]} exists, skipped")
            return
        self.client.with_retries(lambda: self._upload(ref, digest, size, opener))
        self.uploaded.append(digest)
        self.log(f"{ref.name}: {digest[:19]} uploaded ({size} bytes)")

    def put_manifest(self, ref: Ref, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest by tag or digest; returns its digest, checked against the registry's."""
        return self.put_manifest_answer(ref, reference, data, media_type)[0]

    def put_manifest_answer(self, ref: Ref, reference: str, data: bytes, media_type: str
                            ) -> tuple[str, requests.structures.CaseInsensitiveDict[str]]:
        """:meth:`put_manifest`, and the registry's answer headers (``OCI-Subject``: it
        indexed the manifest's ``subject`` for the referrers API)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        url = f"{self.client.repo_url(ref)}/manifests/{reference}"
        resp = self.client.with_retries(lambda: self._send(
            ref, "PUT", url, f"{ref.name}:{reference}", ok=(200, 201),
            headers={"Content-Type": media_type}, body=lambda: data))
        said = resp.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise RegistryError(f"{ref.name}:{reference}: the registry stored the manifest as "
                                f"{said}, not {digest} (it rewrote it)")
        return digest, resp.headers

    # -- uploads ---------------------------------------------------------------------------
    def _upload(self, ref: Ref, digest: str, size: int, opener: Callable[[], BinaryIO]) -> None:
        what = f"{ref.name}: blob {digest}"
        start = f"{self.client.repo_url(ref)}/blobs/uploads/"
        resp = self._send(ref, "POST", start, what, ok=(202,))
        location = self._location(resp, start, what)
        with opener() as reader:
            if size > self.chunk_size:
                offset = 0
                while offset < size:
                    n = min(self.chunk_size, size - offset)
                    chunk = _Body(reader, n)
                    resp = self._send(ref, "PATCH", location, what, ok=(202, 204), headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + n - 1}",
                    }, body=lambda chunk=chunk: chunk)
                    location = self._location(resp, location, what)
                    offset += n
                if reader.read(1):
                    raise ComposerError(f"{what}: longer than its size {size}")
                body: Callable[[], bytes | _Body] = lambda: b""  # noqa: E731
            else:
                whole = _Body(reader, size)
                body = lambda: whole  # noqa: E731
            self._send(ref, "PUT", location, what, ok=(201, 204), params={"digest": digest},
                       headers={"Content-Type": "application/octet-stream"}, body=body)
            reader.read()  # to its end: the verifying reader checks the digest there

    def _send(self, ref: Ref, method: str, url: str, what: str, *, ok: tuple[int, ...],
              follow: bool = False, **kw) -> requests.Response:
        """The client's request with push's token scope and timeout; read whole, not streamed."""
        return self.client.send(ref, method, url, what, ok=ok, follow=follow, scope=PUSH_SCOPE,
                                timeout=self.timeout, **kw)

    @staticmethod
    def _location(resp: requests.Response, base: str, what: str) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: the registry sent no upload location")
        return urljoin(base, location)


# -- pushing images -------------------------------------------------------------------------
@dataclass(frozen=True)
class Pushed:
    """What was pushed: the top manifest's descriptor (digest, size, media type)."""

    ref: Ref
    digest: str
    size: int
    media_type: str

    @property
    def pinned(self) -> str:
        return f"{self.ref.name}@{self.digest}"


def _reference(ref: Ref, digest: str) -> str:
    """Where the top manifest goes: the tag, or the digest (which must then be ours)."""
    if ref.digest and ref.digest != digest:
        raise ComposerError(f"{ref}: the image's digest is {digest}, not {ref.digest}")
    return ref.tag or digest


def _push_tree(layout: Layout, desc: dict, ref: Ref, pusher: Pusher, reference: str) -> bytes:
    """Push everything a manifest or index names, then the manifest itself by ``reference``."""
    media_type = desc.get("mediaType")
    data = layout.read_blob(desc)
    doc = _json(data, f"{layout.path}: {desc['digest']}")
    if media_type in INDEX_TYPES:
        for child in doc.get("manifests") or []:
            _push_tree(layout, child, ref, pusher, child["digest"])
    elif media_type in MANIFEST_TYPES:
        for blob in [doc["config"], *doc.get("layers", [])]:
            pusher.push_blob(ref, blob["digest"], blob["size"],
                             functools.partial(layout.open_blob, blob["digest"], blob["size"]))
    else:
        raise ComposerError(f"{layout.path}: cannot push a {media_type!r}")
    pusher.put_manifest(ref, reference, data, media_type)
    return data


def push_tree(source: Path, desc: dict, ref: Ref, pusher: Pusher, reference: str) -> None:
    """Push the image or index ``desc`` names in the layout at ``source`` (the cache is one) as
    ``reference`` (a tag or its digest)."""
    with Layout(source) as layout:
        _push_tree(layout, desc, ref, pusher, reference)


def push_image(source: Path, ref: Ref, pusher: Pusher) -> Pushed:
    """Push the one image (or index) of the layout at ``source`` to ``ref``."""
    with Layout(source) as layout:
        desc = layout.image()
        reference = _reference(ref, desc["digest"])
        _push_tree(layout, desc, ref, pusher, reference)
    return Pushed(ref, desc["digest"], desc["size"], desc["mediaType"])


def push_index(sources: list[Path], ref: Ref, pusher: Pusher) -> Pushed:
    """Push single-platform images (one per ``--arch`` build) and one index naming them all.

    The index lists them sorted by platform, so the order of ``sources`` does not matter.
    """
    images: list[tuple[dict, dict]] = []
    for source in sources:
        with Layout(source) as layout:
            desc = layout.image()
            if desc.get("mediaType") not in MANIFEST_TYPES:
                raise ComposerError(f"{source}: not a single-platform image")
            manifest = _json(layout.read_blob(desc), f"{source}: manifest")
            config = _json(layout.read_blob(manifest["config"]), f"{source}: config")
            try:
                platform_index([*images, (desc, config)])  # a platform given twice fails now
            except ValueError as exc:
                raise ComposerError(f"{source}: {exc}") from None
            _push_tree(layout, desc, ref, pusher, desc["digest"])
            images.append((desc, config))
    index = platform_index(images)
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    pusher.put_manifest(ref, _reference(ref, digest), index, OCI_INDEX)
    return Pushed(ref, digest, len(index), OCI_INDEX)


def push(sources: list[Path], ref: Ref, pusher: Pusher) -> Pushed:
    """One source: push it as it is; several: push them as one multi-platform index."""
    if not sources:
        raise ComposerError("nothing to push")
    return push_image(sources[0], ref, pusher) if len(sources) == 1 else \
        push_index(sources, ref, pusher)


IMAGE_OUTPUT_SUFFIXES = ("-docker.tar", "-oci.tar", "-oci")


def image_output(paths: list[Path]) -> Path | None:
    """Among a build's committed outputs, the one to push or load (``docker`` preferred)."""
    for suffix in IMAGE_OUTPUT_SUFFIXES:
        for path in paths:
            if path.name.endswith(suffix):
                return path
    return None
