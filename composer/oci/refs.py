"""Image references, normalised the way Docker does it.

``busybox`` is ``docker.io/library/busybox:latest``; ``foo/bar`` is ``docker.io/foo/bar:latest``;
a first component containing ``.`` or ``:``, or equal to ``localhost``, names a registry.
``oci:PATH[:TAG]`` names an image in an OCI image layout directory instead of a registry.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from composer.errors import ComposerError

DEFAULT_REGISTRY = "docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]+)?$")


class RefError(ComposerError):
    """A string that is not a valid image reference."""


@dataclass(frozen=True)
class Ref:
    """A registry image reference; at least one of ``tag`` and ``digest`` is set."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def cache_name(self) -> str:
        """The name this ref is kept under in the cache index (tag refs only)."""
        return f"{self.name}:{self.tag}" if self.tag else f"{self.name}@{self.digest}"

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.registry)


@dataclass(frozen=True)
class LayoutRef:
    """An image in a local OCI image layout directory: ``oci:PATH[:TAG]``."""

    path: str
    tag: str | None

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")


def is_loopback_host(hostport: str) -> bool:
    host = hostport
    if host.startswith("["):
        host = host[1 : host.index("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def linuxkit_name(text: str) -> str:
    """An image name as linuxkit records it (``util.ReferenceExpand``): the spec's text with
    Docker Hub's domain (and ``library/``) added where it has none, never a ``:latest`` tag."""
    parts = text.split("/")
    if len(parts) == 1:
        return f"{DEFAULT_REGISTRY}/library/{text}"
    if len(parts) == 2 and "." not in parts[0] and ":" not in parts[0] \
            and parts[0] != "localhost":
        return f"{DEFAULT_REGISTRY}/{text}"
    return text


def parse_ref(text: str) -> Ref | LayoutRef:
    """Parse and normalise; raises :class:`RefError` with the reason."""
    if text.startswith("oci:"):
        rest = text[4:]
        path, tag = rest, None
        head, sep, tail = rest.rpartition(":")
        if sep and head and "/" not in tail and _TAG.match(tail):
            path, tag = head, tail
        if not path:
            raise RefError(f"invalid reference {text!r}: empty layout path")
        return LayoutRef(path, tag)
    return parse_registry_ref(text)


def parse_registry_ref(text: str) -> Ref:
    original = text
    if not text or text != text.strip():
        raise RefError(f"invalid reference {original!r}")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise RefError(f"invalid reference {original!r}: bad digest {digest!r}")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.match(tag):
            raise RefError(f"invalid reference {original!r}: bad tag {tag!r}")
    parts = text.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"
                           or first.startswith("[")):
        registry, path = first, parts[1:]
        if not _HOST.match(registry):
            raise RefError(f"invalid reference {original!r}: bad registry {registry!r}")
    else:
        registry, path = DEFAULT_REGISTRY, parts
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and len(path) == 1:
        path = ["library", *path]
    for comp in path:
        if not _COMPONENT.match(comp):
            raise RefError(f"invalid reference {original!r}: bad name component {comp!r}"
                           + (" (must be lowercase)" if comp.lower() != comp else ""))
    if tag is None and digest is None:
        tag = "latest"
    return Ref(registry, "/".join(path), tag, digest)
