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
