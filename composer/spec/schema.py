"""Declarative checking of YAML nodes: small converters composed into key tables.

A *converter* is ``conv(ctx, node, where) -> value``: it checks one node and returns plain
Python data, or records a problem (with the node's position and the dotted ``where`` path,
e.g. ``services[1].env[0]``) and returns :data:`BAD`. Containers drop BAD children and carry
on, so one pass reports every problem. An object is a ``{key: converter}`` table checked by
:func:`fields`; unknown keys get a "did you mean" suggestion.

Every converter also carries the JSON Schema fragment it accepts (``conv.json``), so the shipped
``docs/schema.json`` is *generated* from these tables (:mod:`composer.spec.jsonschema`) and cannot
drift from what the loader accepts. The JSON Schema can only say "a string"; the converters also
check meaning (capability names, rlimits, bind syntax, device modes...), as linuxkit does late in
``ConfigToOCI``, but here, at load time, with a position.

The image-object table mirrors linuxkit's JSON schema (``src/cmd/linuxkit/moby/schema.go``);
extending the accepted spec means adding rows here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from composer.errors import Position
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


@dataclass(frozen=True)
class NameRef:
    """A name that only the merged spec can check: a container name used as a uid/gid, or a
    volume used as a bind source. ``readonly`` is whether a volume bind is read-only."""

    kind: str  # "id" or "volume"
    name: str
    pos: Position
    where: str
    readonly: bool = False


@dataclass
class Ctx:
    """Per-file state: the name used in positions, the file's directory, problems found."""

    file: str
    base: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    refs: list[NameRef] = field(default_factory=list)

    def error(self, node: Node, where: str, message: str) -> Any:
        self.problems.append((position(self.file, node), f"{where}: {message}" if where
                              else message))
        return BAD

    def warn(self, node: Node, where: str, message: str) -> None:
        self.warnings.append((position(self.file, node), f"{where}: {message}" if where
                              else message))

    def ref(self, kind_: str, name: str, node: Node, where: str, readonly: bool = False) -> None:
        self.refs.append(NameRef(kind_, name, position(self.file, node), where, readonly))


Conv = Callable[[Ctx, Node, str], Any]
_construct = SafeConstructor()


def typed(schema: dict) -> Callable[[Conv], Conv]:
    """Attach the JSON Schema fragment a converter accepts."""
    def wrap(conv: Conv) -> Conv:
        conv.json = schema  # type: ignore[attr-defined]
        return conv
    return wrap


def _scalar(node: Node, *tags: str) -> TypeGuard[ScalarNode]:
    return isinstance(node, ScalarNode) and node.tag in tags


# ---- scalars --------------------------------------------------------------------------------

@typed({"type": "string"})
def string(ctx: Ctx, node: Node, where: str) -> Any:
    if _scalar(node, STR, VALUE):
        return node.value
    hint = " (quote it)" if isinstance(node, ScalarNode) and node.tag != NULL else ""
    return ctx.error(node, where, f"expected a string, got {kind(node)}{hint}")


@typed({"type": "string", "minLength": 1})
def nonempty(ctx: Ctx, node: Node, where: str) -> Any:
    value = string(ctx, node, where)
    if value == "":
        return ctx.error(node, where, "must not be empty")
    return value


@typed({"type": "string", "pattern": "^/"})
def abspath(ctx: Ctx, node: Node, where: str) -> Any:
    value = string(ctx, node, where)
    if value is not BAD and not value.startswith("/"):
        return ctx.error(node, where, f"must be an absolute path, got {value!r}")
    return value


@typed({"type": "boolean"})
def boolean(ctx: Ctx, node: Node, where: str) -> Any:
    if _scalar(node, BOOL):
        return _construct.construct_yaml_bool(node)
    return ctx.error(node, where, f"expected true or false, got {kind(node)}")


@typed({"type": "integer"})
def integer(ctx: Ctx, node: Node, where: str) -> Any:
    if _scalar(node, INT):
        return _construct.construct_yaml_int(node)
    return ctx.error(node, where, f"expected an integer, got {kind(node)}")


def int_range(low: int, high: int) -> Conv:
    @typed({"type": "integer", "minimum": low, "maximum": high})
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        value = integer(ctx, node, where)
        if value is not BAD and not low <= value <= high:
            return ctx.error(node, where, f"{value} is out of range ({low} to {high})")
        return value
    return check


