"""Pull a release: the artifact's files, its build record, SBOM and signed SHA256SUMS.

Every byte is checked on the way in: blobs against their digests (the one verifying reader),
manifests against theirs, and the pieces against each other. The record chosen is the one whose
outputs are exactly the artifact's files (plus the SBOM), the SBOM the one the record names,
the sums the ones that list exactly the record and its outputs; a referrer that anyone attached
with other content is passed over (and reported), never trusted. The result is a directory
``sha256sum -c NAME.SHA256SUMS`` passes in, laid out as the build wrote it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer import canonjson
from composer.atomic import atomic_file
from composer.errors import ComposerError
from composer.images.registry import RegistryClient
from composer.oci.media import (
    OCI_MANIFEST,
    RECORD_ARTIFACT,
    RELEASE_ARTIFACT,
    SBOM_ARTIFACT,
    SUMS_ARTIFACT,
    TITLE_ANNOTATION,
)
from composer.oci.refs import Ref
from composer.release.artifact import File, digest_of, layers_of
from composer.release.referrers import get_manifest, list_referrers
from composer.repro.record import SCHEMA, parse_sha256sums, record_name, sbom_name, sums_name
from composer.streams.digest import VerifyingReader, drain

MAX_SMALL = 64 << 20  # records, SBOMs, sums and envelopes are read into memory


@dataclass(frozen=True)
class Release:
    """A release manifest as pulled: its descriptor and files."""

    ref: Ref
    digest: str
    size: int
    name: str
    files: tuple[File, ...]

    @property
    def subject(self) -> dict:
        """The descriptor a referrer's ``subject`` names."""
        return {"mediaType": OCI_MANIFEST, "digest": self.digest, "size": self.size}


@dataclass
class Pulled:
    release: Release
    directory: Path
    record_path: Path
    record_bytes: bytes
    notes: list[str] = field(default_factory=list)


def get_release(client: RegistryClient, ref: Ref) -> Release:
    """The release manifest at ``ref`` (a tag or digest), checked to be one."""
    got = client.get_manifest(ref, ref.digest or ref.tag or "")
    digest = digest_of(got.data)
    if ref.digest and digest != ref.digest:
        raise ComposerError(f"{ref}: the registry sent a manifest that is not {ref.digest}")
    try:
        doc = canonjson.loads(got.data)
    except ValueError as exc:
        raise ComposerError(f"{ref}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("artifactType") != RELEASE_ARTIFACT:
        raise ComposerError(f"{ref}: not an image-composer release (artifactType "
                            f"{doc.get('artifactType') if isinstance(doc, dict) else None!r})")
    name = (doc.get("annotations") or {}).get(TITLE_ANNOTATION)
    if not isinstance(name, str) or not name or "/" in name:
        raise ComposerError(f"{ref}: the release names no build")
    return Release(ref, digest, len(got.data), name, tuple(layers_of(doc, str(ref))))


def fetch_blob(client: RegistryClient, ref: Ref, f: File, dest: Path) -> None:
    """One blob into ``dest``, whole and verified or not at all."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    what = f"{ref.name}: {f.name} ({f.digest})"

    def consume(fh) -> None:
        with atomic_file(dest) as out:
            drain(VerifyingReader(fh, f.digest, f.size, what, close_raw=False), out)

    client.fetch_blob(ref, f.digest, consume, what)


def read_blob(client: RegistryClient, ref: Ref, f: File) -> bytes:
    if f.size > MAX_SMALL:
        raise ComposerError(f"{ref.name}: {f.name} is too large ({f.size} bytes)")
    what = f"{ref.name}: {f.name} ({f.digest})"
    return client.fetch_blob(ref, f.digest, lambda fh: VerifyingReader(
        fh, f.digest, f.size, what, close_raw=False).read(), what)


def referrer_files(client: RegistryClient, release: Release, artifact_type: str
                   ) -> list[tuple[str, list[tuple[File, bytes]]]]:
    """(manifest digest, its files with their bytes) of each referrer of one type whose
    ``subject`` is really the release."""
    found, _ = list_referrers(client, release.ref, release.digest, artifact_type)
    out = []
    for desc in found:
        what = f"{release.ref.name}@{desc['digest']}"
        _, doc = get_manifest(client, release.ref, desc["digest"], what)
        if (doc.get("subject") or {}).get("digest") != release.digest \
                or doc.get("artifactType") != artifact_type:
            continue
        files = [(f, read_blob(client, release.ref, f)) for f in layers_of(doc, what)]
        out.append((desc["digest"], files))
    return out


def _record_matches(data: bytes, release: Release) -> bool:
    """Whether a record's outputs are exactly the release's files, plus its SBOM."""
    try:
        doc = canonjson.loads(data)
        outputs = {o["name"]: o["sha256"] for o in doc["outputs"]}
        name = doc["build"]["name"]
    except (ValueError, KeyError, TypeError):
        return False
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or name != release.name:
        return False
    files = {f.name: f.digest.removeprefix("sha256:") for f in release.files}
    outputs.pop(sbom_name(name), None)
    return outputs == files


def find_record(client: RegistryClient, release: Release, notes: list[str]) -> bytes:
    """The build record among the release's referrers that describes exactly its files."""
    for digest, files in referrer_files(client, release, RECORD_ARTIFACT):
        for f, data in files:
            if f.name == record_name(release.name) and _record_matches(data, release):
                return data
        notes.append(f"passed over build record referrer {digest}: it describes other files")
    raise ComposerError(f"{release.ref}: no build record attached describes this release's "
                        "files")


def pull_release(client: RegistryClient, ref: Ref, dest: Path) -> Pulled:
    """Everything of the release at ``ref`` into the directory ``dest``, checked."""
    release = get_release(client, ref)
    notes: list[str] = []
    record_bytes = find_record(client, release, notes)
    record: dict[str, Any] = canonjson.loads(record_bytes)
    name = release.name
    for f in release.files:
        fetch_blob(client, ref, f, dest / f.name)
    (dest / record_name(name)).write_bytes(record_bytes)
    sbom = {o["name"]: o["sha256"] for o in record["outputs"]}.get(sbom_name(name))
    if sbom is not None:
        for digest, files in referrer_files(client, release, SBOM_ARTIFACT):
            match = [d for f, d in files if f.name == sbom_name(name)
                     and hashlib.sha256(d).hexdigest() == sbom]
            if match:
                (dest / sbom_name(name)).write_bytes(match[0])
                break
            notes.append(f"passed over SBOM referrer {digest}: not the recorded SBOM")
        else:
            raise ComposerError(f"{ref}: the recorded SBOM {sbom_name(name)} is not attached")
    want = sorted([(o["name"], o["sha256"]) for o in record["outputs"]]
                  + [(record_name(name), hashlib.sha256(record_bytes).hexdigest())])
    for digest, files in referrer_files(client, release, SUMS_ARTIFACT):
        by_name = {f.name: d for f, d in files}
        sums = by_name.get(sums_name(name))
        if sums is not None and sorted(parse_sha256sums(sums, digest)) == want:
            (dest / sums_name(name)).write_bytes(sums)
            for other, data in by_name.items():
                if other == f"{sums_name(name)}.sig":
                    (dest / other).write_bytes(data)
            break
        notes.append(f"passed over SHA256SUMS referrer {digest}: it lists other files")
    else:
        raise ComposerError(f"{ref}: no SHA256SUMS attached lists this release")
    return Pulled(release, dest, dest / record_name(name), record_bytes, notes)
