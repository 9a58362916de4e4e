"""SLSA Provenance v1 of a build, read by the in-toto attestation framework's own schema
(in-toto-attestation's protobuf definitions of Statement v1 and SLSA Provenance v1), and our
DSSE envelopes checked by an independent DSSE implementation (securesystemslib): ours verify,
tampered ones fail."""

from __future__ import annotations

import base64
import copy
import socket

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from composer import canonjson
from composer.build import BuildRequest, run_build
from composer.repro import attest, provenance
from tests.golden.inputs import NAME, make_inputs


def signed_build(tmp_path, key, where="a"):
    spec = make_inputs(tmp_path / "inputs")
    req = BuildRequest(specs=(spec,), formats=("tar",), output_dir=tmp_path / where / "out",
                       name=NAME, arch="amd64", cache_dir=tmp_path / where / "cache",
                       offline=True, source_date_epoch=1700000000, sign_key=key)
    return {p.name: p for p in run_build(req, log=lambda _m: None)}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    return {kind: attest.generate_key(base / kind, kind) for kind in attest.KEY_KINDS}


@pytest.fixture(scope="module")
def builds(tmp_path_factory, keys):
    """One signed build per key kind, shared by the tests here."""
    return {kind: signed_build(tmp_path_factory.mktemp(kind), keys[kind][0])
            for kind in attest.KEY_KINDS}


def sslib_key(pub_path):
    pub = attest.load_public_key(pub_path)
    return SSlibKey.from_crypto(pub, keyid=attest.key_id(pub))


def test_provenance_is_slsa_v1_over_the_outputs_from_the_specs_and_the_lock(builds, keys):
    out = builds["ed25519"]
    record_bytes = out[f"{NAME}.build.json"].read_bytes()
    record = canonjson.loads(record_bytes)
    env = canonjson.loads(out[provenance.provenance_name(NAME)].read_bytes())
    assert env["payloadType"] == "application/vnd.in-toto+json"
    st = canonjson.loads(base64.b64decode(env["payload"]))
    assert st == provenance.statement(record_bytes)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    assert st["subject"] == [{"name": o["name"], "digest": {"sha256": o["sha256"]}}
                             for o in record["outputs"]]
    definition = st["predicate"]["buildDefinition"]
    assert definition["buildType"] == provenance.BUILD_TYPE
    params = definition["externalParameters"]
    assert [s["sha256"] for s in params["specs"]] == [s["sha256"] for s in record["specs"]]
    assert [i["digest"] for i in params["lock"]] == [i["digest"] for i in record["images"]]
    deps = {d["digest"]["sha256"] for d in definition["resolvedDependencies"]}
    assert {i["digest"].removeprefix("sha256:") for i in record["images"]} <= deps
    assert {s["sha256"] for s in record["specs"]} <= deps
    # nothing of the machine or the moment: no time fields, no host name, no path
    text = base64.b64decode(env["payload"]).decode()
    for word in ("startedOn", "finishedOn", "invocationId", str(out[f"{NAME}.tar"].parent),
                 socket.gethostname()):
        assert word not in text
    # the sums (not listing the signed files) and their detached signature
    sums = out[f"{NAME}.SHA256SUMS"].read_bytes()
    assert provenance.provenance_name(NAME).encode() not in sums
    pub = attest.load_public_key(keys["ed25519"][1])
    assert attest.raw_verifies(pub, out[provenance.signature_name(NAME)].read_bytes(), sums)
    assert not attest.raw_verifies(pub, out[provenance.signature_name(NAME)].read_bytes(),
                                   sums + b"\n")


def test_the_same_build_elsewhere_gives_the_same_signed_provenance(tmp_path, keys, builds):
    a = builds["ed25519"]
    b = signed_build(tmp_path, keys["ed25519"][0], "b")
    name = provenance.provenance_name(NAME)
    assert a[name].read_bytes() == b[name].read_bytes()  # ed25519 is deterministic


