"""``image-composer cache ls|rm|clean|verify|import|export`` and the cache's locks."""

from __future__ import annotations

import io
import tarfile
import threading

import pytest

from composer import canonjson, cli
from composer.cache.maintain import clean, export, import_archive, verify
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.resolve import resolve_image
from tests.fixtures.images import blob_files, make_index, sample_image


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture
def cache(tmp_path) -> Cache:
    """A cache holding a single-platform image and a two-platform index, both tagged."""
    cache = Cache(tmp_path / "cache")
    one = sample_image(cache)
    cache.tag("reg.example/one:1", one.descriptor)
    amd64, arm64 = sample_image(cache, tag="-m"), sample_image(cache, arch="arm64")
    index = make_index(cache, [amd64, arm64])
    cache.tag("reg.example/multi:1", index.descriptor)
    return cache


def test_ls_rm_clean(cache, capsys):
    status, out, _ = run(capsys, "cache", "ls", "--cache", str(cache.root))
    assert status == 0
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["reg.example/multi:1",
                                                       "reg.example/one:1"]
    before = blob_files(cache)
    status, out, _ = run(capsys, "cache", "clean", "--cache", str(cache.root))
    assert (status, out) == (0, "removed 0 files, 0 B\n")
    assert blob_files(cache) == before
    assert run(capsys, "cache", "rm", "--cache", str(cache.root),
               "reg.example/multi:1")[0] == 0
    assert cache.lookup("reg.example/multi:1") is None
    status, out, _ = run(capsys, "cache", "clean", "--cache", str(cache.root))
    assert status == 0 and out.startswith("removed ")
    left = blob_files(cache)
    assert len(left) == 4  # the single image's manifest, config and two layers
    assert cache.has_blob(cache.lookup("reg.example/one:1")["digest"])
    status, _, err = run(capsys, "cache", "rm", "--cache", str(cache.root), "nope:1")
    assert (status, err) == (1, "error: not in the cache: docker.io/library/nope:1\n")


def test_rm_accepts_the_short_spelling(tmp_path, capsys):
    cache = Cache(tmp_path / "cache")
    cache.tag("docker.io/library/busybox:1", sample_image(cache).descriptor)
    assert run(capsys, "cache", "rm", "--cache", str(cache.root), "busybox:1")[0] == 0
    assert cache.refs() == []


def test_clean_removes_stray_temporary_files_and_derived_layers(cache):
    (cache.root / "tmp" / "blob-leftover").write_bytes(b"partial")
    desc = cache.lookup("reg.example/one:1")
    manifest = canonjson.loads(cache.read_blob(desc["digest"]))
    config = canonjson.loads(cache.read_blob(manifest["config"]["digest"]))
    layer = manifest["layers"][0]
    cache.uncompressed_layer(layer["digest"], layer["size"], layer["mediaType"],
                             config["rootfs"]["diff_ids"][0], "layer")
    orphan = cache.root / "uncompressed" / "sha256" / ("f" * 64)
    orphan.write_bytes(b"x")
    count, _ = clean(cache)
    assert count == 2
    assert list((cache.root / "tmp").iterdir()) == []
    assert not orphan.exists()
    assert cache.uncompressed_path(config["rootfs"]["diff_ids"][0]).exists()


def test_verify_finds_corruption(cache, capsys):
    assert verify(cache) == []
    (cache.root / "tmp" / "blob-leftover").write_bytes(b"partial")  # not corruption
    status, out, _ = run(capsys, "cache", "verify", "--cache", str(cache.root))
    assert (status, out) == (0, f"{cache.root}: ok\n")
    victim = cache.root / "blobs" / "sha256" / blob_files(cache)[0]
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    victim.write_bytes(bytes(data))
    problems = verify(cache)
    assert len(problems) == 1 and problems[0].startswith(f"{victim}: content is sha256:")
    status, _, err = run(capsys, "cache", "verify", "--cache", str(cache.root))
    assert status == 1
    assert err.startswith(f"error: {victim}: content is sha256:")
    assert err.endswith(f"(1 problems in {cache.root})\n")


def test_verify_reports_a_ref_to_a_missing_blob(cache):
    desc = cache.lookup("reg.example/one:1")
    cache.blob_path(desc["digest"]).unlink()
    assert verify(cache) == [f"reg.example/one:1: manifest {desc['digest']} is missing"]


def test_export_import_round_trip_is_deterministic(cache, tmp_path, capsys):
    first, second = tmp_path / "a.tar", tmp_path / "b" / "b.tar"
    assert run(capsys, "cache", "export", "--cache", str(cache.root), "reg.example/multi:1",
               "-o", str(first))[0] == 0
    export(cache, "reg.example/multi:1", second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert names[-2:] == ["index.json", "oci-layout"]

    other = Cache(tmp_path / "other")
    status, out, _ = run(capsys, "cache", "import", "--cache", str(other.root), str(first))
    assert (status, out) == (0, "reg.example/multi:1\n")
    assert other.lookup("reg.example/multi:1")["digest"] == \
        cache.lookup("reg.example/multi:1")["digest"]
    image = resolve_image("oci-archive:" + str(first), cache=Cache(tmp_path / "third"),
                          arch="arm64")
    assert image.config["architecture"] == "arm64"
    # an imported image resolves offline
    again = resolve_image("reg.example/multi:1", cache=other, arch="arm64", offline=True)
    assert (again.digest, again.layers, again.config) == (image.digest, image.layers,
                                                          image.config)
    assert verify(other) == []


def test_export_of_an_incomplete_or_unknown_ref(cache, tmp_path, capsys):
    desc = cache.lookup("reg.example/one:1")
    layer = canonjson.loads(cache.read_blob(desc["digest"]))["layers"][0]["digest"]
    cache.blob_path(layer).unlink()
    status, _, err = run(capsys, "cache", "export", "--cache", str(cache.root),
                         "reg.example/one:1", "-o", str(tmp_path / "x.tar"))
    assert (status, err) == (1, "error: reg.example/one:1: not completely in the cache; "
                                "build or pull it first\n")
    assert not (tmp_path / "x.tar").exists()
    status, _, err = run(capsys, "cache", "export", "--cache", str(cache.root), "x:1",
                         "-o", str(tmp_path / "x.tar"))
    assert (status, err) == (1, "error: docker.io/library/x:1: not in the cache\n")


def test_import_of_an_archive_without_tags(tmp_path, capsys):
    with tarfile.open(tmp_path / "empty.tar", "w") as tar:
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", b'{"schemaVersion":2,"manifests":[]}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ComposerError, match="no tagged images"):
        import_archive(Cache(tmp_path / "c"), tmp_path / "empty.tar")


def test_clean_waits_for_builds_using_the_cache(cache):
    stray = cache.root / "tmp" / "blob-inflight"
    done = threading.Event()

    def run_clean() -> None:
        clean(cache)
        done.set()

    with cache.in_use():
        stray.write_bytes(b"a download in progress")
        worker = threading.Thread(target=run_clean)
        worker.start()
        worker.join(0.3)
        assert not done.is_set()  # blocked: the in-flight file survives
        assert stray.exists()
    worker.join()
    assert done.is_set() and not stray.exists()
