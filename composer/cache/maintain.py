"""Cache maintenance behind ``image-composer cache``: list, remove, clean, verify, import, export.

``clean`` keeps exactly what the refs in index.json reach and deletes everything else (and stray
temporary files); it holds the cache exclusively, so it never runs while a build uses the cache.
``export`` writes an OCI archive (a tar of an OCI image layout) with the one canonical tar writer,
so exporting the same image twice gives the same bytes; ``import`` reads such an archive back
through the verifying path.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from composer import canonjson
from composer.atomic import atomic_file
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.oci.media import INDEX_TYPES, REF_ANNOTATION
from composer.streams.digest import CHUNK, check_digest
from composer.tar.canon import CanonicalTarWriter, Entry, Kind, sort_key

CONTAINERD_NAME = "io.containerd.image.name"  # the name docker buildx and linuxkit import by


@dataclass(frozen=True)
class RefInfo:
    name: str
    media_type: str
    digest: str
    size: int  # bytes of every blob the ref reaches that is in the cache
    complete: bool  # every blob of at least one platform is present


def _json(cache: Cache, digest: str) -> dict | None:
    if not cache.has_blob(digest):
        return None
    try:
        doc = canonjson.loads(cache.read_blob(digest))
    except (ValueError, ComposerError):
        return None
    return doc if isinstance(doc, dict) else None


def reachable(cache: Cache, descriptor: dict) -> tuple[list[str], list[str], bool]:
    """Blob digests and diff_ids a descriptor reaches (present ones), and whether any
    single-platform image under it is complete."""
    blobs: list[str] = [descriptor["digest"]]
    diff_ids: list[str] = []
    doc = _json(cache, descriptor["digest"])
    if doc is None:
        return blobs, diff_ids, False
    if descriptor.get("mediaType") in INDEX_TYPES or "manifests" in doc:
        complete = False
        for child in doc.get("manifests") or []:
            if isinstance(child, dict) and isinstance(child.get("digest"), str) \
                    and cache.has_blob(child["digest"]):
                b, d, c = reachable(cache, child)
                blobs += b
                diff_ids += d
                complete = complete or c
        return blobs, diff_ids, complete
    parts = [doc.get("config"), *(doc.get("layers") or [])]
    digests = [p["digest"] for p in parts
               if isinstance(p, dict) and isinstance(p.get("digest"), str)]
    blobs += digests
    config = _json(cache, digests[0]) if digests else None
    if config:
        diff_ids += [d for d in (config.get("rootfs") or {}).get("diff_ids") or []
                     if isinstance(d, str)]
    return blobs, diff_ids, all(cache.has_blob(d) for d in digests)


def list_refs(cache: Cache) -> list[RefInfo]:
    out = []
    for name, desc in cache.refs():
        blobs, _, complete = reachable(cache, desc)
        size = sum(cache.blob_path(d).stat().st_size for d in set(blobs) if cache.has_blob(d))
        out.append(RefInfo(name, desc.get("mediaType", ""), desc["digest"], size, complete))
    return out


def remove(cache: Cache, names: list[str]) -> None:
    missing = [n for n in names if cache.lookup(n) is None]
    if missing:
        raise ComposerError(f"not in the cache: {', '.join(missing)}")
    with cache.exclusive():
        for name in names:
            cache.untag(name)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []


def clean(cache: Cache) -> tuple[int, int]:
    """Delete unreachable blobs, derived layers, rootfs and output results, and temporary files:
    (files, bytes) removed."""
    if not cache.root.is_dir():
        return 0, 0
    with cache.exclusive(), cache.locked():
        keep_blobs: set[str] = set()
        keep_plain: set[str] = set()
        for _name, desc in cache.refs():
            blobs, diff_ids, _ = reachable(cache, desc)
            keep_blobs.update(check_digest(d) for d in blobs)
            keep_plain.update(check_digest(d) for d in diff_ids)
        count = size = 0
        doomed = [p for p in _files(cache.root / "blobs" / "sha256") if p.name not in keep_blobs]
        doomed += [p for p in _files(cache.root / "uncompressed" / "sha256")
                   if p.name not in keep_plain]
        doomed += _files(cache.root / "tmp")
        doomed += _files(cache.root / "rootfs")  # phase-one results: derived, rebuilt on demand
        doomed += _files(cache.root / "rootfs" / "regions")  # what splicing reads (the same)
        outputs_dir = cache.root / "outputs"  # phase-two results: the same
        doomed += sorted(p for p in outputs_dir.rglob("*") if p.is_file()) \
            if outputs_dir.is_dir() else []
        for path in doomed:
            with contextlib.suppress(FileNotFoundError):
                size += path.stat().st_size
                path.unlink()
                count += 1
        if outputs_dir.is_dir():
            shutil.rmtree(outputs_dir, ignore_errors=True)
        return count, size


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def verify(cache: Cache) -> list[str]:
    """Every problem found, one line each: blobs whose bytes do not match their names, phase-one
    results that do not match their record, refs that point at missing blobs, an unreadable
    index. Stray files in ``tmp/`` are not problems."""
    from composer.cache import outputs as kept_outputs
    from composer.rootfs import memo

    problems: list[str] = []
    if not cache.root.is_dir():
        return problems
    for sub in ("blobs", "uncompressed"):
        for path in _files(cache.root / sub / "sha256"):
            name = f"sha256:{path.name}"
            try:
                check_digest(name)
            except ComposerError:
                problems.append(f"{path}: not a blob name")
                continue
            actual = _hash_file(path)
            if actual != name:
                problems.append(f"{path}: content is {actual}")
    for path in _files(memo.directory(cache.root)):
        if path.suffix == ".tar" and not memo.verify(cache.root, path.stem):
            problems.append(f"{path}: does not match its record (rebuilt on the next build)")
    for key in kept_outputs.entries(cache.root):
        problems += [f"{p} (rebuilt on the next build)" for p in kept_outputs.verify(cache.root,
                                                                                      key)]
    try:
        refs = cache.refs()
    except ComposerError as exc:
        return [*problems, str(exc)]
    for name, desc in refs:
        if not cache.has_blob(desc["digest"]):
            problems.append(f"{name}: manifest {desc['digest']} is missing")
    return problems


# -- archives ---------------------------------------------------------------------------------
def _entries(cache: Cache, name: str, desc: dict) -> Iterator[tuple[str, bytes | Path]]:
    blobs, _, complete = reachable(cache, desc)
    if not complete:
        raise ComposerError(f"{name}: not completely in the cache; build or pull it first")
    for digest in sorted(set(blobs)):
        if cache.has_blob(digest):
            yield f"blobs/sha256/{check_digest(digest)}", cache.blob_path(digest)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{**desc, "annotations": {REF_ANNOTATION: name,
                                                    CONTAINERD_NAME: name}}]}
    yield "index.json", canonjson.pretty(index)
    yield "oci-layout", canonjson.compact({"imageLayoutVersion": "1.0.0"})


def export(cache: Cache, name: str, dest: Path) -> None:
    """Write ``name`` and every blob it reaches as an OCI archive at ``dest`` (atomically)."""
    desc = cache.lookup(name)
    if desc is None:
        raise ComposerError(f"{name}: not in the cache")
    files = dict(_entries(cache, name, desc))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(dest) as out:
        write_archive(cache, files, out)


def write_archive(cache: Cache, files: dict[str, bytes | Path], out) -> None:
    """A canonical tar of ``files`` (name -> bytes, or a cached blob's path) and the directories
    above them; blobs are verified while copied, so a corrupt cache never leaks into it."""
    dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    writer = CanonicalTarWriter(out)
    for path in sorted([*files, *dirs], key=sort_key):
        value = files.get(path)
        if value is None:
            writer.add(Entry(path, Kind.DIR, mode=0o755))
        elif isinstance(value, bytes):
            writer.add(Entry(path, Kind.FILE, size=len(value)), value)
        else:
            digest = "sha256:" + value.name
            size = value.stat().st_size
            with cache.open_blob(digest, size) as fh:
                writer.add(Entry(path, Kind.FILE, size=size), fh)
    writer.close()


def _archive_name(annotations: dict) -> str | None:
    """The ref an archive's index entry names: containerd's full name (what ``docker buildx
    --output type=oci`` writes and linuxkit's ``cache import`` reads) if there, else the OCI
    ref name."""
    name = annotations.get(CONTAINERD_NAME) or annotations.get(REF_ANNOTATION)
    return name if isinstance(name, str) and name else None


def import_archive(cache: Cache, path: Path) -> list[str]:
    """Copy every tagged image of an OCI archive into the cache; returns the ref names."""
    from composer.images.sources import ArchiveReader

    with ArchiveReader.open(path) as archive:
        index = archive.oci_index(str(path))
        names = []
        for desc in index["manifests"]:
            name = _archive_name(desc.get("annotations") or {})
            if name is None:
                continue
            for digest, size in archive.closure(desc, str(path)):
                if not cache.has_blob(digest):
                    member = f"blobs/sha256/{check_digest(digest)}"
                    with archive.open_member(member, str(path)) as fh:
                        cache.put_blob(fh, digest, size, f"{path}: {digest}")
            top = {k: v for k, v in desc.items() if k != "annotations"}
            declared = (_json(cache, desc["digest"]) or {}).get("mediaType")
            if isinstance(declared, str) and declared:
                top["mediaType"] = declared  # the manifest's own word (linuxkit's export errs)
            cache.tag(name, top)
            names.append(name)
    if not names:
        raise ComposerError(f"{path}: no tagged images in the archive")
    return sorted(names)
