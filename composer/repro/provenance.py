"""SLSA Provenance v1 for a build: what was built, from what, by which builder.

An in-toto Statement v1 (predicate type :data:`PREDICATE_TYPE`) whose subjects are the build's
outputs (name and sha256, as the record lists them). It is a pure function of the build record's
bytes (and of the pinned bootloader table, for where a default bootloader came from), so every
machine that makes the same record makes the same statement, and it holds nothing the record
does not: no host name, no path, no time but ``SOURCE_DATE_EPOCH``. The build type it names,
:data:`BUILD_TYPE`, is defined in ``docs/build-type.md``.

- ``buildDefinition.externalParameters``: the spec files (name, sha256, text), the lock (every
  image ref and the digest it was pinned to) and the build's own parameters (name, arch,
  formats, SOURCE_DATE_EPOCH, the recorded output options);
- ``buildDefinition.internalParameters``: the builder's byte-shaping settings (compressor,
  pinned library versions);
- ``buildDefinition.resolvedDependencies``: the spec files, every image by manifest digest,
  every ``files: source`` input and every bootloader (the pinned Debian .deb it comes from);
- ``runDetails``: the builder (image-composer and its version) and, as the one byproduct, the
  canonical rootfs tar, the build's identity.

Signing is :mod:`composer.repro.attest`'s (DSSE, ed25519 or ECDSA P-256).
"""

from __future__ import annotations

import hashlib
from typing import Any

from composer import canonjson
from composer.errors import ComposerError
from composer.repro.attest import STATEMENT_TYPE
from composer.repro.record import bootloader_sources, record_name, rootfs_digests

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://image-composer.dev/build-type/v1"  # defined in docs/build-type.md
BUILDER_ID = "https://image-composer.dev/builder/v1"


def provenance_name(name: str) -> str:
    """The signed provenance file of build ``name`` (a DSSE envelope)."""
    return f"{name}.provenance.intoto.json"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def statement(record_bytes: bytes) -> dict[str, Any]:
    """The SLSA Provenance v1 statement of the build the record describes."""
    try:
        record = canonjson.loads(record_bytes)
        build = record["build"]
        outputs = record["outputs"]
        specs = record["specs"]
        images = record["images"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ComposerError(f"not a build record: {exc}") from None
    options = record.get("options") or {}
    lock = [{"ref": i["ref"], "digest": i["digest"],
             **({"index_digest": i["index_digest"]} if i.get("index_digest") else {})}
            for i in images]
    deps: list[dict[str, Any]] = [{"name": s["name"], "digest": {"sha256": s["sha256"]}}
                                  for s in specs]
    for image in images:
        dep: dict[str, Any] = {"name": image["ref"], "digest": {"sha256": _hex(image["digest"])}}
        if image.get("name"):
            dep["uri"] = f"oci://{image['name']}@{image['digest']}"
        if image.get("index_digest"):
            dep["annotations"] = {"index_digest": image["index_digest"]}
        deps.append(dep)
    deps += [{"name": f"files:{f['path']}", "digest": {"sha256": _hex(f["sha256"])}}
             for f in record.get("files") or []]
    deps += bootloader_sources(options.get("bootloaders") or {})
    composer = record.get("composer") or {}
    return {
        "_type": STATEMENT_TYPE,
        "subject": sorted(({"name": o["name"], "digest": {"sha256": o["sha256"]}}
                           for o in outputs), key=lambda s: s["name"]),
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "specs": [{"name": s["name"], "sha256": s["sha256"], "text": s["text"]}
                              for s in specs],
                    "lock": lock,
                    "name": build["name"], "arch": build.get("arch"),
                    "formats": build.get("formats"),
                    "source_date_epoch": build.get("source_date_epoch"),
                    "options": {k: v for k, v in options.items() if k != "bootloaders"},
                },
                "internalParameters": {"compressor": build.get("compressor"),
                                       "libraries": composer.get("libraries") or {}},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID,
                            "version": {"image-composer": str(composer.get("version"))}},
                "byproducts": [
                    *({"name": f"rootfs-{arch}.tar" if arch else "rootfs.tar",
                       "digest": {"sha256": sha}}
                      for arch, sha in rootfs_digests(record).items()),
                    {"name": record_name(build["name"]),
                     "digest": {"sha256": hashlib.sha256(record_bytes).hexdigest()}},
                ],
            },
        },
    }


def signature_name(name: str) -> str:
    """The detached signature of ``NAME.SHA256SUMS`` (raw ed25519, or DER ECDSA over sha256)."""
    return f"{name}.SHA256SUMS.sig"


def signed_files(name: str, record_bytes: bytes, sums_bytes: bytes, key_path) -> list[
        tuple[str, bytes]]:
    """The signed files of a build: its provenance (DSSE) and the SHA256SUMS signature.

    Neither is listed in SHA256SUMS: they say who vouches for the build, not what it made (and
    ECDSA signatures differ each time)."""
    from composer.repro.attest import load_private_key, raw_signature, sign_statement

    key = load_private_key(key_path)
    envelope = sign_statement(statement(record_bytes), key)
    return [(provenance_name(name), canonjson.pretty(envelope)),
            (signature_name(name), raw_signature(key, sums_bytes))]
