"""Releases in a real registry (Debian's docker-registry 2.8: no referrers API, so the
``sha256-<hex>`` tag schema): push a build, read it back with skopeo, verify it as a second
party from a fresh cache, attach attestations and count distinct trusted keys."""

from __future__ import annotations

import base64
import hashlib
import shutil
from pathlib import Path

import pytest

from composer import canonjson, tools
from composer.cli import main
from composer.images.cache import Cache
from composer.images.registry import RegistryClient
from composer.images.write import export_layout, write_image
from composer.oci.media import (
    ATTESTATION_ARTIFACT,
    OCI_EMPTY,
    OCI_INDEX,
    RECORD_ARTIFACT,
    RELEASE_ARTIFACT,
    SBOM_ARTIFACT,
    SUMS_ARTIFACT,
    TITLE_ANNOTATION,
)
from composer.oci.refs import parse_registry_ref
from composer.release.referrers import list_referrers
from composer.repro import attest
from tests.golden.inputs import IMAGES
from tests.integration.conftest import require_tool

pytestmark = pytest.mark.integration
EPOCH = "1700000000"


@pytest.fixture(scope="module")
def release(registry, tmp_path_factory):
    """A tiny build (-f tar) from an image in the registry, signed (ed25519) and released."""
    base = tmp_path_factory.mktemp("release")
    store = Cache(base / "store")
    written = write_image(store, IMAGES["init"], compress=False)
    export_layout(store, written, base / "layout", "1")
    registry.push_layout(base / "layout", "1", "demo/init")
    spec = base / "rel.yml"
    spec.write_text(f"init:\n  - {registry.host}/demo/init:1\n")
    keys = {who: attest.generate_key(base / who, kind)
            for who, kind in (("releaser", "ed25519"), ("verifier", "ecdsa-p256"),
                              ("mallory", "ed25519"))}
    out = base / "out"
    assert main(["build", "-q", "-f", "tar", "--cache", str(base / "cache1"), "-o", str(out),
                 "--source-date-epoch", EPOCH, "--sign", str(keys["releaser"][0]),
                 str(spec)]) == 0
    return {"base": base, "out": out, "keys": keys, "spec": spec}


def _push(registry, release, repo: str, capsys) -> str:
    capsys.readouterr()
    ref = f"{registry.host}/{repo}:v1"
    assert main(["push", "--release", ref, str(release["out"] / "rel.build.json")]) == 0
    pinned = capsys.readouterr().out.splitlines()[0]
    assert pinned.startswith(f"{registry.host}/{repo}@sha256:")
    return pinned


def test_a_release_is_one_artifact_with_its_record_sbom_and_signed_sums_as_referrers(
        registry, release, capsys, tmp_path):
    pinned = _push(registry, release, "demo/rel", capsys)
    digest = pinned.split("@")[1]
    raw = registry.inspect_raw(f"{registry.host}/demo/rel:v1")  # skopeo, an independent reader
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    doc = canonjson.loads(raw)
    assert doc["artifactType"] == RELEASE_ARTIFACT and doc["config"]["mediaType"] == OCI_EMPTY
    record = canonjson.loads((release["out"] / "rel.build.json").read_bytes())
    want = {o["name"]: "sha256:" + o["sha256"] for o in record["outputs"]
            if o["name"] != "rel.spdx.json"}
    assert {la["annotations"][TITLE_ANNOTATION]: la["digest"] for la in doc["layers"]} == want
    assert {la["mediaType"] for la in doc["layers"]} == {"application/x-tar"}
    # pushing the same build again gives the same release digest (and no duplicate referrers)
    assert _push(registry, release, "demo/rel", capsys) == pinned
    # no referrers API here: the tag schema's index, readable by skopeo
    tag = "sha256-" + digest.removeprefix("sha256:")
    index = canonjson.loads(registry.inspect_raw(f"{registry.host}/demo/rel:{tag}"))
    assert index["mediaType"] == OCI_INDEX
    kinds = sorted(m["artifactType"] for m in index["manifests"])
    assert kinds == sorted([RECORD_ARTIFACT, SUMS_ARTIFACT, SBOM_ARTIFACT, ATTESTATION_ARTIFACT])
    for m in index["manifests"]:
        ref_doc = canonjson.loads(registry.inspect_raw(f"{registry.host}/demo/rel@{m['digest']}"))
        assert ref_doc["subject"]["digest"] == digest
    found, how = list_referrers(RegistryClient(), parse_registry_ref(f"{registry.host}/demo/rel"
                                                                     ":v1"), digest)
    assert how == "tag" and len(found) == 4
    # ORAS's Python client (the oras CLI is not packaged for Debian) pulls the files by title
    import oras.client

    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    pulled = client.pull(target=f"{registry.host}/demo/rel:v1", outdir=str(tmp_path / "oras"))
    assert {Path(p).name: "sha256:" + hashlib.sha256(Path(p).read_bytes()).hexdigest()
            for p in pulled} == want


