"""OCI documents as we write them: descriptors, image configs and manifests.

One serialisation for every image we make (``pkg build``, the docker/OCI outputs, test
fixtures): nothing in a document but what is passed in, no host names, no history, times in UTC.
"""

from __future__ import annotations

import hashlib
import time

from composer import canonjson
from composer.oci.media import OCI_INDEX, OCI_MANIFEST


def rfc3339(seconds: int) -> str:
    """UTC timestamp for ``created``: the same string in every timezone and locale."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def config_document(diff_ids: list[str], arch: str, config: dict, created: str,
                    variant: str | None = None) -> dict:
    """An image config: no history, no host names, nothing but what is passed in."""
    doc = {
        "architecture": arch,
        "config": config,
        "created": created,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if variant:
        doc["variant"] = variant
    return doc


def manifest_document(config: dict, layers: list[dict],
                      annotations: dict[str, str] | None = None) -> dict:
    """An OCI image manifest over descriptors of its config and layers."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return manifest


def platform_key(desc: dict) -> tuple[str, str, str]:
    """(os, architecture, variant) of a descriptor's platform: the order of index entries."""
    platform = desc.get("platform") or {}
    return (platform.get("os", ""), platform.get("architecture", ""),
            platform.get("variant", ""))


def platform_of(config: dict) -> dict[str, str]:
    """The index ``platform`` of an image by its config: os and architecture, and the variant
    only if the config has one (ours have none: ``arm64`` is ``arm64``, as Debian's images).
    ValueError if they are not strings."""
    os_name, arch = config.get("os"), config.get("architecture")
    variant = config.get("variant") or ""
    if not (isinstance(os_name, str) and isinstance(arch, str) and isinstance(variant, str)):
        raise ValueError("config: os, architecture and variant must be strings")
    platform = {"architecture": arch, "os": os_name}
    if variant:
        platform["variant"] = variant
    return platform


def platform_index(images: list[tuple[dict, dict]]) -> bytes:
    """THE multi-platform index (its bytes) over (manifest descriptor, config) pairs: what
    ``push`` sends for several single-platform images and what the ``oci``/``docker`` formats
    hold for several ``--arch``. Entries carry mediaType, digest, size and platform only (no
    annotations), sorted by platform. ValueError on two images of one platform."""
    entries: dict[tuple[str, str, str], dict] = {}
    for desc, config in images:
        platform = platform_of(config)
        entry = {"mediaType": desc["mediaType"], "digest": desc["digest"],
                 "size": desc["size"], "platform": platform}
        key = platform_key(entry)
        if key in entries:
            raise ValueError(f"a second image for platform {'/'.join(filter(None, key))}")
        entries[key] = entry
    return canonjson.compact(index_document(list(entries.values())))


def index_document(manifests: list[dict]) -> dict:
    """A multi-platform OCI index over manifest descriptors (with ``platform``), sorted by
    platform so the order they were built in does not matter."""
    return {"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": sorted(manifests, key=platform_key)}
