"""The build pipeline: spec -> resolved images -> canonical rootfs tar -> outputs.

Each stage is its own module; this one only strings them together and guarantees that outputs
appear all at once or not at all.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.epoch import Epoch, resolve_epoch
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.model import Image
from composer.rootfs import memo
from composer.rootfs.assemble import Context, build_tree, write_tree
from composer.rootfs.flatten import prepare_layers
from composer.spec.model import Spec
from composer.streams.digest import sha256_file
from composer.tar.canon import CanonError

if TYPE_CHECKING:
    from composer.repro.record import RecordingOutputSet
    from outputs import Format, Options


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
    sbom: bool = True  # NAME.spdx.json (or .cdx.json) beside the outputs
    #: where linuxkit's merged SBOM goes in the rootfs ("" for none)
    sbom_path: str = "sbom.spdx.json"
    sbom_format: str = "spdx"  # of the file beside the outputs: spdx or cyclonedx
    locked: bool = False
    docker: bool = False
    quiet: bool = False
    insecure: tuple[str, ...] = ()
    # converter options given on the command line, field -> value (outputs.options table)
    output_options: Mapping[str, Any] = field(default_factory=dict)


def run_build(req: BuildRequest, log: Callable[[str], None]) -> list[Path]:
    """Build; the outputs, ``NAME.build.json``, ``NAME.spdx.json`` and ``NAME.SHA256SUMS``
    appear together when everything succeeded (see :mod:`composer.repro.record`)."""
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
    from composer.images.lock import resolve_spec
    from outputs import FORMATS, Options

    images = resolve_spec(spec, cache, arch=req.arch, pull=req.pull, offline=req.offline,
                          log=log, specs=req.specs, locked=req.locked, docker=req.docker,
                          quiet=req.quiet, insecure=req.insecure)
    from composer.repro.record import RecordingOutputSet

    layouts = volume_layouts(spec, images, cache, req)
    stored = _phase_one(spec, cache, epoch, images, log, req.sbom_path, layouts)
    req.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        known = {stored.path: (stored.sha256, stored.size)}
        with RecordingOutputSet(req.output_dir, known) as outs:
            options = Options(mtime=epoch.generated, arch=req.arch, **req.output_options)
            for fmt in req.formats:
                convert(FORMATS[fmt], stored, req.name, outs, options, cache, log)
            packages = memo.packages(cache.root, stored, req.sbom_path) if req.sbom else None
            write_record_files(req, spec, images, epoch, options, stored.path,
                               (stored.sha256, stored.size), outs, packages)
            return outs.commit()
    except CanonError as exc:
        raise ComposerError(str(exc)) from exc


def convert(fmt: Format, stored: memo.Stored, name: str, outs: RecordingOutputSet,
            options: Options, cache: Cache, log: Callable[[str], None]) -> None:
    """Format ``fmt``'s files: placed from the cache when nothing that shapes them changed
    (:mod:`composer.cache.outputs`), else converted and then kept there."""
    from composer.cache import outputs as kept

    if not fmt.kept:
        fmt.convert(stored.path, name, outs, options)
        return
    key = kept.output_key(output_key_parts(fmt, stored, name, options))
    hit = kept.lookup(cache.root, key)
    if hit is not None and sorted(k.name for k in hit) == sorted(fmt.output_files(name)):
        kept.place(outs, hit)
        log(f"{fmt.name}: unchanged (reused {key[:12]} from the cache)")
        return
    fmt.convert(stored.path, name, outs, options)
    wanted = set(fmt.output_files(name))  # a shared file (NAME-kernel) may be an earlier one's
    made = [(n, tmp) for n, tmp in outs.since(0) if n in wanted]
    if any(tmp.is_dir() for _, tmp in made):
        return
    files = []
    for out_name, tmp in made:
        digest = outs.digests.get(tmp) or sha256_file(tmp)
        outs.digests[tmp] = digest
        files.append((out_name, tmp, *digest))
    kept.store(cache.root, key, files)


def output_key_parts(fmt: Format, stored: memo.Stored, name: str, options: Options
                     ) -> dict[str, object]:
    """Everything that shapes a format's files (the phase-two cache key's inputs)."""
    import outputs
    from composer.cache.outputs import code_fingerprint
    from composer.repro import record

    return {
        "rootfs": stored.sha256,
        "format": fmt.name,
        "name": name,
        "mtime": options.mtime,
        "options": record.options_record(options, (fmt.name,)),
        "compressor": outputs.compressor_id(options.gzip_level),
        "libraries": record.library_versions(),
        "code": [memo.code_fingerprint(), code_fingerprint([Path(outputs.__file__).parent])],
    }


def volume_layouts(spec: Spec, images: dict[str, Image], cache: Cache, req: BuildRequest
                   ) -> dict[int, Any]:
    """The index layout of each ``format: oci`` volume, its blobs fetched into the cache."""
    from composer.images.resolve import default_client, index_layout

    out: dict[int, Any] = {}
    client = None
    for index, volume in enumerate(spec.volumes):
        if volume.format != "oci" or volume.image is None:
            continue
        if client is None and not req.offline:
            client = default_client(set(req.insecure))
        image = images[volume.image.text]
        out[index] = index_layout(image, cache, name=image.ref, platforms=volume.platforms,
                                  offline=req.offline, client=client)
    return out


def _phase_one(spec: Spec, cache: Cache, epoch: Epoch, images: dict[str, Image],
               log: Callable[[str], None], sbom_path: str = "",
               layouts: dict[int, Any] | None = None) -> memo.Stored:
    """The canonical rootfs tar, from the cache if nothing that shapes it has changed."""
    from composer.atomic import atomic_file
    from composer.streams.behind import write_behind
    from composer.streams.digest import HashingWriter

    key = memo.rootfs_key(spec, images, epoch, sbom_path, layouts or {})
    stored = memo.lookup(cache.root, key)
    if stored is not None:
        log(f"rootfs: {stored.entries} entries (unchanged: reused {key[:12]} from the cache)")
        return stored
    prepare_layers(images.values(), cache)
    ctx = Context(cache, epoch, images, sbom_path=sbom_path, layouts=dict(layouts or {}))
    tree = build_tree(spec, ctx)
    for message in ctx.warnings:
        log(_as_warning(message))
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
    memo.remember_packages(cache.root, hashing.hexdigest(),
                           tree_packages(tree, epoch, sbom_path))
    log(f"rootfs: {count} entries")
    return memo.Stored(path, hashing.hexdigest(), hashing.size, count)


def tree_packages(tree, epoch: Epoch, sbom_path: str = "") -> list[dict[str, str]]:
    """The SBOM's package list from the tree just written (the same entries as its tar)."""
    from composer.rootfs.packages import packages_in
    from composer.rootfs.tree import read_content

    return packages_in(((entry, functools.partial(read_content, node.content, entry.size)
                         if node.content is not None else None)
                        for entry, node in tree.entries(clamp=epoch.clamp)), sbom_path)


