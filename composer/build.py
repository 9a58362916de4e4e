"""The build pipeline: spec -> resolved images -> canonical rootfs tar -> outputs.

Each stage is its own module; this one only strings them together and guarantees that outputs
appear all at once or not at all.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.epoch import Epoch, resolve_epoch
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.model import Image
from composer.images.network import Network
from composer.rootfs import memo
from composer.rootfs.assemble import Context, build_tree, write_tree
from composer.rootfs.flatten import prepare_layers
from composer.spec.model import Spec
from composer.streams.digest import sha256_file
from composer.tar.canon import CanonError

if TYPE_CHECKING:
    from composer.atomic import Held
    from composer.cache.remote.use import RemoteCache, Settings
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
    sign_key: Path | None = None  # sign the build: SLSA provenance and SHA256SUMS.sig
    network: Network | None = None  # --mirror, --cert-file
    decompress_kernel: bool = False  # linuxkit's --decompress-kernel
    # converter options given on the command line, field -> value (outputs.options table)
    output_options: Mapping[str, Any] = field(default_factory=dict)
    # --cache-to/--cache-from and their keys (composer.cache.remote); None: no remote cache
    remote: Settings | None = None


@dataclass(frozen=True)
class Platform:
    """One architecture's part of a multi-platform output: its rootfs (in the cache), the
    converter options and what the record says of its images and host files."""

    arch: str
    rootfs: memo.Stored
    options: Options
    images: list[dict[str, Any]]
    host_files: list[dict[str, object]]


def run_build(req: BuildRequest, log: Callable[[str], None],
              platforms: list[Platform] | None = None, held: Held | None = None) -> list[Path]:
    """Build; the outputs, ``NAME.build.json``, ``NAME.spdx.json`` and ``NAME.SHA256SUMS``
    appear together when everything succeeded (see :mod:`composer.repro.record`). With
    ``platforms``, this architecture's :class:`Platform` is appended to it (for
    :func:`run_platforms_build`). With ``held``, the files stay pending until the caller
    commits it (several architectures: all or none)."""
    from composer.spec import load_spec
    from outputs import check_arch

    check_arch(req.formats, req.arch)
    epoch = resolve_epoch(req.source_date_epoch)
    spec = load_spec(list(req.specs))
    for pos, message in spec.warnings:
        log(f"{pos}: warning: {message}" if pos else f"warning: {message}")
    from composer.rootfs import flatten

    cache = Cache(req.cache_dir)
    cache.on_layer = flatten.prescan  # layer headers are read while other layers download
    try:
        with cache.in_use(), paused_gc():
            made = _build(req, spec, cache, epoch, log, platforms, held)
    finally:
        flatten.forget_prescans()
    from composer.cache.gc import trim

    trim(cache)  # the uncompressed layer copies, unless another build is reading them
    return made


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector paused for a build. Phase one makes a few objects per
    entry (headers, entries, nodes: no cycles, freed by reference counting), and the
    collector's full passes over the growing tree were a third of building it and a fifth of
    writing the tar. Restored afterwards, as it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _build(req: BuildRequest, spec: Spec, cache: Cache, epoch: Epoch,
           log: Callable[[str], None], platforms: list[Platform] | None = None,
           held: Held | None = None) -> list[Path]:
    from composer.images.lock import resolve_spec
    from outputs import FORMATS, Options

    remote = None
    if req.remote is not None and req.remote.active and not req.offline:
        from composer.cache.remote.use import RemoteCache

        remote = RemoteCache(req.remote, log)
    # with a remote cache, layers are fetched only if phase one has to run (a hit pulls none)
    deferred: list[Callable[[], None]] | None = [] if remote is not None else None
    images = resolve_spec(spec, cache, arch=req.arch, pull=req.pull, offline=req.offline,
                          log=log, specs=req.specs, locked=req.locked, docker=req.docker,
                          quiet=req.quiet, insecure=req.insecure, network=req.network,
                          deferred=deferred)
    from composer.cache.gc import touch
    from composer.debian.pool import offline_mode
    from composer.repro.record import RecordingOutputSet

    for image in images.values():
        for digest in filter(None, (image.digest, image.index_digest)):
            touch(cache.root, "image", digest)
    options = Options(mtime=epoch.generated, arch=req.arch, **req.output_options)
    layouts = volume_layouts(spec, images, cache, req)
    rootfs = _phase_one(spec, cache, epoch, images, log, remote, deferred,
                        lambda promised: _needs_tar(req, promised, options, cache, remote),
                        req.sbom_path, layouts, req.decompress_kernel)
    stored = rootfs.stored
    req.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        known = {stored.path: (stored.sha256, stored.size)}
        # --offline holds for phase two too: the pinned bootloader .debs are never downloaded
        with offline_mode(req.offline), RecordingOutputSet(req.output_dir, known) as outs:
            for fmt in req.formats:
                convert(FORMATS[fmt], stored, req.name, outs, options, cache, log, remote,
                        rootfs.tar)
            packages = memo.packages(cache.root, stored, req.sbom_path) if req.sbom else None
            write_record_files(req, spec, images, epoch, options, stored.path,
                               (stored.sha256, stored.size), outs, packages,
                               remote.provenance() if remote is not None else None)
            done = outs.commit() if held is None else held.hold(outs)
    except CanonError as exc:
        raise ComposerError(str(exc)) from exc
    if platforms is not None:
        tar = rootfs.tar()  # a remote hit may not have fetched it: the image layer reads it
        platforms.append(Platform(req.arch, replace(stored, path=tar), options,
                                  image_list(spec, images),
                                  host_files(spec)))
    if remote is not None:  # after the outputs are in place: a failed push costs only a warning
        if held is None:
            remote.publish()
        else:
            held.after(remote.publish)
    return done


def convert(fmt: Format, stored: memo.Stored, name: str, outs: RecordingOutputSet,
            options: Options, cache: Cache, log: Callable[[str], None],
            remote: RemoteCache | None = None, tar: Callable[[], Path] | None = None) -> None:
    """Format ``fmt``'s files: placed from the cache when nothing that shapes them changed
    (:mod:`composer.cache.outputs`; then a ``--cache-from`` remote cache), else converted and
    then kept there (and offered to ``--cache-to``). ``tar`` gives the rootfs tar's path
    when a conversion needs it (a remote hit may not have downloaded it yet)."""
    from composer.cache import outputs as kept
    from composer.cache.gc import touch

    tar = tar or (lambda: stored.path)
    if not fmt.kept:
        fmt.convert(tar(), name, outs, options)
        return
    key = kept.output_key(output_key_parts(fmt, stored, name, options))
    hit = kept.lookup(cache.root, key)
    touch(cache.root, "outputs", key)
    if hit is not None and sorted(k.name for k in hit) == sorted(fmt.output_files(name)):
        kept.place(outs, hit)
        log(f"{fmt.name}: unchanged (reused {key[:12]} from the cache)")
        _offer_outputs(remote, fmt.name, key, hit)
        return
    if remote is not None and _remote_outputs(fmt, name, key, outs, cache, log, remote):
        return
    fmt.convert(tar(), name, outs, options)
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
    if remote is not None and remote.writing:
        stored_now = kept.lookup(cache.root, key)
        if stored_now is not None:
            _offer_outputs(remote, fmt.name, key, stored_now)


def _offer_outputs(remote: RemoteCache | None, fmt: str, key: str, kept_files: list) -> None:
    if remote is not None and remote.writing:
        remote.offer("outputs", key, fmt, {k.name: (k.path, k.sha256, k.size)
                                           for k in kept_files})


def _remote_outputs(fmt: Format, name: str, key: str, outs: RecordingOutputSet, cache: Cache,
                    log: Callable[[str], None], remote: RemoteCache) -> bool:
    """Place ``fmt``'s files from a remote entry (kept locally too); False on a miss."""
    from composer.cache import outputs as kept
    from composer.cache.remote.use import discard

    got = remote.fetch("outputs", key, cache.root / "tmp")
    if got is None:
        return False
    payload, paths = got
    try:
        if sorted(paths) != sorted(fmt.output_files(name)):
            log(f"warning: remote cache: {fmt.name} entry {key[:12]} has other files than "
                "the format makes; converting instead")
            return False
        files = [(f.name, paths[f.name], f.digest.removeprefix("sha256:"), f.size)
                 for f in payload.files]
        kept.store(cache.root, key, files)
        hit = kept.lookup(cache.root, key)
        if hit is not None:
            kept.place(outs, hit)
        else:  # a cache that cannot keep it: place the verified download itself
            for out_name, path, sha, size in files:
                outs.place(out_name, path, digest=(sha, size))
        log(f"{fmt.name}: from the remote cache ({key[:12]}, {remote.hits[-1].source})")
        return True
    finally:
        discard(paths)


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



