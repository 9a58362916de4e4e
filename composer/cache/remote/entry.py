"""The remote cache entry format: a signed payload and the OCI manifest that carries it.

The payload (``application/vnd.image-composer.cache-entry.v1+json``) is canonical JSON::

    {"composer": VERSION, "files": [{"digest", "name", "size"}, ...], "format": FORMAT,
     "key": KEY, "kind": "rootfs" | "outputs", "meta": {...}, "schema": SCHEMA}

and is what is signed (a DSSE envelope, :func:`composer.repro.attest.sign_payload`). The
manifest lists the envelope first, then each file as a layer titled with its name; its
annotations repeat key, kind, format and version for ``cache remote ls`` and add the time of
publication (for ``prune``; it is not signed and shapes nothing). A reader checks the signature,
that the payload names the key it asked for (a good entry re-tagged under another key is
refused) and that the manifest lists exactly the payload's files; then it downloads the files
by the payload's digests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from composer import __version__, canonjson
from composer.errors import ComposerError
from composer.oci.media import OCI_MANIFEST
from composer.streams.digest import check_digest, sha256_digest

ARTIFACT_TYPE = "application/vnd.image-composer.cache.v1"
PAYLOAD_TYPE = "application/vnd.image-composer.cache-entry.v1+json"
ENVELOPE_TYPE = "application/vnd.dsse.envelope.v1+json"
FILE_TYPE = "application/vnd.image-composer.cache.file.v1"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
SCHEMA = "image-composer/remote-cache-entry/v1"
KINDS = ("rootfs", "outputs")
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
A_KEY = "dev.image-composer.cache.key"
A_KIND = "dev.image-composer.cache.kind"
A_FORMAT = "dev.image-composer.cache.format"
A_VERSION = "dev.image-composer.version"
A_SIGNER = "dev.image-composer.cache.signer"
MAX_ENVELOPE = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9._+-][A-Za-z0-9._+@-]*$")


class Rejected(ComposerError):
    """A remote entry that must not be used (unsigned, untrusted, malformed, other bytes)."""


@dataclass(frozen=True)
class File:
    name: str
    digest: str
    size: int


@dataclass(frozen=True)
class Payload:
    """What a writer signs: the entry's key, kind, format and files."""

    kind: str
    key: str
    format: str
    files: tuple[File, ...]
    meta: dict[str, Any]
    composer: str = __version__

    def to_bytes(self) -> bytes:
        return canonjson.compact({
            "composer": self.composer,
            "files": [{"digest": f.digest, "name": f.name, "size": f.size}
                      for f in sorted(self.files, key=lambda f: f.name)],
            "format": self.format, "key": self.key, "kind": self.kind, "meta": self.meta,
            "schema": SCHEMA,
        })


def tag(kind: str, key: str) -> str:
    """The tag an entry is published under (a registry tag: at most 128 characters)."""
    if kind not in KINDS:
        raise ValueError(kind)
    check_digest(f"sha256:{key}")
    return f"{kind}-{key}"


def parse_tag(text: str) -> tuple[str, str] | None:
    kind, sep, key = text.partition("-")
    if not sep or kind not in KINDS or not re.fullmatch(r"[0-9a-f]{64}", key):
        return None
    return kind, key


def descriptor(media_type: str, data_digest: str, size: int,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": media_type, "digest": data_digest, "size": size}
    if annotations:
        out["annotations"] = annotations
    return out


def manifest(payload: Payload, envelope: bytes, signer: str, created: str) -> bytes:
    """The OCI image manifest of an entry (``envelope``: the DSSE envelope's bytes)."""
    layers = [descriptor(ENVELOPE_TYPE, sha256_digest(envelope), len(envelope),
                         {TITLE: "entry.dsse.json"})]
    layers += [descriptor(FILE_TYPE, f.digest, f.size, {TITLE: f.name})
               for f in sorted(payload.files, key=lambda f: f.name)]
    return canonjson.compact({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
        "config": descriptor(EMPTY_TYPE, sha256_digest(EMPTY), len(EMPTY)),
        "layers": layers,
        "annotations": {A_KEY: payload.key, A_KIND: payload.kind, A_FORMAT: payload.format,
                        A_VERSION: payload.composer, A_SIGNER: signer, CREATED: created},
    })


def parse_manifest(data: bytes, what: str) -> dict[str, Any]:
    """The manifest as JSON, if it is a cache entry's; :class:`Rejected` otherwise."""
    try:
        doc = canonjson.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(f"{what}: the manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("artifactType") != ARTIFACT_TYPE \
            or not isinstance(doc.get("layers"), list) or not doc["layers"]:
        raise Rejected(f"{what}: not an image-composer cache entry")
    first = doc["layers"][0]
    if not isinstance(first, dict) or first.get("mediaType") != ENVELOPE_TYPE \
            or not isinstance(first.get("size"), int) or first["size"] > MAX_ENVELOPE:
        raise Rejected(f"{what}: the entry has no signature envelope")
    try:
        check_digest(str(first.get("digest")))
    except ComposerError:
        raise Rejected(f"{what}: malformed envelope descriptor") from None
    return doc


def parse_payload(data: bytes, kind: str, key: str, what: str) -> Payload:
    """A signed payload, checked to be an entry of ``kind`` for exactly ``key``."""
    try:
        doc = canonjson.loads(data)
        files = tuple(File(str(f["name"]), str(f["digest"]), int(f["size"]))
                      for f in doc["files"])
        payload = Payload(kind=doc["kind"], key=doc["key"], format=str(doc["format"]),
                          files=files, meta=dict(doc["meta"]), composer=str(doc["composer"]))
        schema = doc["schema"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise Rejected(f"{what}: the signed payload is malformed") from None
    if schema != SCHEMA:
        raise Rejected(f"{what}: unknown entry schema {schema!r}")
    if payload.kind != kind or payload.key != key:
        raise Rejected(f"{what}: signed for {payload.kind} {payload.key[:12]}, not {kind} "
                       f"{key[:12]} (an entry published under another key)")
    names = [f.name for f in files]
    if not files or len(set(names)) != len(names) \
            or not all(_NAME.match(n) and n not in (".", "..") for n in names):
        raise Rejected(f"{what}: the signed payload has bad file names")
    for f in files:
        try:
            check_digest(f.digest)
        except ComposerError:
            raise Rejected(f"{what}: malformed digest for {f.name}") from None
        if f.size < 0:
            raise Rejected(f"{what}: bad size for {f.name}")
    return payload


def check_layers(doc: dict[str, Any], payload: Payload, what: str) -> None:
    """The manifest must list exactly the payload's files (after the envelope)."""
    listed = sorted((str(d.get("annotations", {}).get(TITLE)), d.get("digest"), d.get("size"))
                    for d in doc["layers"][1:] if isinstance(d, dict))
    signed = sorted((f.name, f.digest, f.size) for f in payload.files)
    if listed != signed:
        raise Rejected(f"{what}: the manifest's layers are not the signed files")
