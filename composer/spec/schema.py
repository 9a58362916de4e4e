"""Declarative checking of YAML nodes: small converters composed into key tables.

A *converter* is ``conv(ctx, node, where) -> value``: it checks one node and returns plain
Python data, or records a problem (with the node's position and the dotted ``where`` path,
e.g. ``services[1].env[0]``) and returns :data:`BAD`. Containers drop BAD children and carry
on, so one pass reports every problem. An object is a ``{key: converter}`` table checked by
:func:`fields`; unknown keys get a "did you mean" suggestion.

The tables at the end mirror linuxkit's JSON schema (``src/cmd/linuxkit/moby/schema.go``) for
the container keys the bundle generator consumes; extending the accepted spec means adding
rows here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from composer.spec.yamlpos import (
    BOOL,
    INT,
    NULL,
    STR,
    VALUE,
    Problem,
    keys,
    kind,
    pairs,
    position,
)


class _Bad:
    def __repr__(self) -> str:
        return "BAD"


BAD: Any = _Bad()  # "this node was wrong; a problem has been recorded"


@dataclass
class Ctx:
    """Per-file state: the name used in positions, the file's directory, problems found."""

    file: str
    base: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, node: Node, where: str, message: str) -> Any:
        self.problems.append((position(self.file, node), f"{where}: {message}" if where
                              else message))
        return BAD

    def warn(self, node: Node, where: str, message: str) -> None:
        self.warnings.append((position(self.file, node), f"{where}: {message}" if where
                              else message))


Conv = Callable[[Ctx, Node, str], Any]
_construct = SafeConstructor()


def _scalar(node: Node, *tags: str) -> bool:
    return isinstance(node, ScalarNode) and node.tag in tags


def string(ctx: Ctx, node: Node, where: str) -> Any:
    if _scalar(node, STR, VALUE):
        return node.value
    hint = " (quote it)" if isinstance(node, ScalarNode) and node.tag != NULL else ""
    return ctx.error(node, where, f"expected a string, got {kind(node)}{hint}")


def nonempty(ctx: Ctx, node: Node, where: str) -> Any:
    value = string(ctx, node, where)
    if value == "":
        return ctx.error(node, where, "must not be empty")
    return value


def boolean(ctx: Ctx, node: Node, where: str) -> Any:
    if _scalar(node, BOOL):
        return _construct.construct_yaml_bool(node)
    return ctx.error(node, where, f"expected true or false, got {kind(node)}")


def integer(ctx: Ctx, node: Node, where: str) -> Any:
    if _scalar(node, INT):
        return _construct.construct_yaml_int(node)
    return ctx.error(node, where, f"expected an integer, got {kind(node)}")


def uint32(ctx: Ctx, node: Node, where: str) -> Any:
    value = integer(ctx, node, where)
    if value is not BAD and not 0 <= value < 1 << 32:
        return ctx.error(node, where, f"{value} is out of range (0 to {(1 << 32) - 1})")
    return value


def id_or_name(ctx: Ctx, node: Node, where: str) -> Any:
    """A uid/gid: a number, or (linuxkit) the name of a container whose id to use."""
    if _scalar(node, INT):
        return uint32(ctx, node, where)
    if _scalar(node, STR, VALUE):
        return node.value
    return ctx.error(node, where, f"expected a number or a container name, got {kind(node)}")


def list_of(conv: Conv) -> Conv:
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        if not isinstance(node, SequenceNode):
            return ctx.error(node, where, f"expected a list, got {kind(node)}")
        out = [conv(ctx, item, f"{where}[{i}]") for i, item in enumerate(node.value)]
        return [v for v in out if v is not BAD]
    return check


strings = list_of(string)


def mapstring(ctx: Ctx, node: Node, where: str) -> Any:
    """A mapping of arbitrary string keys to string values (sysctl, annotations)."""
    if not isinstance(node, MappingNode):
        return ctx.error(node, where, f"expected a mapping, got {kind(node)}")
    out = {}
    for key, value in pairs(node):
        v = string(ctx, value, f"{where}.{key.value}")
        if v is not BAD:
            out[key.value] = v
    return out


def one_of(*choices: str) -> Conv:
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        value = string(ctx, node, where)
        if value is not BAD and value not in choices:
            return ctx.error(node, where, f"must be one of {', '.join(choices)}; got {value!r}")
        return value
    return check


def unsupported(reason: str) -> Conv:
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        return ctx.error(node, where, reason)
    return check


def suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        close = [k for k in known if k.lower() == key.lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Got:
    """One checked key of an object: its value and the nodes, for positions."""

    value: Any
    key: ScalarNode
    node: Node


def fields(ctx: Ctx, node: Node, where: str, table: dict[str, Conv],
           required: tuple[str, ...] = (), what: str = "") -> dict[str, Got] | None:
    """Check a mapping against ``table``; return the good keys in YAML order.

    Unknown keys are errors at the key, with a suggestion; missing required keys are errors at
    the mapping. Returns None when ``node`` is not a mapping at all.
    """
    label = what or where
    if not isinstance(node, MappingNode):
        ctx.error(node, where, f"expected a mapping, got {kind(node)}")
        return None
    out: dict[str, Got] = {}
    for key, value in pairs(node):
        conv = table.get(key.value)
        if conv is None:
            prefix = f"{label}: unknown key" if label else "unknown top-level key"
            ctx.problems.append((position(ctx.file, key), f"{prefix} {key.value!r}"
                                 + suggest(key.value, list(table))))
            continue
        got = conv(ctx, value, f"{where}.{key.value}" if where else key.value)
        if got is not BAD:
            out[key.value] = Got(got, key, value)
    for name in required:
        if name not in keys(node):
            ctx.error(node, label, f"missing required key {name!r}")
    return out


def obj(table: dict[str, Conv], required: tuple[str, ...] = ()) -> Conv:
    """A converter for a nested object: a plain dict in YAML key order."""
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        got = fields(ctx, node, where, table, required)
        return BAD if got is None else {k: g.value for k, g in got.items()}
    return check


# ---- linuxkit's image object (moby/schema.go), minus name/image/command/env ----------------

_IDMAP = obj({"hostID": integer, "containerID": integer, "size": integer})
_MOUNT = obj({"destination": string, "type": string, "source": string, "options": strings,
              "uidmappings": list_of(_IDMAP), "gidmappings": list_of(_IDMAP)})
_DEVICE = obj({"path": string, "type": string, "major": integer, "minor": integer,
               "mode": string})
_THROTTLE = obj({"major": integer, "minor": integer, "rate": integer})
_RESOURCES = obj({
    "devices": list_of(obj({"allow": boolean, "type": string, "major": integer,
                            "minor": integer, "access": string})),
    "memory": obj({"limit": integer, "reservation": integer, "swap": integer,
                   "kernel": integer, "kernelTCP": integer, "swappiness": integer,
                   "disableOOMKiller": boolean}),
    "cpu": obj({"shares": integer, "quota": integer, "period": integer,
                "realtimeRuntime": integer, "realtimePeriod": integer, "cpus": string,
                "mems": string}),
    "pids": obj({"limit": integer}),
    "blockio": obj({
        "weight": integer, "leafWeight": integer,
        "weightDevice": list_of(obj({"major": integer, "minor": integer, "weight": integer,
                                     "leafWeight": integer})),
        "throttleReadBpsDevice": list_of(_THROTTLE),
        "throttleWriteBpsDevice": list_of(_THROTTLE),
        "throttleReadIOPSDevice": list_of(_THROTTLE),
        "throttleWriteIOPSDevice": list_of(_THROTTLE)}),
    "hugepageLimits": list_of(obj({"pageSize": integer, "limit": integer})),
    "network": obj({"classID": integer,
                    "priorities": list_of(obj({"name": string, "priority": integer}))}),
})
_NAMESPACES = obj({k: string for k in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")})
_RUNTIME = obj({
    "cgroups": strings, "mounts": list_of(_MOUNT), "mkdir": strings,
    "interfaces": list_of(obj({"name": string, "add": string, "peer": string,
                               "createInRoot": boolean})),
    "bindNS": _NAMESPACES, "namespace": string,
})

#: Container keys kept in ``Container.extra`` (plain data, YAML order), with their checks.
IMAGE_EXTRA: dict[str, Conv] = {
    "capabilities": strings,
    "capabilities.add": strings,
    "ambient": strings,
    "mounts": list_of(_MOUNT),
    "binds": strings,
    "binds.add": strings,
    "devices": list_of(_DEVICE),
    "tmpfs": strings,
    "cwd": string,
    "net": string,
    "pid": string,
    "ipc": string,
    "uts": string,
    "userns": string,
    "readonly": boolean,
    "maskedPaths": strings,
    "readonlyPaths": strings,
    "uid": id_or_name,
    "gid": id_or_name,
    "additionalGids": list_of(id_or_name),
    "noNewPrivileges": boolean,
    "hostname": string,
    "oomScoreAdj": integer,
    "rootfsPropagation": string,
    "cgroupsPath": string,
    "resources": _RESOURCES,
    "sysctl": mapstring,
    "rlimits": strings,
    "uidMappings": list_of(_IDMAP),
    "gidMappings": list_of(_IDMAP),
    "annotations": mapstring,
    "runtime": _RUNTIME,
}

TRUST = obj({"image": strings, "org": strings})
