"""The build record (``NAME.build.json``) and checksum list (``NAME.SHA256SUMS``) of a build.

The record names everything an output's bytes depend on, so anyone can rebuild and compare
(``image-composer verify``): the composer version, the versions of the libraries that shape bytes,
the spec files (sha256 and text), every image ref and the digest it resolved to, the host files
copied in by ``files: source``, ``SOURCE_DATE_EPOCH``, the compressor, the canonical rootfs tar's
sha256 (the build's identity) and the sha256 and size of every output.

It holds no host path, time or host name, and is serialised with :func:`canonjson.pretty`: the
same build gives the same record bytes, on any machine that makes the same outputs. The record
does not list itself or ``SHA256SUMS``; ``SHA256SUMS`` lists every other file of the build, the
record included, except ``NAME.build-env.json``: facts about the machine that built (Python and
zlib versions, platform), which explain a difference but are neither inputs nor reproducible.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer import __version__, canonjson
from composer.atomic import OutputSet
from composer.errors import ComposerError

SCHEMA = "image-composer/build-record/v1"
PINNED_LIBRARIES = ("pycdlib", "pyfatfs", "zstandard", "lz4", "zlib-ng")
CHUNK = 1 << 20


def record_name(name: str) -> str:
    return f"{name}.build.json"


def sums_name(name: str) -> str:
    return f"{name}.SHA256SUMS"


def sbom_name(name: str) -> str:
    return f"{name}.spdx.json"


def cyclonedx_name(name: str) -> str:
    return f"{name}.cdx.json"


def env_name(name: str) -> str:
    return f"{name}.build-env.json"


ENV_SCHEMA = "image-composer/build-env/v1"


def build_environment(remote_cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the building machine ran: not inputs, not reproducible, never in SHA256SUMS.

    ``remote_cache``: which results came from which remote cache entry and signer
    (:mod:`composer.cache.remote`). A hit makes the same bytes as the work it replaces, so it
    belongs here, beside the machine's facts, and never changes NAME.build.json."""
    import platform
    import sys

    return {
        "schema": ENV_SCHEMA,
        "note": "facts about the machine that built; they differ between machines that make "
                "identical outputs, so they are kept out of the build record and SHA256SUMS",
        "python": {"implementation": sys.implementation.name, "version": platform.python_version()},
        "zlib": {"runtime": zlib.ZLIB_RUNTIME_VERSION, "compiled": zlib.ZLIB_VERSION},
        "machine": platform.machine(),
        "libraries": library_versions(),
        **({"remote_cache": remote_cache} if remote_cache else {}),
    }


def library_versions() -> dict[str, str | None]:
    """The installed versions of the libraries whose behaviour shapes output bytes."""
    out: dict[str, str | None] = {}
    for lib in PINNED_LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    return out


def default_bootloaders() -> dict[str, str]:
    """Role -> digest of the pinned default bootloaders: what a rebuild uses unless told."""
    from outputs.bootloaders import DEFAULTS

    return {role: pin.digest for role, pin in DEFAULTS.items()}


class RecordingOutputSet(OutputSet):
    """An :class:`OutputSet` that can say which files it holds before they are committed."""

    def pending(self) -> Iterator[tuple[str, Path]]:
        """(final name, temporary path) of every file created so far, sorted by name.

        A directory output (``create_dir``) contributes each regular file in it, as
        ``NAME/relative/path``, so SHA256SUMS can check it with ``sha256sum -c``.
        """
        files: list[tuple[str, Path]] = []
        for name, tmp in self._pending:
            if tmp.is_dir():
                for path in tmp.rglob("*"):
                    if path.is_file() and not path.is_symlink():
                        files.append((f"{name}/{path.relative_to(tmp).as_posix()}", path))
            else:
                files.append((name, tmp))
        yield from sorted(files, key=lambda item: item[0].encode("utf-8", "surrogateescape"))


def options_record(options: Any, formats: tuple[str, ...]) -> dict[str, Any]:
    """The converter options that shape output bytes (:func:`outputs.options.record`), and
    the versions of the pinned tools the formats ran (``tools``)."""
    from outputs import FORMATS
    from outputs.options import record

    pins = (pin for fmt in formats for pin in FORMATS[fmt].bootloader_pins(options))
    out = record(options, pins, formats)
    tools = {k: v for fmt in formats for k, v in FORMATS[fmt].tool_versions().items()}
    if tools:
        out["tools"] = dict(sorted(tools.items()))
    return out


def rebuild_arguments(recorded_options: dict[str, Any]) -> list[str]:
    """The build flags that make a rebuild use the recorded options again."""
    from outputs.options import rebuild_argv

    return rebuild_argv(recorded_options)


@dataclass(frozen=True)
class SpecFile:
    name: str  # base name only: no host path
    sha256: str
    text: str


