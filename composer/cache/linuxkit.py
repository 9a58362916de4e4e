"""linuxkit's ``cache`` subcommands over this cache: listing, published-only removal, export of
one platform as OCI, docker or a flattened filesystem, import from stdin, pull and push.

The cache is an OCI image layout whose refs are named as linuxkit names them (``docker.io/...``
in full, see :attr:`composer.oci.refs.Ref.cache_name`), so the same names work with both tools.
Every blob read goes through the cache's verifying reader; every archive is written with the one
canonical tar writer, so exporting the same image twice gives the same bytes.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from composer import canonjson
from composer.cache.maintain import CONTAINERD_NAME, reachable, write_archive
from composer.epoch import Epoch
from composer.errors import ComposerError, UsageError
from composer.images.cache import Cache
from composer.images.registry import RegistryClient, RegistryError
from composer.oci.media import INDEX_TYPES, OCI_INDEX, REF_ANNOTATION
from composer.oci.refs import Ref, RefError, parse_registry_ref
from composer.streams.digest import check_digest, sha256_digest

Log = Callable[[str], None]
FORMATS = ("oci", "docker", "filesystem")


def listing(cache: Cache) -> list[str]:
    """``linuxkit cache ls``: a header, then each image name and its root manifest digest."""
    lines = [f"{'image name':<80} root manifest hash"]
    lines += [f"{name:<80} {desc['digest']}" for name, desc in cache.refs()]
    return lines


def cache_name(cache: Cache, text: str) -> str:
    """A ref as the user typed it (``alpine:3.19``) -> the name the cache keeps it under."""
    if cache.lookup(text) is not None:
        return text
    try:
        ref = parse_registry_ref(text)
    except RefError:
        return text
    return ref.cache_name


# -- platforms --------------------------------------------------------------------------------
def parse_platform(text: str) -> str:
    """linuxkit's ``--platform linux/ARCH[/VARIANT]`` -> our arch (``amd64``, ``arm64/v8``)."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--platform {text!r}: give os/arch[/variant], e.g. linux/amd64")
    if parts[0] != "linux":
        raise UsageError(f"--platform {text!r}: only linux images are supported")
    return "/".join(parts[1:])


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image in the cache: its manifest, config and layer descriptors."""

    manifest: dict  # the descriptor of the manifest
    config: dict
    layers: tuple[dict, ...]


def platform_image(cache: Cache, name: str, arch: str) -> PlatformImage:
    """The image ``name`` resolves to for ``linux/<arch>``, all of it in the cache."""
    from composer.images.resolve import classify, select_platform

    desc = cache.lookup(name)
    if desc is None:
        raise ComposerError(f"{name}: not in the cache")
    doc, media_type = classify(cache.read_blob(desc["digest"], desc.get("size"), name), None,
                               name)
    top = {"mediaType": media_type, "digest": desc["digest"], "size": desc["size"]}
    if media_type in INDEX_TYPES:
        child = select_platform(doc.get("manifests") or [], arch, name)
        if not cache.has_blob(child["digest"]):
            raise ComposerError(f"{name}: its linux/{arch} image is not in the cache "
                                f"(cache pull --platform linux/{arch} {name})")
        top = {k: child[k] for k in ("mediaType", "digest", "size") if k in child}
        doc, _ = classify(cache.read_blob(child["digest"], child["size"], name), None, name)
    parts = [doc.get("config"), *(doc.get("layers") or [])]
    missing = [p["digest"] for p in parts if not cache.has_blob(p["digest"])]
    if missing:
        raise ComposerError(f"{name}: not completely in the cache (missing {missing[0]}); "
                            "pull it first")
    return PlatformImage(top, parts[0], tuple(parts[1:]))


# -- export -----------------------------------------------------------------------------------
def _blob_files(cache: Cache, descs: list[dict]) -> dict[str, bytes | Path]:
    return {f"blobs/sha256/{check_digest(d['digest'])}": cache.blob_path(d["digest"])
            for d in descs}


def oci_files(cache: Cache, image: PlatformImage, ref_name: str) -> dict[str, bytes | Path]:
    """An OCI layout holding the one image, named ``ref_name`` both ways (OCI's annotation, and
    containerd's, which is the one linuxkit's ``cache import`` reads)."""
    files = _blob_files(cache, [image.manifest, image.config, *image.layers])
    names = {REF_ANNOTATION: ref_name, CONTAINERD_NAME: ref_name}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{**image.manifest, "annotations": names}]}
    files["index.json"] = canonjson.pretty(index)
    files["oci-layout"] = canonjson.compact({"imageLayoutVersion": "1.0.0"})
    return files


def docker_files(cache: Cache, image: PlatformImage, ref_name: str) -> dict[str, bytes | Path]:
    """``docker load``'s format: ``manifest.json`` naming the config and layers (which docker
    decompresses as it loads), beside the OCI layout of the same blobs."""
    files = oci_files(cache, image, ref_name)
    manifest = [{"Config": f"blobs/sha256/{check_digest(image.config['digest'])}",
                 "RepoTags": [ref_name],
                 "Layers": [f"blobs/sha256/{check_digest(d['digest'])}" for d in image.layers]}]
    files["manifest.json"] = canonjson.compact(manifest)
    return files


def write_filesystem(cache: Cache, name: str, arch: str, out: BinaryIO) -> None:
    """The image's layers flattened (whiteouts applied) as one canonical tar, as linuxkit's
    ``--format filesystem`` gives (``mutate.Extract``); entries keep their own mtimes."""
    from composer.images.resolve import resolve_image
    from composer.rootfs.assemble import write_tree
    from composer.rootfs.flatten import image_tree

    image = resolve_image(name, cache=cache, arch=arch, offline=True)
    epoch = Epoch(None)
    # no provenance records: a plain filesystem tar, which GNU tar reads without a warning
    tree = image_tree(image, cache, implicit_mtime=epoch.generated, source="", location="")
    write_tree(tree, out, epoch)


def export(cache: Cache, name: str, arch: str, fmt: str, out: BinaryIO,
           tag_name: str | None = None) -> None:
    """``cache export``: the ``linux/<arch>`` image of ``name`` as ``fmt`` into ``out``."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt == "filesystem":
        write_filesystem(cache, name, arch, out)
        return
    image = platform_image(cache, name, arch)
    shown = cache_name(cache, tag_name) if tag_name else name
    files = oci_files(cache, image, shown) if fmt == "oci" else docker_files(cache, image, shown)
    write_archive(cache, files, out)


