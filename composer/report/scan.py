"""What a report reads: the build record, its rootfs tar, the image layers, the files beside it.

The rootfs tar is streamed once with :func:`composer.repro.diff.tar_members` (headers and a sha256
per file, the same view ``diff`` has), so memory grows with the number of entries, never with their
size. It is found by its sha256 (the record's ``rootfs.sha256``): ``--tar``, else an output
beside the record with that digest (the ``tar`` format), else the phase-one result the cache
keeps (``CACHE/rootfs/``). Layers are read from the cache, headers only, to say which layer of
an image each path came from; without them the report still works and says "layer ?".
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from composer import canonjson
from composer.errors import ComposerError
from composer.images.cache import Cache, open_decompressed
from composer.report.data import Item, KernelNames, attribute
from composer.repro.record import load_record, parse_sha256sums, rootfs_digests, sums_name
from composer.tar.canon import CanonError
from composer.tar.read import read_entries

UNKNOWN_LAYER = -1
_hashed: dict[tuple, tuple[str, int]] = {}


def sha256_file(path: Path) -> tuple[str, int]:
    """:func:`composer.streams.digest.sha256_file`, once per file and version (the rootfs tar is
    both found by its digest and listed among the outputs)."""
    from composer.streams.digest import sha256_file as hash_file

    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = hash_file(path)
    return _hashed[key]


# -- the rootfs tar ----------------------------------------------------------------------------
def find_rootfs(record_path: Path, record: dict[str, Any], tar: Path | None,
                cache: Path | None) -> Path:
    """The canonical rootfs tar of this record, checked against its sha256."""
    want = record["rootfs"]["sha256"]
    candidates: list[Path] = []
    if tar is not None:
        if not Path(tar).is_file():
            raise ComposerError(f"{tar}: no such file")
        candidates.append(Path(tar))
    else:
        candidates += [record_path.parent / o["name"] for o in record.get("outputs", [])
                       if o.get("sha256") == want]
        if cache is not None:
            from composer.rootfs import memo

            for meta in sorted(memo.directory(cache).glob("*.json")):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    if canonjson.loads(meta.read_bytes()).get("sha256") == want:
                        candidates.append(meta.with_suffix(".tar"))
    for path in candidates:
        if path.is_file() and path.stat().st_size == record["rootfs"]["size"] \
                and sha256_file(path)[0] == want:
            return path
    if tar is not None:
        raise ComposerError(f"{tar}: is not the rootfs of {record_path.name} "
                            f"(sha256 {want} expected)")
    raise ComposerError(f"{record_path}: its rootfs tar (sha256 {want[:12]}...) is neither "
                        "beside it (build with -f tar) nor in the cache; pass --tar or --cache")


def read_items(tar: Path, layers: LayerMap, kernel: KernelNames) -> list[Item]:
    from composer.repro.diff import tar_members

    with open(tar, "rb") as fh:
        return attribute(tar_members(fh), layers.layer_of, kernel)


def kernel_names(record: dict[str, Any]) -> KernelNames:
    """The kernel image's file names from the recorded spec texts (the last one that says)."""
    import yaml

    found: dict[str, Any] = {}
    for spec in record.get("specs", []):
        with contextlib.suppress(yaml.YAMLError, AttributeError, TypeError):
            kernel = yaml.safe_load(spec["text"]).get("kernel")
            if isinstance(kernel, dict):
                found.update({k: v for k, v in kernel.items() if k in ("binary", "tar",
                                                                       "ucode")})
    tar = found.get("tar", "kernel.tar")
    return KernelNames(str(found.get("binary") or "kernel"),
                       None if tar in (None, "none") else str(tar),
                       str(found["ucode"]) if found.get("ucode") else None)


# -- layers ------------------------------------------------------------------------------------
@dataclass
class LayerMap:
    """Per source image, which layer holds each path (the last layer that has an entry for it:
    a path in the rootfs survived every whiteout above that layer)."""

    paths: dict[str, dict[str, int]] = field(default_factory=dict)
    digests: dict[str, list[str]] = field(default_factory=dict)  # source -> layer digests

    def layer_of(self, source: str, path: str) -> int | None:
        table = self.paths.get(source)
        if table is None:
            return UNKNOWN_LAYER
        return table.get(path)


def layer_map(cache: Cache | None, record: dict[str, Any]) -> LayerMap:
    out = LayerMap()
    if cache is None:
        return out
    for image in record.get("images", []):
        source = str(image.get("name"))
        if source in out.paths:
            continue
        with contextlib.suppress(ComposerError, OSError, ValueError, KeyError, TypeError,
                                 CanonError):
            layers = _image_layers(cache, str(image["digest"]))
            table: dict[str, int] = {}
            for number, (digest, media_type, diff_id) in enumerate(layers):
                with _open_layer(cache, digest, media_type, diff_id) as fh:
                    for entry, _ in read_entries(fh):
                        table[entry.path] = number
            out.paths[source] = table
            out.digests[source] = [digest for digest, _, _ in layers]
    return out


def _image_layers(cache: Cache, digest: str) -> list[tuple[str, str, str]]:
    manifest = canonjson.loads(cache.read_blob(digest))
    config = canonjson.loads(cache.read_blob(manifest["config"]["digest"]))
    diff_ids = config["rootfs"]["diff_ids"]
    return [(layer["digest"], layer.get("mediaType", ""), diff_id)
            for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True)]


