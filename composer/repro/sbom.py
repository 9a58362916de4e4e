"""A deterministic SPDX 2.3 SBOM (``NAME.spdx.json``): input images and the packages in the rootfs.

Packages come from the package databases found anywhere in the rootfs tar (the root's own and
each container bundle's): dpkg's ``var/lib/dpkg/status`` (installed entries only) and apk's
``lib/apk/db/installed``, and from the SPDX SBOMs attested for the images (merged into the
rootfs's ``sbom.spdx.json``, :mod:`composer.rootfs.sbom`). Each package says where it was found
(``sourceInfo``). :func:`cyclonedx_document` gives the same content as CycloneDX 1.5 JSON
(``--sbom-format cyclonedx``).

Nothing in it depends on the wall clock: ``created`` is the build's epoch (``Epoch.generated``),
and ``documentNamespace`` ends in a sha256 over the document's own content (computed with the
namespace left out), so the same build always gives the same bytes, and different contents never
share a namespace.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from composer import __version__, canonjson
from composer.rootfs.packages import find_packages

NAMESPACE_BASE = "https://spdx.org/spdxdocs/image-composer/"
NOASSERTION = "NOASSERTION"


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
        attested = pkg["type"] == "spdx"
        entry = {
            "SPDXID": spdx_id, "name": pkg["name"], "versionInfo": pkg["version"] or NOASSERTION,
            "downloadLocation": NOASSERTION, "filesAnalyzed": False,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION, "copyrightText": NOASSERTION,
            "sourceInfo": (f"SPDX SBOM attested for an image, merged into {pkg['location']}"
                           + (f" (at {pkg['file']})" if pkg.get("file") else "")) if attested
            else f"{pkg['type']} database in {pkg['location']}",
        }
        purl = pkg.get("purl", "") if attested else _purl(pkg)
        if purl:
            entry["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                                      "referenceType": "purl", "referenceLocator": purl}]
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


def cyclonedx_document(spdx: dict[str, Any]) -> dict[str, Any]:
    """The SPDX document of :func:`spdx_document` as CycloneDX 1.5 JSON: the rootfs as the
    BOM's component, images and packages as components it depends on. The serial number is a
    UUID derived from the content, the timestamp the SPDX document's (the build's epoch)."""
    packages = spdx["packages"]
    root, rest = packages[0], packages[1:]
    rootfs_hash = root["checksums"][0]["checksumValue"]
    components = []
    for package in rest:
        ref = package["SPDXID"].removeprefix("SPDXRef-")
        component: dict[str, Any] = {
            "type": "container" if package.get("primaryPackagePurpose") == "CONTAINER"
            else "library",
            "bom-ref": ref, "name": package["name"],
        }
        if package.get("versionInfo") not in (None, NOASSERTION):
            component["version"] = package["versionInfo"]
        for checksum in package.get("checksums", ()):
            component.setdefault("hashes", []).append(
                {"alg": "SHA-256", "content": checksum["checksumValue"]})
        for ref_ in package.get("externalRefs", ()):
            if ref_.get("referenceType") == "purl":
                component["purl"] = ref_["referenceLocator"]
        where = package.get("sourceInfo") or package.get("comment")
        if where:
            component["properties"] = [{"name": "image-composer:source", "value": where}]
        components.append(component)
    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "metadata": {
            "timestamp": spdx["creationInfo"]["created"],
            "tools": {"components": [{"type": "application", "name": "image-composer",
                                      "version": __version__}]},
            "component": {"type": "operating-system", "bom-ref": "rootfs", "name": root["name"],
                          "hashes": [{"alg": "SHA-256", "content": rootfs_hash}]},
        },
        "components": components,
        "dependencies": [{"ref": "rootfs", "dependsOn": [c["bom-ref"] for c in components]},
                         *({"ref": c["bom-ref"]} for c in components)],
    }
    digest = hashlib.sha256(canonjson.compact(doc)).digest()
    doc["serialNumber"] = f"urn:uuid:{uuid.UUID(bytes=digest[:16], version=5)}"
    return doc
