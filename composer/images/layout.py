"""Reading an OCI image layout directory (``oci:PATH[:TAG]``) as an image source.

Only the directory's structure is read here: which descriptor a tag names, and where a blob's file
is. Its bytes are never trusted as they are: the resolver copies them into the cache through the
verifying path, so a corrupt layout blob is refused like a corrupt download.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from composer import canonjson
from composer.errors import ComposerError
from composer.oci.media import REF_ANNOTATION
from composer.streams.digest import check_digest


def layout_root(path: str, base_dir: Path | None) -> Path:
    """Where ``oci:PATH`` points: PATH is relative to ``base_dir`` (the spec's directory)."""
    root = Path(path).expanduser()
    if not root.is_absolute():
        root = (base_dir if base_dir is not None else Path.cwd()) / root
    return root


def read_index(root: Path, what: str) -> dict:
    """The layout's ``index.json``, after checking this is an OCI image layout at all."""
    marker = root / "oci-layout"
    try:
        version = canonjson.loads(marker.read_bytes()).get("imageLayoutVersion")
    except FileNotFoundError:
        raise ComposerError(f"{what}: not an OCI image layout (no {marker})") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise ComposerError(f"{what}: cannot read {marker}: {exc}") from None
    if version != "1.0.0":
        raise ComposerError(f"{what}: unsupported OCI layout version {version!r}")
    try:
        index = canonjson.loads((root / "index.json").read_bytes())
    except FileNotFoundError:
        raise ComposerError(f"{what}: {root / 'index.json'} is missing") from None
    except (OSError, ValueError) as exc:
        raise ComposerError(f"{what}: cannot read {root / 'index.json'}: {exc}") from None
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ComposerError(f"{what}: {root / 'index.json'} has no manifests list")
    return index


def tag_of(descriptor: dict) -> str | None:
    annotations = descriptor.get("annotations")
    return annotations.get(REF_ANNOTATION) if isinstance(annotations, dict) else None


def find_descriptors(index: dict, tag: str | None, what: str) -> list[dict]:
    """The descriptors ``tag`` names (several only when a layout tags one per platform).

    Without a tag the layout must hold exactly one manifest, so nothing is picked by accident.
    """
    entries = [d for d in index["manifests"] if isinstance(d, dict)]
    if tag is None:
        if len(entries) != 1:
            tags = sorted({t for t in map(tag_of, entries) if t})
            known = f" (tags: {', '.join(tags)})" if tags else ""
            raise ComposerError(f"{what}: layout holds {len(entries)} manifests; "
                                f"name one with oci:PATH:TAG{known}")
        return entries
    found = [d for d in entries if tag_of(d) == tag]
    if not found:
        tags = sorted({t for t in map(tag_of, entries) if t})
        raise ComposerError(f"{what}: no manifest tagged {tag!r} in the layout"
                            + (f" (tags: {', '.join(tags)})" if tags else ""))
    return found


def open_blob(root: Path, digest: str, what: str) -> BinaryIO:
    """A layout blob's file, unverified (the cache verifies while copying it in)."""
    path = root / "blobs" / "sha256" / check_digest(digest)
    try:
        return open(path, "rb")  # the caller closes it
    except FileNotFoundError:
        raise ComposerError(f"{what}: blob {digest} is missing from the layout {root}") from None