def check_with_in_toto_schema(payload: bytes) -> None:
    """Parse strictly (unknown or mistyped fields fail) into the framework's protobufs."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import Statement

    pb = json_format.Parse(payload, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    predicate = json_format.ParseDict(canonjson.loads(payload)["predicate"],
                                      provenance_pb2.Provenance())
    assert predicate.build_definition.build_type == provenance.BUILD_TYPE
    assert predicate.run_details.builder.id == provenance.BUILDER_ID
    for dep in predicate.build_definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(dep).validate()


def test_the_statement_passes_the_in_toto_attestation_schema(builds):
    from google.protobuf import json_format

    out = builds["ed25519"]
    env = canonjson.loads(out[provenance.provenance_name(NAME)].read_bytes())
    payload = base64.b64decode(env["payload"])
    check_with_in_toto_schema(payload)
    # and the schema is strict enough to notice a misnamed field
    bad = canonjson.loads(payload)
    bad["predicate"]["buildDefinition"]["externalParameter"] = \
        bad["predicate"]["buildDefinition"].pop("externalParameters")
    with pytest.raises(json_format.ParseError):
        check_with_in_toto_schema(canonjson.compact(bad))


def test_default_bootloaders_resolve_to_their_pinned_debs():
    from outputs.bootloader_debs import FILES

    record = canonjson.pretty({
        "schema": "image-composer/build-record/v1", "build": {"name": "x"}, "specs": [],
        "images": [], "rootfs": {"sha256": "a" * 64},
        "outputs": [{"name": "x.iso", "sha256": "d" * 64, "size": 1}],
        "options": {"bootloaders": {"isolinux.bin": "sha256:" + FILES["isolinux.bin"].sha256,
                                    "mbr.bin": "sha256:" + "c" * 64}}})
    deps = provenance.statement(record)["predicate"]["buildDefinition"]["resolvedDependencies"]
    deb = next(d for d in deps if d["name"].startswith("isolinux_"))
    assert deb["digest"] == {"sha256": FILES["isolinux.bin"].deb.sha256}
    assert deb["uri"].startswith("https://deb.debian.org/debian/pool/main/s/syslinux/")
    assert {"name": "mbr.bin", "digest": {"sha256": "c" * 64},
            "annotations": {"role": "mbr.bin"}} in deps
    check_with_in_toto_schema(canonjson.compact(provenance.statement(record)))


@pytest.mark.parametrize("kind", attest.KEY_KINDS)
def test_an_independent_dsse_implementation_verifies_ours_and_rejects_tampering(
        tmp_path, keys, builds, kind):
    out = builds[kind]
    key = sslib_key(keys[kind][1])
    envelopes = [canonjson.loads(out[provenance.provenance_name(NAME)].read_bytes())]
    reproduced = tmp_path / "r.intoto.json"  # the "reproduced" statement, by `attest`
    attest.sign(out[f"{NAME}.build.json"].read_bytes(), keys[kind][0], reproduced)
    envelopes.append(canonjson.loads(reproduced.read_bytes()))
    for env in envelopes:
        assert list(Envelope.from_dict(copy.deepcopy(env)).verify([key], 1)) == [key.keyid]
        tampered = copy.deepcopy(env)
        payload = bytearray(base64.b64decode(tampered["payload"]))
        payload[-3] ^= 1
        tampered["payload"] = base64.b64encode(bytes(payload)).decode()
        with pytest.raises(VerificationError):
            Envelope.from_dict(tampered).verify([key], 1)
        retyped = copy.deepcopy(env)
        retyped["payloadType"] = "application/json"  # the type is signed too (PAE)
        with pytest.raises(VerificationError):
            Envelope.from_dict(retyped).verify([key], 1)
    # and a signature made by the independent implementation verifies with ours
    from securesystemslib.signer import CryptoSigner

    signer = CryptoSigner(attest.load_private_key(keys[kind][0]),
                          sslib_key(keys[kind][1]))
    theirs = Envelope(canonjson.compact(provenance.statement(
        out[f"{NAME}.build.json"].read_bytes())), attest.PAYLOAD_TYPE, {})
    theirs.sign(signer)
    valid, rejected = attest.verify_signatures(theirs.to_dict(),
                                               attest.trusted_keys([keys[kind][1]]))
    assert valid == [key.keyid] and rejected == []
