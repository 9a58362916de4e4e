"""The small value every image source yields, whatever it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
LAYER_TYPES = (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER_GZIP,
               "application/vnd.docker.image.rootfs.diff.tar")


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

    @property
    def pinned(self) -> str:
        """``name@digest``: the ref with its resolution, for records and provenance."""
        base = self.ref.split("@", 1)[0]
        return f"{base}@{self.digest}"
