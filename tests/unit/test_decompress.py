"""The layer decompressor: gzip members, zero padding, truncation, junk."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from composer.images.cache import open_decompressed

DATA = os.urandom(3_000_000) + b"compressible " * 400_000


@pytest.mark.parametrize("blob", [
    gzip.compress(DATA),
    gzip.compress(DATA[:100]) + gzip.compress(DATA[100:]),  # two members
    gzip.compress(DATA) + b"\0" * 1000,  # zero padding, as gzip(1) allows
], ids=["one-member", "two-members", "zero-padding"])
def test_same_bytes_as_python_gzip(blob):
    got = open_decompressed(io.BytesIO(blob), "application/vnd.oci.image.layer.v1.tar+gzip")
    assert got.read() == DATA


def test_empty_stream():
    assert open_decompressed(io.BytesIO(gzip.compress(b"")), "x+gzip").read() == b""


@pytest.mark.parametrize("blob", [
    gzip.compress(DATA)[:-100],
    gzip.compress(DATA) + b"junk",
    gzip.compress(DATA)[:5000] + b"\xff" * 5000,
], ids=["truncated", "trailing-junk", "corrupt"])
def test_damage_is_an_error(blob):
    with pytest.raises((EOFError, zlib.error)):
        open_decompressed(io.BytesIO(blob), "x+gzip").read()
