"""Fuzz the image reference parser: every string is a Ref/LayoutRef or a RefError, and a parsed
reference is a fixed point (``parse(str(parse(x))) == parse(x)``) so the cache name is stable."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from composer.oci.refs import LayoutRef, Ref, RefError, parse_ref

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="FUZZ_SEED" not in os.environ)

PIECES = ["a", "b", "0", ".", "-", "_", "__", "/", ":", "@", "[", "]", "::1", "localhost",
          "docker.io", "index.docker.io", "library", "sha256:", "0" * 64, "A", "oci:", " ", "é",
          "\x00", "5000", "..", "//", "latest"]
REFISH = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
COMPONENT = st.from_regex(r"[a-z0-9]{1,4}([._-][a-z0-9]{1,3}){0,2}", fullmatch=True)
TAG = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True)
HOST = st.sampled_from(["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "ghcr.io",
                        "registry.example.com:443"])


def _check(text: str) -> None:
    try:
        ref = parse_ref(text)
    except RefError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert isinstance(ref, Ref | LayoutRef)
    assert parse_ref(str(ref)) == ref
    if isinstance(ref, Ref):
        assert ref.tag or ref.digest
        assert not ref.repository.startswith("/") and ".." not in ref.repository.split("/")
        assert ref.cache_name.startswith(ref.name)


@settings(parent=FUZZ)
@given(REFISH)
def test_refish_text_parses_or_is_a_ref_error(text: str) -> None:
    _check(text)


@settings(parent=FUZZ)
@given(st.text(max_size=80))
def test_any_text_parses_or_is_a_ref_error(text: str) -> None:
    _check(text)


@settings(parent=FUZZ)
@given(st.one_of(st.none(), HOST), st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True),
       st.lists(COMPONENT, max_size=2), st.one_of(st.none(), TAG),
       st.one_of(st.none(), st.binary(min_size=32, max_size=32).map(bytes.hex)))
def test_valid_references_always_parse(host, first, rest, tag, digest) -> None:
    """A first component with ``.``/``:`` names a registry, so a bare first one is plain."""
    path = [first, *rest]
    text = "/".join(([host] if host else []) + path)
    text += f":{tag}" if tag else ""
    text += f"@sha256:{digest}" if digest else ""
    ref = parse_ref(text)
    assert isinstance(ref, Ref)
    assert ref.registry == (host or "docker.io")
    assert ref.tag == (tag or (None if digest else "latest"))
    assert ref.digest == (f"sha256:{digest}" if digest else None)
    assert ref.repository.endswith("/".join(path))
