"""One spec file's nodes -> the model objects it contributes (merging is done by the caller).

The accepted keys are the tables below (``TOP``, ``KERNEL``, ``IMAGE``, ``FILE``); each row
is a converter from :mod:`composer.spec.schema`.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node

from composer.errors import ComposerError, Position
from composer.oci.refs import RefError, parse_ref
from composer.spec.model import Container, File, ImageRef, Volume
from composer.spec.schema import (
    BAD,
    IMAGE_CONFIG,
    IMAGE_EXTRA,
    TRUST,
    Conv,
    Ctx,
    Got,
    boolean,
    fields,
    id_or_name,
    list_of,
    nonempty,
    object_schema,
    one_of,
    string,
    strings,
    typed,
)
from composer.spec.yamlpos import INT, STR, VALUE, keys, kind, position

PKG_PREFIX = "@pkg:"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VOLUME_NAME = re.compile(r"^[a-z0-9_-]+$")
_OCTAL_STR = re.compile(r"^[0-7]+$")
_OCTAL_INT = re.compile(r"^0[0-7]*$")  # the YAML 1.1 octal literal: 0644, not 644 or 0o644


@typed({"type": "string", "minLength": 1})
def image_ref(ctx: Ctx, node: Node, where: str) -> Any:
    """An image reference; ``@pkg:DIR`` becomes that package's tag (DIR relative to the spec)."""
    text = nonempty(ctx, node, where)
    if text is BAD:
        return BAD
    if text.startswith(PKG_PREFIX):
        rel = text[len(PKG_PREFIX):]
        directory = Path(os.path.abspath(ctx.base / rel)) if rel else None
        if directory is None or not directory.is_dir():
            return ctx.error(node, where, f"{text}: no such package directory "
                             f"{str(directory) if directory else '(empty)'}")
        from composer.pkg import package as pkg  # lazily: only specs with @pkg: need it

        try:
            text = str(pkg.package_ref(directory))
        except ComposerError as e:
            return ctx.error(node, where, f"{PKG_PREFIX}{rel}: {e}")
    try:
        parse_ref(text)
    except RefError as e:
        return ctx.error(node, where, str(e))
    return ImageRef(text, position(ctx.file, node))


@typed({"type": "string", "pattern": NAME.pattern})
def container_name(ctx: Ctx, node: Node, where: str) -> Any:
    name = string(ctx, node, where)
    if name is not BAD and not NAME.match(name):
        return ctx.error(node, where, f"invalid name {name!r}: use letters, digits, '_', '.' "
                         "and '-', starting with a letter or digit")
    return name


@typed({"type": "string", "pattern": VOLUME_NAME.pattern})
def volume_name(ctx: Ctx, node: Node, where: str) -> Any:
    name = string(ctx, node, where)
    if name is not BAD and not VOLUME_NAME.match(name):
        return ctx.error(node, where, f"invalid volume name {name!r}: use lowercase letters, "
                         "digits, '_' and '-'")
    return name


@typed({"type": "string", "minLength": 1})
def file_path(ctx: Ctx, node: Node, where: str) -> Any:
    """A path inside the image: leading "/" stripped, normalised, never escaping the root."""
    text = nonempty(ctx, node, where)
    if text is BAD:
        return BAD
    if "\0" in text:
        return ctx.error(node, where, "must not contain a NUL character")
    rel = text.lstrip("/")
    norm = posixpath.normpath(rel) if rel else "."
    if norm == ".":
        return ctx.error(node, where, f"{text!r} does not name anything below /")
    if norm == ".." or norm.startswith("../"):
        return ctx.error(node, where, f"{text!r} escapes the image root")
    return norm


@typed({"anyOf": [{"type": "string", "pattern": "^[0-7]+$"}, {"type": "integer"}]})
def file_mode(ctx: Ctx, node: Node, where: str) -> Any:
    """An octal permission mode.

    linuxkit wants a string ("0644"). We also take an unquoted YAML 1.1 octal literal (0644,
    already octal for YAML), but refuse a plain integer such as 644: YAML reads that as
    decimal, which is almost never what was meant.
    """
    if node.tag in (STR, VALUE) and isinstance(node.value, str):
        if not _OCTAL_STR.match(node.value):
            return ctx.error(node, where, f"expected an octal mode such as \"0644\", "
                             f"got {node.value!r}")
        mode = int(node.value, 8)
    elif node.tag == INT and _OCTAL_INT.match(node.value):
        mode = int(node.value, 8)
    elif node.tag == INT and _OCTAL_STR.match(node.value):
        return ctx.error(node, where, f"ambiguous mode {node.value}: YAML reads it as "
                         f"decimal; write an octal string such as \"0{node.value}\"")
    else:
        got = node.value if node.tag == INT else kind(node)
        return ctx.error(node, where, f"expected an octal mode such as \"0644\", got {got}")
    if mode > 0o7777:
        return ctx.error(node, where, f"mode {node.value} is larger than 07777")
    return mode


@typed({"type": "string", "minLength": 1})
def source_path(ctx: Ctx, node: Node, where: str) -> Any:
    """A host file: ``~/`` expanded, relative paths against the spec's directory.

    Returns ``(absolute path, text as written)``.
    """
    text = nonempty(ctx, node, where)
    if text is BAD:
        return BAD
    path = str(Path.home() / text[2:]) if text.startswith("~/") else text
    return os.path.abspath(os.path.join(ctx.base, path)), text


