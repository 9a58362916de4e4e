"""The merged spec written back out: ``files: metadata: json`` and ``build --dry-run``
(``metadata: yaml`` is linuxkit's own bytes: :mod:`composer.spec.goyaml`).

Like linuxkit's ``metadata`` file, this is the merged configuration with image references
normalised (``linuxkit/init:v1`` -> ``docker.io/linuxkit/init:v1``) and ``@pkg:`` templates
expanded; keys come in linuxkit's struct order. We also spell out the kernel defaults (``binary``,
``tar``) and write ``source`` as it was written, never the absolute host path, so the file (and so
the image) does not depend on where the spec was checked out. The output is itself a valid spec.

YAML is written by PyYAML's safe dumper (block style, no key sorting, no line wrapping); JSON by
:func:`composer.canonjson.pretty` (sorted keys, 4-space indent), the one JSON serialisation.
"""

from __future__ import annotations

from typing import Any

import yaml

from composer import canonjson
from composer.oci.refs import LayoutRef, RefError, parse_ref
from composer.spec.model import Container, File, ImageRef, Spec, Volume
from composer.spec.schema import IMAGE_CONFIG


def normal_ref(ref: ImageRef) -> str:
    """A registry ref fully spelled out (``docker.io/library/busybox:latest``); a layout ref
    (``oci:PATH``) as written."""
    try:
        parsed = parse_ref(ref.text)
    except RefError:  # pragma: no cover - the loader has checked every ref
        return ref.text
    return ref.text if isinstance(parsed, LayoutRef) else str(parsed)


def _container(c: Container) -> dict[str, Any]:
    config = c.config()
    out: dict[str, Any] = {"name": c.name, "image": normal_ref(c.image)}
    out.update((key, config[key]) for key in IMAGE_CONFIG if key in config)
    return out


def _file(f: File) -> dict[str, Any]:
    out: dict[str, Any] = {"path": f.path, "directory": f.directory}
    if f.symlink is not None:
        out["symlink"] = f.symlink
    if f.contents is not None:
        out["contents"] = f.contents
    if f.source is not None:
        out["source"] = f.source_text or f.source
    if f.metadata is not None:
        out["metadata"] = f.metadata
    out["optional"] = f.optional
    if f.mode is not None:
        out["mode"] = f"0{f.mode:o}"
    for key in ("uid", "gid"):
        value = getattr(f, key)
        if value != 0:
            out[key] = value
    return out


def _volume(v: Volume) -> dict[str, Any]:
    out: dict[str, Any] = {"name": v.name}
    if v.image is not None:
        out["image"] = normal_ref(v.image)
    if v.readonly:
        out["readonly"] = True
    if v.format != "filesystem":
        out["format"] = v.format
    if v.platforms:
        out["platforms"] = list(v.platforms)
    return out


def spec_document(spec: Spec) -> dict[str, Any]:
    """The merged spec as plain data in linuxkit's key order."""
    doc: dict[str, Any] = {}
    if spec.kernel is not None:
        k = spec.kernel
        kernel: dict[str, Any] = {"image": normal_ref(k.image), "cmdline": k.cmdline,
                                  "binary": k.binary, "tar": k.tar or "none"}
        if k.ucode:
            kernel["ucode"] = k.ucode
        doc["kernel"] = kernel
    doc["init"] = [normal_ref(r) for r in spec.init]
    for section in ("onboot", "onshutdown", "services"):
        doc[section] = [_container(c) for c in getattr(spec, section)]
    doc["files"] = [_file(f) for f in spec.files]
    doc["volumes"] = [_volume(v) for v in spec.volumes]
    return doc


def spec_yaml(spec: Spec) -> bytes:
    text = yaml.safe_dump(spec_document(spec), sort_keys=False, default_flow_style=False,
                          allow_unicode=False, width=1 << 30)
    return text.encode("ascii")


def spec_json(spec: Spec) -> bytes:
    return canonjson.pretty(spec_document(spec))


def spec_metadata(spec: Spec, kind: str) -> bytes:
    """The contents of a ``metadata: yaml|json`` file: for yaml, linuxkit's bytes
    (:mod:`composer.spec.goyaml`)."""
    if kind == "yaml":
        from composer.spec.goyaml import linuxkit_yaml

        return linuxkit_yaml(spec)
    return spec_json(spec)
