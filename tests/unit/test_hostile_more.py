"""More of the hostile corpus (issue 10): bad tar headers, hostile manifests and indexes, blob
mismatches in a local OCI layout, whiteouts of ``..``/``/``, and ``files: source`` symlinks.

Every case runs the real CLI and states its outcome: exit status, one ``error:`` line, no
traceback, no output, nothing written outside the output directory and the cache, and no
mismatching blob stored in the cache.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from composer import canonjson
from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from tests.fixtures.conformance import m, tar

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


def build(tmp_path: Path, spec_text: str) -> subprocess.CompletedProcess:
    spec = tmp_path / "spec.yml"
    spec.write_text(spec_text)
    return subprocess.run([sys.executable, "-m", "composer", "build", "-f", "tar", "-o",
                           str(tmp_path / "out"), "--cache", str(tmp_path / "c2"), str(spec)],
                          capture_output=True, text=True)


def layout(tmp_path: Path, layers: list[bytes]) -> Path:
    cache = Cache(tmp_path / "cache")
    written = write_image(cache, layers)
    export_layout(cache, written, tmp_path / "oci", "evil")
    return tmp_path / "oci"


def assert_clean_failure(tmp_path: Path, proc: subprocess.CompletedProcess, status: int,
                         match: str) -> None:
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert match in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def cached_blobs_verify(cache_dir: Path) -> None:
    """Every blob the cache kept has the digest it is stored under (nothing wrong cached)."""
    for blob in (cache_dir / "blobs" / "sha256").glob("*"):
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, blob


# -- tar headers --------------------------------------------------------------------------------
def corrupt(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


def test_bad_checksum_in_the_first_header_is_an_error(tmp_path):
    plain = tar(m("a", data=b"x"), fmt=tarfile.USTAR_FORMAT)
    root = layout(tmp_path, [corrupt(plain, 148, b"0000001\0")])
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "unreadable tar")


def test_bad_checksum_in_a_later_header_is_an_error(tmp_path):
    plain = tar(m("a", data=b"x"), m("b", data=b"y"), fmt=tarfile.USTAR_FORMAT)
    root = layout(tmp_path, [corrupt(plain, 1024 + 148, b"0000001\0")])
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "tar")


def test_size_beyond_the_end_of_the_layer_is_an_error(tmp_path):
    """A header claiming 1 GiB of content in a 3 KiB layer: never a short or padded file."""
    plain = tar(m("a", data=b"x"), fmt=tarfile.USTAR_FORMAT)
    header = tarfile.TarInfo("a")
    header.size = 2**30
    bad = header.tobuf(tarfile.USTAR_FORMAT) + plain[512:]
    root = layout(tmp_path, [bad])
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "evil")


@pytest.mark.parametrize("name", ["a/.wh...", ".wh..", ".wh./", "/.wh.", ".wh."])
def test_whiteouts_of_dot_dot_root_or_nothing_are_errors(tmp_path, name):
    base = tar(m("a/secret", data=b"s"))
    info = tarfile.TarInfo(name)
    root = layout(tmp_path, [base, tar((info, b""))])
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "invalid whiteout")


# -- manifests, indexes and blobs in a local layout ----------------------------------------------
def rewrite_manifest(root: Path, edit) -> None:
    """Apply ``edit`` to the layout's manifest and re-point index.json at the new blob."""
    index = canonjson.loads((root / "index.json").read_bytes())
    desc = index["manifests"][0]
    path = root / "blobs" / "sha256" / desc["digest"].split(":")[1]
    manifest = edit(canonjson.loads(path.read_bytes()))
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    desc.update(digest=f"sha256:{digest}", size=len(data))
    if "mediaType" in manifest:
        desc["mediaType"] = manifest["mediaType"]
    (root / "index.json").write_text(json.dumps(index))


def test_huge_layer_count_is_a_clean_error(tmp_path):
    root = layout(tmp_path, [tar(m("a", data=b"x"))])

    def many(manifest):
        manifest["layers"] = manifest["layers"] * 100_000
        return manifest

    rewrite_manifest(root, many)
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "evil")
    cached_blobs_verify(tmp_path / "c2")


@pytest.mark.parametrize("size", [2**62, 2**70, -1])
def test_huge_or_negative_layer_size_is_a_clean_error(tmp_path, size):
    root = layout(tmp_path, [tar(m("a", data=b"x"))])

    def huge(manifest):
        manifest["layers"][0]["size"] = size
        return manifest

    rewrite_manifest(root, huge)
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "evil")
    cached_blobs_verify(tmp_path / "c2")