uint16 = int_range(0, (1 << 16) - 1)
uint32 = int_range(0, (1 << 32) - 1)
uint64 = int_range(0, (1 << 64) - 1)
int64 = int_range(-(1 << 63), (1 << 63) - 1)


def one_of(*choices: str) -> Conv:
    @typed({"enum": list(choices)})
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        value = string(ctx, node, where)
        if value is not BAD and value not in choices:
            return ctx.error(node, where, f"must be one of {', '.join(choices)}; got {value!r}")
        return value
    return check


# ---- containers -----------------------------------------------------------------------------

def list_of(conv: Conv) -> Conv:
    @typed({"type": "array", "items": conv.json})  # type: ignore[attr-defined]
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        if not isinstance(node, SequenceNode):
            return ctx.error(node, where, f"expected a list, got {kind(node)}")
        out = [conv(ctx, item, f"{where}[{i}]") for i, item in enumerate(node.value)]
        return [v for v in out if v is not BAD]
    return check


strings = list_of(string)


@typed({"type": "object", "additionalProperties": {"type": "string"}})
def mapstring(ctx: Ctx, node: Node, where: str) -> Any:
    """A mapping of arbitrary string keys to string values (sysctl, annotations)."""
    if not isinstance(node, MappingNode):
        return ctx.error(node, where, f"expected a mapping, got {kind(node)}")
    out = {}
    for key, value in pairs(node):
        if key.value == "":
            ctx.error(key, where, "keys must not be empty")
            continue
        v = string(ctx, value, f"{where}.{key.value}")
        if v is not BAD:
            out[key.value] = v
    return out


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


def object_schema(table: dict[str, Conv], required: tuple[str, ...] = ()) -> dict:
    schema: dict = {"type": "object", "additionalProperties": False,
                    "properties": {k: c.json for k, c in table.items()}}  # type: ignore[attr-defined]
    if required:
        schema["required"] = list(required)
    return schema


def obj(table: dict[str, Conv], required: tuple[str, ...] = (),
        then: Callable[[Ctx, Node, str, dict[str, Got]], Any] | None = None) -> Conv:
    """A converter for a nested object: a plain dict in YAML key order.

    ``then(ctx, node, where, got)`` checks the object as a whole (keys that depend on each other)
    and returns the value or BAD.
    """
    @typed(object_schema(table, required))
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        got = fields(ctx, node, where, table, required)
        if got is None:
            return BAD
        if then is not None:
            return then(ctx, node, where, got)
        return {k: g.value for k, g in got.items()}
    check.table = table  # type: ignore[attr-defined]
    return check


# ---- meaning checks -------------------------------------------------------------------------

#: Capabilities linuxkit knows (``capability.ListKnown()`` of moby/sys/capability, in number
#: order): ``all`` expands to this list, and nothing else is accepted.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
_CAPS = frozenset(CAPABILITIES)


@typed({"type": "array", "items": {"type": "string"}})
def capability_list(ctx: Ctx, node: Node, where: str) -> Any:
    """``CAP_*`` names, or exactly one ``all``/``none`` (any case), as linuxkit accepts them."""
    if not isinstance(node, SequenceNode):
        return ctx.error(node, where, f"expected a list, got {kind(node)}")
    values, ok = [], True
    for i, item in enumerate(node.value):
        value = string(ctx, item, f"{where}[{i}]")
        if value is BAD:
            ok = False
            continue
        values.append(value)
        if value.lower() in ("all", "none"):
            if len(node.value) != 1:
                ok = False
                ctx.error(item, f"{where}[{i}]", f"{value!r} must be the only entry")
        elif value not in _CAPS:
            ok = False
            guess = value.upper() if value.upper().startswith("CAP_") else "CAP_" + value.upper()
            hint = f" (did you mean {guess!r}?)" if guess in _CAPS else suggest(
                value, list(CAPABILITIES))
            ctx.error(item, f"{where}[{i}]", f"unknown capability {value!r}{hint}")
    return values if ok else BAD


RLIMITS = ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
           "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
           "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
           "RLIMIT_RTPRIO", "RLIMIT_RTTIME")
UNLIMITED = (1 << 64) - 1


