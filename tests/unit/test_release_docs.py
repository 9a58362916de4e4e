"""Release documents (no registry): media types, titles, manifests as pure functions of their
files, statements checked against the release's outputs, and the commands' usage errors."""

from __future__ import annotations

import hashlib

import pytest

from composer import canonjson
from composer.cli import main
from composer.errors import ComposerError
from composer.oci.media import OCI_EMPTY, RELEASE_ARTIFACT
from composer.release import artifact
from composer.release.trust import statement_problem
from composer.repro import attest, provenance


def test_media_types_follow_names_and_initrd_magic():
    assert artifact.media_type("x.tar", b"") == "application/x-tar"
    assert artifact.media_type("x-efi.iso", b"") == "application/x-iso9660-image"
    assert artifact.media_type("x.img.tar.gz", b"") == "application/gzip"
    assert artifact.media_type("x-initrd.img", b"\x1f\x8b\x08") == "application/gzip"
    assert artifact.media_type("x-initrd.img", b"\x28\xb5\x2f\xfd") == "application/zstd"
    assert artifact.media_type("x-initrd.img", b"070701") == "application/x-cpio"
    assert artifact.media_type("x-kernel", b"MZ") == artifact.KERNEL_MEDIA
    assert artifact.media_type("x.unknown", b"") == "application/octet-stream"


@pytest.mark.parametrize("title", ["/etc/passwd", "../x", "a/../b", "", "a//b", "a\\b", None])
def test_unsafe_titles_are_refused(title):
    with pytest.raises(ComposerError, match="unsafe or missing file name"):
        artifact.check_title(title, "m")


def test_the_release_manifest_is_a_pure_function_of_its_files():
    files = [artifact.File("b.tar", "sha256:" + "b" * 64, 3, "application/x-tar"),
             artifact.File("a-kernel", "sha256:" + "a" * 64, 5, artifact.KERNEL_MEDIA)]
    one = artifact.release_manifest("x", files, "c" * 64)
    assert one == artifact.release_manifest("x", list(reversed(files)), "c" * 64)
    doc = canonjson.loads(one)
    assert doc["artifactType"] == RELEASE_ARTIFACT
    assert doc["config"] == {"mediaType": OCI_EMPTY, "size": 2, "digest": "sha256:"
                             + hashlib.sha256(b"{}").hexdigest()}
    assert [la["annotations"]["org.opencontainers.image.title"] for la in doc["layers"]] == \
        ["a-kernel", "b.tar"]
    assert [f.name for f in artifact.layers_of(doc, "m")] == ["a-kernel", "b.tar"]


def _record(digest: str = "a" * 64) -> bytes:
    return canonjson.pretty({
        "schema": "image-composer/build-record/v1", "build": {"name": "x"}, "specs": [],
        "images": [], "rootfs": {"sha256": digest},
        "outputs": [{"name": "x.tar", "sha256": digest, "size": 1}]})


def test_statements_must_name_exactly_the_release_outputs():
    rec = _record()
    for stmt in (attest.statement(rec), provenance.statement(rec)):
        assert statement_problem(canonjson.compact(stmt), rec)[0] is None
    other = _record("0" * 64)
    for stmt in (attest.statement(other), provenance.statement(other)):
        assert "a different subject" in str(statement_problem(canonjson.compact(stmt), rec)[0])
    st = attest.statement(rec)
    st["predicateType"] = "https://example.invalid/other"
    assert "predicate type" in str(statement_problem(canonjson.compact(st), rec)[0])
    st = provenance.statement(rec)
    st["subject"].append({"name": "extra", "digest": {"sha256": "e" * 64}})
    assert "a different subject" in str(statement_problem(canonjson.compact(st), rec)[0])


@pytest.mark.parametrize("argv, message", [
    (["push", "--release", "registry.invalid/x:1", "a.tar"], "takes one NAME.build.json"),
    (["push", "a.tar", "registry.invalid/x:1", "--key", "k"], "--key goes with --release"),
    (["verify", "x.build.json", "--attest"], "--attest and --key go together"),
    (["verify", "x.build.json", "--attest", "--key", "k"], "--attest needs a release REF"),
    (["attestations", "registry.invalid/x:1"], "at least one --trust"),
])
def test_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_verify_takes_registry_refs_but_never_mistakes_a_path_for_one(tmp_path):
    from composer.commands.verify import release_ref

    assert release_ref("127.0.0.1:5000/demo/rel:1") is not None
    assert release_ref("registry.example/demo/rel@sha256:" + "a" * 64) is not None
    for path in ("out/x.build.json", "out/x.SHA256SUMS", "out/x", "x"):
        assert release_ref(path) is None
    (tmp_path / "a.b").mkdir()
    (tmp_path / "a.b" / "rel").write_text("")
    assert release_ref(str(tmp_path / "a.b" / "rel")) is None  # it exists: a file


def test_build_refuses_a_bad_signing_key_before_building(tmp_path, capsys):
    bad = tmp_path / "key"
    bad.write_text("not a key")
    assert main(["build", "--sign", str(bad), "-o", str(tmp_path / "out"),
                 str(tmp_path / "missing.yml")]) == 1
    assert "not an unencrypted PEM private key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
