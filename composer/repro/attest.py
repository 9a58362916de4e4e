"""Attestations: "I rebuilt this record and got the same outputs", signed, several parties per file.

The statement is an in-toto Statement v1 whose subjects are the record's outputs (name and
sha256) and the record itself, with predicate type :data:`PREDICATE_TYPE` and a predicate naming
the record's sha256 and rootfs digest. It is a pure function of the record's bytes, serialised
with :func:`canonjson.compact`, so every rebuilder who attests the same record signs the very
same payload, and signatures accumulate in one DSSE envelope (one ``signatures`` entry per key).

Signatures are ed25519 or ECDSA P-256 (the ``cryptography`` library; ECDSA as DER over sha256)
over DSSE's pre-authentication encoding. A key id is the sha256 of the raw 32-byte public key
(ed25519) or of its DER SubjectPublicKeyInfo (P-256). Keys are PEM files: PKCS#8 private keys,
SubjectPublicKeyInfo public keys (``*.pub`` in a keys directory); ``generate_key`` makes a pair.

Checking (:func:`check_envelope`) counts distinct trusted keys whose signature verifies over the
payload, after checking that the payload is exactly the statement for the record in hand: a
valid signature over a different subject counts for nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer import canonjson
from composer.errors import ComposerError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://image-composer.dev/attestation/reproduced/v1"  # an identifier only


def statement(record_bytes: bytes) -> dict[str, Any]:
    """The in-toto statement for a build record (as bytes: the record's digest is a subject)."""
    try:
        record = canonjson.loads(record_bytes)
        name = record["build"]["name"]
        outputs = record["outputs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ComposerError(f"not a build record: {exc}") from None
    record_sha = hashlib.sha256(record_bytes).hexdigest()
    subjects = [{"name": o["name"], "digest": {"sha256": o["sha256"]}} for o in outputs]
    subjects.append({"name": f"{name}.build.json", "digest": {"sha256": record_sha}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": sorted(subjects, key=lambda s: s["name"]),
        "predicateType": PREDICATE_TYPE,
        "predicate": {"record": {"name": f"{name}.build.json", "sha256": record_sha},
                      "rootfs": _rootfs(record)},
    }


def _rootfs(record: dict[str, Any]) -> Any:
    """The rootfs sha256, or for the multi-platform files' record each architecture's."""
    from composer.repro.record import rootfs_digests

    digests = rootfs_digests(record)
    return digests.get("", digests)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64(data: bytes) -> str:
    return base64.standard_b64encode(data).decode()


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ComposerError(f"{what}: not a base64 string")
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(text.encode())
        except (binascii.Error, ValueError):
            raise ComposerError(f"{what}: not valid base64") from None


# -- keys ------------------------------------------------------------------------------------
def _crypto():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519


KEY_KINDS = ("ed25519", "ecdsa-p256")


def _kind(key, path: object) -> str:
    """``ed25519`` or ``ecdsa-p256`` for a private or public key; anything else is refused."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) \
            and isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise ComposerError(f"{path}: not an ed25519 or ECDSA P-256 key")


def key_id(public_key) -> str:
    """sha256 of the raw 32-byte key (ed25519) or of the DER SubjectPublicKeyInfo (P-256)."""
    serialization, _ = _crypto()
    if _kind(public_key, "key") == "ed25519":
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public_key.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(raw).hexdigest()


def generate_key(path: Path, kind: str = "ed25519") -> tuple[Path, Path]:
    """Write a new private key to ``path`` (mode 0600) and its public key to PATH.pub."""
    from cryptography.hazmat.primitives.asymmetric import ec

    serialization, ed25519 = _crypto()
    path = Path(path)
    if path.exists():
        raise ComposerError(f"{path}: already exists; refusing to overwrite a key")
    if kind not in KEY_KINDS:
        raise ComposerError(f"key kind {kind!r}: expected one of {', '.join(KEY_KINDS)}")
    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else \
        ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    pub = path.with_name(path.name + ".pub")
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return path, pub


def load_private_key(path: Path):
    serialization, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ComposerError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    _kind(key, path)
    return key


def load_public_key(path: Path):
    """One PEM public key (ed25519 or ECDSA P-256)."""
    serialization, _ = _crypto()
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ComposerError(f"{path}: not a PEM public key: {exc}") from None
    _kind(key, path)
    return key


def load_public_keys(directory: Path) -> dict[str, Any]:
    """key id -> public key for every ``*.pub`` PEM in ``directory`` (sorted, ids deduplicated)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ComposerError(f"{directory}: not a directory")
    return trusted_keys(sorted(directory.glob("*.pub")))


def trusted_keys(paths: list[Path]) -> dict[str, Any]:
    """key id -> public key for each PEM file in ``paths`` (``--trust K.pub``)."""
    keys: dict[str, Any] = {}
    for path in paths:
        key = load_public_key(path)
        keys[key_id(key)] = key
    return keys


def raw_signature(key, data: bytes) -> bytes:
    """Sign ``data``: ed25519 (64 bytes), or ECDSA P-256 over its sha256 (DER), as
    ``openssl pkeyutl -rawin`` / ``openssl dgst -sha256 -verify`` check them."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if _kind(key, "key") == "ed25519":
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def raw_verifies(public_key, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if _kind(public_key, "key") == "ed25519":
            public_key.verify(signature, data)
        else:
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def sign_payload(key, payload_type: str, payload: bytes) -> dict[str, Any]:
    """A DSSE envelope with one signature by ``key`` (a loaded private key) over ``payload``:
    the signing other signed documents use (the remote build cache's entries,
    :mod:`composer.cache.remote`)."""
    kid = key_id(key.public_key())
    sig = _b64(raw_signature(key, pae(payload_type, payload)))
    return {"payloadType": payload_type, "payload": _b64(payload),
            "signatures": [{"keyid": kid, "sig": sig}]}


def verify_payload(env: object, payload_type: str, keys: dict[str, Any]
                   ) -> tuple[bytes, str] | None:
    """(payload, key id) if the envelope has ``payload_type`` and a signature that one of
    ``keys`` verifies; None otherwise (unsigned, untrusted signer, or not an envelope)."""
    if not isinstance(env, dict) or env.get("payloadType") != payload_type \
            or not isinstance(env.get("signatures"), list):
        return None
    try:
        payload = _unb64(env.get("payload"), "envelope payload")
    except ComposerError:
        return None
    for sig in env["signatures"]:
        if not isinstance(sig, dict):
            continue
        kid = sig.get("keyid")
        try:
            raw = _unb64(sig.get("sig"), "signature")
        except ComposerError:
            continue
        for cand in [kid] if kid in keys else list(keys):
            try:
                if raw_verifies(keys[cand], raw, pae(payload_type, payload)):
                    return payload, cand
            except (ComposerError, AttributeError):
                continue
    return None


# -- envelopes -------------------------------------------------------------------------------
def read_envelope(path: Path) -> dict[str, Any]:
    env = canonjson.load_file(path, "a DSSE envelope")
    if not is_envelope(env):
        raise ComposerError(f"{path}: not an in-toto DSSE envelope")
    return env


def is_envelope(env: object) -> bool:
    return isinstance(env, dict) and env.get("payloadType") == PAYLOAD_TYPE \
        and isinstance(env.get("signatures"), list)


def attests_record(env: dict[str, Any], record_bytes: bytes, where: str) -> bool:
    """Whether an envelope's payload is exactly the statement for this record."""
    return _unb64(env.get("payload"), where) == canonjson.compact(statement(record_bytes))


def sign_statement(stmt: dict[str, Any], key, signatures: list[dict] | None = None
                   ) -> dict[str, Any]:
    """A DSSE envelope of ``stmt`` (compact canonical JSON) with ``key``'s signature added to
    (or replacing its own among) ``signatures``."""
    payload = canonjson.compact(stmt)
    kid = key_id(key.public_key())
    sig = _b64(raw_signature(key, pae(PAYLOAD_TYPE, payload)))
    kept = [s for s in signatures or [] if isinstance(s, dict) and s.get("keyid") != kid]
    return {"payloadType": PAYLOAD_TYPE, "payload": _b64(payload),
            "signatures": sorted([*kept, {"keyid": kid, "sig": sig}],
                                 key=lambda s: str(s.get("keyid")))}


def envelope_payload(env: dict[str, Any], where: str) -> bytes:
    return _unb64(env.get("payload"), where)


def sign(record_bytes: bytes, key_path: Path, envelope_path: Path) -> str:
    """Add (or replace) this key's signature in ``envelope_path``; returns the key id.

    An existing envelope must carry exactly this record's statement.
    """
    key = load_private_key(key_path)
    payload = canonjson.compact(statement(record_bytes))
    envelope_path = Path(envelope_path)
    signatures: list[dict] = []
    if envelope_path.exists():
        env = read_envelope(envelope_path)
        if _unb64(env.get("payload"), str(envelope_path)) != payload:
            raise ComposerError(f"{envelope_path}: attests a different statement "
                                "(another record or subject); use another file")
        signatures = env["signatures"]
    env = sign_statement(statement(record_bytes), key, signatures)
    tmp = envelope_path.with_name(f".{envelope_path.name}.partial")
    tmp.write_bytes(canonjson.pretty(env))
    os.replace(tmp, envelope_path)
    return key_id(key.public_key())


def verify_signatures(env: dict[str, Any], keys: dict[str, Any]
                      ) -> tuple[list[str], list[str]]:
    """(trusted key ids whose signature verifies over the payload, why the others did not);
    a key counts once however often it signed."""
    payload = _unb64(env.get("payload"), "envelope")
    signed = pae(str(env.get("payloadType")), payload)
    valid: list[str] = []
    rejected: list[str] = []
    for n, sig in enumerate(env.get("signatures") or []):
        kid = sig.get("keyid") if isinstance(sig, dict) else None
        # an unknown or missing key id: try every trusted key, as DSSE allows
        candidates = [kid] if kid in keys else list(keys)
        try:
            raw = _unb64(sig.get("sig") if isinstance(sig, dict) else None, f"signature {n}")
        except ComposerError:
            raw = b""
        good = next((c for c in candidates if raw and raw_verifies(keys[c], raw, signed)), None)
        if good is None:
            rejected.append(f"signature {n} (keyid {kid}): no trusted key verifies it")
        elif good in valid:
            rejected.append(f"signature {n}: a second signature by {good} counts once")
        else:
            valid.append(good)
    return valid, rejected


@dataclass(frozen=True)
class Check:
    """Which trusted keys signed the record's statement, and what was rejected and why."""

    valid: tuple[str, ...]
    rejected: tuple[str, ...]

    def lines(self) -> list[str]:
        return ([f"good signature by {k}" for k in self.valid]
                + [f"rejected: {r}" for r in self.rejected])


def check_envelope(record_bytes: bytes, envelope_path: Path, keys: dict[str, Any]) -> Check:
    """Verify every signature against ``keys``; the payload must be this record's statement."""
    env = read_envelope(envelope_path)
    payload = _unb64(env.get("payload"), str(envelope_path))
    expected = canonjson.compact(statement(record_bytes))
    if payload != expected:
        try:
            subject = canonjson.loads(payload).get("subject")
        except (ValueError, AttributeError):
            subject = None
        why = "a different subject" if subject != statement(record_bytes)["subject"] \
            else "a different statement"
        return Check((), (f"the envelope attests {why}, not this record",))
    valid, rejected = verify_signatures(env, keys)
    return Check(tuple(valid), tuple(rejected))
