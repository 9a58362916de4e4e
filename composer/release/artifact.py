"""The documents of a release: the artifact manifest, referrer manifests, file media types.

Nothing here does I/O, and nothing depends on the time or the machine: the same build gives the
same release manifest (and so the same digest) wherever it is pushed from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from composer import canonjson
from composer.errors import ComposerError
from composer.oci.documents import descriptor
from composer.oci.media import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_MANIFEST,
    RELEASE_ARTIFACT,
    TITLE_ANNOTATION,
)

# file name ending -> media type; the first match wins (longer endings first)
MEDIA_BY_SUFFIX = (
    (".img.tar.gz", "application/gzip"),
    ("-docker.tar", "application/x-tar"),
    ("-oci.tar", "application/x-tar"),
    (".tar", "application/x-tar"),
    (".iso", "application/x-iso9660-image"),
    (".qcow2", "application/x-qemu-disk"),
    (".vhd", "application/x-vhd"),
    (".vmdk", "application/x-vmdk"),
    (".raw", "application/octet-stream"),
    ("-squashfs.img", "application/vnd.squashfs"),
    ("-erofs.img", "application/octet-stream"),
    (".spdx.json", "application/spdx+json"),
    (".json", "application/json"),
    ("-cmdline", "text/plain; charset=utf-8"),
    ("SHA256SUMS", "text/plain; charset=utf-8"),
    (".sig", "application/octet-stream"),
    (".docker", "application/x-tar"),
)
# initrds (NAME-initrd.img) by their first bytes: --initrd-compression picks one
MAGIC = ((b"\x1f\x8b", "application/gzip"), (b"\x28\xb5\x2f\xfd", "application/zstd"),
         (b"\x04\x22\x4d\x18", "application/x-lz4"), (b"070701", "application/x-cpio"))
KERNEL_MEDIA = "application/vnd.image-composer.kernel"


def media_type(name: str, head: bytes) -> str:
    """The media type of an output called ``name`` whose first bytes are ``head``."""
    if name.endswith("-initrd.img"):
        return next((t for magic, t in MAGIC if head.startswith(magic)),
                    "application/octet-stream")
    if name.endswith("-kernel"):
        return KERNEL_MEDIA
    return next((t for suffix, t in MEDIA_BY_SUFFIX if name.endswith(suffix)),
                "application/octet-stream")


def empty_config() -> dict:
    return descriptor(OCI_EMPTY, EMPTY_JSON)


def check_title(title: object, what: str) -> str:
    """A layer title is a relative path of plain components (``NAME-oci/blobs/...`` for a
    directory output): never absolute, never ``..``, never empty parts."""
    if not isinstance(title, str) or not title or title.startswith("/") or "\\" in title \
            or "\0" in title or any(p in ("", ".", "..") for p in title.split("/")):
        raise ComposerError(f"{what}: unsafe or missing file name {title!r}")
    return title


@dataclass(frozen=True)
class File:
    """One file of a release: its name (the title), digest, size and media type."""

    name: str
    digest: str
    size: int
    media_type: str

    def layer(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size,
                "annotations": {TITLE_ANNOTATION: self.name}}


def manifest(artifact_type: str, files: Iterable[File], *, subject: dict | None = None,
             annotations: dict[str, str] | None = None) -> bytes:
    """An OCI 1.1 artifact manifest (compact canonical JSON): empty config, one layer per
    file in name order, ``subject`` for a referrer."""
    layers = [f.layer() for f in sorted(files, key=lambda f: f.name)]
    if not layers:
        raise ComposerError("an artifact needs at least one file")
    doc: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                 "config": empty_config(), "layers": layers}
    if subject is not None:
        doc["subject"] = {k: subject[k] for k in ("mediaType", "digest", "size")}
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return canonjson.compact(doc)


def release_annotations(name: str, rootfs: str | None) -> dict[str, str]:
    """The build's name (the title) and its rootfs digest (its identity)."""
    out = {TITLE_ANNOTATION: name}
    if rootfs:
        out["dev.image-composer.rootfs.sha256"] = rootfs
    return out


def release_manifest(name: str, files: Iterable[File], rootfs: str | None) -> bytes:
    return manifest(RELEASE_ARTIFACT, files, annotations=release_annotations(name, rootfs))


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layers_of(doc: dict, what: str) -> list[File]:
    """The files a pulled artifact manifest names (titles checked, no name twice)."""
    out: list[File] = []
    seen: set[str] = set()
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ComposerError(f"{what}: a manifest without layers")
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str) \
                or not isinstance(layer.get("size"), int):
            raise ComposerError(f"{what}: a malformed layer")
        title = check_title((layer.get("annotations") or {}).get(TITLE_ANNOTATION), what)
        if title in seen:
            raise ComposerError(f"{what}: {title} twice")
        seen.add(title)
        out.append(File(title, layer["digest"], layer["size"], str(layer.get("mediaType"))))
    return out
