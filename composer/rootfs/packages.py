"""The packages installed in a rootfs: dpkg's and apk's databases, wherever they are in the tar.

The SBOM (:mod:`composer.repro.sbom`) lists them; phase one finds them in the tree it has just
written, so a cold build needs no second pass over the rootfs tar.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from composer.tar.canon import Entry, Kind
from composer.tar.read import read_entries

DPKG_STATUS = "var/lib/dpkg/status"
APK_INSTALLED = "lib/apk/db/installed"
_DB_NAMES = (DPKG_STATUS, APK_INSTALLED)
MAX_DB = 64 << 20  # a package database larger than this is not one we should hold in memory


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


def find_packages(rootfs: Path, sbom_path: str = "") -> list[dict[str, str]]:
    """Every package in every database in the rootfs tar, sorted; streams the tar once."""
    with open(rootfs, "rb") as fh:
        return packages_in(((entry, data.read if data is not None else None)
                            for entry, data in read_entries(fh)), sbom_path)


def is_database(entry: Entry, sbom_path: str = "") -> bool:
    """Might ``entry`` be a package database :func:`packages_in` reads (or the merged image
    SBOM at ``sbom_path``)? A cheap test, so the tar writer can keep just these as it goes."""
    if entry.kind is not Kind.FILE or entry.size > MAX_DB:
        return False
    path = entry.path
    if sbom_path and path == sbom_path.strip("/"):
        return True
    return path.endswith(_DB_NAMES) and any(path == db or path.endswith("/" + db)
                                            for db in _DB_NAMES)



def parse_spdx(data: bytes) -> list[dict[str, str]]:
    """Packages of the merged SPDX SBOM linuxkit puts in the rootfs (the images' attested
    ones): name, version, package URL, and where the image put it (``packageFileName``)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return []
    out = []
    for p in doc.get("packages") or [] if isinstance(doc, dict) else []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        purl = next((str(r.get("referenceLocator", "")) for r in p.get("externalRefs") or []
                     if isinstance(r, dict) and r.get("referenceType") == "purl"), "")
        out.append({"name": p["name"], "version": str(p.get("versionInfo", "")), "arch": "",
                    "type": "spdx", "purl": purl,
                    "file": str(p.get("packageFileName", ""))})
    return out


def packages_in(entries: Iterable[tuple[Entry, Callable[[], bytes] | None]],
                sbom_path: str = "") -> list[dict[str, str]]:
    """Every package in the databases among ``entries`` (canonical tar entries, each with a way
    to read its content while it is current), sorted, and those of the merged image SBOM at
    ``sbom_path``. Phase one calls it on the tree it has just written, so a cold build needs no
    second pass over the rootfs tar to make its SBOM."""
    found = []
    sbom_path = sbom_path.strip("/")
    for entry, read in entries:
        if not is_database(entry, sbom_path) or read is None:
            continue
        if sbom_path and entry.path == sbom_path:
            found += [{**p, "location": entry.path} for p in parse_spdx(read())]
            continue
        for db, parse in ((DPKG_STATUS, parse_dpkg_status), (APK_INSTALLED, parse_apk_installed)):
            if entry.path == db or entry.path.endswith("/" + db):
                where = entry.path[: -len(db)].rstrip("/") or "/"
                text = read().decode("utf-8", "replace")
                found += [{**p, "location": where} for p in parse(text)]
    return ordered(found)


def ordered(found: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """Packages in the SBOM's order (by location, then type, name, version, arch)."""
    return sorted(found, key=lambda p: (p["location"], p["type"], p["name"], p["version"],
                                        p["arch"]))
