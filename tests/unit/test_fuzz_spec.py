"""Fuzz the spec loader: any text is either a Spec or a SpecError, never another exception.

Bounded for CI (``FUZZ_EXAMPLES`` raises the count for a longer run, e.g. FUZZ_EXAMPLES=20000).
Inputs mix structured spec-like documents (dumped by PyYAML, then mutated) with raw YAML-ish text
built from YAML's significant characters, so both the schema and the parser see hostile input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.errors import SpecError
from composer.spec import load_spec
from composer.spec.model import Spec

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KEYS = ["kernel", "image", "cmdline", "init", "onboot", "onshutdown", "services", "files",
        "volumes", "name", "path", "contents", "source", "mode", "uid", "gid", "capabilities",
        "binds", "command", "env", "net", "pid", "trust", "tar", "ucode", "binary", "directory",
        "symlink", "optional", "metadata", "readonly", "runtime", "mounts", "devices"]
SCALARS = st.one_of(
    st.sampled_from(["linuxkit/init:v1", "busybox", "@pkg:.", "oci:x", "0644", "644", "/", "..",
                     "../../etc/passwd", "CAP_ALL", "all", "", "~", "null", "yes", "0o777",
                     "sha256:" + "a" * 64, "docker.io/x@sha256:" + "0" * 64, "\x00", "\ufeff"]),
    st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(),
    st.floats(allow_nan=True), st.text(max_size=12),
)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)
YAML_CHARS = [*"ab:- \n\t{}[],&*!|>'\"#%@`?.0~\\<", "\x85", "\u2028", "\ufeff", "é"]
YAMLISH = st.text(alphabet=st.sampled_from(YAML_CHARS), max_size=200)


def _dump(doc: object) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, default_flow_style=False)


@st.composite
def spec_text(draw) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        text = draw(YAMLISH)
    elif choice == 1:
        text = _dump(draw(st.dictionaries(st.sampled_from(KEYS), DOCS, min_size=1, max_size=6)))
    else:
        text = _dump(draw(st.dictionaries(st.sampled_from(KEYS), DOCS, min_size=1, max_size=6)))
        # splice YAML-ish junk or raw bytes in at random points
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(YAMLISH) + text[at:]
    data = text.encode("utf-8", "surrogatepass")
    if choice == 3:
        data += draw(st.binary(max_size=16))
    return data


def _load(data: bytes) -> Spec | SpecError:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yml"
        path.write_bytes(data)
        try:
            return load_spec([path])
        except SpecError as exc:
            assert exc.lines() and all(line.strip() and "\n" not in line for line in exc.lines())
            return exc


@FUZZ
@given(spec_text())
def test_any_text_is_a_spec_or_a_spec_error(data: bytes) -> None:
    result = _load(data)
    assert isinstance(result, Spec | SpecError)


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_are_a_spec_or_a_spec_error(data: bytes) -> None:
    assert isinstance(_load(data), Spec | SpecError)


def test_regression_inputs() -> None:
    """Inputs worth keeping: each once crashed a YAML loader somewhere or is an edge of ours."""
    for data in [b"", b"\xef\xbb\xbf", b"---\n...\n", b"&a [*a]", b"? [a]\n: b", b"!!binary x",
                 b"kernel: &k {image: x}\ninit: *k\n", b"[" * 5000, b"{a: " * 100,
                 b"init:\n  - !!python/object:os.system x\n", b"%YAML 1.1\n%YAML 1.1\n---\n",
                 b"files:\n  - path: x\n    mode: 0o9\n", b"kernel:\n  image: \x85\n"]:
        assert isinstance(_load(data), Spec | SpecError), data