@dataclass
class Rootfs:
    """Phase one's result; ``fetch`` gets its tar when a remote hit has not downloaded it
    (every output was in the remote cache too), should a conversion need it after all."""

    stored: memo.Stored
    fetch: Callable[[], None] | None = None

    def tar(self) -> Path:
        if self.fetch is not None:
            fetch, self.fetch = self.fetch, None
            fetch()
        return self.stored.path


def _phase_one(spec: Spec, cache: Cache, epoch: Epoch, images: dict[str, Image],
               log: Callable[[str], None], remote: RemoteCache | None = None,
               deferred: list[Callable[[], None]] | None = None,
               needs_tar: Callable[[memo.Stored], bool] = lambda _s: True,
               sbom_path: str = "", layouts: dict[int, Any] | None = None,
               decompress_kernel: bool = False) -> Rootfs:
    """The canonical rootfs tar, from the cache if nothing that shapes it has changed (the
    local cache, then the ``--cache-from`` ones; ``deferred`` fetches the layers otherwise).
    A remote hit downloads the tar only if ``needs_tar`` says a conversion will read it."""
    from composer.cache.gc import touch

    key = memo.rootfs_key(spec, images, epoch, sbom_path, layouts or {}, decompress_kernel)
    touch(cache.root, "rootfs", key)
    stored = memo.lookup(cache.root, key)
    if stored is not None:
        log(f"rootfs: {stored.entries} entries (unchanged: reused {key[:12]} from the cache)")
        _offer_rootfs(remote, cache, key, stored)
        return Rootfs(stored)
    if remote is not None:
        found = _remote_rootfs(remote, cache, key, log, needs_tar)
        if found is not None:
            promised, fetch = found
            if fetch is None:
                return Rootfs(promised)

            def fetch_or_build() -> None:
                if fetch():
                    return
                made = _build_rootfs(spec, cache, epoch, images, log, remote, deferred, key,
                                     sbom_path, layouts, decompress_kernel)
                if made.sha256 != promised.sha256:
                    raise ComposerError(
                        f"remote cache: rootfs entry {key[:12]} promised sha256 "
                        f"{promised.sha256[:12]}, this build made {made.sha256[:12]}; outputs "
                        "already taken from the remote cache would not match it: build without "
                        "--cache-from, and remove that entry")
            return Rootfs(promised, fetch_or_build)
    return Rootfs(_build_rootfs(spec, cache, epoch, images, log, remote, deferred, key,
                                     sbom_path, layouts, decompress_kernel))


