"""The small value every image source yields, whatever it came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    media_type: str
    diff_id: str


@dataclass(frozen=True)
class Image:
    """A single-platform image whose blobs are all in the cache.

    ``ref`` is what the spec asked for, normalised; ``digest`` the manifest digest it resolved
    to (``index_digest`` too when it came through a multi-platform index).
    """

    ref: str
    digest: str
    config: dict = field(hash=False, compare=False)
    layers: tuple[Layer, ...]
    index_digest: str | None = None
    #: SPDX in-toto statements attested for it in its index: (blob digest, size), in order
    sboms: tuple[tuple[str, int], ...] = ()

    @property
    def pinned(self) -> str:
        """``name@digest``: the ref with its resolution, for records and provenance."""
        base = self.ref.split("@", 1)[0]
        return f"{base}@{self.digest}"


@dataclass(frozen=True)
class IndexLayout:
    """What linuxkit's ``ImageOCITar`` puts in a ``format: oci`` volume: the image's index and,
    for each image manifest in it (only ``platforms`` ones, if any; attestations are image
    manifests too), the manifest, its config and its layers, all stored in the cache."""

    index: tuple[str, int, str]  # digest, size, media type
    blobs: tuple[tuple[str, int], ...]  # every other blob, once, in linuxkit's order
