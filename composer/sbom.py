"""A deterministic SPDX 2.3 SBOM (``NAME.spdx.json``): input images and the packages in the rootfs.

Packages come from the package databases found anywhere in the rootfs tar (the root's own and
each container bundle's): dpkg's ``var/lib/dpkg/status`` (installed entries only) and apk's
``lib/apk/db/installed``. Each package says where its database was (``sourceInfo``).

Nothing in it depends on the wall clock: ``created`` is the build's epoch (``Epoch.generated``),
and ``documentNamespace`` ends in a sha256 over the document's own content (computed with the
namespace left out), so the same build always gives the same bytes, and different contents never
share a namespace.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from composer import __version__, canonjson
from composer.tarcanon import Entry, Kind, read_entries

DPKG_STATUS = "var/lib/dpkg/status"
APK_INSTALLED = "lib/apk/db/installed"
MAX_DB = 64 << 20  # a package database larger than this is not one we should hold in memory
NAMESPACE_BASE = "https://spdx.org/spdxdocs/image-composer/"
NOASSERTION = "NOASSERTION"


def _paragraphs(text: str) -> Iterator[list[str]]:
    block: list[str] = []
    for line in text.splitlines():
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def parse_dpkg_status(text: str) -> list[dict[str, str]]:
    """Installed packages of a dpkg status file: name, version, arch (continuations skipped)."""
    out = []
    for block in _paragraphs(text):
        fields: dict[str, str] = {}
        for line in block:
            if line[:1] in (" ", "\t"):
                continue
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        if "package" in fields and fields.get("status", "").split()[-1:] == ["installed"]:
            out.append({"name": fields["package"], "version": fields.get("version", ""),
                        "arch": fields.get("architecture", ""), "type": "deb"})
    return out


def parse_apk_installed(text: str) -> list[dict[str, str]]:
    """Packages of an apk ``installed`` database (``P:``, ``V:``, ``A:``, ``L:`` lines)."""
    out = []
    for block in _paragraphs(text):
        fields = {line[0]: line[2:] for line in block if len(line) >= 2 and line[1] == ":"}
        if "P" in fields:
            out.append({"name": fields["P"], "version": fields.get("V", ""),
                        "arch": fields.get("A", ""), "type": "apk",
                        "license": fields.get("L", "")})
    return out


def find_packages(rootfs: Path) -> list[dict[str, str]]:
    """Every package in every database in the rootfs tar, sorted; streams the tar once."""
    with open(rootfs, "rb") as fh:
        return packages_in((entry, data.read if data is not None else None)
                           for entry, data in read_entries(fh))


def packages_in(entries: Iterable[tuple[Entry, Callable[[], bytes] | None]]
                ) -> list[dict[str, str]]:
    """Every package in the databases among ``entries`` (canonical tar entries, each with a way
    to read its content while it is current), sorted. Phase one calls it on the tree it has just
    written, so a cold build needs no second pass over the rootfs tar to make its SBOM."""
    found = []
    for entry, read in entries:
        if entry.kind is not Kind.FILE or read is None or entry.size > MAX_DB:
            continue
        for db, parse in ((DPKG_STATUS, parse_dpkg_status), (APK_INSTALLED, parse_apk_installed)):
            if entry.path == db or entry.path.endswith("/" + db):
                where = entry.path[: -len(db)].rstrip("/") or "/"
                text = read().decode("utf-8", "replace")
                found += [{**p, "location": where} for p in parse(text)]
    return sorted(found, key=lambda p: (p["location"], p["type"], p["name"], p["version"],
                                        p["arch"]))


def _purl(pkg: dict[str, str]) -> str:
    ns = "debian" if pkg["type"] == "deb" else "alpine"
    out = f"pkg:{pkg['type']}/{ns}/{quote(pkg['name'], safe='')}"
    if pkg["version"]:
        out += f"@{quote(pkg['version'], safe='')}"
    return out + (f"?arch={quote(pkg['arch'], safe='')}" if pkg["arch"] else "")


def _image_purl(image: dict[str, Any]) -> str:
    name = str(image["name"]).split("@", 1)[0]
    base = name.rsplit("/", 1)[-1].split(":", 1)[0] or "image"
    return (f"pkg:oci/{quote(base, safe='')}@{quote(image['digest'], safe='')}"
            f"?repository_url={quote(name, safe='')}")


def spdx_document(name: str, rootfs: Path, rootfs_sha256: str, images: list[dict[str, Any]],
                  epoch: int, found: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The SPDX 2.3 document as a JSON value."""
    created = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    root_id = "SPDXRef-Rootfs"
    packages: list[dict[str, Any]] = [{
        "SPDXID": root_id, "name": name, "downloadLocation": NOASSERTION,
        "filesAnalyzed": False, "primaryPackagePurpose": "OPERATING-SYSTEM",
        "checksums": [{"algorithm": "SHA256", "checksumValue": rootfs_sha256}],
        "comment": "the canonical rootfs tar all outputs are made from",
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root_id}]
    for n, image in enumerate(images, 1):
        spdx_id = f"SPDXRef-Image-{n}"
        package = {
            "SPDXID": spdx_id, "name": image["ref"], "versionInfo": image["digest"],
            "downloadLocation": NOASSERTION, "filesAnalyzed": False,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256",
                           "checksumValue": image["digest"].split(":", 1)[1]}],
        }
        if not str(image["ref"]).startswith("oci:"):  # a local layout has no package URL
            package["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                                        "referenceType": "purl",
                                        "referenceLocator": _image_purl(image)}]
        packages.append(package)
        relationships.append({"spdxElementId": spdx_id, "relationshipType": "GENERATES",
                              "relatedSpdxElement": root_id})
    for n, pkg in enumerate(find_packages(rootfs) if found is None else found, 1):
        spdx_id = f"SPDXRef-Package-{n}"
        entry = {
            "SPDXID": spdx_id, "name": pkg["name"], "versionInfo": pkg["version"] or NOASSERTION,
            "downloadLocation": NOASSERTION, "filesAnalyzed": False,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION, "copyrightText": NOASSERTION,
            "sourceInfo": f"{pkg['type']} database in {pkg['location']}",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": _purl(pkg)}],
        }
        if pkg.get("license"):
            entry["comment"] = f"license as the package declares it: {pkg['license']}"
        packages.append(entry)
        relationships.append({"spdxElementId": root_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": spdx_id})
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "creationInfo": {"created": created, "creators": [f"Tool: image-composer-{__version__}"]},
        "packages": packages, "relationships": relationships,
    }
    digest = hashlib.sha256(canonjson.compact(doc)).hexdigest()
    doc["documentNamespace"] = f"{NAMESPACE_BASE}{quote(name, safe='')}-{digest}"
    return doc