def _build_rootfs(spec: Spec, cache: Cache, epoch: Epoch, images: dict[str, Image],
                  log: Callable[[str], None], remote: RemoteCache | None,
                  deferred: list[Callable[[], None]] | None, key: str, sbom_path: str = "",
                  layouts: dict[int, Any] | None = None, decompress_kernel: bool = False
                  ) -> memo.Stored:
    """Phase one itself: the layers (fetched now if deferred), the tree, the tar; container
    and init regions unchanged since an earlier rootfs are spliced from it."""
    from composer.atomic import atomic_file
    from composer.rootfs import regions
    from composer.rootfs.packages import ordered
    from composer.streams.behind import write_behind
    from composer.streams.digest import HashingWriter

    for fetch_layers in deferred or ():
        fetch_layers()
    if deferred:
        deferred.clear()
    plan = regions.Plan(cache.root, epoch)
    skipped = plan.likely(spec, images)
    prepare_layers([img for text, img in images.items() if text not in skipped], cache)
    ctx = Context(cache, epoch, images, regions=plan, sbom_path=sbom_path,
                  layouts=dict(layouts or {}), decompress_kernel=decompress_kernel)
    tree = build_tree(spec, ctx)
    plan.fill(tree)
    if not plan.usable(tree):  # something else below a spliced directory: flatten it all
        plan = regions.Plan(cache.root, epoch, enabled=False)
        prepare_layers(images.values(), cache)
        ctx = Context(cache, epoch, images, regions=plan, sbom_path=sbom_path,
                      layouts=dict(layouts or {}), decompress_kernel=decompress_kernel)
        tree = build_tree(spec, ctx)
    for message in ctx.warnings:
        log(_as_warning(message))
    (cache.root / "tmp").mkdir(parents=True, exist_ok=True)
    path = memo.tar_path(cache.root, key)
    databases: list = []
    try:
        with atomic_file(path, cache.root / "tmp", durable=memo.durable()) as fh:
            hashing = HashingWriter(fh)
            with write_behind(hashing) as out:
                count = write_tree(tree, out, epoch, regions=plan, databases=databases,
                                   sbom_path=sbom_path)
    except CanonError as exc:
        raise ComposerError(str(exc)) from exc
    digest = hashing.hexdigest()
    memo.record(cache.root, key, digest, hashing.size, count)
    packages = ordered([*tree_packages(tree, epoch, databases, sbom_path),
                        *(p for r in plan.spliced.values() for p in r.packages)])
    memo.remember_packages(cache.root, digest, packages)
    regions.record(plan, key, digest, packages)
    spliced = ", ".join(sorted(plan.spliced))
    reused = f" ({len(plan.spliced)} regions spliced from an earlier rootfs: {spliced})" \
        if plan.spliced else ""
    log(f"rootfs: {count} entries{reused}")
    stored = memo.Stored(path, digest, hashing.size, count)
    _offer_rootfs(remote, cache, key, stored)
    return stored


