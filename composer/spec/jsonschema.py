"""The shipped JSON Schema of the spec format (``docs/schema.json``) and the key reference in
``docs/yaml.md``, both *generated* from the loader's converter tables, so neither can drift from
what ``build`` accepts.

The JSON Schema says what a spec may look like (keys and types); the loader checks more (capability
names, rlimits, bind syntax, names that refer to containers and volumes...), so a spec the schema
accepts can still be refused, with a position, by ``build``. Regenerate both files with::

    python -m composer.spec.jsonschema --write

(``tests/unit/test_spec_schema.py`` fails when they are out of date.)
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from composer import canonjson
from composer.spec.reference import DOCS

SCHEMA_ID = "https://image-composer.invalid/schema/spec.json"
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
BEGIN = "<!-- BEGIN GENERATED KEY REFERENCE: python -m composer.spec.jsonschema --write -->"
END = "<!-- END GENERATED KEY REFERENCE -->"
#: Objects documented once and referenced: the image object (onboot, onshutdown, services).
SECTIONS = (("top", "Top level"), ("kernel", "kernel"), ("image", "Image objects: "
            "onboot[], onshutdown[], services[]"), ("file", "files[]"), ("volume", "volumes[]"),
            ("trust", "trust"))


def _raw_schema() -> dict:
    from composer.spec.loader import TOP, container

    top = {k: c.json for k, c in TOP.items()}  # type: ignore[attr-defined]
    image_list = {"type": "array", "items": {"$ref": "#/$defs/image"}}
    for section in ("onboot", "onshutdown", "services"):
        top[section] = image_list
    return {"top": top, "image": container.json}  # type: ignore[attr-defined]


def paths(schema: dict, prefix: str) -> list[tuple[str, dict]]:
    """Every documented key below an object schema: ``(dotted path, its schema)``; list items
    appear as ``key[]``. Descends into objects and lists of objects, not into ``$ref``."""
    out: list[tuple[str, dict]] = []
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        out.append((path, sub))
        if sub.get("type") == "object" and "properties" in sub:
            out.extend(paths(sub, path))
        elif sub.get("type") == "array" and sub.get("items", {}).get("type") == "object":
            out.extend(paths(sub["items"], f"{path}[]"))
    return out


def _annotate(schema: dict, prefix: str, doc_prefix: str) -> None:
    """Add each key's description (and default) from :data:`DOCS` to the schema, in place."""
    for path, sub in paths(schema, ""):
        doc = DOCS.get(f"{doc_prefix}{path}")
        if doc is None:
            raise KeyError(f"no documentation for {doc_prefix}{path}")
        default, text = doc
        sub["description"] = text
        if default is not None:
            sub["default"] = default


def _objects(raw: dict) -> dict[str, dict]:
    top = raw["top"]
    return {"top": {"type": "object", "properties": top}, "kernel": top["kernel"],
            "image": raw["image"], "file": top["files"]["items"],
            "volume": top["volumes"]["items"], "trust": top["trust"]}


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of one spec file, with descriptions and defaults."""
    raw = json.loads(json.dumps(_raw_schema()))  # a copy that shares no fragment
    objects = _objects(raw)
    for name, obj in objects.items():
        if name == "top":
            for key, sub in obj["properties"].items():
                default, text = DOCS[key]
                sub["description"] = text
                if default is not None:
                    sub["default"] = default
            continue
        _annotate(obj, "", f"{name}.")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "image-composer spec file (linuxkit YAML)",
        "description": "One spec file. Several files merge: kernel fields last non-empty wins, "
                       "lists are appended. build also checks meaning the schema cannot "
                       "express; see docs/yaml.md.",
        "type": "object",
        "additionalProperties": False,
        "properties": raw["top"],
        "$defs": {"image": raw["image"]},
    }


def documented_paths() -> list[str]:
    """Every key path the generated reference documents, as DOCS names them."""
    objects = _objects(_raw_schema())
    out = list(objects["top"]["properties"])
    for name, obj in objects.items():
        if name != "top":
            out.extend(f"{name}.{p}" for p, _ in paths(obj, ""))
    return out


_PLURAL = {"string": "strings", "integer": "integers", "boolean": "booleans",
           "object": "objects", "image object": "image objects"}


def _type_text(schema: dict, plural: bool = False) -> str:
    if "$ref" in schema:
        text = "image object"
    elif "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    elif "anyOf" in schema:
        return " or ".join(_type_text(s, plural) for s in schema["anyOf"])
    elif schema.get("type") == "array":
        return "list of " + _type_text(schema.get("items", {}), plural=True)
    elif schema.get("type") == "object" and isinstance(schema.get("additionalProperties"),
                                                       dict):
        text = "map of strings"
    else:
        text = schema.get("type", "any")
    return _PLURAL.get(text, text) if plural else text


def _default_text(schema: dict) -> str:
    if "default" not in schema:
        return ""
    return "`" + canonjson.compact(schema["default"]).decode() + "`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_reference(schema: dict | None = None) -> str:
    """The key tables of docs/yaml.md, from the (annotated) schema."""
    schema = schema or json_schema()
    objects = {"top": schema, "kernel": schema["properties"]["kernel"],
               "image": schema["$defs"]["image"],
               "file": schema["properties"]["files"]["items"],
               "volume": schema["properties"]["volumes"]["items"],
               "trust": schema["properties"]["trust"]}
    lines: list[str] = []
    for name, title in SECTIONS:
        obj = objects[name]
        lines += [f"### {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        rows = [(k, s) for k, s in obj["properties"].items()] if name == "top" else paths(obj, "")
        required = set(obj.get("required", ()))
        for path, sub in rows:
            req = " (required)" if path in required else ""
            lines.append(f"| `{path}`{req} | {_cell(_type_text(sub))} | {_default_text(sub)} "
                         f"| {_cell(sub.get('description', ''))} |")
        lines.append("")
    return "\n".join(lines)


def splice(markdown: str, reference: str) -> str:
    """``markdown`` with the text between the BEGIN and END markers replaced."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(markdown):
        raise ValueError("docs/yaml.md has no generated-reference markers")
    return pattern.sub(lambda _m: f"{BEGIN}\n\n{reference}\n{END}", markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite docs/schema.json and the reference in docs/yaml.md")
    args = parser.parse_args(argv)
    schema = json_schema()
    if not args.write:
        print(canonjson.pretty(schema).decode(), end="")
        return 0
    (DOCS_DIR / "schema.json").write_bytes(canonjson.pretty(schema))
    md = DOCS_DIR / "yaml.md"
    md.write_text(splice(md.read_text(), markdown_reference(schema)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
