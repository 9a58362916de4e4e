"""Formats ``docker``, ``oci``, ``oci-dir`` and ``docker-context``: the rootfs as a container image.

``docker`` writes ``NAME-docker.tar``, an archive that ``docker load`` accepts with either image
store: ``manifest.json`` (classic store) beside an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/``; the containerd store), as ``docker save`` has written since
Docker 25. ``oci`` writes ``NAME-oci.tar``, the same OCI layout without ``manifest.json``, and
``oci-dir`` the layout unpacked as the directory ``NAME-oci``.

With several architectures (``--arch amd64,arm64``; :func:`write_oci_platforms`,
:func:`write_docker_platforms`) the same file name holds every platform's image, each the
bytes a one-architecture build writes, and ``index.json`` names one multi-platform index over
them (:func:`composer.oci.documents.platform_index`: the bytes ``push`` sends), stored as a
blob; ``manifest.json`` lists the first architecture's image only, the one Docker's classic
store loads (docs/architectures.md).

The image has one uncompressed layer: the canonical rootfs minus ``boot/`` (the kernel is no
use in a container), rewritten through the one canonical tar writer, so the layer is itself a
canonical tar. Uncompressed keeps the digests independent of the zlib build and is what
``docker save`` writes. The config has no history and no host data: ``created`` is
``Options.mtime``, the architecture ``Options.arch`` (``arm64/v8``: architecture ``arm64``,
variant ``v8``), the entrypoint ``Options.entrypoint`` or
else ``/bin/rc.init`` if the rootfs has it (linuxkit's convention), else ``/init``. The image is
tagged ``Options.image_tag`` or ``NAME:latest``.

All JSON is :func:`composer.canonjson.compact`. Archive members: directories 0755, files 0644,
uid/gid 0, mtime ``Options.mtime``, in canonical order. The layer is spooled to a hidden
temporary file next to the outputs and hashed while it is written, so memory stays flat.

``docker-context`` writes ``NAME.docker``, linuxkit's ``docker`` format: the whole rootfs plus a
top-level ``Dockerfile`` (``FROM scratch``, ``COPY . ./``, the entrypoint), a build context for
``docker build -``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from composer import canonjson
from composer.atomic import OutputSet
from composer.errors import ComposerError
from composer.oci.documents import (
    config_document,
    descriptor,
    manifest_document,
    platform_index,
    rfc3339,
)
from composer.oci.media import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST
from composer.oci.refs import RefError, parse_registry_ref
from composer.streams.behind import write_behind
from composer.streams.digest import HashingWriter
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key
from composer.tar.read import read_entries
from outputs.initrd.formats import in_initrd
from outputs.options import Options

RC_INIT = "bin/rc.init"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
OCI_LAYOUT = canonjson.compact({"imageLayoutVersion": "1.0.0"})


@dataclass(frozen=True)
class ImageName:
    """``familiar`` for ``RepoTags`` (``hello:latest``), ``full`` for containerd
    (``docker.io/library/hello:latest``), ``tag`` for the OCI ref name (``latest``)."""

    familiar: str
    full: str
    tag: str


def image_name(name: str, tag: str | None) -> ImageName:
    """The repository tag for an image built as ``name``; ``tag`` overrides ``NAME:latest``."""
    text = tag or f"{name}:latest"
    try:
        ref = parse_registry_ref(text)
    except RefError as exc:
        hint = "" if tag else " (choose a valid one with --tag)"
        raise ComposerError(f"image tag {text!r} is not a valid reference: {exc}{hint}") from None
    if ref.digest or not ref.tag:
        raise ComposerError(f"image tag {text!r} must be NAME:TAG, without a digest")
    repo = ref.repository
    if ref.registry == "docker.io":
        familiar = repo.removeprefix("library/") if repo.count("/") == 1 else repo
    else:
        familiar = f"{ref.registry}/{repo}"
    return ImageName(f"{familiar}:{ref.tag}", f"{ref.name}:{ref.tag}", ref.tag)


def entrypoint(options: Options, has_rc_init: bool) -> list[str]:
    if options.entrypoint is not None:
        return list(options.entrypoint)
    return ["/" + RC_INIT] if has_rc_init else ["/init"]


@dataclass(frozen=True)
class Layer:
    path: Path
    digest: str
    size: int
    has_rc_init: bool


def spool_layer(rootfs: Path, directory: Path) -> Layer:
    """The rootfs minus ``boot/`` as a canonical tar in ``directory``, hashed as it is written."""
    has_rc_init = False
    path = directory / "layer.tar"
    with open(rootfs, "rb") as src, open(path, "wb") as out, \
            write_behind(hashing := HashingWriter(out)) as sink:
        tar = CanonicalTarWriter(sink)
        for entry, data in read_entries(src):
            if not in_initrd(entry.path):
                continue
            if entry.kind is Kind.HARDLINK and not in_initrd(entry.linkname):
                raise ComposerError(f"{entry.path}: hard link into boot/ ({entry.linkname}), "
                                    "which the image formats leave out")
            has_rc_init = has_rc_init or entry.path == RC_INIT
            tar.add(entry, data)
        tar.close()
    return Layer(path, hashing.digest, hashing.size, has_rc_init)


@dataclass(frozen=True)
class Member:
    """One file of an image layout: its bytes, or a spooled file."""

    path: str
    data: bytes | None = None
    file: Path | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else os.path.getsize(self.spooled)

    @property
    def spooled(self) -> Path:
        """The spooled file of a member without bytes."""
        assert self.file is not None, f"{self.path}: neither bytes nor a file"
        return self.file


def blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


@dataclass(frozen=True)
class ImageDocs:
    """One platform's image: its config and manifest bytes and their descriptors."""

    layer: Layer
    config: bytes
    config_desc: dict
    manifest: bytes
    manifest_desc: dict


