"""``push --release``: a build's outputs as one OCI artifact, its record, SBOM and signed sums
attached as referrers (and its SLSA provenance, when signed, as an attestation).

The files are read from beside the record, each through the verifying reader against the
record's sha256 (a file changed since the build fails the push); the release manifest is a pure
function of the record, so pushing the same build twice, from anywhere, gives the same digest.
A release always carries a signed SHA256SUMS: ``--key`` signs it (and the provenance) now, or
``build --sign`` did already.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from composer import canonjson
from composer.atomic import atomic_file
from composer.errors import ComposerError
from composer.images.push import Pusher
from composer.oci.media import (
    ATTESTATION_ARTIFACT,
    DSSE_ENVELOPE,
    PREDICATE_ANNOTATION,
    RECORD_ARTIFACT,
    RELEASE_ARTIFACT,
    SBOM_ARTIFACT,
    SUMS_ARTIFACT,
)
from composer.oci.refs import Ref
from composer.release.artifact import (
    File,
    digest_of,
    media_type,
    release_annotations,
    release_manifest,
)
from composer.release.referrers import Opener, attach, open_bytes, open_file, push_artifact
from composer.repro import provenance
from composer.repro.record import (
    load_record,
    parse_sha256sums,
    record_name,
    sbom_name,
    sums_name,
)


@dataclass(frozen=True)
class Published:
    ref: Ref
    digest: str
    referrers: tuple[str, ...]  # artifact type: digest, one line each

    @property
    def pinned(self) -> str:
        return f"{self.ref.name}@{self.digest}"


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(16)
    except FileNotFoundError:
        raise ComposerError(f"{path}: no such file (an output the record lists)") from None


def _small(name: str, data: bytes, media: str) -> tuple[File, Opener]:
    return (File(name, digest_of(data), len(data), media),
            functools.partial(open_bytes, data))


def signed_pieces(directory: Path, name: str, record_bytes: bytes, sums: bytes,
                  key: Path | None) -> tuple[bytes | None, bytes]:
    """(the provenance envelope, if any, and the SHA256SUMS signature): made with ``key`` and
    kept beside the record, or the ones ``build --sign`` left there."""
    prov_path = directory / provenance.provenance_name(name)
    sig_path = directory / provenance.signature_name(name)
    if key is not None:
        for file_name, content in provenance.signed_files(name, record_bytes, sums, key):
            with atomic_file(directory / file_name) as fh:
                fh.write(content)
    if not sig_path.is_file():
        raise ComposerError(f"{sig_path}: no such file; a release carries a signed "
                            "SHA256SUMS: give --key KEY (or build with --sign KEY)")
    env = prov_path.read_bytes() if prov_path.is_file() else None
    return env, sig_path.read_bytes()


def push_release(record_path: Path, ref: Ref, pusher: Pusher, key: Path | None = None
                 ) -> Published:
    """Upload the build ``record_path`` describes to ``ref`` and attach its referrers."""
    record = load_record(record_path)
    record_bytes = Path(record_path).read_bytes()
    directory = Path(record_path).parent
    name = record["build"]["name"]
    if Path(record_path).name != record_name(name):
        raise ComposerError(f"{record_path}: the record of build {name!r} must be called "
                            f"{record_name(name)}")
    sums_path = directory / sums_name(name)
    if not sums_path.is_file():
        raise ComposerError(f"{sums_path}: no such file")
    sums = sums_path.read_bytes()
    listed = dict(parse_sha256sums(sums, str(sums_path)))
    if listed.get(record_name(name)) != digest_of(record_bytes).removeprefix("sha256:"):
        raise ComposerError(f"{sums_path}: does not list this build record")
    envelope, signature = signed_pieces(directory, name, record_bytes, sums, key)
    files: list[tuple[File, Opener]] = []
    sbom: tuple[File, Opener] | None = None
    for out in record["outputs"]:
        path = directory / out["name"]
        digest = "sha256:" + out["sha256"]
        item = (File(out["name"], digest, out["size"], media_type(out["name"], _head(path))),
                functools.partial(open_file, path, digest, out["size"]))
        if out["name"] == sbom_name(name):
            sbom = item
        else:
            files.append(item)
    rootfs = (record.get("rootfs") or {}).get("sha256")
    if ref.digest:
        data = release_manifest(name, [f for f, _ in files], rootfs)
        if digest_of(data) != ref.digest:
            raise ComposerError(f"{ref}: this release's digest is {digest_of(data)}")
    desc = push_artifact(pusher, ref, ref.tag, RELEASE_ARTIFACT, files,
                         annotations=release_annotations(name, rootfs))
    subject = {k: desc[k] for k in ("mediaType", "digest", "size")}
    attached = []
    pieces: list[tuple[str, list[tuple[File, Opener]], dict[str, str] | None]] = [
        (RECORD_ARTIFACT, [_small(record_name(name), record_bytes, "application/json")], None),
        (SUMS_ARTIFACT, [_small(sums_name(name), sums, "text/plain; charset=utf-8"),
                         _small(provenance.signature_name(name), signature,
                                "application/octet-stream")], None),
    ]
    if sbom is not None:
        pieces.append((SBOM_ARTIFACT, [sbom], None))
    if envelope is not None:
        pieces.append((ATTESTATION_ARTIFACT,
                       [_small(provenance.provenance_name(name), envelope, DSSE_ENVELOPE)],
                       {PREDICATE_ANNOTATION: provenance.PREDICATE_TYPE}))
    for artifact_type, parts, notes in pieces:
        got = attach(pusher, ref, subject, artifact_type, parts, notes)
        attached.append(f"{artifact_type}: {got['digest']}")
    return Published(ref, desc["digest"], tuple(attached))


def attach_attestation(pusher: Pusher, ref: Ref, subject: dict, file_name: str,
                       envelope: dict, predicate_type: str) -> str:
    """One more attestation (a DSSE envelope) as a referrer of the release; its digest."""
    data = canonjson.pretty(envelope)
    got = attach(pusher, ref, subject, ATTESTATION_ARTIFACT,
                 [_small(file_name, data, DSSE_ENVELOPE)], {PREDICATE_ANNOTATION: predicate_type})
    return got["digest"]
