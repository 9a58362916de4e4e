"""The typed, validated, merged spec: what phase one consumes. Knows nothing of YAML or registries.

Every value that can be wrong later (an image that cannot be found, say) keeps the
:class:`Position` of its YAML node, so even late errors can say ``FILE:LINE:COL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from composer.errors import Position


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
    uid: int = 0
    gid: int = 0
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
    #: Things accepted but ignored (``trust``), as ``(position, message)``: print, don't fail.
    warnings: tuple[tuple[Position | None, str], ...] = field(default=(), compare=False)