def test_a_second_party_verifies_attests_and_two_keys_meet_the_threshold(
        registry, release, capsys, tmp_path):
    pinned = _push(registry, release, "demo/party", capsys)
    ref = f"{registry.host}/demo/party:v1"
    keys = release["keys"]
    # the verifier: not the releaser's cache; verify's own fresh one, filled from the
    # registry by the recorded digests
    assert main(["verify", ref, "--attest", "--key", str(keys["verifier"][0])]) == 0, \
        capsys.readouterr()
    text = capsys.readouterr().out
    assert "rel.tar: reproduced (" in text and "attested by " in text
    assert text.rstrip().endswith("verified")
    trust = ["--trust", str(keys["releaser"][1]), "--trust", str(keys["verifier"][1])]
    assert main(["attestations", ref, *trust, "--threshold", "2"]) == 0
    text = capsys.readouterr().out
    assert "provenance, good signature by" in text and "reproduced, good signature by" in text
    releaser_id = attest.key_id(attest.load_public_key(keys["releaser"][1]))
    assert f"SHA256SUMS: good signature by {releaser_id}" in text
    assert text.rstrip().endswith("trusted")
    # one trusted key alone is not two
    assert main(["attestations", pinned, "--trust", str(keys["verifier"][1]),
                 "--threshold", "2"]) == 1
    assert "1 of 2 required" in capsys.readouterr().out
    # the released files pass sha256sum -c and the signature verifies with openssl
    openssl = require_tool("openssl")
    out = release["out"]
    tools.run([openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(keys["releaser"][1]),
               "-rawin", "-in", str(out / "rel.SHA256SUMS"), "-sigfile",
               str(out / "rel.SHA256SUMS.sig")], capture=True)
    tools.run([require_tool("sha256sum", "coreutils"), "-c", "rel.SHA256SUMS"], cwd=out,
              capture=True)


def test_forged_and_wrong_subject_attestations_do_not_count(registry, release, capsys,
                                                          tmp_path):
    from composer.images.push import Pusher
    from composer.release.fetch import get_release
    from composer.release.publish import attach_attestation

    _push(registry, release, "demo/forged", capsys)
    ref = parse_registry_ref(f"{registry.host}/demo/forged:v1")
    keys = release["keys"]
    client = RegistryClient()
    rel = get_release(client, ref)
    record = (release["out"] / "rel.build.json").read_bytes()
    verifier = attest.load_private_key(keys["verifier"][0])
    mallory = attest.load_private_key(keys["mallory"][0])
    vid = attest.key_id(verifier.public_key())
    pusher = Pusher(client=client)
    # forged: mallory signs the right statement and labels it with the verifier's key id
    forged = attest.sign_statement(attest.statement(record), mallory)
    forged["signatures"][0]["keyid"] = vid
    attach_attestation(pusher, ref, rel.subject, "forged.intoto.json", forged,
                       attest.PREDICATE_TYPE)
    # wrong subject: the verifier's genuine signature, over another build's output digests
    other = canonjson.loads(record)
    other["outputs"][0]["sha256"] = "0" * 64
    wrong = attest.sign_statement(attest.statement(canonjson.pretty(other)), verifier)
    attach_attestation(pusher, ref, rel.subject, "wrong.intoto.json", wrong,
                       attest.PREDICATE_TYPE)
    # tampered: the verifier's signature over the right statement, one payload byte changed
    good = attest.sign_statement(attest.statement(record), verifier)
    payload = bytearray(base64.b64decode(good["payload"]))
    payload[payload.index(b"sha256") + 12] ^= 1
    good["payload"] = base64.b64encode(bytes(payload)).decode()
    attach_attestation(pusher, ref, rel.subject, "tampered.intoto.json", good,
                       attest.PREDICATE_TYPE)
    capsys.readouterr()
    argv = ["attestations", str(ref), "--trust", str(keys["releaser"][1]), "--trust",
            str(keys["verifier"][1]), "--threshold", "2", "--json"]
    assert main(argv) == 1
    doc = canonjson.loads(capsys.readouterr().out)
    assert not doc["ok"] and list(doc["keys"]) == [
        attest.key_id(attest.load_private_key(keys["releaser"][0]).public_key())]
    rejected = "\n".join(doc["rejected"])
    assert "no trusted key verifies it" in rejected  # the forgery
    assert "a different subject" in rejected and f"signed by {vid}" in rejected
    assert len(doc["rejected"]) == 3, rejected


