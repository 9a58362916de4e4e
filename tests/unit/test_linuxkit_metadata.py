"""``files: metadata: yaml`` is byte for byte what the real linuxkit writes.

tests/data/linuxkit-measured/ holds the files linuxkit itself wrote for a few of its specs and
for one of ours full of quoting edge cases (see its README.md); the image names in them are
those of the loopback registry that served the stand-ins, so the specs are rewritten the same
way here before we write the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.oci.refs import Ref, parse_ref
from composer.spec import load_spec
from composer.spec.goyaml import linuxkit_yaml
from tests.fixtures.linuxkit import local_name, rewrite

DATA = Path(__file__).resolve().parents[1] / "data"
MEASURED = DATA / "linuxkit-measured"
CASES = sorted(p.relative_to(MEASURED) for p in MEASURED.rglob("*.linuxkit-config"))


def _spec(rel: Path) -> Path:
    name = str(rel).removesuffix(".linuxkit-config") + ".yml"
    if name.startswith("extra/"):
        return MEASURED / name.removeprefix("extra/")
    return DATA / "linuxkit" / name


@pytest.mark.parametrize("rel", CASES, ids=str)
def test_metadata_yaml_is_linuxkits(rel, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    host = (MEASURED / "REGISTRY").read_text().strip()
    original = _spec(rel)
    names = {}
    for ref in load_spec([original]).image_refs():
        parsed = parse_ref(ref.text)
        assert isinstance(parsed, Ref)
        names[ref.text] = local_name(parsed, host)
    spec_path = original.with_name(f"measured-{original.name}")
    try:
        spec_path.write_text(rewrite(original.read_text(), names))
        got = linuxkit_yaml(load_spec([spec_path]))
    finally:
        spec_path.unlink()
    assert got.decode() == (MEASURED / rel).read_text()


def test_values_as_written(tmp_path):
    spec = tmp_path / "s.yml"
    spec.write_text("kernel: {image: 'k:1'}\ninit: [busybox]\n"
                    "files: [{path: /etc/x, contents: 'a', mode: '0644', uid: 0}]\n"
                    "volumes: [{name: v, image: 'alpine:3.20'}]\n")
    assert linuxkit_yaml(load_spec([spec])).decode() == (
        "kernel:\n  image: docker.io/library/k:1\n"  # no binary/tar defaults spelled out
        "init:\n- docker.io/library/busybox\n"       # no :latest
        "onboot: []\nonshutdown: []\nservices: []\n"
        "files:\n- path: /etc/x\n  directory: false\n  contents: a\n  optional: false\n"
        "  mode: \"0644\"\n  uid: 0\n"
        "volumes:\n- name: v\n  image: alpine:3.20\n")  # volume images are left as written


def test_no_kernel(tmp_path):
    spec = tmp_path / "s.yml"
    spec.write_text("init: ['a:1']\n")
    assert linuxkit_yaml(load_spec([spec])).decode().startswith('kernel:\n  image: ""\ninit:\n')
