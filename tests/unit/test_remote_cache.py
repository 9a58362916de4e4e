"""The remote cache's checks and fault handling, with an in-process registry double for the
faults only (tests/integration/test_remote_cache.py runs it against real registries)."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import pytest

from composer import canonjson
from composer.cache.remote import entry, housekeeping
from composer.cache.remote.use import RemoteCache, Settings, settings_from
from composer.errors import ComposerError, UsageError
from composer.images.registry import TransientError
from composer.repro import attest
from composer.streams.digest import sha256_digest

KEY = "ab" * 32
REPO = "127.0.0.1:5000/ci/cache"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("keys")
    return {"ci": attest.generate_key(base / "ci"),
            "p256": attest.generate_key(base / "p256", "ecdsa-p256"),
            "other": attest.generate_key(base / "other")}


def payload(data: bytes = b"rootfs bytes", key: str = KEY, kind: str = "rootfs"
            ) -> entry.Payload:
    return entry.Payload(kind, key, "tar", (entry.File("rootfs.tar", sha256_digest(data),
                                                       len(data)),), {"entries": 3})


# -- signing -------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["ci", "p256"])
def test_payload_signatures_verify_only_under_trusted_keys(keys, who):
    private = attest.load_private_key(keys[who][0])
    trusted = {attest.key_id(private.public_key()): private.public_key()}
    other = attest.load_private_key(keys["other"][0]).public_key()
    data = payload().to_bytes()
    env = attest.sign_payload(private, entry.PAYLOAD_TYPE, data)
    assert attest.verify_payload(env, entry.PAYLOAD_TYPE, trusted) == \
        (data, attest.key_id(private.public_key()))
    assert attest.verify_payload(env, entry.PAYLOAD_TYPE, {"x": other}) is None
    assert attest.verify_payload(env, "other/type", trusted) is None
    forged = dict(env, payload=attest._b64(payload(b"other bytes").to_bytes()))
    assert attest.verify_payload(forged, entry.PAYLOAD_TYPE, trusted) is None


# -- the entry format ----------------------------------------------------------------------
def test_a_signed_entry_under_another_key_or_kind_is_refused():
    data = payload().to_bytes()
    assert entry.parse_payload(data, "rootfs", KEY, "x") == payload()
    with pytest.raises(entry.Rejected, match="another key"):
        entry.parse_payload(data, "rootfs", "cd" * 32, "x")
    with pytest.raises(entry.Rejected, match="another key"):
        entry.parse_payload(data, "outputs", KEY, "x")


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".."])
def test_file_names_that_could_escape_are_refused(name):
    bad = entry.Payload("rootfs", KEY, "tar", (entry.File(name, sha256_digest(b""), 0),), {})
    with pytest.raises(entry.Rejected, match="file names"):
        entry.parse_payload(bad.to_bytes(), "rootfs", KEY, "x")


def test_the_manifest_must_list_exactly_the_signed_files():
    p = payload()
    doc = canonjson.loads(entry.manifest(p, b"{}", "kid", "2026-01-01T00:00:00Z"))
    assert doc["artifactType"] == entry.ARTIFACT_TYPE
    assert doc["annotations"][entry.A_KEY] == KEY
    entry.check_layers(doc, p, "x")
    doc["layers"][1]["digest"] = sha256_digest(b"else")
    with pytest.raises(entry.Rejected, match="not the signed files"):
        entry.check_layers(doc, p, "x")
    assert entry.parse_tag(entry.tag("outputs", KEY)) == ("outputs", KEY)
    assert entry.parse_tag("latest") is None and len(entry.tag("outputs", KEY)) <= 128


# -- settings ------------------------------------------------------------------------------
def test_settings_come_from_flags_then_comma_separated_environment(keys, tmp_path):
    env = {"IMAGE_COMPOSER_CACHE_FROM": f"{REPO}, {REPO}2", "IMAGE_COMPOSER_CACHE_TO": REPO,
           "IMAGE_COMPOSER_CACHE_KEY": str(keys["ci"][0]),
           "IMAGE_COMPOSER_CACHE_TRUST": f"{keys['ci'][1]},{keys['p256'][1]}"}
    s = settings_from(None, None, None, None, False, (), env)
    assert s.cache_from == (REPO, f"{REPO}2") and s.cache_to == (REPO,)
    assert s.key == keys["ci"][0] and s.trust == (keys["ci"][1], keys["p256"][1])
    flags = settings_from(None, [f"{REPO}3"], None, None, True, (), env)
    assert flags.cache_from == (f"{REPO}3",) and flags.required
    with pytest.raises(UsageError, match="--cache-key"):
        settings_from([REPO], None, None, None, False, (), {})
    with pytest.raises(UsageError, match="repository"):
        settings_from(None, [f"{REPO}:latest"], None, None, False, (), {})


# -- housekeeping --------------------------------------------------------------------------
def test_prune_picks_old_entries_then_the_oldest_beyond_the_size():
    def listed(tag: str, size: int, day: int) -> housekeeping.Listed:
        return housekeeping.Listed(tag, "rootfs", KEY, "tar", size,
                                   f"2026-01-{day:02d}T00:00:00Z", "kid", "sha256:x")

    items = [listed("a", 10, 1), listed("b", 10, 5), listed("c", 10, 9), listed("d", 10, 10)]
    now = datetime.datetime(2026, 1, 11, tzinfo=datetime.UTC)
    week = housekeeping.parse_duration("7d")
    assert [e.tag for e in housekeeping.choose(items, now, week, None)] == ["a"]  # 10 days
    assert [e.tag for e in housekeeping.choose(items, now, None, 25)] == ["a", "b"]
    assert [e.tag for e in housekeeping.choose(items, now, week, 5)] == ["a", "b", "c", "d"]
    assert housekeeping.parse_size("1.5G") == 3 << 29
    assert housekeeping.parse_size("500MiB") == 500 << 20
    with pytest.raises(UsageError):
        housekeeping.parse_size("lots")
    with pytest.raises(UsageError):
        housekeeping.parse_duration("7 days")


# -- faults, through an in-process registry double -----------------------------------------
class _Raw:
    def __init__(self, data: bytes):
        self._io = io.BytesIO(data)

    def read(self, n: int, decode_content: bool = False) -> bytes:
        return self._io.read(n)


class _Resp:
    def __init__(self, status: int, data: bytes = b""):
        self.status_code, self.raw, self.content, self.headers = status, _Raw(data), data, {}

    def close(self) -> None:
        pass


class Double:
    """Just enough of RegistryClient for Repo's reads: manifests by tag, blobs by digest."""

    def __init__(self):
        self.manifests: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.down = False
        self.calls = 0

    def repo_url(self, ref) -> str:
        return f"http://double/v2/{ref.repository}"

    def with_retries(self, attempt):
        return attempt()

    def send(self, ref, method, url, what, **kw):
        self.calls += 1
        if self.down:
            raise TransientError(f"{what}: cannot connect to double: Connection refused")
        tag = url.rsplit("/", 1)[-1]
        return _Resp(200, self.manifests[tag]) if tag in self.manifests else _Resp(404)

    def fetch_blob(self, ref, digest, consume, what=None):
        self.calls += 1
        if self.down:
            raise TransientError(f"{what}: cannot connect to double: Connection refused")
        return consume(io.BufferedReader(io.BytesIO(self.blobs[digest])))

    def publish(self, p: entry.Payload, key_path: Path, files: dict[str, bytes]) -> None:
        private = attest.load_private_key(key_path)
        env = canonjson.compact(attest.sign_payload(private, entry.PAYLOAD_TYPE, p.to_bytes()))
        self.blobs[sha256_digest(env)] = env
        for data in files.values():
            self.blobs[sha256_digest(data)] = data
        self.manifests[entry.tag(p.kind, p.key)] = entry.manifest(p, env, "kid", "")