KERNEL: dict[str, Conv] = {
    "image": image_ref,
    "cmdline": string,
    "binary": string,
    "tar": string,
    "ucode": string,
}

IMAGE: dict[str, Conv] = {
    "name": container_name,
    "image": image_ref,
    **IMAGE_CONFIG,
}

FILE: dict[str, Conv] = {
    "path": file_path,
    "directory": boolean,
    "symlink": nonempty,
    "contents": string,
    "source": source_path,
    "metadata": one_of("yaml", "json"),
    "optional": boolean,
    "mode": file_mode,
    "uid": id_or_name,
    "gid": id_or_name,
}
_KINDS = ("directory", "symlink", "contents", "source", "metadata")


@dataclass(frozen=True)
class NamedVolume:
    """A volume and where its name was written (for duplicate-name errors)."""

    volume: Volume
    name_pos: Position


@dataclass(frozen=True)
class Named:
    """A container and where its name was written (for duplicate-name errors)."""

    container: Container
    name_pos: Position


@typed(object_schema(IMAGE, ("name", "image")))
def container(ctx: Ctx, node: Node, where: str) -> Any:
    got = fields(ctx, node, where, IMAGE, required=("name", "image"))
    if got is None or "name" not in got or "image" not in got:
        return BAD
    c = Container(
        name=got["name"].value,
        image=got["image"].value,
        command=tuple(got["command"].value) if "command" in got else None,
        env=tuple(got["env"].value) if "env" in got else None,
        extra=tuple((k, g.value) for k, g in got.items() if k in IMAGE_EXTRA),
        pos=position(ctx.file, node),
    )
    return Named(c, position(ctx.file, got["name"].node))


@typed(object_schema(FILE, ("path",)))
def file_entry(ctx: Ctx, node: Node, where: str) -> Any:
    got = fields(ctx, node, where, FILE, required=("path",))
    if got is None:
        return BAD
    kinds = [k for k in got if k in _KINDS and (k != "directory" or got[k].value)]
    if not kinds:
        if keys(node) & set(_KINDS) - set(got):
            return BAD  # a kind was given but was wrong: that is already reported
        return ctx.error(node, where, "a file needs one of contents, source, metadata, "
                         "symlink or directory: true")
    if len(kinds) > 1:
        return ctx.error(got[kinds[1]].key, where, f"{kinds[0]} and {kinds[1]} cannot be "
                         "given together")
    if "path" not in got:
        return BAD
    values = {k: g.value for k, g in got.items()}
    if "source" in values:
        values["source"], values["source_text"] = values["source"]
    return File(pos=position(ctx.file, node), **values)


VOLUME: dict[str, Conv] = {
    "name": volume_name,
    "image": image_ref,
    "readonly": boolean,
    "format": one_of("oci", "filesystem"),
    "platforms": strings,
}


@typed(object_schema(VOLUME, ("name",)))
def volume(ctx: Ctx, node: Node, where: str) -> Any:
    got = fields(ctx, node, where, VOLUME, required=("name",))
    if got is None or "name" not in got:
        return BAD
    if got.get("format") is not None and got["format"].value == "oci" and \
            got.get("image") is None:
        return ctx.error(got["format"].node, f"{where}.format", "format: oci needs an image "
                         "(its index is written into the volume as an OCI image layout)")
    values = {k: g.value for k, g in got.items()}
    if "platforms" in values:
        values["platforms"] = tuple(values["platforms"])
    return NamedVolume(Volume(pos=position(ctx.file, node), **values),
                       position(ctx.file, got["name"].node))


@typed(object_schema(KERNEL))
def kernel(ctx: Ctx, node: Node, where: str) -> Any:
    got = fields(ctx, node, where, KERNEL)
    return BAD if got is None else got


TOP: dict[str, Conv] = {
    "kernel": kernel,
    "init": list_of(image_ref),
    "onboot": list_of(container),
    "onshutdown": list_of(container),
    "services": list_of(container),
    "files": list_of(file_entry),
    "trust": TRUST,
    "volumes": list_of(volume),
}


@dataclass
class Part:
    """What one spec file contributes, before merging."""

    kernel: dict[str, Got] | None = None
    kernel_key: Node | None = None
    kernel_keys: set[str] = field(default_factory=set)  # written, valid or not
    init: list[ImageRef] = field(default_factory=list)
    onboot: list[Named] = field(default_factory=list)
    onshutdown: list[Named] = field(default_factory=list)
    services: list[Named] = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    volumes: list[NamedVolume] = field(default_factory=list)


def load_part(ctx: Ctx, root: MappingNode) -> Part:
    got = fields(ctx, root, "", TOP)
    assert got is not None  # the root is a mapping
    part = Part()
    if "kernel" in got:
        part.kernel, part.kernel_key = got["kernel"].value, got["kernel"].key
        part.kernel_keys = keys(got["kernel"].node)
    for key in ("init", "onboot", "onshutdown", "services", "files", "volumes"):
        if key in got:
            setattr(part, key, got[key].value)
    if "trust" in got:
        ctx.warn(got["trust"].key, "trust", "ignored: linuxkit no longer uses Docker Content "
                 "Trust; pin images by digest (lock file) instead")
    return part
