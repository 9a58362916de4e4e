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


# -- Cache.put_layer: blob and uncompressed tar from one read --------------------------------
def _compressors():
    import zstandard

    return {
        "gzip": ("application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress),
        "zstd": ("application/vnd.oci.image.layer.v1.tar+zstd",
                 zstandard.ZstdCompressor().compress),
        "plain": ("application/vnd.oci.image.layer.v1.tar", lambda b: b),
    }


class _Source(io.BytesIO):
    """Remembers how far it was read when it was closed."""

    def close(self) -> None:
        self.read_to = self.tell()
        super().close()


@pytest.mark.parametrize("kind", ["gzip", "zstd", "plain"])
def test_put_layer_stores_blob_and_uncompressed(tmp_path, kind):
    from composer.images.cache import Cache
    from composer.streams.digest import sha256_digest

    media_type, compress = _compressors()[kind]
    blob = compress(DATA)
    cache = Cache(tmp_path / "c")
    source = _Source(blob)
    cache.put_layer(source, sha256_digest(blob), len(blob), media_type, sha256_digest(DATA), "l")
    assert cache.blob_path(sha256_digest(blob)).read_bytes() == blob
    assert cache.uncompressed_path(sha256_digest(DATA)).read_bytes() == DATA
    assert source.read_to == len(blob)
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


@pytest.mark.parametrize("damage", ["digest", "diff_id", "stream"])
def test_put_layer_stores_nothing_when_anything_is_wrong(tmp_path, damage):
    from composer.errors import ComposerError
    from composer.images.cache import Cache
    from composer.streams.digest import DigestMismatch, sha256_digest

    blob = gzip.compress(DATA)
    digest, diff_id = sha256_digest(blob), sha256_digest(DATA)
    if damage == "digest":  # the download was corrupted: a mismatch, not a gzip error
        sent, expected = blob[:5000] + b"\xff" * 5000 + blob[10000:], DigestMismatch
    elif damage == "diff_id":
        sent, expected, diff_id = blob, DigestMismatch, sha256_digest(b"other")
    else:  # the registry's bytes match their digest but are not gzip
        sent = blob = blob[:5000] + b"\xff" * 5000 + blob[10000:]
        digest, expected = sha256_digest(blob), ComposerError
    cache = Cache(tmp_path / "c")
    with pytest.raises(expected) as err:
        cache.put_layer(io.BytesIO(sent), digest, len(blob),
                        "application/vnd.oci.image.layer.v1.tar+gzip", diff_id, "layer x")
    if damage == "stream":
        assert "cannot decompress layer" in str(err.value)
    assert not cache.has_blob(digest)
    assert not cache.uncompressed_path(diff_id).exists()
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


def test_uncompressed_copies_are_trusted_only_in_the_boot_that_wrote_them(tmp_path,
                                                                          monkeypatch):
    """Layer copies are renamed in without an fsync, after ``uncompressed/boot_id`` names this
    boot; a cache whose marker names another boot (a power loss is a reboot) drops them before
    anything looks at them, and the layer is decompressed again. Blobs are always fsync'd."""
    from composer.images import cache as cache_module
    from composer.images.cache import Cache
    from composer.streams.digest import sha256_digest

    blob = gzip.compress(DATA)
    digest, diff_id = sha256_digest(blob), sha256_digest(DATA)
    media_type = "application/vnd.oci.image.layer.v1.tar+gzip"
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size)
                        or real_fsync(fd))
    monkeypatch.setattr(cache_module, "boot_id", lambda: "boot-one")
    cache = Cache(tmp_path / "c")
    cache.put_layer(io.BytesIO(blob), digest, len(blob), media_type, diff_id, "l")
    assert len(blob) in synced and len(DATA) not in synced  # the blob, not the copy
    marker = tmp_path / "c" / "uncompressed" / "boot_id"
    assert marker.read_text() == "boot-one"
    assert Cache(tmp_path / "c").uncompressed_path(diff_id).read_bytes() == DATA  # same boot

    monkeypatch.setattr(cache_module, "boot_id", lambda: "boot-two")  # after a reboot
    later = Cache(tmp_path / "c")
    assert not later.uncompressed_path(diff_id).exists()
    assert later.uncompressed_layer(digest, len(blob), media_type, diff_id, "l").read_bytes() \
        == DATA
    assert marker.read_text() == "boot-two"

    monkeypatch.setattr(cache_module, "boot_id", lambda: None)  # no boot id: fsync'd, kept
    synced.clear()
    (tmp_path / "c" / "uncompressed" / "sha256" / diff_id.split(":")[1]).unlink()
    none = Cache(tmp_path / "c")
    none.uncompressed_layer(digest, len(blob), media_type, diff_id, "l")
    assert len(DATA) in synced