# -- import -----------------------------------------------------------------------------------
@contextlib.contextmanager
def spooled(cache: Cache, stream: BinaryIO) -> Iterator[Path]:
    """A stream (stdin) copied to a file in the cache's ``tmp/`` (archives are read by seeking),
    removed afterwards."""
    tmp = cache.root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp, prefix="import-", suffix=".tar") as fh:
        shutil.copyfileobj(stream, fh, 1 << 20)
        fh.flush()
        yield Path(fh.name)


# -- registries -------------------------------------------------------------------------------
def _registry_ref(name: str) -> Ref:
    try:
        return parse_registry_ref(name)
    except RefError as exc:
        raise UsageError(str(exc)) from None


def remote_digest(client: RegistryClient, name: str) -> str | None:
    """The digest the registry has for ``name`` now, or None if it has none."""
    from composer.images.registry import TransientError

    ref = _registry_ref(name)
    try:
        got = client.get_manifest(ref, ref.tag or ref.digest or "latest")
    except TransientError:
        raise
    except RegistryError:
        return None
    return sha256_digest(got.data)


def remove(cache: Cache, names: list[str], *, published_only: bool = False,
           client: RegistryClient | None = None, log: Log = lambda _m: None) -> list[str]:
    """Forget ``names`` (all of them must be in the cache); with ``published_only`` only those
    the registry has under the same digest, as linuxkit's ``--published-only``."""
    missing = [n for n in names if cache.lookup(n) is None]
    if missing:
        raise ComposerError(f"not in the cache: {', '.join(missing)}")
    gone = []
    with cache.exclusive():
        for name in names:
            desc = cache.lookup(name)
            assert desc is not None
            if published_only:
                assert client is not None
                remote = remote_digest(client, name)
                if remote is None:
                    log(f"image {name} not found in remote registry, leaving in cache")
                    continue
                if remote != desc["digest"]:
                    log(f"image {name} has mismatched hashes, cache {desc['digest']} vs remote "
                        f"registry {remote}, leaving in cache")
                    continue
            log(f"removing image {name} from cache")
            cache.untag(name)
            gone.append(name)
    return gone