def parse_rlimit(text: str) -> tuple[str, int, int]:
    """``"nofile,1024,unlimited"`` -> ("RLIMIT_NOFILE", 1024, 2**64-1); raises ValueError."""
    parts = text.split(",", 2)
    if len(parts) != 3:
        raise ValueError(f"expected TYPE,SOFT,HARD (e.g. nofile,1024,4096), got {text!r}")
    name = parts[0].strip().upper()
    if not name.startswith("RLIMIT_"):
        name = "RLIMIT_" + name
    if name not in RLIMITS:
        raise ValueError(f"unknown limit {parts[0].strip()!r}" + suggest(name, list(RLIMITS)))
    values = []
    for part in parts[1:]:
        part = part.strip()
        if part.lower() == "unlimited":
            values.append(UNLIMITED)
        elif part.isdigit() and int(part) <= UNLIMITED:
            values.append(int(part))
        else:
            raise ValueError(f"limit {part!r} is not a number from 0 to {UNLIMITED} "
                             "or 'unlimited'")
    return name, values[0], values[1]


@typed({"type": "string", "pattern": "^[^,]+,[^,]+,[^,]+$"})
def rlimit(ctx: Ctx, node: Node, where: str) -> Any:
    value = string(ctx, node, where)
    if value is BAD:
        return BAD
    try:
        parse_rlimit(value)
    except ValueError as exc:
        return ctx.error(node, where, str(exc))
    return value


def _options_readonly(options: list[str]) -> bool:
    """Whether mount options end up read-only (a later rw/ro overrides an earlier one)."""
    state = False
    for opt in options:
        if opt in ("ro", "rw"):
            state = opt == "ro"
    return state


@typed({"type": "string", "pattern": "^[^:]*:[^:]+(:[^:]+)?$"})
def bind(ctx: Ctx, node: Node, where: str) -> Any:
    """``SRC:DEST[:OPT,OPT]``; a SRC not starting with ``/`` names a volume."""
    value = string(ctx, node, where)
    if value is BAD:
        return BAD
    parts = value.split(":")
    if len(parts) < 2:
        return ctx.error(node, where, f"expected SOURCE:DESTINATION[:OPTIONS], got {value!r} "
                         "(missing ':')")
    if len(parts) > 3:
        return ctx.error(node, where, f"expected SOURCE:DESTINATION[:OPTIONS], got {value!r} "
                         "(too many ':')")
    if not parts[1]:
        return ctx.error(node, where, f"{value!r} has an empty destination")
    if len(parts) == 3 and not all(parts[2].split(",")):
        return ctx.error(node, where, f"{value!r} has an empty mount option")
    if not parts[0].startswith("/"):
        opts = parts[2].split(",") if len(parts) == 3 else []
        ctx.ref("volume", parts[0], node, where, _options_readonly(opts))
    return value


@typed({"type": "string", "pattern": "^[^:]+(:[^:]+)?$"})
def tmpfs(ctx: Ctx, node: Node, where: str) -> Any:
    """``DEST[:OPT,OPT]``."""
    value = string(ctx, node, where)
    if value is BAD:
        return BAD
    parts = value.split(":")
    if len(parts) > 2:
        return ctx.error(node, where, f"expected DESTINATION[:OPTIONS], got {value!r} "
                         "(too many ':')")
    if not parts[0]:
        return ctx.error(node, where, f"{value!r} has an empty destination")
    if len(parts) == 2 and not all(parts[1].split(",")):
        return ctx.error(node, where, f"{value!r} has an empty mount option")
    return value


def namespace(*specials: str) -> Conv:
    """``host`` (the default; ``root`` is a synonym), ``new``, or a namespace file to join."""
    choices = ("host", "root", "new", *specials)

    @typed({"anyOf": [{"enum": list(choices)}, {"type": "string", "pattern": "^/"}]})
    def check(ctx: Ctx, node: Node, where: str) -> Any:
        value = string(ctx, node, where)
        if value is not BAD and value not in choices and not value.startswith("/"):
            return ctx.error(node, where, f"must be {', '.join(choices)} or the absolute path "
                             f"of a namespace to join; got {value!r}")
        return value
    return check


@typed({"anyOf": [{"type": "integer", "minimum": 0, "maximum": (1 << 32) - 1},
                  {"type": "string"}]})