def remote(double: Double, keys, *, required: bool = False) -> tuple[RemoteCache, list[str]]:
    said: list[str] = []
    settings = Settings(cache_from=(REPO, f"{REPO}-2"), trust=(keys["ci"][1],),
                        required=required)
    return RemoteCache(settings, said.append, client=double), said  # type: ignore[arg-type]


def test_an_intact_trusted_entry_is_downloaded_and_recorded(keys, tmp_path):
    double = Double()
    double.publish(payload(), keys["ci"][0], {"rootfs.tar": b"rootfs bytes"})
    rc, said = remote(double, keys)
    got = rc.fetch("rootfs", KEY, tmp_path)
    assert got is not None and got[1]["rootfs.tar"].read_bytes() == b"rootfs bytes"
    assert said == [] and rc.provenance()["entries"][0]["from"] == REPO


def test_bytes_other_than_the_signed_digest_are_rejected_and_removed(keys, tmp_path):
    double = Double()
    double.publish(payload(), keys["ci"][0], {"rootfs.tar": b"rootfs bytes"})
    double.blobs[sha256_digest(b"rootfs bytes")] = b"rootfs BYTES"  # the registry lies
    rc, said = remote(double, keys)
    assert rc.fetch("rootfs", KEY, tmp_path) is None
    assert len(said) == 2 and all("rejected" in line and "expected" in line for line in said)
    assert list(tmp_path.iterdir()) == [] and rc.provenance() is None
    rc, _ = remote(double, keys, required=True)
    with pytest.raises(ComposerError, match="cache-from-required"):
        rc.fetch("rootfs", KEY, tmp_path)


