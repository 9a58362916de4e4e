"""One remote cache repository, over THE registry client and THE pusher.

Reads go through :class:`composer.images.registry.RegistryClient` (auth, redirects, retries)
and every blob through :class:`composer.streams.digest.VerifyingReader` while it streams;
writes through :class:`composer.images.push.Pusher` (blobs first, skipped when present; the
manifest last). A registry only accepts a manifest whose blobs it has, so an interrupted
publish leaves no tag, only unreferenced blobs the registry's garbage collection removes:
a reader sees a whole entry or none.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin

from composer.errors import ComposerError, UsageError
from composer.images.push import Pusher
from composer.images.registry import RegistryClient, RegistryError
from composer.oci.media import OCI_MANIFEST
from composer.oci.refs import Ref, RefError, parse_ref
from composer.streams.behind import write_behind
from composer.streams.digest import CHUNK, VerifyingReader, drain, sha256_digest

from . import entry

MAX_MANIFEST = 4 << 20
DELETE_SCOPE = "pull,push,delete"


def repository(text: str) -> Ref:
    """``REGISTRY/REPO`` (no tag, no digest) as a Ref to that repository."""
    tail = text.rsplit("/", 1)[-1]
    if "/" not in text or ":" in tail or "@" in tail:
        raise UsageError(f"{text}: a remote cache is a repository (REGISTRY/NAME), "
                         "without a tag or digest")
    try:
        ref = parse_ref(text)
    except RefError as exc:
        raise UsageError(f"{text}: {exc}") from None
    if not isinstance(ref, Ref):
        raise UsageError(f"{text}: a remote cache must be a registry repository")
    return ref


def default_client(insecure: tuple[str, ...] = ()) -> RegistryClient:
    """The user's docker credentials; few retries (a cache that is down must not hold up the
    build it was meant to speed up)."""
    from composer.images.auth import docker_credentials

    return RegistryClient(credentials=docker_credentials(), insecure=frozenset(insecure),
                          retries=1, backoff=0.5, timeout=(5.0, 60.0))


@dataclass
class Repo:
    """The repository ``ref`` names, as a remote cache."""

    ref: Ref
    client: RegistryClient
    pusher: Pusher = field(init=False)

    def __post_init__(self) -> None:
        self.pusher = Pusher(client=self.client)

    @property
    def name(self) -> str:
        return self.ref.name

    def _tagged(self, reference: str) -> Ref:
        return Ref(self.ref.registry, self.ref.repository, reference, None)

    # -- reading ---------------------------------------------------------------------------
    def manifest(self, reference: str) -> tuple[bytes, str] | None:
        """(bytes, digest) of the manifest ``reference`` names, None if there is none."""
        url = f"{self.client.repo_url(self.ref)}/manifests/{reference}"
        what = f"{self.name}:{reference}"

        def attempt() -> tuple[bytes, str] | None:
            resp = self.client.send(self.ref, "GET", url, what, ok=(200, 404),
                                    headers={"Accept": OCI_MANIFEST}, stream=True)
            try:
                if resp.status_code == 404:
                    return None
                from composer.images.registry import _ResponseStream

                data = _ResponseStream(resp, what).read(MAX_MANIFEST + 1)
            finally:
                resp.close()
            if len(data) > MAX_MANIFEST:
                raise RegistryError(f"{what}: manifest larger than {MAX_MANIFEST} bytes")
            return data, sha256_digest(data)

        return self.client.with_retries(attempt)

    def blob_bytes(self, digest: str, size: int, what: str) -> bytes:
        """A small blob, verified (an envelope)."""
        return self.client.fetch_blob(
            self.ref, digest,
            lambda s: VerifyingReader(s, digest, size, what, close_raw=False).readall(), what)

    def download(self, digest: str, size: int, out: BinaryIO, what: str) -> None:
        """Stream a blob into ``out`` (from its start on every retry), verified as it comes."""

        def consume(stream: BinaryIO) -> None:
            out.seek(0)
            out.truncate()
            # writing on another thread overlaps the disk with receiving and hashing
            with write_behind(out) as behind:
                drain(VerifyingReader(stream, digest, size, what, close_raw=False), behind)

        self.client.fetch_blob(self.ref, digest, consume, what)

    def tags(self) -> list[str]:
        """Every tag of the repository (following the registry's pagination)."""
        url: str | None = f"{self.client.repo_url(self.ref)}/tags/list"
        params: dict | None = {"n": 1000}
        found: list[str] = []
        while url:
            current = url
            resp = self.client.with_retries(functools.partial(
                self.client.send, self.ref, "GET", current, f"{self.name}: tags",
                ok=(200, 404), params=params))
            if resp.status_code == 404:
                return []
            from composer import canonjson

            try:
                found += [t for t in canonjson.loads(resp.content).get("tags") or []
                          if isinstance(t, str)]
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.name}: the tag list is not JSON") from None
            link = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", resp.headers.get("Link", ""))
            url = urljoin(current, link.group(1)) if link else None
            params = None
        return sorted(set(found))

    # -- writing ---------------------------------------------------------------------------
    def publish(self, payload: entry.Payload, envelope: bytes, signer: str, created: str,
                files: dict[str, Path]) -> str:
        """Upload the entry's blobs, then its manifest under its tag; returns the digest."""
        tagged = self._tagged(entry.tag(payload.kind, payload.key))
        blobs: list[tuple[str, int, Callable[[], BinaryIO]]] = [
            (sha256_digest(entry.EMPTY), len(entry.EMPTY),
             functools.partial(io.BytesIO, entry.EMPTY)),
            (sha256_digest(envelope), len(envelope), functools.partial(io.BytesIO, envelope)),
        ]
        for f in payload.files:
            blobs.append((f.digest, f.size, functools.partial(_open_verified, files[f.name],
                                                              f.digest, f.size)))
        for digest, size, opener in blobs:
            self.pusher.push_blob(tagged, digest, size, opener)
        data = entry.manifest(payload, envelope, signer, created)
        return self.pusher.put_manifest(tagged, tagged.tag or "", data, OCI_MANIFEST)

    def delete(self, digest: str) -> bool:
        """Delete the manifest ``digest`` (and so every tag on it); False if it was gone."""
        url = f"{self.client.repo_url(self.ref)}/manifests/{digest}"
        resp = self.client.with_retries(functools.partial(
            self.client.send, self.ref, "DELETE", url, f"{self.name}@{digest}",
            ok=(200, 202, 404), scope=DELETE_SCOPE))
        return resp.status_code != 404


def _open_verified(path: Path, digest: str, size: int) -> BinaryIO:
    """A file about to be uploaded, checked against the digest the payload signs."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the reader
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None
    return io.BufferedReader(VerifyingReader(raw, digest, size, str(path)), CHUNK)
