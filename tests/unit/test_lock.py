"""The lock file: format, pinning, --locked checks, tag re-resolution and offline errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer import canonjson, cli
from composer.errors import ComposerError, UsageError
from composer.images.cache import Cache
from composer.images.lock import (
    Lock,
    Pin,
    Resolver,
    Wanted,
    lock_path,
    parse_lock,
    read_lock,
    resolve_wanted,
    update_lock,
)
from composer.images.registry import RegistryClient
from composer.images.write import export_layout
from tests.fixtures.images import export_index, make_index, sample_image
from tests.unit.test_registry_unit import FakeRegistry

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


@pytest.fixture
def fake():
    registry = FakeRegistry()
    yield registry
    registry.close()


def test_format_is_stable_sorted_json(tmp_path):
    lock = Lock({"b.yml": "ff", "a.yml": "ee"},
                {"z:1": {"arm64": Pin(D2, D3), "amd64": Pin(D1)}, "a:1": {"amd64": Pin(D1)}})
    data = lock.to_bytes()
    assert data == canonjson.pretty(json.loads(data))
    doc = json.loads(data)
    assert list(doc) == ["images", "lockVersion", "specs"]
    assert list(doc["images"]) == ["a:1", "z:1"]
    assert doc["images"]["z:1"] == {"amd64": {"digest": D1},
                                    "arm64": {"digest": D2, "index": D3}}
    assert parse_lock(data, tmp_path / "x.lock") == lock


@pytest.mark.parametrize(("doc", "message"), [
    ("[]", "not a JSON object"),
    ('{"lockVersion": 9, "specs": {}, "images": {}}', "lockVersion 9"),
    ('{"lockVersion": 1, "specs": [], "images": {}}', "specs must map"),
    ('{"lockVersion": 1, "specs": {}, "images": {"a": {"amd64": {"digest": "md5:x"}}}}',
     r"images\['a'\]\['amd64'\].digest: malformed digest"),
    ("{", "not JSON"),
])
def test_bad_lock_files(tmp_path, doc, message):
    with pytest.raises(ComposerError, match=message):
        parse_lock(doc.encode(), tmp_path / "x.lock")


def test_lock_path_is_next_to_the_first_spec():
    assert lock_path([Path("dir/hello.yml"), Path("other/x.yml")]) == Path("dir/hello.lock")


def write_spec(tmp_path: Path, text: str, name: str = "s.yml") -> Path:
    spec = tmp_path / name
    spec.write_text(text)
    return spec


def test_tags_stay_pinned_until_update_or_pull(fake, tmp_path):
    store = Cache(tmp_path / "store")
    first, second = sample_image(store, tag="-1"), sample_image(store, tag="-2")
    fake.add_image("team/app", "1", store, first)
    spec = write_spec(tmp_path, "# a spec\n")
    ref = f"{fake.host}/team/app:1"
    wanted = [Wanted(ref, tmp_path)]
    r = Resolver(cache=Cache(tmp_path / "cache"), arch="amd64", client=RegistryClient())

    path, lock = update_lock(wanted, [spec], ["amd64"], r, update=False)
    assert path == tmp_path / "s.lock"
    assert lock.pin(ref, "amd64") == Pin(first.digest)
    assert read_lock(path) == lock

    fake.add_image("team/app", "1", store, second)  # the tag moves
    fresh = Resolver(cache=Cache(tmp_path / "cache2"), arch="amd64", client=RegistryClient())
    images = resolve_wanted(wanted, fresh, lock_file=path, specs=[spec], locked=True)
    assert images[ref].digest == first.digest
    assert images[ref].ref == ref  # the same ref as without a lock: outputs do not change
    assert not any(p.endswith("/manifests/1") for p in fake.paths("cache2"))
    pulled = Resolver(cache=fresh.cache, arch="amd64", pull=True, client=RegistryClient())
    assert resolve_wanted(wanted, pulled, lock_file=path)[ref].digest == second.digest

    _, kept = update_lock(wanted, [spec], ["amd64"], r, update=False)
    assert kept.pin(ref, "amd64") == Pin(first.digest)
    _, updated = update_lock(wanted, [spec], ["amd64"], r, update=True)
    assert updated.pin(ref, "amd64") == Pin(second.digest)


def test_index_pins_per_arch_and_arches_are_kept(fake, tmp_path):
    store = Cache(tmp_path / "store")
    amd64, arm64 = sample_image(store, arch="amd64"), sample_image(store, arch="arm64")
    index = make_index(store, [amd64, arm64])
    for image in (amd64, arm64):
        fake.add_image("multi", None, store, image)
    fake.add_manifest("multi", "1", index.manifest, index.descriptor["mediaType"])
    spec = write_spec(tmp_path, "x\n")
    ref = f"{fake.host}/multi:1"
    r = Resolver(cache=Cache(tmp_path / "cache"), arch="amd64", client=RegistryClient())
    update_lock([Wanted(ref, None)], [spec], ["arm64"], r, update=False)
    _, lock = update_lock([Wanted(ref, None)], [spec], ["amd64"], r, update=False)
    assert lock.images[ref] == {"amd64": Pin(amd64.digest, index.digest),
                                "arm64": Pin(arm64.digest, index.digest)}
    arm = Resolver(cache=Cache(tmp_path / "c2"), arch="arm64", client=RegistryClient())
    image = resolve_wanted([Wanted(ref, None)], arm, lock_file=lock_path([spec]))[ref]
    assert (image.digest, image.index_digest) == (arm64.digest, index.digest)


def test_locked_refuses_missing_pins_changed_specs_and_pull(tmp_path):
    store = Cache(tmp_path / "store")
    written = sample_image(store)
    export_layout(store, written, tmp_path / "oci", "a")
    export_layout(store, written, tmp_path / "oci", "b")
    spec = write_spec(tmp_path, "v1\n")
    r = Resolver(cache=Cache(tmp_path / "cache"), arch="amd64")
    a, b = Wanted("oci:oci:a", tmp_path), Wanted("oci:oci:b", tmp_path)
    path, _ = update_lock([a], [spec], ["amd64"], r, update=False)
    assert resolve_wanted([a], r, lock_file=path, specs=[spec], locked=True)
    with pytest.raises(ComposerError, match=r"has no amd64 pin for oci:oci:b; run "
                                            r"image-composer lock"):
        resolve_wanted([a, b], r, lock_file=path, specs=[spec], locked=True)
    with pytest.raises(ComposerError, match="has no arm64 pin"):
        resolve_wanted([a], Resolver(cache=r.cache, arch="arm64"), lock_file=path,
                       specs=[spec], locked=True)
    # without --locked, a ref the lock does not know is simply resolved
    assert set(resolve_wanted([a, b], r, lock_file=path, specs=[spec])) == {a.text, b.text}
    spec.write_text("v2\n")
    with pytest.raises(ComposerError, match=r"--locked: s.yml changed since"):
        resolve_wanted([a], r, lock_file=path, specs=[spec], locked=True)
    with pytest.raises(UsageError, match="--locked and --pull"):
        resolve_wanted([a], Resolver(cache=r.cache, arch="amd64", pull=True), lock_file=path,
                       specs=[spec], locked=True)
    with pytest.raises(ComposerError, match="--locked: no lock file"):
        resolve_wanted([a], r, lock_file=tmp_path / "none.lock", specs=[spec], locked=True)


def test_local_source_that_changed_is_refused(tmp_path):
    store = Cache(tmp_path / "store")
    export_layout(store, sample_image(store, tag="-1"), tmp_path / "oci", "a")
    spec = write_spec(tmp_path, "x\n")
    r = Resolver(cache=Cache(tmp_path / "cache"), arch="amd64")
    want = Wanted("oci:oci:a", tmp_path, "s.yml:3:5")
    path, lock = update_lock([want], [spec], ["amd64"], r, update=False)
    export_layout(store, sample_image(store, tag="-2"), tmp_path / "oci", "a")
    with pytest.raises(ComposerError, match=r"^s.yml:3:5: oci:oci:a: resolves to sha256:\w+ "
                                            r"but .*s.lock pins " + lock.pin(want.text,
                                                                             "amd64").digest):
        resolve_wanted([want], r, lock_file=path)


def test_offline_names_every_missing_image(fake, tmp_path):
    store = Cache(tmp_path / "store")
    written = sample_image(store)
    export_layout(store, written, tmp_path / "oci", "a")
    refs = [f"{fake.host}/x:1", "oci:oci:a", f"{fake.host}/y@sha256:{'a' * 64}"]
    r = Resolver(cache=Cache(tmp_path / "cache"), arch="amd64", offline=True)
    with pytest.raises(ComposerError) as info:
        resolve_wanted([Wanted(t, tmp_path) for t in refs], r, lock_file=None)
    assert str(info.value) == f"offline, and not in the cache: {refs[0]}, {refs[2]}"
    assert fake.requests == []


def test_lock_command(tmp_path, capsys):
    store = Cache(tmp_path / "store")
    amd64, arm64 = sample_image(store, arch="amd64"), sample_image(store, arch="arm64")
    index = make_index(store, [amd64, arm64])
    export_index(store, index, [amd64, arm64], tmp_path / "oci", "multi")
    spec = write_spec(tmp_path, "init:\n  - oci:oci:multi\n", "hello.yml")
    cache = str(tmp_path / "cache")
    argv = ["lock", "--cache", cache, "--arch", "amd64", "--arch", "arm64", str(spec)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'hello.lock'}\n"
    data = (tmp_path / "hello.lock").read_bytes()
    lock = read_lock(tmp_path / "hello.lock")
    assert lock.images == {"oci:oci:multi": {"amd64": Pin(amd64.digest, index.digest),
                                             "arm64": Pin(arm64.digest, index.digest)}}
    assert list(lock.specs) == ["hello.yml"]
    assert cli.main([*argv, "-q"]) == 0
    assert (tmp_path / "hello.lock").read_bytes() == data
    assert cli.main(["lock", "--update", "--offline", str(spec)]) == 2
