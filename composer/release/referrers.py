"""Referrers: attach an artifact to a manifest (its ``subject``) and list what refers to one.

OCI distribution 1.1 gives two ways, and we use whichever the registry has:

- the referrers API: the registry indexes a manifest's ``subject`` when it is pushed (it says
  so with an ``OCI-Subject`` header on the PUT) and serves the list at
  ``GET /v2/<name>/referrers/<digest>``;
- the referrers tag schema, for registries without it (Debian's docker-registry 2.8): the
  client keeps an image index tagged ``sha256-<hex of the subject>`` listing the referrers,
  read, extended and put back on each attach. Two parties attaching at the same moment can
  lose one entry (the schema has no compare-and-swap); the manifest itself stays pushed by
  digest, and attaching again restores the entry.

Every manifest read here is checked against its digest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from composer import canonjson
from composer.errors import ComposerError
from composer.images.push import Pusher
from composer.images.registry import RegistryClient, RegistryError
from composer.oci.media import EMPTY_JSON, OCI_INDEX, OCI_MANIFEST
from composer.oci.refs import Ref
from composer.release.artifact import File, digest_of, empty_config, manifest
from composer.streams.digest import CHUNK, VerifyingReader, check_digest

Opener = Callable[[], BinaryIO]


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    return "sha256-" + check_digest(digest)


def open_file(path: Path, digest: str, size: int) -> BinaryIO:
    """A file's bytes through the one verifying reader (it changed since? an error)."""
    import io

    return io.BufferedReader(VerifyingReader(open(path, "rb"), digest, size, str(path)), CHUNK)


def open_bytes(data: bytes) -> BinaryIO:
    import io

    return io.BytesIO(data)


def push_artifact(pusher: Pusher, ref: Ref, reference: str | None, artifact_type: str,
                  files: list[tuple[File, Opener]], *, subject: dict | None = None,
                  annotations: dict[str, str] | None = None) -> dict:
    """Upload the files and the empty config, then the manifest (by ``reference``, a tag, or
    by its digest); returns its descriptor, with ``ociSubject`` True when the registry
    indexed its subject itself."""
    config = empty_config()
    pusher.push_blob(ref, config["digest"], config["size"],
                     functools.partial(open_bytes, EMPTY_JSON))
    for f, opener in files:
        pusher.push_blob(ref, f.digest, f.size, opener)
    data = manifest(artifact_type, [f for f, _ in files], subject=subject,
                    annotations=annotations)
    digest = digest_of(data)
    _, headers = pusher.put_manifest_answer(ref, reference or digest, data, OCI_MANIFEST)
    desc = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data),
            "artifactType": artifact_type}
    if annotations:
        desc["annotations"] = dict(sorted(annotations.items()))
    indexed = subject is not None and headers.get("OCI-Subject") == subject["digest"]
    return {**desc, "ociSubject": indexed}


def attach(pusher: Pusher, ref: Ref, subject: dict, artifact_type: str,
           files: list[tuple[File, Opener]], annotations: dict[str, str] | None = None) -> dict:
    """Push a referrer of ``subject`` and make it findable (API or tag schema); its descriptor."""
    desc = push_artifact(pusher, ref, None, artifact_type, files, subject=subject,
                         annotations=annotations)
    if not desc.pop("ociSubject"):
        _add_to_fallback(pusher, ref, subject["digest"], desc)
    return desc


def _add_to_fallback(pusher: Pusher, ref: Ref, subject: str, desc: dict) -> None:
    tag = fallback_tag(subject)
    existing = _get_index(pusher.client, ref, tag)
    entries = [m for m in (existing or {}).get("manifests") or []
               if isinstance(m, dict) and m.get("digest") != desc["digest"]]
    entries.append(desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": sorted(entries, key=lambda m: str(m.get("digest")))}
    pusher.put_manifest(ref, tag, canonjson.compact(index), OCI_INDEX)


def _get_index(client: RegistryClient, ref: Ref, reference: str) -> dict | None:
    """The image index at a tag, or None if there is none."""
    url = f"{client.repo_url(ref)}/manifests/{reference}"
    resp = client.with_retries(lambda: client.send(
        ref, "GET", url, f"{ref.name}:{reference}", ok=(200, 404),
        headers={"Accept": OCI_INDEX}))
    if resp.status_code == 404:
        return None
    return _index(resp.content, f"{ref.name}:{reference}")


def _index(data: bytes, what: str) -> dict:
    try:
        doc = canonjson.loads(data)
    except ValueError as exc:
        raise ComposerError(f"{what}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests", []), list):
        raise ComposerError(f"{what}: not an image index")
    return doc


def list_referrers(client: RegistryClient, ref: Ref, digest: str,
                   artifact_type: str | None = None) -> tuple[list[dict], str]:
    """The descriptors of the manifests that refer to ``digest`` (optionally of one artifact
    type), and how they were found: ``"api"`` or ``"tag"``."""
    url = f"{client.repo_url(ref)}/referrers/{digest}"
    what = f"{ref.name}: referrers of {digest}"
    resp = client.with_retries(lambda: client.send(
        ref, "GET", url, what, ok=(200, 404), headers={"Accept": OCI_INDEX}))
    how = "api"
    doc: dict | None = None
    if resp.status_code == 200 and (resp.headers.get("Content-Type") or "").split(";")[0] \
            .strip() == OCI_INDEX:
        doc = _index(resp.content, what)
    else:  # no referrers API: the tag schema
        how = "tag"
        doc = _get_index(client, ref, fallback_tag(digest))
    found = [m for m in (doc or {}).get("manifests") or [] if isinstance(m, dict)
             and isinstance(m.get("digest"), str)]
    if artifact_type is not None:
        found = [m for m in found if m.get("artifactType") == artifact_type]
    return found, how


def get_manifest(client: RegistryClient, ref: Ref, digest: str, what: str) -> tuple[bytes, dict]:
    """A manifest by digest, checked against it, and parsed."""
    got = client.get_manifest(ref, digest)
    if digest_of(got.data) != digest:
        raise RegistryError(f"{what}: the registry sent a manifest that is not {digest}")
    try:
        doc = canonjson.loads(got.data)
    except ValueError as exc:
        raise ComposerError(f"{what}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ComposerError(f"{what}: not a manifest")
    return got.data, doc