def id_or_name(ctx: Ctx, node: Node, where: str) -> Any:
    """A uid/gid: a number, ``root``/``""`` (0), or the name of a container whose id to use
    (containers get ids 100, 101, ... in onboot, onshutdown, services order)."""
    if _scalar(node, INT):
        return uint32(ctx, node, where)
    if _scalar(node, STR, VALUE):
        if node.value not in ("", "root"):
            ctx.ref("id", node.value, node, where)
        return node.value
    return ctx.error(node, where, f"expected a number or a container name, got {kind(node)}")


_OCTAL = re.compile(r"^0?[0-7]{1,4}$")


# ---- linuxkit's image object (moby/schema.go) -----------------------------------------------

_IDMAP = obj({"hostID": uint32, "containerID": uint32, "size": uint32})
_MOUNT_TABLE: dict[str, Conv] = {
    "destination": string, "type": string, "source": string, "options": strings,
    "uidmappings": list_of(_IDMAP), "gidmappings": list_of(_IDMAP)}

#: Mount types whose source names the type, so ``type:`` may be left out (linuxkit's rule).
MOUNT_TYPE_FROM_SOURCE = ("mqueue", "devpts", "proc", "sysfs", "cgroup")
DEFAULT_MOUNTPOINT = {"proc": "/proc", "devpts": "/dev/pts", "sysfs": "/sys",
                      "cgroup": "/sys/fs/cgroup", "mqueue": "/dev/mqueue"}


def mount_type(m: dict) -> str:
    """linuxkit's inference: the type, else the source if it names a type, else tmpfs for /dev."""
    tp = m.get("type") or ""
    if not tp and m.get("source", "") in MOUNT_TYPE_FROM_SOURCE:
        tp = m["source"]
    if not tp and m.get("destination") == "/dev":
        tp = "tmpfs"
    return tp


def _mount_then(ctx: Ctx, node: Node, where: str, got: dict[str, Got]) -> Any:
    if keys(node) - set(got):
        return BAD  # a key was unknown or wrong: already reported
    value = {k: g.value for k, g in got.items()}
    tp = mount_type(value)
    if not tp:
        return ctx.error(node, where, "mount needs a type (or a source of mqueue, devpts, proc, "
                         "sysfs or cgroup, or destination /dev)")
    if not value.get("destination") and tp not in DEFAULT_MOUNTPOINT:
        return ctx.error(node, where, f"mount of type {tp!r} needs a destination")
    source = value.get("source", "")
    if value.get("type") == "bind" and not source.startswith("/"):
        ctx.ref("volume", source, got["source"].node if "source" in got else node,
                f"{where}.source", _options_readonly(value.get("options", [])))
    return value


_MOUNT = obj(_MOUNT_TABLE, then=_mount_then)
#: ``runtime.mounts`` are handed to linuxkit's init as written: no type inference.
_RUNTIME_MOUNT = obj(_MOUNT_TABLE)


def _device_then(ctx: Ctx, node: Node, where: str, got: dict[str, Got]) -> Any:
    if keys(node) - set(got):
        return BAD  # a key was unknown or wrong: already reported
    value = {k: g.value for k, g in got.items()}
    missing = [k for k in ("path", "type") if k not in value]
    if missing:
        return ctx.error(node, where, f"missing required key {missing[0]!r}")
    if value["path"] == "all":
        if value["type"] not in ("a", "b", "c"):
            return ctx.error(got["type"].node, f"{where}.type", "with path 'all', type must be "
                             f"a (all), b (block) or c (char); got {value['type']!r}")
        return value
    if not value["path"].startswith("/"):
        return ctx.error(got["path"].node, f"{where}.path", "must be 'all' or an absolute "
                         f"path, got {value['path']!r}")
    if value["type"] not in ("b", "c", "u", "p"):
        return ctx.error(got["type"].node, f"{where}.type", "must be b (block), c (char), "
                         f"u (unbuffered char) or p (fifo); got {value['type']!r}")
    mode = value.get("mode")
    if mode is None:
        return ctx.error(node, where, "missing required key 'mode' (an octal string such as "
                         "\"0666\")")
    if not _OCTAL.match(mode):
        return ctx.error(got["mode"].node, f"{where}.mode", "expected an octal mode such as "
                         f"\"0666\", got {mode!r}")
    return value


