"""OCI documents as we write them: descriptors, image configs and manifests.

One serialisation for every image we make (``pkg build``, the docker/OCI outputs, test
fixtures): nothing in a document but what is passed in, no host names, no history, times in UTC.
"""

from __future__ import annotations

import hashlib
import time

from composer.oci.media import OCI_INDEX, OCI_MANIFEST


def rfc3339(seconds: int) -> str:
    """UTC timestamp for ``created``: the same string in every timezone and locale."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def config_document(diff_ids: list[str], arch: str, config: dict, created: str) -> dict:
    """An image config: no history, no host names, nothing but what is passed in."""
    return {
        "architecture": arch,
        "config": config,
        "created": created,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }


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


def index_document(manifests: list[dict]) -> dict:
    """A multi-platform OCI index over manifest descriptors (with ``platform``), sorted by
    platform so the order they were built in does not matter."""
    return {"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": sorted(manifests, key=platform_key)}