def test_an_untrusted_signer_is_rejected(keys, tmp_path):
    double = Double()
    double.publish(payload(), keys["other"][0], {"rootfs.tar": b"rootfs bytes"})
    rc, said = remote(double, keys)
    assert rc.fetch("rootfs", KEY, tmp_path) is None
    assert "signed by no trusted key" in said[0]


def test_a_registry_that_is_down_is_tried_once_and_noted_once(keys, tmp_path):
    double = Double()
    double.down = True
    rc, said = remote(double, keys)
    for _ in range(3):
        assert rc.fetch("outputs", KEY, tmp_path) is None
    assert double.calls == 2  # once per --cache-from, then skipped for the rest of the build
    assert len(said) == 2 and all(line.startswith("warning: remote cache ") for line in said)
    rc, _ = remote(double, keys, required=True)
    with pytest.raises(ComposerError, match="cannot connect"):
        rc.fetch("outputs", KEY, tmp_path)


def test_no_trusted_key_means_no_remote_reads(keys, tmp_path):
    double = Double()
    said: list[str] = []
    rc = RemoteCache(Settings(cache_from=(REPO,)), said.append,
                     client=double)  # type: ignore[arg-type]
    assert rc.fetch("rootfs", KEY, tmp_path) is None
    assert double.calls == 0 and len(said) == 1 and said[0].startswith("note: ")


def test_the_build_flags_are_checked_before_anything_is_built(tmp_path, capsys, keys):
    from composer.cli import main

    spec = tmp_path / "s.yml"
    spec.write_text("init:\n  - oci:nowhere\n")
    assert main(["build", "--cache-to", REPO, str(spec)]) == 2
    assert "--cache-key" in capsys.readouterr().err
    assert main(["build", "--cache-from", "nohost", str(spec)]) == 2
    assert "repository" in capsys.readouterr().err
    assert main(["build", "--cache-to", REPO, "--cache-key", str(keys["ci"][1]), str(spec)]) == 1
    assert "not an unencrypted PEM private key" in capsys.readouterr().err


def test_attestations_take_ecdsa_p256_keys_too(keys, tmp_path):
    record = canonjson.pretty({"build": {"name": "x"}, "outputs": [
        {"name": "x.tar", "sha256": "00" * 32, "size": 1}], "rootfs": {"sha256": "11" * 32}})
    env = tmp_path / "x.att.json"
    kid = attest.sign(record, keys["p256"][0], env)
    pub = attest.load_public_key(keys["p256"][1])
    check = attest.check_envelope(record, env, {attest.key_id(pub): pub})
    assert check.valid == (kid,) and check.rejected == ()
    other = attest.load_public_key(keys["ci"][1])
    assert attest.check_envelope(record, env, {attest.key_id(other): other}).valid == ()
