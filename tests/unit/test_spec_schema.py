"""The shipped JSON Schema and key reference: generated, complete, and checked against linuxkit.

- docs/schema.json and the key tables of docs/yaml.md are exactly what the generator makes from
  the loader's tables now (so they cannot drift);
- every key of linuxkit's own schema (``moby/schema.go``, copied into tests/data/linuxkit) is in
  ours and ours has no other, at every depth;
- the ``jsonschema`` library, an independent validator, accepts every linuxkit spec we build and
  rejects the ones linuxkit rejects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from composer import canonjson
from composer.spec import load_spec
from composer.spec.jsonschema import (
    BEGIN,
    END,
    documented_paths,
    json_schema,
    markdown_reference,
    splice,
)
from composer.spec.reference import DOCS

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "linuxkit"
LINUXKIT_SCHEMA = DATA / "src" / "cmd" / "linuxkit" / "moby" / "schema.json"
VALID = sorted([*DATA.glob("examples/*.yml"), *DATA.glob("test/cases/**/test.yml")])


def jsonschema_module():
    """The jsonschema package; a missing one skips locally but fails in CI."""
    try:
        import jsonschema
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("the jsonschema package is needed (pip install jsonschema)")
        pytest.skip("jsonschema is not installed")
    return jsonschema


def test_docs_schema_json_is_generated_and_current() -> None:
    shipped = (ROOT / "docs" / "schema.json").read_bytes()
    assert shipped == canonjson.pretty(json_schema()), \
        "run: python -m composer.spec.jsonschema --write"


def test_docs_yaml_md_reference_is_generated_and_current() -> None:
    text = (ROOT / "docs" / "yaml.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert splice(text, markdown_reference()) == text, \
        "run: python -m composer.spec.jsonschema --write"


def test_every_key_documented_and_nothing_else() -> None:
    paths = documented_paths()
    assert len(paths) == len(set(paths))
    assert set(paths) == set(DOCS)
    for path, (_default, text) in DOCS.items():
        assert text and "|" not in text, path


def _keys(schema: dict, root: dict, prefix: str = "") -> set[str]:
    """Every property path of a JSON Schema, following $ref, through arrays (as ``[]``)."""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return _keys((root.get("definitions") or root.get("$defs"))[name], root, prefix)
    out: set[str] = set()
    if schema.get("type") == "array" and "items" in schema:
        return _keys(schema["items"], root, prefix + "[]")
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        out.add(path)
        out |= _keys(sub, root, path)
    return out


def test_same_keys_as_linuxkit_schema_at_every_depth() -> None:
    theirs_doc = json.loads(LINUXKIT_SCHEMA.read_text())
    theirs = _keys(theirs_doc, theirs_doc)
    ours_doc = json_schema()
    ours = _keys(ours_doc, ours_doc)
    assert len(theirs) > 150
    assert ours == theirs


def test_additional_properties_false_everywhere() -> None:
    def walk(schema: dict) -> None:
        if schema.get("type") == "object":
            assert schema.get("additionalProperties") is False or isinstance(
                schema.get("additionalProperties"), dict), schema
        for sub in schema.get("properties", {}).values():
            walk(sub)
        if "items" in schema:
            walk(schema["items"])
        for sub in schema.get("anyOf", []):
            walk(sub)
    schema = json_schema()
    walk(schema)
    walk(schema["$defs"]["image"])


@pytest.mark.parametrize("spec", VALID, ids=[str(p.relative_to(DATA)) for p in VALID])
def test_linuxkit_specs_valid_for_both_schema_and_loader(spec: Path) -> None:
    jsonschema = jsonschema_module()
    doc = yaml.safe_load(spec.read_text())
    jsonschema.validate(doc, json_schema())
    if spec.parent.name != "002_rw_on_ro":  # valid in form, refused for its meaning
        load_spec([spec])


def test_linuxkit_invalid_spec_refused_by_schema() -> None:
    jsonschema = jsonschema_module()
    doc = yaml.safe_load((DATA / "test/cases/000_build/091_validate_linuxkit_yaml/"
                          "linuxkit.yml").read_text())
    with pytest.raises(jsonschema.ValidationError, match="unknownField"):
        jsonschema.validate(doc, json_schema())


@pytest.mark.parametrize("doc", [
    {"kernel": {"image": "k", "cmdlin": "x"}},
    {"services": [{"name": "a"}]},
    {"onboot": [{"name": "a", "image": "b", "capabilities": "CAP_X"}]},
    {"files": [{"path": "a", "mode": True}]},
    {"volumes": [{"name": "v", "format": "zip"}]},
    {"onboot": [{"name": "a", "image": "b", "resources": {"memory": {"limt": 1}}}]},
])
def test_schema_refuses_what_the_loader_refuses(doc: dict, tmp_path: Path) -> None:
    jsonschema = jsonschema_module()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, json_schema())
    path = tmp_path / "s.yml"
    path.write_text(yaml.safe_dump(doc))
    from composer.errors import SpecError

    with pytest.raises(SpecError):
        load_spec([path])
