"""``attestations``: how many distinct trusted keys attest to a release's outputs.

Each attestation referrer holds one DSSE envelope of an in-toto Statement v1: the releaser's
SLSA provenance, or a rebuilder's "reproduced" statement (:mod:`composer.repro.attest`). One
counts for a key when all of these hold:

- its manifest's ``subject`` is the release, and its envelope's signature verifies with that
  trusted key (DSSE pre-authentication encoding; ed25519 or ECDSA P-256);
- its statement is one of the two predicate types, and its subjects are exactly the release's
  outputs (the record's list: the artifact's files and the SBOM), by name and sha256, plus, for
  a "reproduced" statement, the build record itself by its digest. A good signature over other
  digests (another build, an older release) counts for nothing.

A key counts once, whatever it signed and however often.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from composer import canonjson
from composer.errors import ComposerError
from composer.images.registry import RegistryClient
from composer.oci.media import ATTESTATION_ARTIFACT, SUMS_ARTIFACT
from composer.oci.refs import Ref
from composer.release.fetch import find_record, get_release, referrer_files
from composer.repro import attest, provenance
from composer.repro.record import parse_sha256sums, record_name, sums_name

PREDICATES = {attest.PREDICATE_TYPE: "reproduced", provenance.PREDICATE_TYPE: "provenance"}


@dataclass
class Report:
    release: str  # NAME@DIGEST
    trusted: dict[str, list[str]] = field(default_factory=dict)  # key id -> what it attested
    sums_signed_by: list[str] = field(default_factory=list)  # trusted keys that signed the sums
    lines: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def as_json(self, threshold: int) -> dict[str, Any]:
        return {"release": self.release, "threshold": threshold,
                "ok": len(self.trusted) >= threshold,
                "keys": {k: sorted(v) for k, v in sorted(self.trusted.items())},
                "sha256sums_signed_by": list(self.sums_signed_by),
                "rejected": list(self.rejected)}


def expected_subjects(record_bytes: bytes) -> tuple[dict[str, str], tuple[str, str]]:
    """(output name -> sha256, and the record's own (name, sha256))."""
    record = canonjson.loads(record_bytes)
    outputs = {o["name"]: o["sha256"] for o in record["outputs"]}
    return outputs, (record_name(record["build"]["name"]),
                     hashlib.sha256(record_bytes).hexdigest())


def statement_problem(payload: bytes, record_bytes: bytes) -> tuple[str | None, str]:
    """(why the statement does not attest this release, or None; its kind)."""
    try:
        stmt = canonjson.loads(payload)
        subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
        if len(subjects) != len(stmt["subject"]):
            return "a subject named twice", "?"
    except (ValueError, KeyError, TypeError, AttributeError):
        return "not an in-toto statement", "?"
    if stmt.get("_type") != attest.STATEMENT_TYPE:
        return f"statement type {stmt.get('_type')!r}", "?"
    kind = PREDICATES.get(stmt.get("predicateType"))
    if kind is None:
        return f"predicate type {stmt.get('predicateType')!r}", "?"
    outputs, (rec_name, rec_sha) = expected_subjects(record_bytes)
    named_record = subjects.pop(rec_name, None) if kind == "reproduced" else None
    if subjects != outputs:
        return "a different subject: it attests other output digests", kind
    if kind == "reproduced" and named_record != rec_sha:
        return "a different subject: it names another build record", kind
    return None, kind


def check(client: RegistryClient, ref: Ref, keys: dict[str, Any]) -> Report:
    """Every attestation of the release at ``ref``, checked against the trusted ``keys``."""
    release = get_release(client, ref)
    notes: list[str] = []
    record_bytes = find_record(client, release, notes)
    report = Report(f"{ref.name}@{release.digest}")
    for digest, files in referrer_files(client, release, ATTESTATION_ARTIFACT):
        for f, data in files:
            where = f"{digest} ({f.name})"
            try:
                env = canonjson.loads(data)
            except ValueError:
                env = None
            if not attest.is_envelope(env):
                report.rejected.append(f"{where}: not an in-toto DSSE envelope")
                continue
            assert isinstance(env, dict)
            try:
                payload = attest.envelope_payload(env, where)
            except ComposerError as exc:
                report.rejected.append(str(exc))
                continue
            problem, kind = statement_problem(payload, record_bytes)
            valid, bad = attest.verify_signatures(env, keys)
            if problem is not None:
                report.rejected.append(f"{where}: {problem}" + (
                    f" (signed by {', '.join(valid)})" if valid else ""))
                continue
            report.rejected += [f"{where}: {b}" for b in bad]
            for kid in valid:
                report.trusted.setdefault(kid, []).append(kind)
                report.lines.append(f"{where}: {kind}, good signature by {kid}")
    report.sums_signed_by = sums_signers(client, release, record_bytes, keys)
    report.lines += [f"SHA256SUMS: good signature by {k}" for k in report.sums_signed_by]
    report.lines += notes
    return report


def sums_signers(client: RegistryClient, release, record_bytes: bytes, keys: dict[str, Any]
                 ) -> list[str]:
    """The trusted keys whose detached signature of the release's SHA256SUMS verifies (listed;
    the threshold counts in-toto attestations)."""
    outputs, (rec_name, rec_sha) = expected_subjects(record_bytes)
    want = sorted([*outputs.items(), (rec_name, rec_sha)])
    name = release.name
    for digest, files in referrer_files(client, release, SUMS_ARTIFACT):
        by_name = {f.name: d for f, d in files}
        sums, sig = by_name.get(sums_name(name)), by_name.get(provenance.signature_name(name))
        try:
            listed = sorted(parse_sha256sums(sums or b"", digest))
        except ComposerError:
            continue
        if sums is not None and sig is not None and listed == want:
            return [k for k, key in sorted(keys.items()) if attest.raw_verifies(key, sig, sums)]
    return []
