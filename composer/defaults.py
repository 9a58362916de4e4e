"""Defaults shared by commands: host architecture, cache location, progress output."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "s390x": "s390x", "riscv64": "riscv64", "ppc64le": "ppc64le"}


def host_arch() -> str:
    machine = platform.machine().lower()
    return _ARCHES.get(machine, machine)


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """``$IMAGE_COMPOSER_CACHE``, else linuxkit's ``$LINUXKIT_CACHE``, else
    ``$XDG_CACHE_HOME/image-composer`` (``~/.cache``)."""
    env = os.environ if environ is None else environ
    for var in ("IMAGE_COMPOSER_CACHE", "LINUXKIT_CACHE"):
        if env.get(var):
            return Path(env[var])
    xdg = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(xdg) / "image-composer"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_arches(text: str) -> tuple[str, ...]:
    """``--arch amd64,arm64`` -> ("amd64", "arm64"): each named once, in the order given."""
    from composer.errors import UsageError

    arches = tuple(a.strip() for a in text.split(","))
    if any(not a for a in arches) or len(set(arches)) != len(arches):
        raise UsageError(f"--arch {text!r}: give architectures separated by commas, each once")
    return arches