def write_record_files(req: BuildRequest, spec: Spec, images: dict[str, Image], epoch: Epoch,
                       options: Options, rootfs: Path, rootfs_digest: tuple[str, int],
                       outs: RecordingOutputSet,
                       packages: list[dict[str, str]] | None = None) -> None:
    """NAME.spdx.json, NAME.build.json, NAME.SHA256SUMS and NAME.build-env.json, through the
    build's OutputSet."""
    from composer import canonjson
    from composer.repro import record
    from composer.streams.gz import compressor_settings

    image_list = [{"ref": ref.text, "name": images[ref.text].ref,
                   "digest": images[ref.text].digest,
                   "index_digest": images[ref.text].index_digest}
                  for ref in spec.image_refs()]
    if req.sbom:
        from composer.repro.sbom import spdx_document

        doc = spdx_document(req.name, rootfs, rootfs_digest[0], image_list, epoch.generated,
                            packages)
        if req.sbom_format == "cyclonedx":
            from composer.repro.sbom import cyclonedx_document

            with outs.create(record.cyclonedx_name(req.name)) as fh:
                fh.write(canonjson.pretty(cyclonedx_document(doc)))
        else:
            with outs.create(record.sbom_name(req.name)) as fh:
                fh.write(canonjson.pretty(doc))
    done = [(name, *(outs.digests.get(tmp) or sha256_file(tmp)))
            for name, tmp in outs.pending()]
    doc = record.build_record(
        name=req.name, arch=req.arch, formats=req.formats,
        source_date_epoch=epoch.source_date_epoch,
        compressor=compressor_settings(options.gzip_level),
        specs=[record.spec_file(p) for p in req.specs], images=image_list,
        host_files=host_files(spec), rootfs=rootfs_digest, outputs=done,
        options=record.options_record(options, req.formats),
        sbom={"rootfs": req.sbom_path, "beside": req.sbom_format if req.sbom else None})
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
    from composer.streams.digest import sha256_file

    out: list[dict[str, object]] = []
    for f in spec.files:
        if f.source is None:
            continue
        source = Path(f.source)
        if source.is_file():
            digest, size = sha256_file(source)
            out.append({"path": f.path, "sha256": digest, "size": size})
    return out


def _as_warning(message: str) -> str:
    """``FILE:LINE:COL: text`` -> ``FILE:LINE:COL: warning: text``, as spec warnings print."""
    m = re.match(r"^(.+?:[0-9]+:[0-9]+): (.*)$", message, re.S)
    return f"{m.group(1)}: warning: {m.group(2)}" if m else f"warning: {message}"
