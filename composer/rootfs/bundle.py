"""OCI runtime bundles for onboot/onshutdown/services containers, with linuxkit's semantics.

This is linuxkit's ``ConfigToOCI`` (``src/cmd/linuxkit/moby/config.go``), rule for rule:

- **Precedence.** Each field comes from the spec's YAML, else the image label
  ``org.mobyproject.config``, else a default; ``command``/``env``/``cwd`` fall back to the image
  config (Entrypoint+Cmd, Env, WorkingDir). Two keys append instead of replacing: the YAML's
  ``binds.add`` and ``capabilities.add`` go after the label's ``binds``/``capabilities`` (unless
  the YAML sets ``binds``/``capabilities`` itself, which then wins outright; a label's own
  ``*.add`` keys are ignored, as in linuxkit). Nothing is de-duplicated.
- **Mounts.** Docker's defaults (``/proc``, ``/dev``, ``/dev/pts``, ``/sys``, ``/sys/fs/cgroup``;
  ``readonly`` adds ``ro`` to ``/dev`` and ``/sys``), then ``tmpfs``, ``binds``, ``mounts``, each
  replacing an earlier mount at the same destination; the list is sorted by destination.
- **Namespaces.** net, ipc, uts and user are shared with the host unless asked (``new``, or a
  path to join); pid is new unless ``host``; mount is always new. Order: network, ipc, uts,
  pid, user, mount.
- **Capabilities.** ``all``/``none`` expand; bounding = permitted = inheritable = the sorted set
  of capabilities and ambient ones; effective = the capabilities as listed.
- **JSON.** Keys Go would omit (``omitempty``) are omitted, so the set of keys matches linuxkit's
  ``config.json``; serialised by :func:`composer.canonjson.pretty` (sorted keys, 4-space indent,
  trailing newline) where linuxkit uses Go's struct order.

Where linuxkit is wrong we are right, and say so in ``docs/yaml.md``: camelCase keys inside
``resources``, ``uidMappings`` and ``gidMappings`` are honoured (linuxkit's YAML decoder silently
drops them), mounts keep their ``uidmappings``/``gidmappings``, and a volume named as the source
of a ``type: bind`` mount is replaced by its path (linuxkit forgets to).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from composer.errors import ComposerError, Position
from composer.spec.model import Container, resolve_id
from composer.spec.schema import (
    CAPABILITIES,
    DEFAULT_MOUNTPOINT,
    IMAGE_CONFIG,
    Ctx,
    fields,
    mount_type,
    parse_rlimit,
)
from composer.spec.yamlpos import compose

OCI_VERSION = "1.2.1"  # the runtime-spec version linuxkit vendors
LABEL = "org.mobyproject.config"
VOLUMES_DIR = "containers/volumes"


def volume_dir(name: str) -> str:
    return f"{VOLUMES_DIR}/{name}"


@dataclass(frozen=True)
class Bundle:
    """What one container's bundle needs: ``config.json`` as data, linuxkit's ``Runtime`` (before
    the rootfs mounts are prepended), and whether the root is read-only."""

    config: dict
    runtime: dict
    readonly: bool


# ---- the label ------------------------------------------------------------------------------

def image_label(image_config: dict, what: str) -> dict:
    """The ``org.mobyproject.config`` label, checked against the same rules as the YAML.

    A label is JSON (``linuxkit pkg build`` writes it from ``build.yml``'s ``config:``) or YAML;
    ``name`` and ``image`` are not allowed in it.
    """
    labels = (image_config.get("config") or {}).get("Labels") or {}
    raw = labels.get(LABEL)
    if not raw:
        return {}
    file = f"{LABEL} label"
    root, problems = compose(raw, file) if isinstance(raw, str) else (None, [])
    got = None
    ctx = Ctx(file, base=None)  # type: ignore[arg-type]  # labels name no host files
    if root is not None:
        got = fields(ctx, root, "", IMAGE_CONFIG, what="label")
        problems = problems + ctx.problems
    if got is None and not problems:
        problems = [(None, "must be a mapping of linuxkit image keys")]
    if problems:
        details = "; ".join(f"{_where(pos)}{msg}" for pos, msg in problems)
        raise ComposerError(f"{what}: invalid {LABEL} label: {details}")
    return {key: g.value for key, g in (got or {}).items()}


def _where(pos: Position | None) -> str:
    return f"line {pos.line} col {pos.col}: " if pos else ""


# ---- helpers for linuxkit's assign* rules ---------------------------------------------------

def _assign(key: str, yaml: dict, label: dict, default: Any = None) -> Any:
    """The YAML's value if it sets the key, else the label's, else ``default``."""
    if key in yaml:
        return yaml[key]
    if key in label:
        return label[key]
    return default


def _assign_nonempty(key: str, yaml: dict, label: dict, default: str = "") -> str:
    """For linuxkit's plain string fields, where an empty string means "not set"."""
    return yaml.get(key) or label.get(key) or default


def _merge(base: list | None, add: list | None) -> list:
    """linuxkit's ``mergeStrings``: concatenation (it means to de-duplicate but never does)."""
    return [*(base or []), *(add or [])]


def _special_caps(caps: list[str], what: str, key: str) -> list[str]:
    if len(caps) == 1 and caps[0].lower() == "none":
        return []
    if len(caps) == 1 and caps[0].lower() == "all":
        return list(CAPABILITIES)
    for cap in caps:
        if cap not in CAPABILITIES:
            raise ComposerError(f"{what}: {key}: unknown capability {cap!r} (all and none "
                                "must be the only entry of the merged list)")
    return caps


def _idmap(m: dict) -> dict:
    return {"containerID": m.get("containerID", 0), "hostID": m.get("hostID", 0),
            "size": m.get("size", 0)}


def _mount_json(m: dict) -> dict:
    """A ``specs.Mount`` as Go marshals it (type/source/options/mappings only when set)."""
    out: dict[str, Any] = {"destination": m.get("destination", "")}
    for key in ("type", "source"):
        if m.get(key):
            out[key] = m[key]
    if m.get("options"):
        out["options"] = list(m["options"])
    for ours, oci in (("uidmappings", "uidMappings"), ("gidmappings", "gidMappings")):
        if m.get(ours):
            out[oci] = [_idmap(x) for x in m[ours]]
    return out


def _volume_source(source: str) -> str:
    """A bind source that does not start with ``/`` names a volume: its merged directory."""
    return source if source.startswith("/") else f"/{volume_dir(source)}/merged"


def _volume_binds(binds: list[str] | None) -> list[str] | None:
    if binds is None:
        return None
    out = []
    for b in binds:
        src, _, rest = b.partition(":")
        out.append(f"{_volume_source(src)}:{rest}")
    return out


# ---- config.json ----------------------------------------------------------------------------

def _default_mounts(readonly: bool) -> dict[str, dict]:
    ro = ["ro"] if readonly else []
    return {
        "/proc": {"destination": "/proc", "type": "proc", "source": "proc",
                  "options": ["nosuid", "nodev", "noexec", "relatime"]},
        "/dev": {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k", *ro]},
        "/dev/pts": {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                 "mode=0620"]},
        "/sys": {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", *ro]},
        "/sys/fs/cgroup": {"destination": "/sys/fs/cgroup", "type": "cgroup",
                           "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    }


def _mounts(yaml: dict, label: dict, readonly: bool) -> list[dict]:
    mounts = _default_mounts(readonly)
    for t in _assign("tmpfs", yaml, label, []):
        dest, sep, opts = t.partition(":")
        mount: dict[str, Any] = {"destination": dest, "type": "tmpfs", "source": "tmpfs"}
        if sep:
            mount["options"] = opts.split(",")
        mounts[dest] = mount
    binds = yaml.get("binds")
    if binds is None:
        binds = _merge(label.get("binds"), yaml.get("binds.add"))
    for b in binds:
        parts = b.split(":")
        src, dest = parts[0], parts[1]
        opts = [*parts[2].split(","), "rbind"] if len(parts) == 3 else ["rw", "rbind",
                                                                        "rshared"]
        mounts[dest] = {"destination": dest, "type": "bind", "source": src, "options": opts}
    for m in _assign("mounts", yaml, label, []):
        tp = mount_type(m)
        dest = m.get("destination") or DEFAULT_MOUNTPOINT.get(tp, "")
        mounts[dest] = _mount_json({**m, "type": tp, "source": m.get("source") or tp,
                                    "destination": dest})
    return [mounts[dest] for dest in sorted(mounts)]


def _namespaces(yaml: dict, label: dict) -> list[dict]:
    out: list[dict] = []
    for oci, key, default in (("network", "net", "root"), ("ipc", "ipc", "root"),
                              ("uts", "uts", "root"), ("pid", "pid", ""),
                              ("user", "userns", "root")):
        value = _assign_nonempty(key, yaml, label, default)
        if value in ("host", "root"):
            continue
        ns: dict[str, str] = {"type": oci}
        if value not in ("new", "none", ""):
            ns["path"] = value
        out.append(ns)
    out.append({"type": "mount"})
    return out


def _capabilities(yaml: dict, label: dict, what: str) -> dict:
    caps = yaml["capabilities"] if "capabilities" in yaml else _merge(
        label.get("capabilities"), yaml.get("capabilities.add"))
    caps = _special_caps(list(caps), what, "capabilities")
    ambient = _special_caps(list(_assign("ambient", yaml, label, [])), what, "ambient")
    bounding = sorted(set(caps) | set(ambient))
    out: dict[str, list[str]] = {}
    for key, value in (("bounding", bounding), ("effective", caps),
                       ("inheritable", bounding), ("permitted", bounding),
                       ("ambient", ambient)):
        if value:
            out[key] = value
    return out


def _id(value: int | str, ids: dict[str, int], what: str) -> int:
    try:
        return resolve_id(value, ids)
    except KeyError:
        raise ComposerError(f"{what}: cannot find id {value!r}: no container of that "
                            "name") from None


def _resources(value: dict) -> dict:
    """Our (linuxkit schema) resources as OCI ``LinuxResources`` JSON, Go's defaults filled."""
    out: dict[str, Any] = {}
    if value.get("devices"):
        out["devices"] = [{"allow": d.get("allow", False),
                           **{k: d[k] for k in ("type", "major", "minor", "access") if k in d}}
                          for d in value["devices"]]
    for key in ("memory", "cpu"):
        if key in value:
            out[key] = dict(value[key])
    if "pids" in value:
        out["pids"] = {"limit": value["pids"].get("limit", 0)}
    if "blockio" in value:
        b = value["blockio"]
        blockio: dict[str, Any] = {k: b[k] for k in ("weight", "leafWeight") if k in b}
        if b.get("weightDevice"):
            blockio["weightDevice"] = [
                {"major": d.get("major", 0), "minor": d.get("minor", 0),
                 **{k: d[k] for k in ("weight", "leafWeight") if k in d}}
                for d in b["weightDevice"]]
        for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                    "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
            if b.get(key):
                blockio[key] = [{"major": d.get("major", 0), "minor": d.get("minor", 0),
                                 "rate": d.get("rate", 0)} for d in b[key]]
        out["blockIO"] = blockio
    if value.get("hugepageLimits"):
        out["hugepageLimits"] = [{"pageSize": h.get("pageSize", ""), "limit": h.get("limit", 0)}
                                 for h in value["hugepageLimits"]]
    if "network" in value:
        n = value["network"]
        network: dict[str, Any] = {k: n[k] for k in ("classID",) if k in n}
        if n.get("priorities"):
            network["priorities"] = [{"name": p.get("name", ""), "priority": p.get("priority", 0)}
                                     for p in n["priorities"]]
        out["network"] = network
    return out


def _devices(yaml: dict, label: dict, resources: dict) -> list[dict]:
    devices = []
    rules = resources.setdefault("devices", [])
    for d in _assign("devices", yaml, label, []):
        if d["path"] == "all":
            rules.append({"allow": True, "type": d["type"], "access": "rwm"})
            continue
        major, minor = d.get("major", 0), d.get("minor", 0)
        devices.append({"path": d["path"], "type": d["type"], "major": major, "minor": minor,
                        "fileMode": int(d["mode"], 8)})
        rules.append({"allow": True, "type": d["type"], "major": major, "minor": minor,
                      "access": "rwm"})
    if not rules:
        del resources["devices"]
    return devices


def _runtime(yaml: dict, label: dict) -> dict:
    """linuxkit's ``Runtime`` (read by its init, not by runc): per field YAML, else label."""
    y, lab = yaml.get("runtime") or {}, label.get("runtime") or {}
    out: dict[str, Any] = {}
    for key in ("cgroups", "mounts", "mkdir", "interfaces"):
        out[key] = list(_assign(key, y, lab, []))
    out["mounts"] = [_mount_json(m) for m in out["mounts"]]
    out["interfaces"] = [{**{k: i[k] for k in ("name", "add", "peer") if i.get(k)},
                          "createInRoot": i.get("createInRoot", False)}
                         for i in out["interfaces"]]
    ybind, lbind = y.get("bindNS") or {}, lab.get("bindNS") or {}
    out["bindNS"] = {ns: _assign(ns, ybind, lbind, "")
                     for ns in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")}
    out["namespace"] = _assign("namespace", y, lab, "")
    return out


def make_bundle(container: Container, image_config: dict, ids: dict[str, int],
                what: str) -> Bundle:
    """``config.json`` and the ``Runtime`` for one container (``ids``: :meth:`Spec.id_map`)."""
    label = image_label(image_config, what)
    yaml = container.config()
    for key in ("binds", "binds.add"):  # volumes named by the YAML (never by a label)
        if key in yaml:  # the loader checked the shapes (composer.spec.schema)
            yaml[key] = _volume_binds(cast("list[str]", yaml[key]))
    if "mounts" in yaml:
        yaml["mounts"] = [{**m, "source": _volume_source(m.get("source", ""))}
                          if m.get("type") == "bind" else m
                          for m in cast("list[dict]", yaml["mounts"])]
    cfg = image_config.get("config") or {}

    args = _assign("command", yaml, label, None)
    if args is None:
        args = [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]
    env = _assign("env", yaml, label, None)
    if env is None:
        env = cfg.get("Env") or []
    cwd = _assign_nonempty("cwd", yaml, label, cfg.get("WorkingDir") or "/")
    readonly = bool(_assign("readonly", yaml, label, False))

    user: dict[str, Any] = {"uid": _id(_assign("uid", yaml, label, 0), ids, what),
                            "gid": _id(_assign("gid", yaml, label, 0), ids, what)}
    groups = [_id(g, ids, what) for g in _assign("additionalGids", yaml, label, [])]
    if groups:
        user["additionalGids"] = groups
    process: dict[str, Any] = {"user": user, "cwd": cwd,
                               "capabilities": _capabilities(yaml, label, what)}
    if args:
        process["args"] = list(args)
    if env:
        process["env"] = list(env)
    rlimits = []
    for text in _assign("rlimits", yaml, label, []):
        kind, soft, hard = parse_rlimit(text)
        rlimits.append({"type": kind, "hard": hard, "soft": soft})
    if rlimits:
        process["rlimits"] = rlimits
    if _assign("noNewPrivileges", yaml, label, False):
        process["noNewPrivileges"] = True
    oom = _assign("oomScoreAdj", yaml, label, None)
    if oom is not None:
        process["oomScoreAdj"] = oom

    root: dict[str, Any] = {"path": "rootfs"}
    if readonly:
        root["readonly"] = True
    resources = _resources(_assign("resources", yaml, label, {}))
    linux: dict[str, Any] = {"namespaces": _namespaces(yaml, label)}
    devices = _devices(yaml, label, resources)
    linux["resources"] = resources
    if devices:
        linux["devices"] = devices
    for key in ("uidMappings", "gidMappings"):
        maps = _assign(key, yaml, label, [])
        if maps:
            linux[key] = [_idmap(m) for m in maps]
    for key in ("sysctl",):
        value = _assign(key, yaml, label, {})
        if value:
            linux[key] = dict(value)
    for key in ("cgroupsPath", "rootfsPropagation"):
        value = _assign(key, yaml, label, "")
        if value:
            linux[key] = value
    for key in ("maskedPaths", "readonlyPaths"):
        value = _assign(key, yaml, label, [])
        if value:
            linux[key] = list(value)

    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": root,
        "mounts": _mounts(yaml, label, readonly),
        "linux": linux,
    }
    hostname = _assign_nonempty("hostname", yaml, label)
    if hostname:
        config["hostname"] = hostname
    annotations = _assign("annotations", yaml, label, {})
    if annotations:
        config["annotations"] = dict(annotations)
    return Bundle(config, _runtime(yaml, label), readonly)


# ---- runtime.json ---------------------------------------------------------------------------

def rootfs_mounts(bundle_dir: str, lower_dir: str, readonly: bool) -> list[dict]:
    """How linuxkit's init mounts the container's root, prepended to ``runtime.json``'s mounts.

    ``bundle_dir`` is the bundle path in the rootfs (``containers/onboot/000-x``); ``lower_dir``
    where the image's files are (its own ``lower``/``rootfs``, or another bundle's for a reused
    image). Read-only: ``rootfs`` is bind-mounted (onto itself, so it is a mount point). Else a
    tmpfs on ``tmp`` holds the upper and work dirs of an overlay onto ``rootfs``.
    """
    if readonly:
        return [{"destination": f"/{bundle_dir}/rootfs", "options": ["bind"],
                 "source": f"/{lower_dir}"}]
    tmp = f"/{bundle_dir}/tmp"
    return [
        {"destination": tmp, "source": "tmpfs", "type": "tmpfs"},
        {"destination": tmp, "options": ["remount", "private"]},
        {"destination": f"/{bundle_dir}/rootfs", "source": "overlay", "type": "overlay",
         "options": [f"lowerdir=/{lower_dir}", f"upperdir={tmp}/upper", f"workdir={tmp}/work"]},
    ]


def runtime_json(runtime: dict, bundle_dir: str, lower_dir: str, readonly: bool) -> dict:
    """``runtime.json``: linuxkit's ``Runtime`` with the rootfs mounts prepended."""
    return {**runtime, "mounts": [*rootfs_mounts(bundle_dir, lower_dir, readonly),
                                  *runtime["mounts"]]}