def _offer_rootfs(remote: RemoteCache | None, cache: Cache, key: str, stored: memo.Stored
                  ) -> None:
    """Offer the rootfs tar and its package list to ``--cache-to``."""
    if remote is None or not remote.writing:
        return
    from composer.streams.digest import sha256_file

    memo.packages(cache.root, stored)  # makes sure the list is kept beside it
    listing = memo.packages_file(cache.root, stored.sha256)
    remote.offer("rootfs", key, "tar", {
        "rootfs.tar": (stored.path, stored.sha256, stored.size),
        "packages.json": (listing, *sha256_file(listing))}, {"entries": stored.entries})


def _remote_rootfs(remote: RemoteCache, cache: Cache, key: str, log: Callable[[str], None],
                   needs_tar: Callable[[memo.Stored], bool]
                   ) -> tuple[memo.Stored, Callable[[], bool] | None] | None:
    """A ``--cache-from`` entry for ``key``: its package list installed, the result it promises,
    and (if the tar was not downloaded now) a call that downloads it, False if it fails."""
    import os

    from composer import canonjson
    from composer.cache.remote.use import discard

    found = remote.find("rootfs", key)
    if found is None:
        return None
    files = {f.name: f for f in found.payload.files}
    entries = found.payload.meta.get("entries")
    if set(files) != {"rootfs.tar", "packages.json"} or not isinstance(entries, int):
        log(f"warning: remote cache: rootfs entry {key[:12]} is malformed; building instead")
        return None
    tar = files["rootfs.tar"]
    sha = tar.digest.removeprefix("sha256:")
    got = remote.download(found, cache.root / "tmp", ("packages.json",))
    if got is None:
        return None
    try:
        listed = canonjson.loads(got["packages.json"].read_bytes())
    except ValueError:
        listed = None
    finally:
        discard(got)
    if isinstance(listed, list):
        memo.remember_packages(cache.root, sha, listed)
    promised = memo.Stored(memo.tar_path(cache.root, key), sha, tar.size, entries)

    def fetch() -> bool:
        downloaded = remote.download(found, cache.root / "tmp", ("rootfs.tar",))
        if downloaded is None:
            return False
        try:
            os.replace(downloaded["rootfs.tar"], promised.path)
            memo.record(cache.root, key, sha, tar.size, entries)
        finally:
            discard(downloaded)
        return True

    where = f"from the remote cache: {key[:12]}, {found.repo.name}"
    if isinstance(listed, list) and not needs_tar(promised):  # else the SBOM scans the tar
        log(f"rootfs: {entries} entries ({where}; every output is there too: tar not fetched)")
        return promised, fetch
    if not fetch():
        return None
    log(f"rootfs: {entries} entries ({where})")
    return promised, None