def test_a_tampered_blob_in_the_registry_fails_the_pull(registry, release, capsys, tmp_path):
    pinned = _push(registry, release, "demo/tampered", capsys)
    record = canonjson.loads((release["out"] / "rel.build.json").read_bytes())
    tar = next(o for o in record["outputs"] if o["name"] == "rel.tar")
    blob = registry.blob_file("sha256:" + tar["sha256"])
    saved = blob.read_bytes()
    try:
        data = bytearray(saved)
        data[600] ^= 1
        blob.write_bytes(bytes(data))
        assert main(["verify", pinned, "--cache", str(tmp_path / "c")]) == 1
        assert "content is sha256:" in capsys.readouterr().err
    finally:
        blob.write_bytes(saved)


def test_push_release_without_a_signature_is_refused(registry, release, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(release["out"], out)
    (out / "rel.SHA256SUMS.sig").unlink()
    assert main(["push", "--release", f"{registry.host}/demo/unsigned:v1",
                 str(out / "rel.build.json")]) == 1
    assert "a release carries a signed SHA256SUMS" in capsys.readouterr().err
    # --key signs it now
    assert main(["push", "--release", f"{registry.host}/demo/unsigned:v1",
                 str(out / "rel.build.json"), "--key", str(release["keys"]["verifier"][0])]) == 0
    assert Path(out / "rel.provenance.intoto.json").is_file()
    # an ECDSA P-256 signature, as openssl checks it
    tools.run([require_tool("openssl"), "dgst", "-sha256", "-verify",
               str(release["keys"]["verifier"][1]), "-signature", str(out / "rel.SHA256SUMS.sig"),
               str(out / "rel.SHA256SUMS")], capture=True)


@pytest.fixture
def referrers_registry():
    from tests.fixtures.referrers_registry import ReferrersRegistry

    double = ReferrersRegistry()
    yield double
    double.close()


def test_a_registry_with_the_referrers_api_is_used_through_it(registry, release,
                                                              referrers_registry, capsys,
                                                              tmp_path):
    """The release goes to a registry double with the OCI 1.1 referrers API (its images stay
    in the real registry): no ``sha256-`` tag is written, and reading goes through the API."""
    host = referrers_registry.host
    pinned = _push(referrers_registry, release, "demo/api", capsys)
    digest = pinned.split("@")[1]
    assert not any(tag.startswith("sha256-") for _, tag in referrers_registry.tags)
    assert len(referrers_registry.referrers[("demo/api", digest)]) == 4
    ref = parse_registry_ref(f"{host}/demo/api:v1")
    found, how = list_referrers(RegistryClient(), ref, digest)
    assert how == "api" and len(found) == 4
    keys = release["keys"]
    assert main(["verify", str(ref), "--cache", str(tmp_path / "c"), "--attest",
                 "--key", str(keys["verifier"][0])]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["attestations", pinned, "--trust", str(keys["releaser"][1]),
                 "--trust", str(keys["verifier"][1]), "--threshold", "2"]) == 0
    assert ("GET", f"/v2/demo/api/referrers/{digest}") in referrers_registry.requests
    assert not any(path.endswith("sha256-" + digest[7:])
                   for _, path in referrers_registry.requests)


def test_a_release_that_does_not_reproduce_gets_no_attestation(registry, release, capsys,
                                                                tmp_path):
    """The releaser's files differ from what the record's inputs build (one byte of the tar):
    the verifier's rebuild says DIFFERS, and nothing is attached in its name."""
    from composer.repro.record import sha256sums

    out = tmp_path / "bad"
    shutil.copytree(release["out"], out)
    for signed in ("rel.SHA256SUMS.sig", "rel.provenance.intoto.json"):
        (out / signed).unlink()
    tar = bytearray((out / "rel.tar").read_bytes())
    tar[1024] ^= 1
    (out / "rel.tar").write_bytes(bytes(tar))
    record = canonjson.loads((out / "rel.build.json").read_bytes())
    for o in record["outputs"]:
        if o["name"] == "rel.tar":
            o["sha256"] = hashlib.sha256(tar).hexdigest()
    data = canonjson.pretty(record)
    (out / "rel.build.json").write_bytes(data)
    sums = [(o["name"], o["sha256"]) for o in record["outputs"]]
    (out / "rel.SHA256SUMS").write_bytes(sha256sums(
        [*sums, ("rel.build.json", hashlib.sha256(data).hexdigest())]))
    ref = f"{registry.host}/demo/bad:v1"
    keys = release["keys"]
    assert main(["push", "--release", ref, str(out / "rel.build.json"),
                 "--key", str(keys["releaser"][0])]) == 0
    capsys.readouterr()
    assert main(["verify", ref, "--attest", "--key", str(keys["verifier"][0])]) == 1
    text = capsys.readouterr().out
    assert "rel.tar: DIFFERS" in text and "not attested" in text
    assert "(no diff: " in text  # a header byte changed: the original is no tar
    assert main(["attestations", ref, "--trust", str(keys["verifier"][1])]) == 1
    assert "0 of 1 required" in capsys.readouterr().out
