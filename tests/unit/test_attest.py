"""Attestations: DSSE envelopes of in-toto statements, signatures of several parties, forgeries."""

from __future__ import annotations

import base64

import pytest

from composer import canonjson
from composer.cli import main
from composer.errors import ComposerError
from composer.repro import attest


def record(name: str = "demo", digest: str = "a" * 64) -> bytes:
    return canonjson.pretty({
        "schema": "image-composer/build-record/v1", "build": {"name": name},
        "images": [], "specs": [], "rootfs": {"sha256": digest, "size": 10240},
        "outputs": [{"name": f"{name}.tar", "sha256": digest, "size": 10240},
                    {"name": f"{name}-kernel", "sha256": "b" * 64, "size": 7}],
    })


@pytest.fixture
def parties(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    private = {}
    for who in ("alice", "bob", "mallory"):
        key, pub = attest.generate_key(tmp_path / who)
        private[who] = key
        if who != "mallory":
            pub.rename(keys / pub.name)
    return private, keys


def test_statement_is_in_toto_v1_with_every_output_and_the_record_as_subjects():
    data = record()
    st = attest.statement(data)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    import hashlib

    assert st["subject"] == [
        {"name": "demo-kernel", "digest": {"sha256": "b" * 64}},
        {"name": "demo.build.json", "digest": {"sha256": hashlib.sha256(data).hexdigest()}},
        {"name": "demo.tar", "digest": {"sha256": "a" * 64}},
    ]
    assert attest.statement(data) == st  # a pure function of the record's bytes


def test_two_parties_accumulate_and_meet_a_threshold_of_two(tmp_path, parties):
    private, keys = parties
    rec = record()
    env_path = tmp_path / "demo.intoto.json"
    kid_a = attest.sign(rec, private["alice"], env_path)
    kid_b = attest.sign(rec, private["bob"], env_path)
    attest.sign(rec, private["alice"], env_path)  # signing again replaces, never duplicates
    env = canonjson.loads(env_path.read_bytes())
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert sorted(s["keyid"] for s in env["signatures"]) == sorted([kid_a, kid_b])
    check = attest.check_envelope(rec, env_path, attest.load_public_keys(keys))
    assert sorted(check.valid) == sorted([kid_a, kid_b]) and check.rejected == ()


def test_untrusted_and_forged_signatures_are_rejected(tmp_path, parties):
    private, keys = parties
    rec = record()
    env_path = tmp_path / "e.json"
    kid_a = attest.sign(rec, private["alice"], env_path)
    attest.sign(rec, private["mallory"], env_path)  # valid signature, but not a trusted key
    env = canonjson.loads(env_path.read_bytes())
    # a forgery claiming to be bob: mallory's signature relabelled with bob's key id
    bob_id = attest.key_id(attest.load_private_key(private["bob"]).public_key())
    mallory = next(s for s in env["signatures"] if s["keyid"] != kid_a)
    env["signatures"].append({"keyid": bob_id, "sig": mallory["sig"]})
    # and one with a flipped bit in alice's signature
    alice = next(s for s in env["signatures"] if s["keyid"] == kid_a)
    raw = bytearray(base64.b64decode(alice["sig"]))
    raw[0] ^= 1
    env["signatures"].append({"keyid": kid_a, "sig": base64.b64encode(bytes(raw)).decode()})
    env_path.write_bytes(canonjson.pretty(env))
    check = attest.check_envelope(rec, env_path, attest.load_public_keys(keys))
    assert check.valid == (kid_a,)
    assert len(check.rejected) == 3


def test_a_signature_over_another_subject_counts_for_nothing(tmp_path, parties):
    private, keys = parties
    env_path = tmp_path / "other.json"
    attest.sign(record("demo", "c" * 64), private["alice"], env_path)
    check = attest.check_envelope(record(), env_path, attest.load_public_keys(keys))
    assert check.valid == ()
    assert "different subject" in check.rejected[0]
    # nor can a party add its signature for this record to that envelope
    with pytest.raises(ComposerError, match="different statement"):
        attest.sign(record(), private["bob"], env_path)


def test_payload_swapped_under_valid_signatures_is_rejected(tmp_path, parties):
    private, keys = parties
    env_path = tmp_path / "e.json"
    attest.sign(record(), private["alice"], env_path)
    env = canonjson.loads(env_path.read_bytes())
    # a trusted signature, but the payload replaced by the statement of the record we check
    other = canonjson.compact(attest.statement(record("demo", "d" * 64)))
    env["payload"] = base64.b64encode(other).decode()
    env_path.write_bytes(canonjson.pretty(env))
    check = attest.check_envelope(record("demo", "d" * 64), env_path,
                                  attest.load_public_keys(keys))
    assert check.valid == () and len(check.rejected) == 1


def test_cli_round_trip_with_threshold(tmp_path, parties, capsys):
    private, keys = parties
    rec = tmp_path / "demo.build.json"
    rec.write_bytes(record())
    assert main(["attest", str(rec), "--key", str(private["alice"])]) == 0
    sigs = tmp_path / "demo.intoto.json"
    assert sigs.is_file()
    args = ["verify", str(rec), "--signatures", str(sigs), "--keys", str(keys)]
    assert main([*args, "--threshold", "2"]) == 1
    assert "NOT verified" in capsys.readouterr().out
    assert main(["attest", str(rec), "--key", str(private["bob"]), "-o", str(sigs)]) == 0
    assert main([*args, "--threshold", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 required" in out and out.rstrip().endswith("verified")
    assert main([*args, "--threshold", "3"]) == 1
    assert main(["verify", str(rec), "--signatures", str(sigs)]) == 2  # --keys is required
    assert main(["attest", "--generate-key", str(private["alice"])]) == 1  # never overwrites


def test_keys_are_ed25519_pem_with_private_mode_0600(tmp_path):
    key, pub = attest.generate_key(tmp_path / "k")
    assert key.stat().st_mode & 0o777 == 0o600
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    (tmp_path / "bad").write_bytes(b"not a key")
    with pytest.raises(ComposerError, match="not an unencrypted PEM private key"):
        attest.load_private_key(tmp_path / "bad")
