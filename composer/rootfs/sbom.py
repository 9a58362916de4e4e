"""The SBOM linuxkit writes into the image: every image's attested SPDX SBOMs, merged.

linuxkit (``moby/build/sbom.go``) reads, for each image it unpacks, the SPDX documents BuildKit
attested for it (:func:`composer.images.resolve._attested_sboms`), prefixes every file's
``fileName`` and package's ``packageFileName`` with where that image lands in the rootfs
(``filepath.Join``, so a package without one gets the prefix itself), and appends their
packages, files, other licenses, relationships, annotations and external document refs, in the
order it unpacks the images (kernel, init, volumes, onboot, onshutdown, services; an image
extracted once counts once), into one SPDX 2.3 document named ``sbom`` at
``sbom.spdx.json`` (``--sbom-output``), written after everything else. Its SPDX library reads
and writes each document, which spells out a package's ``filesAnalyzed`` (true) and a file's
``copyrightText`` ("") and ``checksums`` (null) when unset; we do the same (measured side by
side with linuxkit: bench/linuxkit_side.py).

Unlike linuxkit's, nothing in it comes from the clock or randomness: ``created`` is the build's
generated time (linuxkit's default is the same 2017-04-18T16:30:00Z) and the namespace's UUID is
derived from the document's own content.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import posixpath
import uuid
from typing import Any

from composer import canonjson
from composer.errors import ComposerError

DEFAULT_PATH = "sbom.spdx.json"  # linuxkit's defaultSbomFilename
SOURCE = "linuxkit.sbom"  # its LINUXKIT.source (linuxkit writes the entry without records)
NAMESPACE = "https://github.com/linuxkit/linuxkit/sbom-"
SPDX_PREDICATE = "https://spdx.dev/Document"
MAX_STATEMENT = 256 << 20  # an SBOM is held in memory to be merged: refuse absurd ones
MERGED = ("packages", "files", "hasExtractedLicensingInfos", "relationships", "annotations",
          "externalDocumentRefs")


def go_join(*parts: str) -> str:
    """Go's ``filepath.Join`` on Linux: the non-empty parts joined and cleaned; "" if none."""
    joined = "/".join(p for p in parts if p)
    if not joined:
        return ""
    clean = posixpath.normpath(joined)
    return "/" + clean.lstrip("/") if clean.startswith("//") else clean


def predicate(data: bytes, what: str) -> dict[str, Any]:
    """The SPDX document inside an in-toto statement."""
    try:
        statement = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ComposerError(f"{what}: not JSON ({exc})") from None
    if not isinstance(statement, dict) or statement.get("predicateType") != SPDX_PREDICATE:
        raise ComposerError(f"{what}: not an in-toto statement with an SPDX predicate")
    doc = statement.get("predicate")
    if not isinstance(doc, dict):
        raise ComposerError(f"{what}: the SPDX predicate is not a JSON object")
    return doc


def prefixed(doc: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``doc`` with its file paths under ``prefix`` (linuxkit's ``SbomGenerator.Add``)."""
    out = dict(doc)
    files = []
    for f in doc.get("files") or []:
        if isinstance(f, dict):  # linuxkit's SPDX library writes these back: "" and null if unset
            f = {"copyrightText": "", "checksums": None, **f,
                 "fileName": go_join(prefix, str(f.get("fileName", "")))}
        files.append(f)
    packages = []
    for p in doc.get("packages") or []:
        if isinstance(p, dict):  # and a package's filesAnalyzed, true (SPDX's default) if unset
            p = {"filesAnalyzed": True, **p}
            name = go_join(prefix, str(p.get("packageFileName", "")))
            if name:
                p["packageFileName"] = name
            else:
                p.pop("packageFileName", None)
        packages.append(p)
    out["files"], out["packages"] = files, packages
    return out


def merged(docs: list[dict[str, Any]], created: int) -> dict[str, Any]:
    """linuxkit's ``SbomGenerator.Close``: one document holding every document's elements."""
    when = datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": "sbom",
        "creationInfo": {"licenseListVersion": "3.20", "creators": ["Tool: image-composer"],
                         "created": when},
    }
    for key in MERGED:
        items = [item for doc in docs for item in (doc.get(key) or [])]
        if items:
            out[key] = items
    digest = hashlib.sha256(canonjson.compact(out)).digest()
    out["documentNamespace"] = NAMESPACE + str(uuid.UUID(bytes=digest[:16], version=5))
    return out


def packages_of(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The packages of a merged document as the side SBOM lists them (name, version, purl)."""
    out = []
    for p in doc.get("packages") or []:
        if not isinstance(p, dict) or not p.get("name"):
            continue
        purl = ""
        for ref in p.get("externalRefs") or []:
            if isinstance(ref, dict) and ref.get("referenceType") == "purl":
                purl = str(ref.get("referenceLocator", ""))
                break
        out.append({"name": str(p["name"]), "version": str(p.get("versionInfo", "")),
                    "purl": purl, "where": str(p.get("packageFileName", ""))})
    return out