def image_documents(layer: Layer, options: Options) -> ImageDocs:
    """The config and manifest of the one-layer image (the same bytes however many
    architectures are built: a multi-platform file holds each single-arch build's manifest)."""
    arch, _, variant = options.arch.partition("/")  # --arch arm64/v8: arm64, variant v8
    config = canonjson.compact(config_document(
        [layer.digest], arch,
        {"Entrypoint": entrypoint(options, layer.has_rc_init)}, rfc3339(options.mtime),
        variant or None))
    config_desc = descriptor(OCI_CONFIG, config)
    layer_desc = {"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}
    manifest = canonjson.compact(manifest_document(config_desc, [layer_desc]))
    return ImageDocs(layer, config, config_desc, manifest, descriptor(OCI_MANIFEST, manifest))


def _image_members(image: ImageDocs) -> list[Member]:
    return [Member(blob_path(image.config_desc["digest"]), data=image.config),
            Member(blob_path(image.layer.digest), file=image.layer.path),
            Member(blob_path(image.manifest_desc["digest"]), data=image.manifest)]


def _top(desc: dict, name: ImageName, images: list[ImageDocs], docker: bool,
         blobs: list[Member]) -> list[Member]:
    """``index.json`` naming ``desc`` (a manifest or an index) by the image's name, the docker
    ``manifest.json`` over the first of ``images``, ``oci-layout``; sorted, each path once
    (identical blobs are stored once)."""
    desc = {**desc, "annotations": {NAME_ANNOTATION: name.full, REF_ANNOTATION: name.tag}}
    index = canonjson.compact({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": [desc]})
    members = [*blobs, Member("index.json", data=index)]
    if docker:
        first = images[0]
        members.append(Member("manifest.json", data=canonjson.compact([{
            "Config": blob_path(first.config_desc["digest"]),
            "Layers": [blob_path(first.layer.digest)],
            "RepoTags": [name.familiar],
        }])))
    members.append(Member("oci-layout", data=OCI_LAYOUT))
    unique = {m.path: m for m in members}  # config and layer could (absurdly) coincide
    return sorted(unique.values(), key=lambda m: m.path)


def layout_members(layer: Layer, name: ImageName, options: Options,
                   docker: bool) -> list[Member]:
    """The files of the OCI layout (plus ``manifest.json`` if ``docker``), in sorted order."""
    image = image_documents(layer, options)
    return _top(image.manifest_desc, name, [image], docker, _image_members(image))


def platforms_members(images: list[ImageDocs], name: ImageName, docker: bool) -> list[Member]:
    """One layout over several platforms' images (``images`` in ``--arch`` order): its
    ``index.json`` names one multi-platform index (:func:`platform_index`, the bytes ``push``
    sends), stored as a blob; ``manifest.json`` (docker) lists the first platform only."""
    try:
        index = platform_index([(image.manifest_desc, canonjson.loads(image.config))
                                for image in images])
    except ValueError as exc:
        raise ComposerError(f"several architectures: {exc}") from None
    blobs = [m for image in images for m in _image_members(image)]
    blobs.append(Member(blob_path(descriptor(OCI_INDEX, index)["digest"]), data=index))
    return _top(descriptor(OCI_INDEX, index), name, images, docker, blobs)


def write_members_tar(members: list[Member], out, mtime: int) -> None:
    tar = CanonicalTarWriter(out)
    for directory in ("blobs", "blobs/sha256"):
        tar.add(Entry(directory, Kind.DIR, mode=0o755, mtime=mtime))
    for member in members:
        entry = Entry(member.path, Kind.FILE, mode=0o644, mtime=mtime, size=member.size)
        if member.data is not None:
            tar.add(entry, member.data)
        else:
            with open(member.spooled, "rb") as src:
                tar.add(entry, src)
    tar.close()


def write_members_dir(members: list[Member], dest: Path) -> None:
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for member in members:
        if member.data is not None:
            (dest / member.path).write_bytes(member.data)
        else:
            os.replace(member.spooled, dest / member.path)  # same filesystem: the output dir


def _image(rootfs: Path, name: str, outset: OutputSet, options: Options, fmt: str) -> None:
    ref = image_name(name, options.image_tag)
    outset.directory.mkdir(parents=True, exist_ok=True)
    with outset.scratch(f"{name}-{fmt}") as t:
        layer = spool_layer(rootfs, Path(t))
        members = layout_members(layer, ref, options, docker=fmt == "docker")
        if fmt == "oci-dir":
            with outset.create_dir(f"{name}-oci") as dest:
                write_members_dir(members, dest)
            return
        filename = f"{name}-docker.tar" if fmt == "docker" else f"{name}-oci.tar"
        with outset.create(filename) as out:
            write_members_tar(members, out, options.mtime)


def _platforms(parts: list[tuple[Path, Options]], name: str, outset: OutputSet,
               fmt: str) -> None:
    """``NAME-oci.tar``/``NAME-docker.tar`` for several architectures: ``parts`` is each
    one's (rootfs tar, options), in ``--arch`` order."""
    options = parts[0][1]
    ref = image_name(name, options.image_tag)
    outset.directory.mkdir(parents=True, exist_ok=True)
    with outset.scratch(f"{name}-{fmt}") as t:
        images = []
        for n, (rootfs, opts) in enumerate(parts):
            (Path(t) / str(n)).mkdir()
            images.append(image_documents(spool_layer(rootfs, Path(t) / str(n)), opts))
        members = platforms_members(images, ref, docker=fmt == "docker")
        with outset.create(f"{name}-{fmt}.tar") as out:
            write_members_tar(members, out, options.mtime)


def write_docker_platforms(parts: list[tuple[Path, Options]], name: str,
                           outset: OutputSet) -> None:
    _platforms(parts, name, outset, "docker")


def write_oci_platforms(parts: list[tuple[Path, Options]], name: str,
                        outset: OutputSet) -> None:
    _platforms(parts, name, outset, "oci")


def write_docker(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    _image(rootfs, name, outset, options, "docker")


def write_oci(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    _image(rootfs, name, outset, options, "oci")


def write_oci_dir(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    _image(rootfs, name, outset, options, "oci-dir")


DOCKERFILE = "Dockerfile"


def dockerfile(args: list[str]) -> bytes:
    """linuxkit's Dockerfile, byte for byte when the entrypoint is ``/bin/rc.init``."""
    line = "ENTRYPOINT " + canonjson.compact(args).decode()
    return f"\nFROM scratch\n\nCOPY . ./\n\n{line}\n".encode()


def _has_rc_init(rootfs: Path) -> bool:
    with open(rootfs, "rb") as src:
        return any(entry.path == RC_INIT for entry, _ in read_entries(src))


def _with_dockerfile(rootfs: Path, content: bytes, mtime: int
                     ) -> Iterator[tuple[Entry, IO[bytes] | io.RawIOBase | bytes | None]]:
    """The rootfs entries with the Dockerfile slotted in at its sorted place."""
    pending = True
    key = sort_key(DOCKERFILE)
    extra = Entry(DOCKERFILE, Kind.FILE, mode=0o644, mtime=mtime, size=len(content))
    with open(rootfs, "rb") as src:
        for entry, data in read_entries(src):
            if entry.path == DOCKERFILE:
                raise ComposerError("the root filesystem has a top-level Dockerfile, which "
                                    "format docker-context writes itself")
            if pending and sort_key(entry.path) > key:
                pending = False
                yield extra, content
            yield entry, data
    if pending:
        yield extra, content


def write_docker_context(rootfs: Path, name: str, outset: OutputSet, options: Options) -> None:
    args = entrypoint(options, options.entrypoint is None and _has_rc_init(rootfs))
    with outset.create(f"{name}.docker") as out:
        tar = CanonicalTarWriter(out)
        for entry, data in _with_dockerfile(rootfs, dockerfile(args), options.mtime):
            tar.add(entry, data)
        tar.close()
