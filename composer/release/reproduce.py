"""``verify REF``: pull a release, rebuild it from its record, compare, and say so in the registry.

The release is pulled into a fresh temporary directory (:mod:`.fetch`: every byte checked against
its digest, the record against the files, SHA256SUMS against the record), then rebuilt by
:func:`composer.repro.verify.verify_record` exactly as a local record is: a separate process in a
fresh cache and a perturbed environment, compared output by output. A verifier who reproduced
every byte can sign the record's "reproduced" statement (:func:`composer.repro.attest.statement`)
and attach it to the release as one more referrer.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from composer.images.push import Pusher
from composer.images.registry import RegistryClient
from composer.oci.refs import Ref
from composer.release.fetch import pull_release
from composer.release.publish import attach_attestation
from composer.repro import attest
from composer.repro.record import sums_name
from composer.repro.verify import Outcome, verify_record


def attestation_name(name: str, key_id: str) -> str:
    return f"{name}.reproduced.{key_id[:16]}.intoto.json"


def verify_release(client: RegistryClient, ref: Ref, specs: list[Path], *,
                   cache: Path | None, offline: bool, keep: bool, log: Callable[[str], None],
                   bootloaders: list[str] | None = None, attest_key: Path | None = None
                   ) -> Outcome:
    """Pull, rebuild, compare; with ``attest_key`` and a full match, attach our attestation."""
    key = attest.load_private_key(attest_key) if attest_key is not None else None
    tmp = Path(tempfile.mkdtemp(prefix="image-composer-release-"))
    try:
        pulled = pull_release(client, ref, tmp / "release")
        log(f"pulled {ref.name}@{pulled.release.digest} ({len(pulled.release.files)} files)")
        # through SHA256SUMS: the sums, the record and the pulled files must all agree
        sums = pulled.directory / sums_name(pulled.release.name)
        outcome = verify_record(sums, specs, cache=cache, offline=offline,
                                keep=keep, log=log, bootloaders=bootloaders)
        outcome.lines[:0] = [f"release {ref.name}@{pulled.release.digest}", *pulled.notes]
        outcome.details["release"] = pulled.release.digest
        if outcome.ok and key is not None:
            envelope = attest.sign_statement(attest.statement(pulled.record_bytes), key)
            kid = attest.key_id(key.public_key())
            digest = attach_attestation(Pusher(client=client, log=log), ref,
                                        pulled.release.subject,
                                        attestation_name(pulled.release.name, kid), envelope,
                                        attest.PREDICATE_TYPE)
            outcome.lines.append(f"attested by {kid}: {ref.name}@{digest}")
            outcome.details["attestation"] = {"key": kid, "digest": digest}
        elif key is not None:
            outcome.lines.append("not attested: the rebuild did not reproduce every output")
        return outcome
    finally:
        if keep:
            log(f"kept the pulled release in {tmp}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