def _needs_tar(req: BuildRequest, promised: memo.Stored, options: Options, cache: Cache,
               remote: RemoteCache | None) -> bool:
    """Whether some requested format will read the rootfs tar: one that is not kept, or one
    whose files neither the local cache nor a ``--cache-from`` holds."""
    from composer.cache import outputs as kept
    from outputs import FORMATS

    for name in req.formats:
        fmt = FORMATS[name]
        if not fmt.kept:
            return True
        key = kept.output_key(output_key_parts(fmt, promised, req.name, options))
        wanted = sorted(fmt.output_files(req.name))
        hit = kept.lookup(cache.root, key)
        if hit is not None and sorted(k.name for k in hit) == wanted:
            continue
        found = remote.find("outputs", key) if remote is not None else None
        if found is None or sorted(f.name for f in found.payload.files) != wanted:
            return True
    return False


def tree_packages(tree, epoch: Epoch, databases: list | None = None, sbom_path: str = ""
                  ) -> list[dict[str, str]]:
    """The SBOM's package list from the tree just written (the same entries as its tar):
    from ``databases``, the candidates :func:`write_tree` kept, or else from the whole tree."""
    from composer.rootfs.packages import packages_in
    from composer.rootfs.tree import read_content

    pairs = databases if databases is not None else tree.entries(clamp=epoch.clamp)
    return packages_in(((entry, functools.partial(read_content, node.content, entry.size)
                         if node.content is not None else None)
                        for entry, node in pairs), sbom_path)


def write_record_files(req: BuildRequest, spec: Spec, images: dict[str, Image], epoch: Epoch,
                       options: Options, rootfs: Path, rootfs_digest: tuple[str, int],
                       outs: RecordingOutputSet,
                       packages: list[dict[str, str]] | None = None,
                       remote_cache: dict[str, Any] | None = None) -> None:
    """NAME.spdx.json, NAME.build.json, NAME.SHA256SUMS and NAME.build-env.json (and, with a
    key, NAME.provenance.intoto.json and NAME.SHA256SUMS.sig), through the build's OutputSet."""
    from composer import canonjson
    from composer.repro import record
    from composer.streams.gz import compressor_id

    listed = image_list(spec, images)
    if req.sbom:
        from composer.repro.sbom import spdx_document

        doc = spdx_document(req.name, rootfs, rootfs_digest[0], listed, epoch.generated,
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
        compressor=compressor_id(options.gzip_level),
        specs=[record.spec_file(p) for p in req.specs], images=listed,
        host_files=host_files(spec), rootfs=rootfs_digest, outputs=done,
        options=record.options_record(options, req.formats),
        sbom={"rootfs": req.sbom_path, "beside": req.sbom_format if req.sbom else None},
        decompress_kernel=req.decompress_kernel)
    _write_record(req, canonjson.pretty(doc), done, outs, remote_cache)


def _write_record(req: BuildRequest, data: bytes, done: list[tuple[str, str, int]],
                  outs: RecordingOutputSet, remote_cache: dict[str, Any] | None) -> None:
    """NAME.build.json (``data``), NAME.SHA256SUMS over it and ``done``, the signed files
    with a key, NAME.build-env.json."""
    from composer import canonjson
    from composer.repro import record

    with outs.create(record.record_name(req.name)) as fh:
        fh.write(data)
    sums = [(n, h) for n, h, _ in done]
    sums.append((record.record_name(req.name), hashlib.sha256(data).hexdigest()))
    sums_bytes = record.sha256sums(sums)
    with outs.create(record.sums_name(req.name)) as fh:
        fh.write(sums_bytes)
    if req.sign_key is not None:  # after the sums: who vouches for the build is not in them
        from composer.repro.provenance import signed_files

        for file_name, content in signed_files(req.name, data, sums_bytes, req.sign_key):
            with outs.create(file_name) as fh:
                fh.write(content)
    with outs.create(record.env_name(req.name)) as fh:  # after the sums: not listed in them
        fh.write(canonjson.pretty(record.build_environment(remote_cache)))


