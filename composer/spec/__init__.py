"""Spec files (linuxkit-style YAML) -> one validated, merged :class:`~composer.spec.model.Spec`.

:func:`load_spec` reads every file, reports *every* problem in all of them at once as one
:class:`~composer.errors.SpecError` (``FILE:LINE:COL: message`` each), and merges the files
the way linuxkit's ``AppendConfig`` does:

- ``kernel``: ``image``, ``cmdline`` and ``binary`` from the last file where they are
  non-empty; ``tar`` and ``ucode`` from the last file that sets them at all;
- ``init``, ``onboot``, ``onshutdown``, ``services``, ``files``: appended in file order;
- a service name used twice (in any files) is an error at the second; onboot and onshutdown
  names may repeat.

Decisions that differ from, or go beyond, linuxkit:

- YAML aliases are refused (no "billion laughs"); so are duplicate keys, merge keys and
  non-core tags (see :mod:`composer.spec.yamlpos`).
- ``files[].mode`` is an octal string ("0644") as in linuxkit, or an unquoted YAML octal
  literal (0644); a plain decimal integer (644) is refused as ambiguous.
- ``files[].source`` is relative to the spec file's directory (linuxkit: the cwd).
- ``@pkg:DIR`` is expanded only where an image is expected (linuxkit: any string).
- ``trust`` is accepted, checked and ignored with a warning in :attr:`Spec.warnings`.
- Meaning is checked at load time with a position (linuxkit finds most of these only while
  writing ``config.json``, without one): capability names, rlimits, bind and tmpfs syntax,
  devices, mount types, namespaces, container names used as uid/gid, volumes used as bind
  sources, and read-write binds of read-only volumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from composer.errors import Position, SpecError
from composer.spec.collisions import onshutdown_collisions
from composer.spec.goyaml import raw
from composer.spec.loader import Part, load_part
from composer.spec.model import Kernel, Spec
from composer.spec.schema import Ctx, Got, NameRef
from composer.spec.yamlpos import Problem, position, read_root

__all__ = ["load_spec"]


def load_spec(paths: list[Path]) -> Spec:
    """Load, validate and merge spec files in order; raise SpecError listing every problem."""
    if not paths:
        raise SpecError([(None, "no spec files given")])
    problems: list[Problem] = []
    warnings: list[Problem] = []
    parts: list[tuple[Ctx, Part]] = []
    refs: list[NameRef] = []
    raws: list[Any] = []
    for path in paths:
        file = str(path)
        ctx = Ctx(file, Path(os.path.abspath(path)).parent)
        root, read_problems = read_root(Path(path), file)
        problems += read_problems
        if root is not None:
            raws.append(raw(root))
            parts.append((ctx, load_part(ctx, root)))
            problems += ctx.problems
            warnings += ctx.warnings
            refs += ctx.refs
    spec = _merge(parts, [str(p) for p in paths], problems)
    _check_refs(spec, refs, problems)
    if problems:
        raise SpecError(problems)
    warnings += onshutdown_collisions(spec["onboot"], spec["onshutdown"])
    return Spec(**{**spec, "warnings": tuple(warnings), "raw": tuple(raws)})


def _check_refs(spec: dict[str, Any], refs: list[NameRef], problems: list[Problem]) -> None:
    """Names only the merged spec knows: containers used as ids, volumes used as sources."""
    ids = Spec(sources=(), onboot=spec["onboot"], onshutdown=spec["onshutdown"],
               services=spec["services"]).id_map()
    volumes = {v.name: v for v in spec["volumes"]}
    for ref in refs:
        if ref.kind == "id" and ref.name not in ids:
            known = ", ".join(sorted(ids)) or "none"
            problems.append((ref.pos, f"{ref.where}: no container named {ref.name!r} to take "
                             f"the id of (containers: {known})"))
        elif ref.kind == "volume":
            volume = volumes.get(ref.name)
            if volume is None:
                known = ", ".join(sorted(volumes)) or "none"
                what = f"{ref.name!r}" if ref.name else "'' (empty source)"
                problems.append((ref.pos, f"{ref.where}: no volume named {what}; a source not "
                                 f"starting with / names a volume (volumes: {known})"))
            elif volume.readonly and not ref.readonly:
                problems.append((ref.pos, f"{ref.where}: volume {ref.name!r} is read-only; "
                                 "bind it with the ro option"))


def _merge(parts: list[tuple[Ctx, Part]], sources: list[str],
           problems: list[Problem]) -> dict[str, Any]:
    kernel: dict[str, Got] = {}
    first_kernel: tuple[Ctx, Any] | None = None
    image_written = False  # perhaps invalid, and so already reported
    for ctx, part in parts:
        if part.kernel is None:
            continue
        first_kernel = first_kernel or (ctx, part.kernel_key)
        image_written = image_written or "image" in part.kernel_keys
        for key, got in part.kernel.items():
            if key in ("tar", "ucode") or got.value:
                kernel[key] = got
    merged_kernel = None
    if first_kernel is not None:
        if "image" in kernel:
            merged_kernel = _kernel({k: g.value for k, g in kernel.items()})
        elif not image_written:
            ctx, key = first_kernel
            problems.append((position(ctx.file, key), "kernel: missing required key 'image'"))

    seen: dict[str, Position] = {}
    for _, part in parts:
        for named in part.services:
            name = named.container.name
            if name in seen:
                first = seen[name]
                problems.append((named.name_pos, f"duplicate service name {name!r} (first at "
                                 f"{first})"))
            else:
                seen[name] = named.name_pos

    volumes: dict[str, Position] = {}
    for _, part in parts:
        for named_volume in part.volumes:
            name = named_volume.volume.name
            if name in volumes:
                problems.append((named_volume.name_pos, f"duplicate volume name {name!r} "
                                 f"(first at {volumes[name]})"))
            else:
                volumes[name] = named_volume.name_pos

    def containers(key: str) -> tuple:
        return tuple(n.container for _, part in parts for n in getattr(part, key))

    return {
        "sources": tuple(sources),
        "kernel": merged_kernel,
        "init": tuple(ref for _, part in parts for ref in part.init),
        "onboot": containers("onboot"),
        "onshutdown": containers("onshutdown"),
        "services": containers("services"),
        "files": tuple(f for _, part in parts for f in part.files),
        "volumes": tuple(v.volume for _, part in parts for v in part.volumes),
    }


def _kernel(values: dict[str, Any]) -> Kernel:
    tar = values.get("tar", "kernel.tar")
    return Kernel(
        image=values["image"],
        cmdline=values.get("cmdline", ""),
        binary=values.get("binary") or "kernel",
        tar=None if tar in ("", "none") else tar,
        ucode=values.get("ucode") or None,
    )