def spec_file(path: Path) -> SpecFile:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None
    return SpecFile(Path(path).name, hashlib.sha256(data).hexdigest(),
                    data.decode("utf-8", "surrogateescape"))


def build_record(*, name: str, arch: str, formats: tuple[str, ...],
                 source_date_epoch: int | None, compressor: str, specs: list[SpecFile],
                 images: list[dict[str, Any]], host_files: list[dict[str, Any]],
                 rootfs: tuple[str, int] | dict[str, tuple[str, int]],
                 outputs: list[tuple[str, str, int]],
                 options: dict[str, Any] | None = None,
                 sbom: dict[str, Any] | None = None,
                 decompress_kernel: bool = False) -> dict[str, Any]:
    """The record as a JSON value; every list is in a fixed order (spec order or sorted).

    ``rootfs`` is the build's rootfs, or for a multi-platform output (``arch`` ``amd64,arm64``)
    each architecture's by name; the images then name their ``arch``."""
    return {
        "schema": SCHEMA,
        "composer": {"version": __version__, "libraries": library_versions()},
        "build": {"name": name, "arch": arch, "formats": list(formats),
                  "source_date_epoch": source_date_epoch, "compressor": compressor,
                  **({"sbom": sbom} if sbom is not None else {}),
                  **({"decompress_kernel": True} if decompress_kernel else {})},
        "specs": [{"name": s.name, "sha256": s.sha256, "text": s.text} for s in specs],
        "images": images,
        "files": sorted(host_files, key=lambda f: f["path"]),
        "options": options or {},
        "rootfs": _rootfs(rootfs) if isinstance(rootfs, tuple) else
        {arch: _rootfs(one) for arch, one in rootfs.items()},
        "outputs": [{"name": n, "sha256": h, "size": s} for n, h, s in sorted(outputs)],
    }


def _rootfs(digest: tuple[str, int]) -> dict[str, Any]:
    return {"sha256": digest[0], "size": digest[1]}


def rootfs_digests(record: dict[str, Any]) -> dict[str, str | None]:
    """The record's rootfs sha256: ``{"": sha}`` for one build, ``{arch: sha}`` for the
    multi-platform files' record (``rootfs`` by architecture)."""
    rootfs = record.get("rootfs") or {}
    if not isinstance(rootfs, dict):
        return {"": None}
    if "sha256" in rootfs or not all(isinstance(v, dict) for v in rootfs.values()):
        return {"": rootfs.get("sha256")}
    return {arch: one.get("sha256") for arch, one in sorted(rootfs.items())}


def sha256sums(files: list[tuple[str, str]]) -> bytes:
    """``sha256sum -c`` format: ``HEX  NAME`` per line, sorted by name (binary-safe names only)."""
    lines = []
    for name, digest in sorted(files):
        if "\n" in name or "\\" in name:
            raise ComposerError(f"{name!r}: output names with newlines or backslashes "
                                "cannot go into SHA256SUMS")
        lines.append(f"{digest}  {name}\n")
    return "".join(lines).encode()


def parse_sha256sums(data: bytes, what: str) -> list[tuple[str, str]]:
    """(name, hex) pairs of a ``sha256sum`` file (text or ``*`` binary marker)."""
    out = []
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) \
                or name[:1] not in (" ", "*"):
            raise ComposerError(f"{what}:{n}: not a sha256sum line")
        out.append((name[1:], digest))
    return out


def load_record(path: Path) -> dict[str, Any]:
    """Read and sanity-check a build record."""
    doc = canonjson.load_file(path, "a JSON build record")
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ComposerError(f"{path}: not an image-composer build record "
                            f"(schema {doc.get('schema') if isinstance(doc, dict) else None!r})")
    for key in ("build", "specs", "images", "rootfs", "outputs"):
        if key not in doc:
            raise ComposerError(f"{path}: build record has no {key!r}")
    return doc


def bootloader_sources(bootloaders: dict[str, str]) -> list[dict[str, Any]]:
    """Where each recorded bootloader (role -> file digest) came from, as in-toto resource
    descriptors: the pinned Debian .deb for a default pin (its pool URL and sha256, the member
    and its digest as annotations), else only the file's digest (a ``--bootloader`` override)."""
    from composer.debian.pool import DEFAULT_MIRRORS
    from outputs.bootloader_debs import FILES

    out = []
    for role, digest in sorted(bootloaders.items()):
        pinned = FILES.get(role)
        hexdigest = digest.removeprefix("sha256:")
        if pinned is not None and pinned.sha256 == hexdigest:
            deb = pinned.deb
            out.append({"name": deb.filename,
                        "uri": f"{DEFAULT_MIRRORS[0]}/{deb.pool_paths()[0]}",
                        "digest": {"sha256": deb.sha256},
                        "annotations": {"role": role, "member": pinned.member,
                                        "member_sha256": hexdigest}})
        else:
            out.append({"name": role, "digest": {"sha256": hexdigest},
                        "annotations": {"role": role}})
    return out