def test_nested_index_is_refused(tmp_path):
    """An index -> index chain (the only loop content addressing allows to be written down: a
    blob cannot contain its own digest) is refused at the second level."""
    root = layout(tmp_path, [tar(m("a", data=b"x"))])
    index = canonjson.loads((root / "index.json").read_bytes())
    inner = {"schemaVersion": 2, "mediaType": MEDIA_INDEX,
             "manifests": [{**index["manifests"][0], "platform": {"architecture": "amd64",
                                                                 "os": "linux"}}]}
    data = json.dumps(inner).encode()
    for _ in range(2):  # index -> index -> manifest
        digest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / "sha256" / digest).write_bytes(data)
        inner = {"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                 "manifests": [{"mediaType": MEDIA_INDEX, "digest": f"sha256:{digest}",
                                "size": len(data),
                                "platform": {"architecture": "amd64", "os": "linux"}}]}
        data = json.dumps(inner).encode()
    top = inner["manifests"][0]
    index["manifests"] = [{**top, "annotations": {"org.opencontainers.image.ref.name": "evil"}}]
    (root / "index.json").write_text(json.dumps(index))
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "nested image indexes")


def test_layout_blob_with_wrong_content_is_rejected_and_not_cached(tmp_path):
    root = layout(tmp_path, [tar(m("a", data=b"x" * 1000))])
    manifest_digest = canonjson.loads((root / "index.json").read_bytes())["manifests"][0]
    manifest = canonjson.loads((root / "blobs" / "sha256" /
                                manifest_digest["digest"].split(":")[1]).read_bytes())
    blob = root / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    blob.write_bytes(bytes(b ^ 1 for b in blob.read_bytes()))
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, manifest["layers"][0]["digest"][:19])
    assert not (tmp_path / "c2" / "blobs" / "sha256" / blob.name).exists()
    cached_blobs_verify(tmp_path / "c2")


@pytest.mark.parametrize("delta", [-1, 1])
def test_layout_blob_size_mismatch_is_rejected_and_not_cached(tmp_path, delta):
    root = layout(tmp_path, [tar(m("a", data=b"x" * 1000))])
    digests = []

    def wrong_size(manifest):
        manifest["layers"][0]["size"] += delta
        digests.append(manifest["layers"][0]["digest"])
        return manifest

    rewrite_manifest(root, wrong_size)
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "evil")
    assert not (tmp_path / "c2" / "blobs" / "sha256" / digests[0].split(":")[1]).exists()
    cached_blobs_verify(tmp_path / "c2")


# -- files: source and symlinks ------------------------------------------------------------------
def test_files_source_through_a_symlink_is_followed(tmp_path):
    """The rule (docs/security.md): a ``source`` is a host path the spec's author chose, so a
    symlink is followed like any path the author could have written directly, and only the
    target's bytes go into the rootfs as a regular file (never a host symlink, never a write)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host bytes\n")
    specdir = tmp_path / "specdir"
    specdir.mkdir()
    (specdir / "link").symlink_to(outside / "secret")
    root = layout(tmp_path, [tar(m("bin", "dir"))])
    spec = specdir / "spec.yml"
    spec.write_text(f"init:\n  - oci:{root}:evil\nfiles:\n  - path: etc/copied\n"
                    "    source: link\n")
    proc = subprocess.run([sys.executable, "-m", "composer", "build", "-f", "tar", "-o",
                           str(tmp_path / "out"), "--cache", str(tmp_path / "c2"), str(spec)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (outside / "secret").read_bytes() == b"host bytes\n"
    with tarfile.open(tmp_path / "out" / "spec.tar") as tf:
        info = tf.getmember("etc/copied")
        assert info.isfile()
        assert tf.extractfile(info).read() == b"host bytes\n"


def test_files_source_dangling_symlink_is_a_spec_or_build_error(tmp_path):
    specdir = tmp_path / "specdir"
    specdir.mkdir()
    (specdir / "link").symlink_to(tmp_path / "nowhere")
    root = layout(tmp_path, [tar(m("bin", "dir"))])
    proc = build(specdir, f"init:\n  - oci:{root}:evil\nfiles:\n  - path: etc/x\n"
                 "    source: link\n")
    assert proc.returncode in (1, 2), proc.stderr
    assert "Traceback" not in proc.stderr and "link" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_tar_reader_never_sees_a_gzip_of_junk_as_entries(tmp_path):
    """Random bytes gzipped: one clean error, nothing cached under the layer's diff_id."""
    junk = bytes(range(256)) * 40
    root = layout(tmp_path, [junk])
    proc = build(tmp_path, f"init:\n  - oci:{root}:evil\n")
    assert_clean_failure(tmp_path, proc, 1, "unreadable tar")