@contextlib.contextmanager
def _open_layer(cache: Cache, digest: str, media_type: str, diff_id: str) -> Iterator[BinaryIO]:
    plain = cache.uncompressed_path(diff_id)
    if plain.is_file():
        with open(plain, "rb") as fh:
            yield fh
        return
    with cache.open_blob(digest) as raw:
        yield open_decompressed(raw, media_type)


# -- what is beside the record -------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    what: str
    status: str  # ok, differs, missing, info
    detail: str


def reproducibility(record_path: Path, record: dict[str, Any], keys: Path | None = None
                    ) -> list[Check]:
    """What the files beside the record say: SHA256SUMS against the outputs there, the
    attestations (``NAME.intoto.json``) and a saved ``verify --json`` (``NAME.verify.json``)."""
    name = record["build"]["name"]
    here = record_path.parent
    record_bytes = record_path.read_bytes()
    out: list[Check] = []
    sums_path = here / sums_name(name)
    if sums_path.is_file():
        try:
            sums = dict(parse_sha256sums(sums_path.read_bytes(), str(sums_path)))
        except ComposerError as exc:
            sums = {}
            out.append(Check(sums_path.name, "differs", str(exc)))
        mine = sums.get(record_path.name)
        if mine is not None:
            ok = mine == hashlib.sha256(record_bytes).hexdigest()
            out.append(Check(sums_path.name, "ok" if ok else "differs",
                             "lists this record with its sha256" if ok else
                             "lists this record with ANOTHER sha256"))
    else:
        out.append(Check(sums_name(name), "missing", "no checksum list beside the record"))
    for o in record.get("outputs", []):
        path = here / o["name"]
        if not path.is_file():
            out.append(Check(o["name"], "missing", "not beside the record"))
            continue
        digest, size = sha256_file(path)
        ok = (digest, size) == (o["sha256"], o["size"])
        out.append(Check(o["name"], "ok" if ok else "differs",
                         "the file beside the record has the recorded sha256" if ok else
                         f"the file beside the record has sha256 {digest}"))
    out += _attestations(here / f"{name}.intoto.json", record_bytes, keys)
    out += _verify_result(here / f"{name}.verify.json")
    return out


def _attestations(path: Path, record_bytes: bytes, keys: Path | None) -> list[Check]:
    from composer.repro import attest

    if not path.is_file():
        return [Check(path.name, "missing", "no attestations (image-composer attest)")]
    try:
        env = attest.read_envelope(path)
        if keys is not None:
            check = attest.check_envelope(record_bytes, path, attest.load_public_keys(keys))
            return [Check(path.name, "ok" if check.valid else "differs",
                          "; ".join(check.lines()) or "no signatures")]
        same = attest.attests_record(env, record_bytes, str(path))
        ids = ", ".join(str(s.get("keyid")) for s in env["signatures"] if isinstance(s, dict))
        return [Check(path.name, "info" if same else "differs",
                      (f"{len(env['signatures'])} signature(s) over this record's statement "
                       f"(key ids {ids}); not checked: give --keys DIR to check them")
                      if same else "attests a different record")]
    except ComposerError as exc:
        return [Check(path.name, "differs", str(exc))]


def _verify_result(path: Path) -> list[Check]:
    if not path.is_file():
        return [Check(path.name, "missing",
                      "no saved rebuild (image-composer verify --json RECORD > this file)")]
    try:
        doc = canonjson.load_file(path, "a verify --json result")
        rebuild = doc.get("rebuild", {})
        outputs = rebuild.get("outputs", [])
        good = sum(1 for o in outputs if o.get("ok"))
        detail = (f"rebuilt in a perturbed environment: {good} of {len(outputs)} outputs "
                  "reproduced bit for bit") if outputs else "no rebuild in it"
        return [Check(path.name, "ok" if doc.get("ok") else "differs", detail)]
    except (ComposerError, AttributeError) as exc:
        return [Check(path.name, "differs", str(exc))]


def sbom(record_path: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    from composer.repro.record import sbom_name

    path = record_path.parent / sbom_name(record["build"]["name"])
    if not path.is_file():
        return None
    with contextlib.suppress(ComposerError):
        doc = canonjson.load_file(path, "an SPDX document")
        return doc if isinstance(doc, dict) else None
    return None


def merged_spec(record: dict[str, Any]) -> str | None:
    """The merged spec as JSON, when the recorded spec files load on their own (specs with
    ``@pkg:`` or relative ``files:`` sources need their directory; then None)."""
    import tempfile

    from composer.spec import load_spec
    from composer.spec.document import spec_json

    with tempfile.TemporaryDirectory(prefix="image-composer-report-") as tmp:
        paths = []
        for n, spec in enumerate(record.get("specs", [])):
            path = Path(tmp) / f"{n}-{Path(str(spec['name'])).name}"
            path.write_bytes(str(spec["text"]).encode("utf-8", "surrogateescape"))
            paths.append(path)
        try:
            spec = load_spec(paths)
        except (ComposerError, OSError):
            return None
        return canonjson.pretty(canonjson.loads(spec_json(spec))).decode()


def load(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ComposerError(f"{path}: no such file")
    record = load_record(Path(path))
    if "" not in rootfs_digests(record):
        raise ComposerError(f"{path}: the record of a multi-platform file (--arch "
                            f"{record['build'].get('arch')}); report each architecture's "
                            "NAME-ARCH.build.json")
    return record
