"""The build pipeline: spec -> resolved images -> canonical rootfs tar -> outputs.

Each stage is its own module; this one only strings them together and guarantees that outputs
appear all at once or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from composer.epoch import Epoch, resolve_epoch
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.model import Image
from composer.rootfs import memo
from composer.rootfs.assemble import Context, build_tree, write_tree
from composer.rootfs.flatten import prepare_layers
from composer.spec.model import Spec
from composer.tarcanon import CanonError

if TYPE_CHECKING:
    from composer.record import RecordingOutputSet
    from outputs import Options


@dataclass(frozen=True)
class BuildRequest:
    specs: tuple[Path, ...]
    formats: tuple[str, ...]
    output_dir: Path
    name: str
    arch: str
    cache_dir: Path
    pull: bool = False
    offline: bool = False
    source_date_epoch: int | None = None
    sbom: bool = True
    locked: bool = False
    docker: bool = False
    quiet: bool = False
    insecure: tuple[str, ...] = ()
    image_tag: str | None = None  # docker/oci formats: repo tag (default NAME:latest)
    entrypoint: tuple[str, ...] | None = None  # docker/oci formats: override the entrypoint
    bootloaders: tuple = ()  # ISO formats: outputs.bootloaders.Pin overrides


def run_build(req: BuildRequest, log: Callable[[str], None]) -> list[Path]:
    """Build; the outputs, ``NAME.build.json``, ``NAME.spdx.json`` and ``NAME.SHA256SUMS``
    appear together when everything succeeded (see :mod:`composer.record`)."""
    from composer.spec import load_spec

    epoch = resolve_epoch(req.source_date_epoch)
    spec = load_spec(list(req.specs))
    for pos, message in spec.warnings:
        log(f"{pos}: warning: {message}" if pos else f"warning: {message}")
    cache = Cache(req.cache_dir)
    with cache.in_use():
        return _build(req, spec, cache, epoch, log)


def _build(req: BuildRequest, spec: Spec, cache: Cache, epoch: Epoch,
           log: Callable[[str], None]) -> list[Path]:
    from composer.lock import resolve_spec
    from outputs import FORMATS, Options

    images = resolve_spec(spec, cache, arch=req.arch, pull=req.pull, offline=req.offline,
                          log=log, specs=req.specs, locked=req.locked, docker=req.docker,
                          quiet=req.quiet, insecure=req.insecure)
    from composer.record import RecordingOutputSet

    stored = _phase_one(spec, cache, epoch, images, log)
    req.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        known = {stored.path: (stored.sha256, stored.size)}
        with RecordingOutputSet(req.output_dir, known) as outs:
            options = Options(mtime=epoch.generated, arch=req.arch, image_tag=req.image_tag,
                              entrypoint=req.entrypoint, bootloaders=req.bootloaders)
            for fmt in req.formats:
                FORMATS[fmt](stored.path, req.name, outs, options)
            packages = memo.packages(cache.root, stored) if req.sbom else None
            write_record_files(req, spec, images, epoch, options, stored.path,
                               (stored.sha256, stored.size), outs, packages)
            return outs.commit()
    except CanonError as exc:
        raise ComposerError(str(exc)) from exc


def _phase_one(spec: Spec, cache: Cache, epoch: Epoch, images: dict[str, Image],
               log: Callable[[str], None]) -> memo.Stored:
    """The canonical rootfs tar, from the cache if nothing that shapes it has changed."""
    from composer.atomic import atomic_file
    from composer.images.cache import HashingWriter
    from composer.images.write import write_behind

    key = memo.rootfs_key(spec, images, epoch)
    stored = memo.lookup(cache.root, key)
    if stored is not None:
        log(f"rootfs: {stored.entries} entries (unchanged: reused {key[:12]} from the cache)")
        return stored
    prepare_layers(images.values(), cache)
    tree = build_tree(spec, Context(cache, epoch, images))
    (cache.root / "tmp").mkdir(parents=True, exist_ok=True)
    path = memo.tar_path(cache.root, key)
    try:
        with atomic_file(path, cache.root / "tmp") as fh:
            hashing = HashingWriter(fh)
            with write_behind(hashing) as out:
                count = write_tree(tree, out, epoch)
    except CanonError as exc:
        raise ComposerError(str(exc)) from exc
    memo.record(cache.root, key, hashing.hexdigest(), hashing.size, count)
    memo.remember_packages(cache.root, hashing.hexdigest(), tree_packages(tree, epoch))
    log(f"rootfs: {count} entries")
    return memo.Stored(path, hashing.hexdigest(), hashing.size, count)


def tree_packages(tree, epoch: Epoch) -> list[dict[str, str]]:
    """The SBOM's package list from the tree just written (the same entries as its tar)."""
    from composer.rootfs.tree import read_content
    from composer.sbom import packages_in

    return packages_in((entry, (lambda n=node, e=entry: read_content(n.content, e.size))
                        if node.content is not None else None)
                       for entry, node in tree.entries(clamp=epoch.clamp))


def write_record_files(req: BuildRequest, spec: Spec, images: dict[str, Image], epoch: Epoch,
                       options: Options, rootfs: Path, rootfs_digest: tuple[str, int],
                       outs: RecordingOutputSet,
                       packages: list[dict[str, str]] | None = None) -> None:
    """NAME.spdx.json, NAME.build.json, NAME.SHA256SUMS and NAME.build-env.json, through the
    build's OutputSet."""
    import outputs.gz
    from composer import canonjson, record

    image_list = [{"ref": ref.text, "name": images[ref.text].ref,
                   "digest": images[ref.text].digest,
                   "index_digest": images[ref.text].index_digest}
                  for ref in spec.image_refs()]
    if req.sbom:
        from composer.sbom import spdx_document

        doc = spdx_document(req.name, rootfs, rootfs_digest[0], image_list, epoch.generated,
                            packages)
        with outs.create(record.sbom_name(req.name)) as fh:
            fh.write(canonjson.pretty(doc))
    done = [(name, *(outs.digests.get(tmp) or record.sha256_file(tmp)))
            for name, tmp in outs.pending()]
    doc = record.build_record(
        name=req.name, arch=req.arch, formats=req.formats,
        source_date_epoch=epoch.source_date_epoch,
        compressor=outputs.gz.compressor_settings(options.gzip_level),
        specs=[record.spec_file(p) for p in req.specs], images=image_list,
        host_files=host_files(spec), rootfs=rootfs_digest, outputs=done,
        options=record.options_record(options, req.formats))
    data = canonjson.pretty(doc)
    with outs.create(record.record_name(req.name)) as fh:
        fh.write(data)
    sums = [(n, h) for n, h, _ in done]
    sums.append((record.record_name(req.name), hashlib.sha256(data).hexdigest()))
    with outs.create(record.sums_name(req.name)) as fh:
        fh.write(record.sha256sums(sums))
    with outs.create(record.env_name(req.name)) as fh:  # after the sums: not listed in them
        fh.write(canonjson.pretty(record.build_environment()))


def host_files(spec: Spec) -> list[dict[str, object]]:
    """``files: source`` inputs by rootfs path and content digest (never their host path)."""
    from composer.record import sha256_file

    out: list[dict[str, object]] = []
    for f in spec.files:
        if f.source is None:
            continue
        source = Path(f.source)
        if source.is_file():
            digest, size = sha256_file(source)
            out.append({"path": f.path, "sha256": digest, "size": size})
    return out
