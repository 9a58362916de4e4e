"""How registries are reached, as linuxkit's flags say: mirrors and extra CA certificates.

Mirrors: ``--mirror REGISTRY=URL`` and ``LINUXKIT_MIRROR``.

``REGISTRY=URL`` sends the pulls of that registry's images to ``URL``; a bare ``URL`` is the
mirror of every registry not named otherwise (key ``*``). The URL must say ``http://`` or
``https://`` and may carry a path prefix (``https://mirror.example/cache`` pulls
``docker.io/library/alpine`` from ``mirror.example/cache/library/alpine``). ``docker.io`` also
covers ``index.docker.io`` and ``registry-1.docker.io``. ``LINUXKIT_MIRROR`` (entries separated
by commas or spaces) comes first, so the command line wins, as in linuxkit. As there, a mirror
replaces its origin for pulls (no fallback to the origin) and pushes never go to a mirror.

CA certificates: ``--cert-file FILE`` (repeatable) adds the PEM certificates in FILE to the
authorities HTTPS is verified against (requests' default bundle), for pulls and pushes alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from composer.errors import ComposerError, UsageError
from composer.oci.refs import DEFAULT_REGISTRY, Ref

ENV = "LINUXKIT_MIRROR"
_DOCKER_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]+)?$")


@dataclass(frozen=True)
class Network:
    """Everything about reaching registries that the command line says."""

    insecure: frozenset[str] = frozenset()  # hosts spoken to over plain HTTP
    mirrors: Mapping[str, str] = field(default_factory=dict)  # registry (or "*") -> URL
    extra_ca: str = ""  # PEM certificates trusted besides the default ones


def network_from_args(args) -> Network:
    """The :class:`Network` of parsed arguments (``--insecure-registry``, ``--mirror``,
    ``--cert-file``; any of them may be absent)."""
    return Network(
        insecure=frozenset(h.lower() for h in getattr(args, "insecure_registry", None) or []),
        mirrors=parse_mirrors(getattr(args, "mirror", None) or []),
        extra_ca=read_cert_files(getattr(args, "cert_file", None) or []))


def read_cert_files(paths: Sequence[str | Path]) -> str:
    """The PEM text of every ``--cert-file``; unreadable files and files without a certificate
    are errors (a typo must not silently leave a registry untrusted)."""
    texts = []
    for path in paths:
        if not str(path):
            continue
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ComposerError(f"--cert-file {path}: cannot read: {reason}") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ComposerError(f"--cert-file {path}: no PEM certificate in it")
        texts.append(text)
    return "\n".join(texts)


def parse_mirrors(values: Sequence[str], environ: Mapping[str, str] | None = None
                  ) -> dict[str, str]:
    """``REGISTRY=URL`` / ``URL`` entries (the environment's first) -> registry -> URL."""
    env = os.environ if environ is None else environ
    entries = [e for e in re.split(r"[,\s]+", env.get(ENV, "")) if e] + list(values)
    out: dict[str, str] = {}
    for entry in entries:
        if not entry:
            continue
        key, sep, url = entry.partition("=")
        if not sep:
            key, url = "*", entry
        key = key.strip().rstrip("/").lower()
        url = url.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--mirror {entry!r}: the mirror {url!r} must start with http:// "
                             "or https://")
        if parts.query or parts.fragment or not _HOST.match(parts.netloc):
            raise UsageError(f"--mirror {entry!r}: not a registry URL: {url!r}")
        if key != "*" and not _HOST.match(key):
            raise UsageError(f"--mirror {entry!r}: {key!r} is not a registry host[:port]")
        for name in _DOCKER_ALIASES if key in _DOCKER_ALIASES else (key,):
            out[name] = url
    return out


def mirror_for(mirrors: Mapping[str, str], ref: Ref) -> tuple[Ref, bool] | None:
    """The ref to pull instead of ``ref`` and whether it speaks TLS, or None (no mirror)."""
    registry = ref.registry.lower()
    url = mirrors.get(registry) or mirrors.get("*")
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.netloc.lower()
    if registry == DEFAULT_REGISTRY and host in _DOCKER_ALIASES and not parts.path.strip("/"):
        return None  # Docker Hub as its own mirror: nothing to rewrite
    prefix = parts.path.strip("/")
    repository = f"{prefix}/{ref.repository}" if prefix else ref.repository
    return Ref(host, repository, ref.tag, ref.digest), parts.scheme == "https"
