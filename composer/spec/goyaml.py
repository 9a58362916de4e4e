"""``files: metadata: yaml`` byte for byte as linuxkit writes it.

linuxkit decodes each spec file into its ``Moby`` Go struct (yaml.v3), appends them
(``AppendConfig``), spells images out (``UpdateImages``: ``util.ReferenceExpand``, no tag added;
volume images stay as written) and marshals the struct with ``gopkg.in/yaml.v2`` 2.4. So the
file holds the spec's own values (a path as written, ``mode`` as written, the kernel section
without defaults) in the struct's field order, with yaml.v2's rules: omitted empty fields
(``omitempty``), ``[]`` for nil lists, strings double-quoted when they would read back as
something else (``"-1"``, ``"0644"``, ``"true"``, ``""``), literal blocks for multi-line
strings, map keys sorted, lines folded at 80 columns. yaml.v2's emitter is a port of libyaml, as
PyYAML's is, so we build the event stream and let PyYAML's emitter write it.

:class:`Raw` trees (what :func:`raw` keeps of each spec file's YAML nodes) give the values as
written; types follow the Go struct's field (a string field takes a scalar's text whatever
it looks like).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from composer.oci.refs import linuxkit_name


@dataclass(frozen=True)
class Scalar:
    text: str
    plain: bool  # not quoted, not a block scalar: typed by resolution


Raw = Any  # Scalar | tuple[tuple[str, Raw], ...] (a mapping, as pairs) | list[Raw]


def raw(node: Node) -> Raw:
    """A composed YAML node as plain data that keeps each scalar's text (first of duplicate
    keys, as the loader reads them)."""
    if isinstance(node, ScalarNode):
        return Scalar(node.value, node.style is None)
    if isinstance(node, SequenceNode):
        return [raw(item) for item in node.value]
    assert isinstance(node, MappingNode)
    seen: set[str] = set()
    out = []
    for key, value in node.value:
        if isinstance(key, ScalarNode) and key.value not in seen:
            seen.add(key.value)
            out.append((key.value, raw(value)))
    return tuple(out)


# ---- yaml.v2's resolver: would this string read back as something else? -----------------

_RESOLVED = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
             "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
             "", "~", "null", "Null", "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF",
             "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", "<<"}
_GO_INT = re.compile(r"^[+-]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_FLOAT = re.compile(r"^[+-]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|"
                       r"[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
                        r"([Tt ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?"
                        r"(Z|[+-][0-9]{2}:[0-9]{2})?)?$")
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


def _not_a_string(s: str) -> bool:
    """yaml.v2 ``resolve("", s)`` gives something other than ``!!str`` (or base 60)."""
    if s in _RESOLVED or _BASE60.match(s):
        return True
    hint = s[0]
    if hint == ".":
        return bool(_GO_FLOAT.match(s))
    if hint.isdigit() or hint in "+-":
        if _TIMESTAMP.match(s):
            return True
        plain = s.replace("_", "")
        return bool(_GO_INT.match(plain) or _YAML_FLOAT.match(plain)
                    or re.match(r"^-?0b[01]+$", plain))
    return False


# ---- values by Go type -------------------------------------------------------------------

def _text(value: Raw) -> str:
    if isinstance(value, Scalar):
        return value.text
    return ""


def _typed(value: Raw) -> Any:
    """A scalar decoded into ``interface{}`` (yaml.v3): int, float, bool, null or string."""
    if not isinstance(value, Scalar):
        return value
    s = value.text
    if not value.plain:
        return s
    if s in ("", "~", "null", "Null", "NULL"):
        return None
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if re.match(r"^[-+]?[0-9]+$", s):
        return int(s)
    if re.match(r"^0[xX][0-9a-fA-F]+$", s):
        return int(s, 16)
    if re.match(r"^0o[0-7]+$", s):
        return int(s[2:], 8)
    if _YAML_FLOAT.match(s):
        return float(s)
    return s


def _is_null(value: Raw) -> bool:
    return isinstance(value, Scalar) and value.plain and value.text in ("", "~", "null",
                                                                         "Null", "NULL")


def _get(mapping: Raw, key: str) -> Raw | None:
    if isinstance(mapping, tuple):
        for k, v in mapping:
            if k == key:
                return v
    return None


# Go struct fields: (yaml key, kind, omitempty). Kinds: str, bool, int, any, strlist, anylist,
# strmap, and the names of the structs below; "*" before a kind marks a pointer (nil when
# absent or null; omitempty drops only nil).
MOUNT = [("destination", "str", False), ("type", "str", False), ("source", "str", False),
         ("options", "strlist", False), ("uidmappings", "idmaplist", False),
         ("gidmappings", "idmaplist", False)]
IDMAP = [("containerid", "int", False), ("hostid", "int", False), ("size", "int", False)]
DEVICE = [("path", "str", False), ("type", "str", False), ("major", "int", False),
          ("minor", "int", False), ("mode", "str", True)]
INTERFACE = [("name", "str", True), ("add", "str", True), ("peer", "str", True),
             ("createInRoot", "bool", False)]
NAMESPACES = [(k, "*str", True) for k in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")]
RUNTIME = [("cgroups", "*strlist", True), ("mounts", "*mountlist", True),
           ("mkdir", "*strlist", True), ("interfaces", "*interfacelist", True),
           ("bindNS", "namespaces", True), ("namespace", "*str", True)]
IMAGE_CONFIG = [
    ("capabilities", "*strlist", True), ("capabilities.add", "*strlist", True),
    ("ambient", "*strlist", True), ("mounts", "*mountlist", True), ("binds", "*strlist", True),
    ("binds.add", "*strlist", True), ("devices", "*devicelist", True),
    ("tmpfs", "*strlist", True), ("command", "*strlist", True), ("env", "*strlist", True),
    ("cwd", "str", True), ("net", "str", True), ("pid", "str", True), ("ipc", "str", True),
    ("uts", "str", True), ("userns", "str", True), ("hostname", "str", True),
    ("readonly", "*bool", True), ("maskedPaths", "*strlist", True),
    ("readonlyPaths", "*strlist", True), ("uid", "*any", True), ("gid", "*any", True),
    ("additionalGids", "*anylist", True), ("noNewPrivileges", "*bool", True),
    ("oomScoreAdj", "*int", True), ("rootfsPropagation", "*str", True),
    ("cgroupsPath", "*str", True), ("resources", "*raw", True), ("sysctl", "*strmap", True),
    ("rlimits", "*strlist", True), ("uidMappings", "*idmaplist", True),
    ("gidMappings", "*idmaplist", True), ("annotations", "*strmap", True),
    ("runtime", "*runtime", True)]
FILE = [("path", "str", False), ("directory", "bool", False), ("symlink", "str", True),
        ("contents", "*str", True), ("source", "str", True), ("metadata", "str", True),
        ("optional", "bool", False), ("mode", "str", True), ("uid", "any", True),
        ("gid", "any", True)]
VOLUME = [("name", "str", False), ("image", "str", True), ("readonly", "bool", True),
          ("format", "str", True), ("platforms", "strlist", True)]
STRUCTS = {"mount": MOUNT, "idmap": IDMAP, "device": DEVICE, "interface": INTERFACE,
           "namespaces": NAMESPACES, "runtime": RUNTIME}

_ABSENT = object()


def _convert(value: Raw, kind: str) -> Any:
    """A raw value as the Go field of ``kind`` holds it (``_ABSENT`` for a nil pointer)."""
    if kind.startswith("*"):
        if value is None or _is_null(value):
            return _ABSENT
        kind = kind[1:]
    if value is None:
        value = ()  # a zero value
    if kind == "str":
        return "" if _is_null(value) else _text(value)
    if kind == "bool":
        return _typed(value) is True
    if kind == "int":
        typed = _typed(value)
        return typed if isinstance(typed, int) and not isinstance(typed, bool) else 0
    if kind == "any":
        return None if value == () else _typed(value)
    if kind == "raw":
        return _plain(value)
    if kind.endswith("list"):
        item = kind[: -len("list")]
        items = value if isinstance(value, list) else []
        if item == "str":
            return [_convert(v, "str") for v in items]
        if item == "any":
            return [_typed(v) for v in items]
        return [_convert(v, item) for v in items]
    if kind == "strmap":
        pairs = value if isinstance(value, tuple) else ()
        return {k: _text(v) for k, v in pairs}
    return _struct(value, STRUCTS[kind])


def _plain(value: Raw) -> Any:
    if isinstance(value, Scalar):
        return _typed(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return {k: _plain(v) for k, v in value}


def _is_zero(value: Any) -> bool:
    if value is _ABSENT or value is None:
        return True
    if isinstance(value, dict) and getattr(value, "is_struct", False):
        return all(_is_zero(v) for v in value.values())
    if isinstance(value, str | list | dict):
        return len(value) == 0
    return value is False or value == 0


class _Struct(dict):
    """A converted Go struct: its fields in order (omitempty ones already dropped)."""

    is_struct = True


def _struct(value: Raw, fields: list[tuple[str, str, bool]]) -> _Struct:
    out = _Struct()
    for key, kind, omitempty in fields:
        converted = _convert(_get(value, key), kind)
        if converted is _ABSENT:
            continue  # a nil pointer: omitempty drops it, and only it
        if omitempty and not kind.startswith("*") and (
                converted is None if kind == "any" else _is_zero(converted)):
            continue
        out[key] = converted
    return out


# ---- the Moby document ---------------------------------------------------------------------

def moby_document(spec: Any) -> _Struct:
    """linuxkit's ``Moby`` value for ``spec`` (a :class:`composer.spec.model.Spec` with its
    ``raw`` documents), ready for :func:`marshal`."""
    docs = spec.raw
    kernel: dict[str, Any] = {"image": ""}
    for doc in docs:
        k = _get(doc, "kernel")
        if not isinstance(k, tuple):
            continue
        for key in ("image", "cmdline", "binary"):
            text = _convert(_get(k, key), "str")
            if text:
                kernel[key] = text
        for key in ("tar", "ucode"):
            got = _convert(_get(k, key), "*str")
            if got is not _ABSENT:
                kernel[key] = got
    if spec.kernel is not None:
        kernel["image"] = linuxkit_name(spec.kernel.image.text)
    kernel_out = _Struct(image=kernel["image"])
    for key in ("cmdline", "binary"):
        if kernel.get(key):
            kernel_out[key] = kernel[key]
    for key in ("tar", "ucode"):
        if key in kernel:
            kernel_out[key] = kernel[key]
    out = _Struct(kernel=kernel_out, init=[linuxkit_name(r.text) for r in spec.init])
    for section in ("onboot", "onshutdown", "services"):
        raws = [item for doc in docs for item in _list(_get(doc, section))]
        images = []
        for item, container in zip(raws, getattr(spec, section), strict=False):
            entry = _Struct(name=container.name, image=linuxkit_name(container.image.text))
            entry.update(_struct(item, IMAGE_CONFIG))
            images.append(entry)
        out[section] = images
    out["files"] = [_struct(item, FILE) for doc in docs for item in _list(_get(doc, "files"))]
    volumes = []
    raw_volumes = [item for doc in docs for item in _list(_get(doc, "volumes"))]
    for item, volume in zip(raw_volumes, spec.volumes, strict=False):
        entry = _struct(item, VOLUME)
        if volume.image is not None:  # as written (no UpdateImages), @pkg: expanded
            entry = _Struct({"name": entry["name"], "image": volume.image.text,
                             **{k: v for k, v in entry.items() if k not in ("name", "image")}})
        volumes.append(entry)
    out["volumes"] = volumes
    return out


def _list(value: Raw | None) -> list[Raw]:
    return value if isinstance(value, list) else []


# ---- yaml.v2's marshalling, through PyYAML's emitter ----------------------------------------

def _key_order(key: str) -> list[Any]:
    """yaml.v2's ``keyList.Less`` for string keys: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.findall(r"\d+|\D+", key)]


