"""Which section of an image a rootfs entry belongs to (``kernel``, ``init``, ``onboot/NAME``,
``services/NAME``, ``onshutdown/NAME``, ``volumes/NAME``, ``files``, ``sbom``), read from the
provenance location its pax records carry: what ``explain`` prints and the report groups by.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol


class Origin(Protocol):
    """What a section is read from: :class:`composer.tar.check.Origin`'s location."""

    @property
    def location(self) -> str: ...

CONTAINER_SECTIONS = {"onboot": "onboot", "onshutdown": "onshutdown", "services": "services",
                      "volume": "volumes"}
NUMBERED = ("onboot", "onshutdown")
UNKNOWN_SECTION = "(unknown)"

_LOCATION = re.compile(r"^([a-z]+)\[(\d+)\]$")


def container_dir(path: str) -> tuple[str, str, str] | None:
    """(section word, bundle directory name, rest) for a path below ``containers/S/NAME``."""
    parts = path.split("/", 3)
    if len(parts) >= 3 and parts[0] == "containers" and parts[1] in (
            "onboot", "onshutdown", "services", "volumes"):
        return parts[1], parts[2], parts[3] if len(parts) > 3 else ""
    return None


def _bundle_name(word: str, directory: str) -> str:
    return re.sub(r"^\d{3}-", "", directory) if word in NUMBERED else directory


def section_names(entries: Iterable[tuple[str, Origin]]) -> dict[str, str]:
    """location -> section name, learnt from where each spec entry's files are.

    A container's name is the one of its bundle directory (``containers/onboot/000-NAME``);
    entries of that location outside it (the shared ``containers/`` parents) get the same name.
    """
    names: dict[str, str] = {}
    for path, where in entries:
        match = _LOCATION.match(where.location)
        if match is None or where.location in names:
            continue
        word = match.group(1)
        if word not in CONTAINER_SECTIONS:
            continue
        found = container_dir(path)
        if found is not None and found[0] == CONTAINER_SECTIONS[word] and found[1]:
            names[where.location] = f"{found[0]}/{_bundle_name(found[0], found[1])}"
    return names


def section_of(where: Origin, names: dict[str, str]) -> str:
    if where.location in names:
        return names[where.location]
    if where.location in ("kernel", "sbom"):
        return where.location  # the kernel's files; linuxkit's merged SBOM
    if where.location == "init":
        return "init"  # the init images' merged apk database
    match = _LOCATION.match(where.location)
    if match is None:
        return UNKNOWN_SECTION
    word = match.group(1)
    if word == "init":
        return "init"
    if word == "files":
        return "files"
    if word in CONTAINER_SECTIONS:
        return f"{CONTAINER_SECTIONS[word]}[{match.group(2)}]"
    return UNKNOWN_SECTION