def empty(cache: Cache) -> None:
    """linuxkit's ``cache clean``: the whole cache directory goes (while no build uses it)."""
    if not cache.root.exists():
        return
    if not (cache.root / "oci-layout").is_file():
        raise ComposerError(f"{cache.root}: not a cache (no oci-layout); not removing it")
    with cache.exclusive():
        for child in sorted(cache.root.iterdir()):
            if child.name == "gc.lock":
                continue  # held right now; an empty lock file is harmless
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def index_platforms(client: RegistryClient, ref: Ref) -> list[str]:
    """The linux platforms (our arch spelling: ``amd64``, ``arm64/v8``) an index lists now, or
    ``[]`` for a single-platform image; attestations are not platforms."""
    from composer.images.resolve import ATTESTATION, classify

    got = client.get_manifest(ref, ref.digest or ref.tag or "latest")
    doc, media_type = classify(got.data, got.content_type, str(ref))
    if media_type not in INDEX_TYPES:
        return []
    out: list[str] = []
    for desc in doc.get("manifests") or []:
        platform = desc.get("platform") if isinstance(desc, dict) else None
        annotations = (desc.get("annotations") or {}) if isinstance(desc, dict) else {}
        if not isinstance(platform, dict) or platform.get("os") != "linux" or \
                annotations.get("vnd.docker.reference.type") == ATTESTATION:
            continue
        arch = str(platform.get("architecture") or "")
        variant = platform.get("variant")
        text = f"{arch}/{variant}" if variant else arch
        if arch and text not in out:
            out.append(text)
    return out


def pull(cache: Cache, names: list[str], arches: list[str] | None, client: RegistryClient,
         log: Log, default_arch: str = "amd64") -> list[str]:
    """``cache pull``: fetch each tag again (replacing what the cache had) for every arch in
    ``arches``; without them, every linux platform an index lists, as linuxkit does (a
    single-platform image is fetched as it is, for ``default_arch``)."""
    from composer.images.resolve import resolve_image

    pulled = []
    with cache.in_use():
        for name in names:
            ref = _registry_ref(name)
            wanted = arches or index_platforms(client, ref) or [default_arch]
            for number, arch in enumerate(wanted):
                image = resolve_image(str(ref), cache=cache, arch=arch, pull=number == 0,
                                      client=client, log=log)
                log(f"{ref}: linux/{arch} {image.digest}")
                if image.index_digest is None:
                    break  # a single-platform image: the other arches are not in it
            pulled.append(ref.cache_name if ref.tag else f"{ref.name}@{ref.digest}")
    return pulled


def push(cache: Cache, name: str, *, remote_name: str | None, with_arch_tags: bool,
         override: bool, client: RegistryClient, log: Log) -> str | None:
    """``cache push``: the cached image (or index, if every platform it lists is cached) to its
    registry, or to ``remote_name``. Unless ``override``, a tag the registry already has is left
    alone (linuxkit's rule). Returns ``NAME@DIGEST``, or None when it was skipped."""
    from composer.images.push import Pusher, push_tree

    desc = cache.lookup(name)
    if desc is None:
        raise ComposerError(f"{name}: not in the cache")
    target = _registry_ref(remote_name or name)
    if not override and remote_digest(client, str(target)) is not None:
        log(f"image {target} already exists in the registry, skipping (--override pushes "
            "anyway)")
        return None
    _, _, complete = reachable(cache, desc)
    doc = canonjson.loads(cache.read_blob(desc["digest"], desc.get("size"), name))
    is_index = desc.get("mediaType") in INDEX_TYPES or ("manifests" in doc
                                                         and "layers" not in doc)
    children = (doc.get("manifests") or []) if is_index else []
    absent = [c for c in children if not cache.has_blob(c["digest"])
              or not reachable(cache, c)[2]]
    if absent or not complete:
        have = [_platform(c) for c in children if c not in absent]
        raise ComposerError(f"{name}: not every image it lists is in the cache (it has "
                            f"{', '.join(have) or 'none'}); pushing it would leave the registry "
                            "an index with missing images: cache pull --platform for each, or "
                            "push a platform's image by digest")
    pusher = Pusher(client=client, log=log)
    reference = target.tag or desc["digest"]
    push_tree(cache.root, desc, target, pusher, reference)
    log(f"Pushed {name} as {target}")
    if with_arch_tags and children:
        if not target.tag:
            raise UsageError("--with-arch-tags needs a tag to add -ARCH to")
        for child in children:
            platform = child.get("platform") or {}
            arch = platform.get("architecture")
            if not arch or platform.get("os") == "unknown":
                continue  # attestations
            data = cache.read_blob(child["digest"], child["size"], name)
            pusher.put_manifest(target, f"{target.tag}-{arch}", data, child["mediaType"])
            log(f"Pushed {target.name}:{target.tag}-{arch}")
    return f"{target.name}@{desc['digest']}"


def _platform(desc: dict) -> str:
    platform = desc.get("platform") or {}
    return "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))
