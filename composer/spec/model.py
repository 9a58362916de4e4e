"""The typed, validated, merged spec: what phase one consumes. Knows nothing of YAML or registries.

Every value that can be wrong later (an image that cannot be found, say) keeps the
:class:`Position` of its YAML node, so even late errors can say ``FILE:LINE:COL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from composer.errors import Position

#: linuxkit allocates each container a uid/gid, usable by name, from here on.
FIRST_CONTAINER_ID = 100


@dataclass(frozen=True)
class ImageRef:
    """An image reference as written (after ``@pkg:`` expansion) and where it was written."""

    text: str
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Kernel:
    image: ImageRef
    cmdline: str = ""
    binary: str = "kernel"
    tar: str | None = "kernel.tar"  # None when the spec says "none" or ""
    ucode: str | None = None


@dataclass(frozen=True)
class Container:
    """One entry of ``onboot``, ``onshutdown`` or ``services``.

    ``command``/``env`` are None when the YAML does not set them (then the image label and the
    image config decide). ``extra`` holds the other linuxkit image keys, validated, as plain
    data in YAML key order, for the bundle generator.
    """

    name: str
    image: ImageRef
    command: tuple[str, ...] | None = None
    env: tuple[str, ...] | None = None
    extra: tuple[tuple[str, object], ...] = ()
    pos: Position | None = field(default=None, compare=False)

    def config(self) -> dict[str, object]:
        """Every ImageConfig key the YAML sets (command and env included), as plain data."""
        out: dict[str, object] = dict(self.extra)
        if self.command is not None:
            out["command"] = list(self.command)
        if self.env is not None:
            out["env"] = list(self.env)
        return out


@dataclass(frozen=True)
class File:
    """One ``files`` entry. Exactly one of directory/symlink/contents/source/metadata applies."""

    path: str  # relative, normalised (leading "/" stripped)
    directory: bool = False
    symlink: str | None = None
    contents: str | None = None
    source: str | None = None  # absolute host path, resolved against the spec file
    metadata: str | None = None  # "yaml" or "json"
    optional: bool = False
    mode: int | None = None  # None: linuxkit's default (0600 files, 0700 dirs)
    uid: int | str = 0  # a number, or a container name (see Spec.id_map)
    gid: int | str = 0
    pos: Position | None = field(default=None, compare=False)
    #: ``source`` as written in the YAML (what ``metadata:`` files and ``--dry-run`` show, so
    #: they never depend on where the spec was checked out).
    source_text: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Volume:
    """One ``volumes`` entry: ``containers/volumes/NAME/{lower,tmp,merged}`` in the rootfs."""

    name: str
    image: ImageRef | None = None
    readonly: bool = False
    format: str = "filesystem"
    platforms: tuple[str, ...] = ()
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Spec:
    """All spec files merged, in command-line order."""

    sources: tuple[str, ...]
    kernel: Kernel | None = None
    init: tuple[ImageRef, ...] = ()
    onboot: tuple[Container, ...] = ()
    onshutdown: tuple[Container, ...] = ()
    services: tuple[Container, ...] = ()
    files: tuple[File, ...] = ()
    volumes: tuple[Volume, ...] = ()
    #: Things accepted but ignored (``trust``), as ``(position, message)``: print, don't fail.
    warnings: tuple[tuple[Position | None, str], ...] = field(default=(), compare=False)
    #: Each file's values as written (:func:`composer.spec.goyaml.raw`), for the file linuxkit
    #: writes for ``metadata: yaml``.
    raw: tuple[Any, ...] = field(default=(), compare=False)

    def id_map(self) -> dict[str, int]:
        """linuxkit's uid/gid by container name: 100, 101, ... over onboot, onshutdown, services
        (a name used twice keeps the later id, as in linuxkit)."""
        ids: dict[str, int] = {}
        containers = (*self.onboot, *self.onshutdown, *self.services)
        for number, container in enumerate(containers, start=FIRST_CONTAINER_ID):
            ids[container.name] = number
        return ids

    def image_refs(self) -> list[ImageRef]:
        """Every image the spec uses (kernel, init, containers, volumes), each text once."""
        refs: list[ImageRef] = []
        if self.kernel is not None:
            refs.append(self.kernel.image)
        refs.extend(self.init)
        for section in (self.onboot, self.onshutdown, self.services):
            refs.extend(c.image for c in section)
        refs.extend(v.image for v in self.volumes if v.image is not None)
        first: dict[str, ImageRef] = {}
        for r in refs:
            first.setdefault(r.text, r)
        return list(first.values())


def resolve_id(value: int | str, ids: dict[str, int]) -> int:
    """A uid/gid as a number: numbers as given, ``""``/``root`` are 0, names from ``ids``.

    Raises KeyError for an unknown name (the loader reports those with a position first).
    """
    if isinstance(value, int):
        return value
    if value in ("", "root"):
        return 0
    return ids[value]