_DEVICE = obj({"path": string, "type": string, "major": int64, "minor": int64,
               "mode": string}, then=_device_then)
_THROTTLE = obj({"major": int64, "minor": int64, "rate": uint64})
_RESOURCES = obj({
    "devices": list_of(obj({"allow": boolean, "type": one_of("a", "b", "c"), "major": int64,
                            "minor": int64, "access": string})),
    "memory": obj({"limit": int64, "reservation": int64, "swap": int64,
                   "kernel": int64, "kernelTCP": int64, "swappiness": uint64,
                   "disableOOMKiller": boolean}),
    "cpu": obj({"shares": uint64, "quota": int64, "period": uint64,
                "realtimeRuntime": int64, "realtimePeriod": uint64, "cpus": string,
                "mems": string}),
    "pids": obj({"limit": int64}),
    "blockio": obj({
        "weight": uint16, "leafWeight": uint16,
        "weightDevice": list_of(obj({"major": int64, "minor": int64, "weight": uint16,
                                     "leafWeight": uint16})),
        "throttleReadBpsDevice": list_of(_THROTTLE),
        "throttleWriteBpsDevice": list_of(_THROTTLE),
        "throttleReadIOPSDevice": list_of(_THROTTLE),
        "throttleWriteIOPSDevice": list_of(_THROTTLE)}),
    # linuxkit's schema says pageSize is an integer; OCI (and the kernel) want "2MB" etc.
    "hugepageLimits": list_of(obj({"pageSize": nonempty, "limit": uint64})),
    "network": obj({"classID": uint32,
                    "priorities": list_of(obj({"name": string, "priority": uint32}))}),
})
_BINDNS = obj({k: string for k in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")})
_RUNTIME = obj({
    "cgroups": strings, "mounts": list_of(_RUNTIME_MOUNT), "mkdir": strings,
    "interfaces": list_of(obj({"name": string, "add": string, "peer": string,
                               "createInRoot": boolean})),
    "bindNS": _BINDNS, "namespace": string,
})

PROPAGATION = ("shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate",
               "runbindable")


@typed({"type": "string", "pattern": "^[^=]+="})
def env_entry(ctx: Ctx, node: Node, where: str) -> Any:
    value = string(ctx, node, where)
    if value is not BAD and not re.match(r"^[^=]+=", value, re.DOTALL):
        return ctx.error(node, where, f"expected NAME=VALUE, got {value!r}")
    return value


#: The keys of linuxkit's ``ImageConfig``, in its struct order (the order ``metadata: yaml`` and
#: ``--dry-run`` print them in). All but name/image may also come from the image label.
IMAGE_CONFIG: dict[str, Conv] = {
    "capabilities": capability_list,
    "capabilities.add": capability_list,
    "ambient": capability_list,
    "mounts": list_of(_MOUNT),
    "binds": list_of(bind),
    "binds.add": list_of(bind),
    "devices": list_of(_DEVICE),
    "tmpfs": list_of(tmpfs),
    "command": strings,
    "env": list_of(env_entry),
    "cwd": abspath,
    "net": namespace("none"),
    "pid": namespace(),
    "ipc": namespace(),
    "uts": namespace(),
    "userns": namespace(),
    "hostname": string,
    "readonly": boolean,
    "maskedPaths": list_of(abspath),
    "readonlyPaths": list_of(abspath),
    "uid": id_or_name,
    "gid": id_or_name,
    "additionalGids": list_of(id_or_name),
    "noNewPrivileges": boolean,
    "oomScoreAdj": int_range(-1000, 1000),
    "rootfsPropagation": one_of(*PROPAGATION),
    "cgroupsPath": string,
    "resources": _RESOURCES,
    "sysctl": mapstring,
    "rlimits": list_of(rlimit),
    "uidMappings": list_of(_IDMAP),
    "gidMappings": list_of(_IDMAP),
    "annotations": mapstring,
    "runtime": _RUNTIME,
}

#: Container keys kept in ``Container.extra`` (all of ImageConfig but command and env).
IMAGE_EXTRA: dict[str, Conv] = {k: v for k, v in IMAGE_CONFIG.items()
                                if k not in ("command", "env")}

TRUST = obj({"image": strings, "org": strings})
