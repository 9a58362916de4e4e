"""The committed golden digests: an honest build of the synthetic inputs must give these bytes,
on every machine. Nothing here depends on the host's zlib: every deflate stream comes from the
pinned zlib-ng (composer.streams.deflate), so the comparison is unconditional; test_zlib_swap.py
proves it by building with Python's zlib replaced.
"""

from __future__ import annotations

import gzip
import hashlib
import os

import pytest

from composer import canonjson
from composer.errors import ComposerError
from outputs import FORMATS, compressor_id
from tests.golden.regenerate import DIGESTS, build_golden, digests

GOLDEN = canonjson.loads(DIGESTS.read_bytes())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    formats = tuple(GOLDEN["formats"])
    missing = [f for f in formats if f not in FORMATS]
    assert not missing, f"golden formats no longer registered: {missing}"
    try:
        return build_golden(tmp_path_factory.mktemp("golden"), formats)
    except ComposerError as exc:
        # the ISO formats need the pinned Debian bootloader packages (fetched once, cached)
        if "bootloader" in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(f"cannot build the ISO goldens here: {exc}")
        raise


def test_every_golden_output_is_built(built):
    assert sorted(GOLDEN["outputs"]) == sorted(digests(built, tuple(GOLDEN["formats"]))
                                               ["outputs"])


@pytest.mark.parametrize("name", sorted(GOLDEN["outputs"]))
def test_output_matches_golden_digest(built, name):
    top = name.split("/", 1)[0]
    data = (built[top] / name.split("/", 1)[1] if "/" in name else built[name]).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    assert actual == GOLDEN["outputs"][name], (
        f"{name}: sha256 {actual}, golden {GOLDEN['outputs'][name]}; run "
        f"`image-composer diff` against a build from the commit that made the goldens")


def test_goldens_were_made_by_the_pinned_compressor():
    """A new zlib-ng pin changes deflate bytes: regenerate the goldens with it, saying so."""
    assert compressor_id() == GOLDEN["compressor"]


@pytest.mark.parametrize("name", sorted(GOLDEN["content"]))
def test_initrd_content_matches_golden(built, name):
    data = gzip.decompress(built[name].read_bytes())
    assert hashlib.sha256(data).hexdigest() == GOLDEN["content"][name]