def image_list(spec: Spec, images: dict[str, Image]) -> list[dict[str, Any]]:
    """The record's ``images``: each ref of the spec, its name and the digests it resolved to."""
    return [{"ref": ref.text, "name": images[ref.text].ref, "digest": images[ref.text].digest,
             "index_digest": images[ref.text].index_digest} for ref in spec.image_refs()]


def run_platforms_build(req: BuildRequest, parts: list[Platform],
                        log: Callable[[str], None], held: Held | None = None) -> list[Path]:
    """The ONE file of each of ``req.formats`` over several architectures' builds (``parts``,
    in ``--arch`` order; ``req.arch`` is ``amd64,arm64``): a multi-platform index, with
    NAME.build.json (its images and rootfs by architecture), NAME.SHA256SUMS and
    NAME.build-env.json, committed together. ``verify NAME.build.json`` rebuilds it."""
    from composer import canonjson
    from composer.repro import record
    from composer.repro.record import RecordingOutputSet
    from composer.streams.gz import compressor_id
    from outputs import FORMATS

    options = parts[0].options
    epoch = resolve_epoch(req.source_date_epoch)
    req.output_dir.mkdir(parents=True, exist_ok=True)
    cache = Cache(req.cache_dir)
    try:
        with cache.in_use(), RecordingOutputSet(req.output_dir, {}) as outs:
            for p in parts:
                if not p.rootfs.path.is_file():  # another process's gc, between the builds
                    raise ComposerError(f"{p.arch}: its rootfs ({p.rootfs.sha256[:12]}) left "
                                        "the cache before the multi-platform files were "
                                        "written; build again")
            for fmt in req.formats:
                _convert_platforms(FORMATS[fmt], parts, req.name, outs, cache, log)
            done = [(name, *(outs.digests.get(tmp) or sha256_file(tmp)))
                    for name, tmp in outs.pending()]
            doc = record.build_record(
                name=req.name, arch=req.arch, formats=req.formats,
                source_date_epoch=epoch.source_date_epoch,
                compressor=compressor_id(options.gzip_level),
                specs=[record.spec_file(p) for p in req.specs],
                images=[{**image, "arch": p.arch} for p in parts for image in p.images],
                host_files=parts[0].host_files,
                rootfs={p.arch: (p.rootfs.sha256, p.rootfs.size) for p in parts},
                outputs=done,
                options=record.options_record(replace(options, arch=req.arch), req.formats),
                sbom={"rootfs": req.sbom_path, "beside": req.sbom_format if req.sbom else None},
                decompress_kernel=req.decompress_kernel)
            _write_record(req, canonjson.pretty(doc), done, outs, None)
            return outs.commit() if held is None else held.hold(outs)
    except CanonError as exc:
        raise ComposerError(str(exc)) from exc


def _convert_platforms(fmt: Format, parts: list[Platform], name: str,
                       outs: RecordingOutputSet, cache: Cache, log: Callable[[str], None]
                       ) -> None:
    """:func:`convert` for the one multi-platform file: kept in the cache under a key over
    every part's (in ``--arch`` order: docker's ``manifest.json`` names the first)."""
    from composer.cache import outputs as kept
    from composer.cache.gc import touch

    key = kept.output_key({"platforms": [output_key_parts(fmt, p.rootfs, name, p.options)
                                         for p in parts]})
    hit = kept.lookup(cache.root, key)
    touch(cache.root, "outputs", key)
    wanted = set(fmt.output_files(name))
    if hit is not None and {k.name for k in hit} == wanted:
        kept.place(outs, hit)
        log(f"{fmt.name}: unchanged (reused {key[:12]} from the cache)")
        return
    log(f"{fmt.name}: one multi-platform image ({', '.join(p.arch for p in parts)})")
    fmt.convert_platforms([(p.rootfs.path, p.options) for p in parts], name, outs)
    files = []
    for out_name, tmp in outs.since(0):
        if out_name in wanted:
            digest = outs.digests.get(tmp) or sha256_file(tmp)
            outs.digests[tmp] = digest
            files.append((out_name, tmp, *digest))
    kept.store(cache.root, key, files)


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