def _scalar(text: str) -> yaml.ScalarEvent:
    if "\n" in text:
        style: str | None = "|"
    elif _not_a_string(text):
        style = '"'
    else:
        style = None
    return yaml.ScalarEvent(None, None, (True, True), text, style=style)


def _events(value: Any) -> Iterator[yaml.Event]:
    if isinstance(value, dict):
        items = value.items() if getattr(value, "is_struct", False) else sorted(
            value.items(), key=lambda kv: _key_order(kv[0]))
        yield yaml.MappingStartEvent(None, None, True, flow_style=not value)
        for key, item in items:
            yield _scalar(key)
            yield from _events(item)
        yield yaml.MappingEndEvent()
    elif isinstance(value, list):
        yield yaml.SequenceStartEvent(None, None, True, flow_style=not value)
        for item in value:
            yield from _events(item)
        yield yaml.SequenceEndEvent()
    elif isinstance(value, str):
        yield _scalar(value)
    elif value is None:
        yield yaml.ScalarEvent(None, None, (True, True), "null")
    elif isinstance(value, bool):
        yield yaml.ScalarEvent(None, None, (True, True), "true" if value else "false")
    elif isinstance(value, float):
        text = (".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
                if math.isinf(value) else repr(value))
        yield yaml.ScalarEvent(None, None, (True, True), text)
    else:
        yield yaml.ScalarEvent(None, None, (True, True), str(value))


def marshal(value: Any) -> bytes:
    """``yaml.Marshal`` (gopkg.in/yaml.v2) of a converted value."""
    events = [yaml.StreamStartEvent(encoding=None), yaml.DocumentStartEvent(explicit=False),
              *_events(value), yaml.DocumentEndEvent(explicit=False), yaml.StreamEndEvent()]
    return yaml.emit(events, allow_unicode=True, width=80, indent=2).encode("utf-8")


def linuxkit_yaml(spec: Any) -> bytes:
    """The bytes of linuxkit's ``metadata: yaml`` file for ``spec``."""
    return marshal(moby_document(spec))
