"""OCI runtime bundles for onboot/onshutdown/services containers, with linuxkit's semantics.

Precedence per field: the spec's YAML, else the image label ``org.mobyproject.config``, else (for
command, env and cwd) the image config. The defaults mirror linuxkit's ``ConfigToOCI``: Docker's
default mounts sorted by destination, net/ipc/uts/user namespaces shared with the host, new pid
and mount namespaces, no capabilities unless asked for. Serialised by :func:`canonjson.pretty`.
"""

from __future__ import annotations

from typing import Any

import yaml

from composer.errors import ComposerError
from composer.spec.model import Container

OCI_VERSION = "1.2.1"
LABEL = "org.mobyproject.config"


def image_label(image_config: dict, what: str) -> dict:
    """The ``org.mobyproject.config`` label of an image, parsed (YAML or JSON)."""
    labels = (image_config.get("config") or {}).get("Labels") or {}
    raw = labels.get(LABEL)
    if not raw:
        return {}
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ComposerError(f"{what}: unreadable {LABEL} label: {exc}") from None
    if not isinstance(value, dict):
        raise ComposerError(f"{what}: {LABEL} label is not a mapping")
    return value


def _pick(key: str, yaml_value: Any, label: dict) -> Any:
    return yaml_value if yaml_value is not None else label.get(key)


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


def _namespaces(settings: dict) -> list[dict]:
    out = []
    for kind, key, default in (("network", "net", "root"), ("ipc", "ipc", "root"),
                               ("uts", "uts", "root"), ("pid", "pid", "new"),
                               ("user", "userns", "root")):
        value = settings.get(key) or default
        if value in ("host", "root"):
            continue
        ns: dict[str, str] = {"type": kind}
        if value not in ("new", "none"):
            ns["path"] = value
        out.append(ns)
    out.append({"type": "mount"})
    return out


def is_readonly(container: Container, image_config: dict, what: str) -> bool:
    extra = dict(container.extra)
    return bool(_pick("readonly", extra.get("readonly"), image_label(image_config, what)))


def oci_config(container: Container, image_config: dict, what: str) -> dict:
    """The bundle's ``config.json`` as a dict."""
    label = image_label(image_config, what)
    extra = dict(container.extra)
    cfg = image_config.get("config") or {}
    args = container.command if container.command is not None else label.get("command")
    if args is None:
        args = [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]
    env = container.env if container.env is not None else label.get("env")
    if env is None:
        env = cfg.get("Env") or []
    cwd = extra.get("cwd") or label.get("cwd") or cfg.get("WorkingDir") or "/"
    readonly = bool(_pick("readonly", extra.get("readonly"), label))
    settings = {key: _pick(key, extra.get(key), label)
                for key in ("net", "ipc", "uts", "pid", "userns", "hostname")}
    caps = list(_pick("capabilities", extra.get("capabilities"), label) or [])
    if len(caps) == 1 and caps[0].lower() == "none":
        caps = []
    bounding = sorted(set(caps))
    mounts = sorted(_default_mounts(readonly).values(), key=lambda m: m["destination"])
    process: dict[str, Any] = {
        "user": {"uid": 0, "gid": 0},
        "args": list(args),
        "env": list(env),
        "cwd": cwd,
        "capabilities": {"bounding": bounding, "effective": caps, "inheritable": bounding,
                         "permitted": bounding},
    }
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": readonly},
        "mounts": mounts,
        "linux": {"resources": {}, "namespaces": _namespaces(settings)},
    }
    if settings["hostname"]:
        config["hostname"] = settings["hostname"]
    return config


def runtime_config(bundle_dir: str, lower_dir: str, readonly: bool) -> dict:
    """The bundle's ``runtime.json``: how linuxkit's init mounts the container's root.

    ``bundle_dir`` is the bundle path in the rootfs (``containers/onboot/000-x``); ``lower_dir``
    where the image's files are (its own ``lower``/``rootfs``, or another bundle's for a reused
    image).
    """
    if readonly:
        mounts = [{"destination": f"/{bundle_dir}/rootfs", "options": ["bind"],
                   "source": f"/{lower_dir}"}]
    else:
        tmp = f"/{bundle_dir}/tmp"
        mounts = [
            {"destination": tmp, "source": "tmpfs", "type": "tmpfs"},
            {"destination": tmp, "options": ["remount", "private"]},
            {"destination": f"/{bundle_dir}/rootfs", "source": "overlay", "type": "overlay",
             "options": [f"lowerdir=/{lower_dir}", f"upperdir={tmp}/upper",
                         f"workdir={tmp}/work"]},
        ]
    return {"mounts": mounts}
