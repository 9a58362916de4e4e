"""Turn an image reference into an :class:`Image` whose blobs are all in the cache.

One path for every source: find the top descriptor (registry tag or digest, or a layout's
index.json), then walk manifest -> (index -> platform manifest) -> config + layers, copying each
missing blob into the cache through ``Cache.put_blob``, which verifies size and sha256 while it
streams. A source is just "how to fetch a missing blob"; offline has none, so anything missing is
a clear error instead of a network request.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from composer import canonjson
from composer.errors import ComposerError
from composer.images import layout, sources
from composer.images.cache import Cache
from composer.images.model import Image, IndexLayout, Layer
from composer.images.network import Network
from composer.images.registry import RegistryClient
from composer.oci.media import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_ANNOTATION,
)
from composer.oci.refs import LayoutRef, Ref, parse_ref
from composer.progress import Advance, Progress
from composer.streams.digest import check_digest, read_into, sha256_digest
from composer.streams.types import Readable

Log = Callable[[str], None]

LAYER_WORKERS = 4
ATTESTATION = "attestation-manifest"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
IN_TOTO = "application/vnd.in-toto+json"
PREDICATE_TYPE = "in-toto.io/predicate-type"
SPDX_PREDICATE = "https://spdx.dev/Document"
_DEFAULT_VARIANT = {"arm64": "v8"}


class _Cancelled(ComposerError):
    """A download stopped because another one failed."""


class Missing(ComposerError):
    """Offline, and something the image needs is not in the cache."""


def resolve_image(ref_text: str, *, cache: Cache, arch: str, pull: bool = False,
                  offline: bool = False, base_dir: Path | None = None,
                  log: Log | None = None, client: RegistryClient | None = None,
                  docker: bool = False, progress: Progress | None = None,
                  deferred: list[Callable[[], None]] | None = None) -> Image:
    """Resolve ``ref_text`` for ``linux/<arch>`` (``arch`` may carry a variant: ``arm64/v8``).

    Tag refs use the cache's record of the tag unless ``pull``; digest refs use the cache when the
    manifest is there. ``offline`` never touches the network (local files and the local Docker
    engine are not the network). ``oci:PATH`` and archive paths are relative to ``base_dir``
    (default: the current directory). ``docker`` tries the local engine before a registry.
    With ``progress``, downloads report there instead of through ``log``.

    With ``deferred``, a registry image's missing layers are not downloaded: a call that fetches
    them (and then records the tag) is appended to it instead, and the Image's layers are in
    the cache only once it has run. A build that finds its rootfs in a cache (local or remote,
    keyed by manifest and config alone) never runs it, and so pulls no layer.
    """
    say = log or (lambda _message: None)
    local = sources.parse_source(ref_text)
    if local is not None:
        return _resolve_source(local, cache, arch, base_dir, say)
    ref = parse_ref(ref_text)
    if isinstance(ref, LayoutRef):
        return _resolve_layout(ref, cache, arch, base_dir)
    if docker and sources.engine_has(str(ref)):
        say(f"{ref}: using the image in the Docker engine")
        digest, size = sources.from_engine(str(ref), cache, str(ref))
        image, _top = _load(cache, str(ref), digest, size, arch, None, say)
        return image
    return _resolve_registry(ref, cache, arch, pull, offline, client, say, progress, deferred)


def default_client(insecure: frozenset[str] | set[str] = frozenset(),
                   network: Network | None = None) -> RegistryClient:
    """A client with the user's docker credentials; ``insecure`` hosts talk plain HTTP;
    ``network`` adds mirrors and CA certificates (``--mirror``, ``--cert-file``)."""
    from composer.images.auth import docker_credentials

    net = network or Network()
    return RegistryClient(credentials=docker_credentials(),
                          insecure=frozenset(insecure) | net.insecure, mirrors=net.mirrors,
                          extra_ca=net.extra_ca)


# -- sources ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """How a missing blob gets into the cache; both calls store it through ``Cache.put_blob``.

    ``manifest(digest, size, what)``; ``blob(digest, size, what, stop, advance)`` gives up once
    ``stop`` is set (another download failed) and reports each chunk's size to ``advance``.
    """

    manifest: Callable[[str, int | None, str], None]
    blob: Callable[[str, int | None, str, threading.Event, Advance | None, Layer | None], None]


def _store(cache: Cache, stream: Readable, digest: str, size: int | None, what: str,
           layer: Layer | None) -> None:
    """A layer is stored with its uncompressed tar in the same pass (one read of the source);
    any other blob as it is."""
    if layer is not None:
        cache.put_layer(stream, layer.digest, layer.size, layer.media_type, layer.diff_id, what)
    else:
        cache.put_blob(stream, digest, size, what)


class _Stoppable(io.RawIOBase):
    """A stream that fails at its next read once ``stop`` is set, counting what it reads."""

    def __init__(self, raw: Readable, stop: threading.Event, advance: Advance | None = None):
        super().__init__()
        self._raw = raw
        self._stop = stop
        self._advance = advance

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._stop.is_set():
            raise _Cancelled("download cancelled")
        n = read_into(self._raw, buffer)
        if self._advance is not None and n:
            self._advance(n)
        return n


def registry_source(ref: Ref, cache: Cache, client: RegistryClient) -> Source:
    def manifest(digest: str, size: int | None, what: str) -> None:
        got = client.get_manifest(ref, digest)
        classify(got.data, got.content_type, what)  # schema 1 is refused before hashing
        cache.put_blob(io.BytesIO(got.data), digest, size, what)

    def blob(digest: str, size: int | None, what: str, stop: threading.Event,
             advance: Advance | None = None, layer: Layer | None = None) -> None:
        client.fetch_blob(
            ref, digest,
            lambda s: _store(cache, _Stoppable(s, stop, advance), digest, size, what, layer), what)

    return Source(manifest, blob)


def layout_source(root: Path, cache: Cache) -> Source:
    def manifest(digest: str, size: int | None, what: str) -> None:
        with layout.open_blob(root, digest, what) as fh:
            cache.put_blob(fh, digest, size, what)

    def blob(digest: str, size: int | None, what: str, stop: threading.Event,
             advance: Advance | None = None, layer: Layer | None = None) -> None:
        with layout.open_blob(root, digest, what) as fh:
            _store(cache, _Stoppable(fh, stop, advance), digest, size, what, layer)

    return Source(manifest, blob)


def archive_source(archive: sources.ArchiveReader, cache: Cache) -> Source:
    """Blobs read from an OCI archive in place; one at a time (the tar has one file handle)."""
    lock = threading.Lock()

    def manifest(digest: str, size: int | None, what: str) -> None:
        with lock, archive.open_member(f"blobs/sha256/{check_digest(digest)}", what) as fh:
            cache.put_blob(fh, digest, size, what)

    def blob(digest: str, size: int | None, what: str, stop: threading.Event,
             advance: Advance | None = None, layer: Layer | None = None) -> None:
        with lock, archive.open_member(f"blobs/sha256/{check_digest(digest)}", what) as fh:
            _store(cache, _Stoppable(fh, stop, advance), digest, size, what, layer)

    return Source(manifest, blob)


# -- registry and layout entry points ---------------------------------------------------------
def _resolve_registry(ref: Ref, cache: Cache, arch: str, pull: bool, offline: bool,
                      client: RegistryClient | None, log: Log,
                      progress: Progress | None = None,
                      deferred: list[Callable[[], None]] | None = None) -> Image:
    name = str(ref)
    if offline:
        source = None
    else:
        client = client or default_client()
        source = registry_source(ref, cache, client)
    if ref.digest:
        # A digest names the same bytes forever: the cache answers if it can, pull or not.
        root_name = f"{ref.name}@{ref.digest}"
        digest, size = ref.digest, None
        if source is None and not cache.has_blob(digest):
            raise Missing(f"{name}: not in the cache (offline)")
    else:
        root_name = ref.cache_name
        cached = None if pull else cache.lookup(root_name)
        if cached is not None and cache.has_blob(cached["digest"]):
            digest, size = cached["digest"], cached.get("size")
        elif source is None or client is None:
            raise Missing(f"{name}: not in the cache (offline)")
        else:
            if progress is None:
                log(f"pulling {name}")
            digest, size = _pull_tag(ref, cache, client)
    image, top = _load(cache, name, digest, size, arch, source, log, progress,
                       fetch=deferred is None)

    def finish() -> None:
        _fetch_layers(cache, source, image.layers, name, log, progress)
        wanted = {**top, "annotations": {REF_ANNOTATION: root_name}}
        if cache.lookup(root_name) != wanted:
            cache.tag(root_name, top)

    if deferred is None or all(cache.has_blob(layer.digest) for layer in image.layers):
        finish()
    else:
        deferred.append(finish)
    return image


def _pull_tag(ref: Ref, cache: Cache, client: RegistryClient) -> tuple[str, int]:
    """Fetch the manifest a tag names now, store it, and return its digest and size."""
    what = f"{ref}: manifest"
    got = client.get_manifest(ref, ref.tag or "latest")
    classify(got.data, got.content_type, what)
    digest = sha256_digest(got.data)
    header = got.digest_header
    if header and header.startswith("sha256:") and header != digest:
        raise ComposerError(f"{what}: the registry says {header} but the content is {digest}")
    cache.put_blob(io.BytesIO(got.data), digest, len(got.data), what)
    return digest, len(got.data)


def _resolve_layout(ref: LayoutRef, cache: Cache, arch: str, base_dir: Path | None) -> Image:
    name = str(ref)
    root = layout.layout_root(ref.path, base_dir)
    found = layout.find_descriptors(layout.read_index(root, name), ref.tag, name)
    chosen = found[0] if len(found) == 1 else select_platform(found, arch, name)
    _check_descriptor(chosen, name)
    # Copying from a local directory is quick and quiet: only network downloads are logged.
    image, _top = _load(cache, name, chosen["digest"], chosen["size"], arch,
                        layout_source(root, cache), lambda _message: None)
    return image


def _resolve_source(src: sources.SourceRef, cache: Cache, arch: str, base_dir: Path | None,
                    log: Log) -> Image:
    name = str(src)
    if src.kind == "docker-daemon":
        digest, size = sources.from_engine(src.path, cache, name)
        return _load(cache, name, digest, size, arch, None, log)[0]
    path = sources.local_path(src.path, base_dir)
    if src.kind == "docker-archive":
        digest, size = sources.from_docker_archive(path, src.name, cache, name)
        return _load(cache, name, digest, size, arch, None, log)[0]
    with sources.ArchiveReader.open(path) as archive:
        found = layout.find_descriptors(archive.oci_index(name), src.name, name)
        chosen = found[0] if len(found) == 1 else select_platform(found, arch, name)
        _check_descriptor(chosen, name)
        image, _top = _load(cache, name, chosen["digest"], chosen["size"], arch,
                            archive_source(archive, cache), lambda _message: None)
    return image


# -- the walk ---------------------------------------------------------------------------------
def _load(cache: Cache, name: str, digest: str, size: int | None, arch: str,
          source: Source | None, log: Log,
          progress: Progress | None = None, fetch: bool = True) -> tuple[Image, dict]:
    """Manifest (through an index if need be), config and layers (unless not ``fetch``), all
    stored and checked.

    Returns the image and the descriptor of the top manifest (the index, if there was one).
    """
    doc, media_type, data = _manifest(cache, source, name, digest, size)
    top = {"mediaType": media_type, "digest": digest, "size": len(data)}
    index_digest = None
    if media_type in INDEX_TYPES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise ComposerError(f"{name}: malformed index (no manifests list)")
        child = select_platform(manifests, arch, name)
        _check_descriptor(child, name)
        index_digest, digest = digest, child["digest"]
        doc, media_type, data = _manifest(cache, source, name, digest, child["size"])
        if media_type in INDEX_TYPES:
            raise ComposerError(f"{name}: nested image indexes are not supported")
        sboms = _attested_sboms(cache, source, name, manifests, digest)
    else:
        sboms = ()
    config_desc, layer_descs = _manifest_parts(doc, name)
    what = f"{name}: config {config_desc['digest']}"
    if not cache.has_blob(config_desc["digest"]):
        _need(source, name, what).blob(config_desc["digest"], config_desc["size"], what,
                                       threading.Event(), None, None)
    config = _parse_json(cache.read_blob(config_desc["digest"], config_desc["size"], what), what)
    diff_ids = _check_config(config, len(layer_descs), arch, name)
    layers = tuple(Layer(d["digest"], d["size"], d["mediaType"], diff_id)
                   for d, diff_id in zip(layer_descs, diff_ids, strict=True))
    if fetch:
        _fetch_layers(cache, source, layers, name, log, progress)
    return Image(ref=name, digest=digest, config=config, layers=layers,
                 index_digest=index_digest, sboms=sboms), top


def _attested_sboms(cache: Cache, source: Source | None, name: str, manifests: list,
                    digest: str) -> tuple[tuple[str, int], ...]:
    """The SPDX in-toto statements BuildKit attests for the image ``digest`` in its index
    (linuxkit's ``ImageSource.SBoMs``): the layers of the one attestation manifest whose
    ``vnd.docker.reference.digest`` names it, that are in-toto JSON with the SPDX predicate
    type. Stored in the cache like any blob; returned as (digest, size) in manifest order."""
    found = [d for d in manifests if isinstance(d, dict) and isinstance(
        d.get("annotations"), dict) and d["annotations"].get("vnd.docker.reference.type") ==
        ATTESTATION and d["annotations"].get(REFERENCE_DIGEST) == digest]
    if not found:
        return ()
    if len(found) > 1:
        raise ComposerError(f"{name}: several attestation manifests for {digest} in the index")
    _check_descriptor(found[0], name)
    doc, media_type, _data = _manifest(cache, source, name, found[0]["digest"],
                                       found[0]["size"])
    if media_type in INDEX_TYPES:
        raise ComposerError(f"{name}: attestation {found[0]['digest']} is an index")
    layers = doc.get("layers")
    out = []
    for desc in layers if isinstance(layers, list) else ():
        if not isinstance(desc, dict) or desc.get("mediaType") != IN_TOTO:
            continue
        annotations = desc.get("annotations")
        if not isinstance(annotations, dict) or annotations.get(PREDICATE_TYPE) != \
                SPDX_PREDICATE:
            continue
        _check_descriptor(desc, name)
        what = f"{name}: SBOM statement {desc['digest']}"
        if not cache.has_blob(desc["digest"]):
            _need(source, name, what).blob(desc["digest"], desc["size"], what,
                                           threading.Event(), None, None)
        out.append((desc["digest"], int(desc["size"])))
    return tuple(out)


def _need(source: Source | None, name: str, what: str) -> Source:
    if source is None:
        raise Missing(f"{name}: not in the cache (offline; missing {what.split(': ')[-1]})")
    return source


def _manifest(cache: Cache, source: Source | None, name: str, digest: str,
              size: int | None) -> tuple[dict, str, bytes]:
    what = name if name.endswith(f"@{digest}") else f"{name}: manifest {digest}"
    if not cache.has_blob(digest):
        _need(source, name, what).manifest(digest, size, what)
    data = cache.read_blob(digest, size, what)
    doc, media_type = classify(data, None, what)
    return doc, media_type, data


def _fetch_layers(cache: Cache, source: Source | None, layers: tuple[Layer, ...], name: str,
                  log: Log, progress: Progress | None = None) -> None:
    """Download missing layers a few at a time; any failure stops the others.

    The cache is content-addressed, so the order downloads finish in changes nothing.
    """
    missing: dict[str, Layer] = {}
    for layer in layers:
        if layer.digest not in missing and not cache.has_blob(layer.digest):
            missing[layer.digest] = layer
    if not missing:
        return
    first = next(iter(missing.values()))
    source = _need(source, name, f"{name}: layer {first.digest}")
    stop = threading.Event()

    def fetch(layer: Layer) -> None:
        try:
            if stop.is_set():
                raise _Cancelled("download cancelled")
            advance = progress.layer(name, layer.digest, layer.size) if progress else None
            source.blob(layer.digest, layer.size, f"{name}: layer {layer.digest}", stop, advance,
                        layer)
            if progress:
                progress.layer_done(name, layer.digest)
        except BaseException:
            stop.set()
            raise

    if progress is None:
        for layer in missing.values():
            log(f"{name}: fetching layer {layer.digest} ({layer.size} bytes)")
    with ThreadPoolExecutor(max_workers=min(LAYER_WORKERS, len(missing))) as pool:
        futures = [pool.submit(fetch, layer) for layer in missing.values()]
        errors = [f.exception() for f in futures]
    if progress is not None:
        progress.image_done(name)
    real = [e for e in errors if e is not None and not isinstance(e, _Cancelled)]
    if real:
        raise real[0]
    if any(e is not None for e in errors):
        raise ComposerError(f"{name}: layer download cancelled")


# -- checks ---------------------------------------------------------------------------------
def classify(data: bytes, content_type: str | None, what: str) -> tuple[dict, str]:
    """Parse a manifest or index and name its media type; schema 1 and non-images are refused."""
    if content_type in DOCKER_SCHEMA1:
        raise _schema1(what)
    doc = _parse_json(data, what)
    declared = doc.get("mediaType")
    if doc.get("schemaVersion") == 1 or declared in DOCKER_SCHEMA1:
        raise _schema1(what)
    if doc.get("schemaVersion") != 2:
        raise ComposerError(f"{what}: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    media_type = declared or content_type
    if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
        if media_type is None or media_type in ("application/json", "text/plain"):
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
        else:
            raise ComposerError(f"{what}: unsupported manifest media type {media_type!r}")
    return doc, media_type


def _schema1(what: str) -> ComposerError:
    return ComposerError(f"{what}: Docker schema 1 manifests are not supported "
                         "(re-push the image with a current docker, buildah or skopeo)")


def _parse_json(data: bytes, what: str) -> dict:
    try:
        doc = canonjson.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ComposerError(f"{what}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ComposerError(f"{what}: not a JSON object")
    return doc


def _check_descriptor(desc: object, name: str) -> None:
    if not isinstance(desc, dict):
        raise ComposerError(f"{name}: malformed descriptor {desc!r}")
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str):
        raise ComposerError(f"{name}: descriptor without a digest")
    try:
        check_digest(digest)
    except ComposerError as exc:
        raise ComposerError(f"{name}: {exc}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ComposerError(f"{name}: descriptor {digest} has a bad size {size!r}")


def _manifest_parts(doc: dict, name: str) -> tuple[dict, list[dict]]:
    config, layers = doc.get("config"), doc.get("layers")
    if not isinstance(layers, list):
        raise ComposerError(f"{name}: malformed manifest (no layers list)")
    _check_descriptor(config, name)
    assert isinstance(config, dict)
    if config.get("mediaType") not in (OCI_CONFIG, DOCKER_CONFIG):
        raise ComposerError(f"{name}: not a container image "
                            f"(config media type {config.get('mediaType')!r})")
    for layer in layers:
        _check_descriptor(layer, name)
        media_type = layer.get("mediaType")
        if media_type in LAYER_TYPES:
            continue
        if isinstance(media_type, str) and ("foreign" in media_type
                                            or "nondistributable" in media_type):
            raise ComposerError(f"{name}: layer {layer['digest']} is a foreign/non-distributable "
                                f"layer ({media_type}), e.g. a Windows base layer; not supported")
        raise ComposerError(f"{name}: layer {layer['digest']} has unsupported media type "
                            f"{media_type!r}")
    return config, layers


def _check_config(config: dict, count: int, arch: str, name: str) -> list[str]:
    """The diff_ids, one per layer; the image must be for linux/<arch>."""
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ComposerError(f"{name}: image config has no rootfs.diff_ids list")
    if len(diff_ids) != count:
        raise ComposerError(f"{name}: image config lists {len(diff_ids)} diff_ids for "
                            f"{count} layers")
    for diff_id in diff_ids:
        try:
            check_digest(diff_id)
        except ComposerError as exc:
            raise ComposerError(f"{name}: image config: {exc}") from None
    want = arch.partition("/")[0]
    got_os, got_arch = config.get("os"), config.get("architecture")
    if (got_os and got_os != "linux") or (got_arch and got_arch != want):
        raise ComposerError(f"{name}: image is for {got_os}/{got_arch}, not linux/{want}")
    return diff_ids


def _platform_text(desc: dict) -> str:
    found = desc.get("platform")
    platform = found if isinstance(found, dict) else {}
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(p) for p in parts if p) or "unknown"


def _variant(arch: str, variant: object) -> str | None:
    if isinstance(variant, str) and variant:
        return variant if variant.startswith("v") else f"v{variant}"
    return _DEFAULT_VARIANT.get(arch)


def select_platform(manifests: list, arch: str, name: str) -> dict:
    """The ``linux/<arch>[/variant]`` entry of an index; attestations are never candidates.

    Without a variant in ``arch`` any variant matches, but two different ones are ambiguous
    (unless one is the architecture's default, e.g. arm64/v8).
    """
    want_arch, _, want_variant = arch.partition("/")
    candidates = []
    listed = []
    for desc in manifests:
        if not isinstance(desc, dict):
            continue
        annotations = desc.get("annotations")
        if isinstance(annotations, dict) and \
                annotations.get("vnd.docker.reference.type") == ATTESTATION:
            continue
        platform = desc.get("platform")
        if not isinstance(platform, dict) or platform.get("os") == "unknown":
            continue
        listed.append(_platform_text(desc))
        if platform.get("os") == "linux" and platform.get("architecture") == want_arch:
            candidates.append(desc)
    if want_variant:
        wanted = _variant(want_arch, want_variant)
        candidates = [d for d in candidates
                      if _variant(want_arch, d["platform"].get("variant")) == wanted]
    digests = sorted({d["digest"] for d in candidates if isinstance(d.get("digest"), str)})
    if len(digests) > 1:
        default = _DEFAULT_VARIANT.get(want_arch)
        preferred = [d for d in candidates
                     if _variant(want_arch, d["platform"].get("variant")) == default]
        if default and len({d.get("digest") for d in preferred}) == 1:
            return preferred[0]
        raise ComposerError(
            f"{name}: several images for linux/{arch} in the index "
            f"({', '.join(sorted(_platform_text(d) for d in candidates))}); name a variant, "
            f"e.g. --arch {want_arch}/v7")
    if not candidates:
        have = ", ".join(sorted(set(listed))) or "none"
        raise ComposerError(f"{name}: no linux/{arch} image in the index (it has: {have})")
    return candidates[0]


def index_layout(image: Image, cache: Cache, *, name: str, platforms: tuple[str, ...],
                 offline: bool, client: RegistryClient | None = None) -> IndexLayout:
    """The blobs of :class:`IndexLayout` for ``image`` (resolved through an index), fetching
    what the cache lacks from the registry ``name`` names (never when ``offline``)."""
    if image.index_digest is None:
        raise ComposerError(f"{name}: format: oci needs an image index, and this is a single "
                            "image manifest")
    ref = parse_ref(name)
    source = None
    if not offline and isinstance(ref, Ref):
        source = registry_source(ref, cache, client or default_client())
    doc, media_type, data = _manifest(cache, source, name, image.index_digest, None)
    wanted = [_parse_platform(p) for p in platforms]
    blobs: dict[str, int] = {}
    for desc in doc.get("manifests") or []:
        _check_descriptor(desc, name)
        if desc.get("mediaType") not in (OCI_MANIFEST, DOCKER_MANIFEST):
            continue
        platform = desc.get("platform") if isinstance(desc.get("platform"), dict) else {}
        if wanted and not any(p["os"] == platform.get("os") and
                              p["architecture"] == platform.get("architecture") and
                              (not p["variant"] or p["variant"] == platform.get("variant"))
                              for p in wanted):
            continue
        manifest, _type, _raw = _manifest(cache, source, name, desc["digest"], desc["size"])
        parts = [manifest.get("config"), *(manifest.get("layers") or [])]
        for part in parts:
            _check_descriptor(part, name)
            what = f"{name}: blob {part['digest']}"
            if not cache.has_blob(part["digest"]):
                _need(source, name, what).blob(part["digest"], part["size"], what,
                                               threading.Event(), None, None)
            blobs.setdefault(part["digest"], part["size"])
        blobs.setdefault(desc["digest"], desc["size"])
    return IndexLayout((image.index_digest, len(data), media_type), tuple(blobs.items()))


def _parse_platform(text: str) -> dict[str, str]:
    parts = text.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise ComposerError(f"invalid platform {text!r}: use OS/ARCH[/VARIANT]")
    return {"os": parts[0], "architecture": parts[1],
            "variant": parts[2] if len(parts) > 2 else ""}
