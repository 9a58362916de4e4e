"""Write a single-platform OCI image (config, manifest, layers) into a cache or a layout.

Used by ``pkg build``, by the ``docker``/``oci`` output formats and by the test fixtures that
generate images, so every image we make is serialised one way: compact sorted JSON, gzip layers
by our one gzip writer (:mod:`composer.streams.gz`). Large layers are not held in memory:
they are hashed and gzipped as they stream into the cache, and :func:`config_document` and
:func:`manifest_document` take the digests.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from composer import canonjson
from composer.images.cache import Cache
from composer.oci.documents import config_document, index_document, manifest_document
from composer.oci.media import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_MANIFEST

GZIP_LEVEL = 9


@dataclass(frozen=True)
class Written:
    """What was written: the manifest descriptor, and the bytes it names (for records)."""

    descriptor: dict
    manifest: bytes
    config: bytes

    @property
    def digest(self) -> str:
        return self.descriptor["digest"]


def gzip_bytes(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """``data`` gzipped by our one gzip writer (:class:`composer.streams.gz.GzipWriter`)."""
    from composer.streams.gz import GzipWriter

    buf = io.BytesIO()
    with GzipWriter(buf, level) as gz:
        gz.write(data)
    return buf.getvalue()


def _store_layer(store: Cache, layer: bytes | BinaryIO, compress: bool) -> tuple[dict, str]:
    """One layer streamed into ``store`` (gzipped unless told not to): its descriptor and its
    diff_id, both hashed in the same pass; nothing is held in memory."""
    from composer.streams.gz import GzipWriter

    source = io.BytesIO(layer) if isinstance(layer, bytes | bytearray) else layer
    plain = hashlib.sha256()
    with store.new_blob("layer") as blob:
        sink = GzipWriter(blob, GZIP_LEVEL) if compress else blob
        while chunk := source.read(1 << 20):
            plain.update(chunk)
            sink.write(chunk)
        if isinstance(sink, GzipWriter):
            sink.close()
    return ({"mediaType": OCI_LAYER_GZIP if compress else OCI_LAYER, "digest": blob.digest,
             "size": blob.size}, "sha256:" + plain.hexdigest())


def write_image(
    store: Cache,
    layer_tars: list[bytes | BinaryIO],
    *,
    arch: str = "amd64",
    config: dict | None = None,
    created: str = "1970-01-01T00:00:00Z",
    compress: bool = True,
    annotations: dict[str, str] | None = None,
    raw_config: dict | None = None,
) -> Written:
    """Store layers (bytes, or readable files read to their end), config and manifest as blobs;
    returns the manifest descriptor.

    ``raw_config`` replaces the generated image config entirely (tests use it for odd configs).
    """
    layers, diff_ids = [], []
    for tar in layer_tars:
        desc, diff_id = _store_layer(store, tar, compress)
        layers.append(desc)
        diff_ids.append(diff_id)
    cfg = raw_config if raw_config is not None else config_document(
        diff_ids, arch, config or {}, created)
    cfg_bytes = canonjson.compact(cfg)
    manifest = manifest_document(
        {"mediaType": OCI_CONFIG, "digest": store.put_bytes(cfg_bytes), "size": len(cfg_bytes)},
        layers, annotations)
    man_bytes = canonjson.compact(manifest)
    desc = {
        "mediaType": OCI_MANIFEST,
        "digest": store.put_bytes(man_bytes),
        "size": len(man_bytes),
        "platform": {"architecture": arch, "os": "linux"},
    }
    return Written(desc, man_bytes, cfg_bytes)


def write_index(store: Cache, images: list[Written]) -> dict:
    """Store a multi-platform index over single-platform images; returns its descriptor."""
    data = canonjson.compact(index_document([w.descriptor for w in images]))
    return {"mediaType": OCI_INDEX, "digest": store.put_bytes(data), "size": len(data)}


def export_layout(store: Cache, written: Written | list[Written], dest: Path, tag: str,
                  top: dict | None = None) -> None:
    """Copy images from a cache into an OCI image layout directory ``dest`` as ``tag``: one
    image, or several under ``top`` (their index, already in ``store``)."""
    target = Cache(dest)
    images = [written] if isinstance(written, Written) else list(written)
    for one in images:
        manifest = canonjson.loads(one.manifest)
        for desc in [manifest["config"], *manifest["layers"]]:
            if not target.has_blob(desc["digest"]):
                with store.open_blob(desc["digest"], desc["size"]) as src:
                    target.put_blob(src, desc["digest"], desc["size"], desc["digest"])
        target.put_bytes(one.manifest)
    if top is not None and top["digest"] != images[0].digest:
        target.put_bytes(store.read_blob(top["digest"], top["size"]))
    target.tag(tag, top if top is not None else images[0].descriptor)
    for stray in ("uncompressed", "tmp", "lock"):
        path = dest / stray
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
