"""The committed golden digests: an honest build of the synthetic inputs must give these bytes.

On a host whose zlib differs from the one that made the goldens (``compressor`` in digests.json),
gzip'd outputs can only be compared by content; that is a skip locally and a failure with CI=true,
because CI must reproduce the goldens exactly.
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
    if name in GOLDEN["compressed"] and compressor_id() != GOLDEN["compressor"]:
        if name in GOLDEN["content"]:
            assert hashlib.sha256(gzip.decompress(data)).hexdigest() == GOLDEN["content"][name]
        message = (f"{name}: compressor here is {compressor_id()!r}, the goldens were made with "
                   f"{GOLDEN['compressor']!r}; compressed bytes cannot be compared")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert actual == GOLDEN["outputs"][name], (
        f"{name}: sha256 {actual}, golden {GOLDEN['outputs'][name]}; run "
        f"`image-composer diff` against a build from the commit that made the goldens")
