"""``verify``: rebuild from a build record in a fresh, perturbed environment and compare outputs.

The rebuild is the real ``image-composer build``, run as a subprocess (``python -m composer``)
with a fresh temporary output directory and image cache, and a different time zone, umask,
locale, working directory and hash seed than ours, so anything that leaks from the environment
into the bytes shows up as a difference.

Inputs are pinned to the record: registry images are put into the fresh cache by the digests the
record names (and tag refs are pointed at them there), and the rebuild runs ``--offline``, so a
tag that moved since cannot change what is rebuilt. Blobs come from the registry by digest or,
with ``--cache DIR``, are copied from an existing cache (read-only, each blob verified against
its digest), which is what images that were never pushed (``pkg build``) need. ``oci:`` layout
images are read from their layout, as in the original build; if one changed, the rebuilt record
says so. Spec files are the ones given on the command line (which must have the recorded
sha256), or else the record's copies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer import canonjson, tools
from composer.errors import ComposerError, UsageError
from composer.images.cache import Cache
from composer.oci.refs import LayoutRef, Ref, parse_ref
from composer.repro.record import (
    default_bootloaders,
    env_name,
    load_record,
    parse_sha256sums,
    rebuild_arguments,
    record_name,
)
from composer.streams.digest import sha256_file

Log = Callable[[str], None]


@dataclass
class Outcome:
    """What a verification found; ``ok`` means every recorded output was reproduced."""

    ok: bool
    lines: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


# -- finding the record ------------------------------------------------------------------------
def locate_record(target: Path) -> tuple[Path, list[tuple[str, str]] | None]:
    """The build record a RECORD or SHA256SUMS argument means, and the sums if it was those.

    A SHA256SUMS file must list exactly one ``*.build.json``, whose bytes must match its line.
    """
    target = Path(target)
    if not target.is_file():
        raise ComposerError(f"{target}: no such file")
    if not target.name.endswith("SHA256SUMS"):
        return target, None
    sums = parse_sha256sums(target.read_bytes(), str(target))
    records = [(n, h) for n, h in sums if n.endswith(".build.json")]
    if len(records) != 1:
        raise ComposerError(f"{target}: lists {len(records)} build records, not one")
    name, digest = records[0]
    path = target.parent / name
    if not path.is_file():
        raise ComposerError(f"{path}: no such file (listed in {target})")
    if sha256_file(path)[0] != digest:
        raise ComposerError(f"{path}: does not match its sha256 in {target}")
    return path, sums


# -- pinning the images ----------------------------------------------------------------------
def copy_blob(src: Cache, dst: Cache, digest: str, size: int | None, what: str) -> bool:
    """Copy one blob between caches through the verifying reader; False if ``src`` lacks it."""
    if dst.has_blob(digest):
        return True
    if not src.has_blob(digest):
        return False
    with src.open_blob(digest, size, what) as fh:
        dst.put_blob(fh, digest, size, what)
    return True


def copy_image(src: Cache, dst: Cache, top: str, manifest: str, what: str) -> bool:
    """Copy an image (index, manifest, config, layers) by digest; False if anything is missing."""
    if not copy_blob(src, dst, top, None, what):
        return False
    doc = canonjson.loads(dst.read_blob(top, None, what))
    if isinstance(doc, dict) and "manifests" in doc:
        if not copy_blob(src, dst, manifest, None, what):
            return False
        doc = canonjson.loads(dst.read_blob(manifest, None, what))
    parts = [doc.get("config"), *(doc.get("layers") or [])] if isinstance(doc, dict) else []
    ok = True
    for desc in parts:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise ComposerError(f"{what}: malformed manifest {manifest}")
        ok = copy_blob(src, dst, desc["digest"], desc.get("size"), what) and ok
    return ok


def pin_images(record: dict[str, Any], fresh: Cache, source_cache: Cache | None,
               offline: bool, log: Log) -> None:
    """Put every registry image of the record into ``fresh`` by digest, tags pointing at them."""
    from composer.images.resolve import classify, resolve_image

    arch = record["build"]["arch"]
    for image in record["images"]:
        ref = parse_ref(image["ref"])
        if isinstance(ref, LayoutRef):
            continue
        assert isinstance(ref, Ref)
        top = image.get("index_digest") or image["digest"]
        image_arch = image.get("arch") or arch  # a multi-platform record: each image's own
        what = f"{image['ref']} ({top})"
        have = source_cache is not None and copy_image(source_cache, fresh, top,
                                                       image["digest"], what)
        if not have:
            if offline:
                raise ComposerError(f"{what}: not in the cache (offline)")
            log(f"fetching {ref.name}@{top}")
            resolve_image(f"{ref.name}@{top}", cache=fresh, arch=image_arch, log=log)
        if ref.digest is None:
            data = fresh.read_blob(top, None, what)
            _, media_type = classify(data, None, what)
            fresh.tag(ref.cache_name, {"mediaType": media_type, "digest": top,
                                       "size": len(data)})


# -- the perturbed rebuild ---------------------------------------------------------------------
def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def perturbed_env(base: dict[str, str]) -> tuple[dict[str, str], int]:
    """An environment and umask that differ from ``base`` and the current process in every
    setting that must not matter: TZ, locale, hash seed (and no SOURCE_DATE_EPOCH)."""
    env = {k: v for k, v in base.items()
           if not k.startswith("LC_") and k not in ("SOURCE_DATE_EPOCH", "IMAGE_COMPOSER_CACHE")}
    env["TZ"] = "Pacific/Chatham" if base.get("TZ") != "Pacific/Chatham" else "Asia/Kolkata"
    lang = "C" if base.get("LC_ALL", base.get("LANG", "")).startswith("C.") else "C.UTF-8"
    env["LANG"] = env["LC_ALL"] = lang
    env["PYTHONHASHSEED"] = "2718" if base.get("PYTHONHASHSEED") != "2718" else "3141"
    umask = 0o077 if _current_umask() != 0o077 else 0o002
    return env, umask


def bootloader_args(record: dict[str, Any], given: list[str]) -> list[str]:
    """``--bootloader`` arguments that make the rebuild use the recorded bootloaders.

    The record keeps each ISO bootloader's role and digest, not its host path (a path is not an
    input; the content is). Where a digest is not the default pin's, the build used an override,
    and the verifier must hand over the file: ``--bootloader ROLE=PATH`` (``@sha256:...``
    optional; the recorded digest is what the rebuild then insists on)."""
    defaults = default_bootloaders()
    supplied: dict[str, str] = {}
    for text in given:
        role, eq, rest = text.partition("=")
        path, _, digest = rest.rpartition("@") if "@sha256:" in rest else (rest, "", "")
        if not eq or not path:
            raise UsageError(f"--bootloader {text!r}: expected ROLE=PATH[@sha256:HEX]")
        supplied[role.strip()] = path
        recorded = ((record.get("options") or {}).get("bootloaders") or {}).get(role.strip())
        if digest and recorded and digest != recorded:
            raise ComposerError(f"--bootloader {role}: {digest} is not the recorded {recorded}")
    args = []
    for role, digest in sorted(((record.get("options") or {}).get("bootloaders") or {}).items()):
        if role in supplied:
            args += ["--bootloader", f"{role}={os.path.abspath(supplied.pop(role))}@{digest}"]
        elif defaults.get(role) != digest:
            raise ComposerError(f"the build used its own {role} ({digest}); give the same file "
                                f"with --bootloader {role}=PATH")
    if supplied:
        raise UsageError(f"--bootloader {', '.join(sorted(supplied))}: the record has no such "
                         "bootloader")
    return args


def rebuild(record: dict[str, Any], specs: list[Path], cache: Path, out: Path, cwd: Path,
            extra: list[str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the build again, as a separate process, in the perturbed environment (the whole
    environment: nothing of ours leaks in) and umask of :func:`perturbed_env`."""
    build = record["build"]
    argv = [sys.executable, "-m", "composer", "build", "--offline", "--cache", str(cache),
            "-o", str(out), "--name", build["name"], "--arch", build["arch"],
            "-f", ",".join(build["formats"])]
    if build.get("source_date_epoch") is not None:
        argv += ["--source-date-epoch", str(build["source_date_epoch"])]
    sbom = build.get("sbom")
    if isinstance(sbom, dict):  # where the in-image SBOM went, and the one beside the outputs
        if not sbom.get("rootfs"):
            argv += ["--no-sbom"]
        else:
            argv += ["--sbom-output", str(sbom["rootfs"]),
                     "--sbom-format", str(sbom.get("beside") or "spdx")]
    if build.get("decompress_kernel") is True:
        argv += ["--decompress-kernel"]
    argv += rebuild_arguments(record.get("options") or {})
    argv += [*(extra or []), *(str(p) for p in specs)]
    env, umask = perturbed_env(dict(os.environ))
    return tools.run(argv, cwd=cwd, env=env, inherit=True, base_env={}, capture=True,
                     check=False, umask=umask)


def _specs(record: dict[str, Any], given: list[Path], tmp: Path) -> list[Path]:
    recorded = record["specs"]
    if given:
        if len(given) != len(recorded):
            raise ComposerError(f"the record names {len(recorded)} spec file(s), "
                                f"{len(given)} given")
        for path, rec in zip(given, recorded, strict=True):
            digest = sha256_file(path)[0] if Path(path).is_file() else None
            if digest is None:
                raise ComposerError(f"{path}: no such file")
            if digest != rec["sha256"]:
                raise ComposerError(f"{path}: differs from the recorded spec {rec['name']} "
                                    f"(sha256 {digest}, recorded {rec['sha256']})")
        return [Path(os.path.abspath(p)) for p in given]
    paths = []
    for n, rec in enumerate(recorded):
        path = tmp / "specs" / str(n) / rec["name"]
        path.parent.mkdir(parents=True)
        path.write_bytes(rec["text"].encode("utf-8", "surrogateescape"))
        paths.append(path)
    return paths


# -- comparing -------------------------------------------------------------------------------
def compare(record: dict[str, Any], rebuilt_dir: Path, originals: Path) -> Outcome:
    """Each recorded output against the rebuilt one; differing ones are diffed against the
    original next to the record when that is still the recorded file."""
    from composer.repro.diff import diff_files, diff_json

    outcome = Outcome(ok=True)
    results = []
    for out in record["outputs"]:
        name = out["name"]
        rebuilt = rebuilt_dir / name
        got = sha256_file(rebuilt) if rebuilt.is_file() else None
        item: dict[str, Any] = {"name": name, "recorded": out["sha256"],
                                "rebuilt": got[0] if got else None}
        if got == (out["sha256"], out["size"]):
            outcome.lines.append(f"{name}: reproduced ({out['sha256']})")
            item["ok"] = True
        else:
            outcome.ok = False
            item["ok"] = False
            outcome.lines.append(f"{name}: DIFFERS (recorded {out['sha256']}, rebuilt "
                                 f"{got[0] if got else 'nothing'})")
            original = originals / name
            if got and original.is_file() and sha256_file(original)[0] == out["sha256"]:
                try:
                    report = diff_files(original, rebuilt)
                except ComposerError as exc:  # an unreadable original (a bad release) still
                    outcome.lines.append(f"  (no diff: {exc})")  # differs, as said above
                    item["diff_error"] = str(exc)
                else:
                    item["diff"] = report.as_json()
                    outcome.lines += ["  " + line for line in report.lines()]
        results.append(item)
    outcome.details["outputs"] = results
    new_record = rebuilt_dir / record_name(record["build"]["name"])
    if new_record.is_file():
        fresh = canonjson.loads(new_record.read_bytes())
        notes = [d for d in diff_json({k: v for k, v in record.items() if k != "outputs"},
                                      {k: v for k, v in fresh.items() if k != "outputs"})]
        if notes:
            outcome.lines.append("inputs or tools that differ from the record:")
            outcome.lines += ["  " + d.text() for d in notes]
        outcome.details["record_differences"] = [d.text() for d in notes]
    env = env_name(record["build"]["name"])
    if (originals / env).is_file() and (rebuilt_dir / env).is_file():
        notes = list(diff_json(canonjson.load_file(originals / env, "a build environment file"),
                               canonjson.loads((rebuilt_dir / env).read_bytes())))
        if notes:  # they explain, never decide
            outcome.lines.append("the building machines differ in (not inputs):")
            outcome.lines += ["  " + d.text() for d in notes]
        outcome.details["environment_differences"] = [d.text() for d in notes]
    return outcome


def verify_record(target: Path, specs: list[Path], *, cache: Path | None = None,
                  offline: bool = False, keep: bool = False, log: Log,
                  bootloaders: list[str] | None = None) -> Outcome:
    """Rebuild what ``target`` (a record or SHA256SUMS) records and compare every output."""
    record_path, sums = locate_record(target)
    record = load_record(record_path)
    if sums is not None:
        listed = dict(sums)
        for out in record["outputs"]:
            if listed.get(out["name"], out["sha256"]) != out["sha256"]:
                raise ComposerError(f"{target}: {out['name']} does not match the build record")
    extra = bootloader_args(record, bootloaders or [])
    tmp = Path(tempfile.mkdtemp(prefix="image-composer-verify-"))
    try:
        spec_paths = _specs(record, specs, tmp)
        fresh = Cache(tmp / "cache")
        pin_images(record, fresh, Cache(cache) if cache else None, offline, log)
        (tmp / "cwd").mkdir()
        log(f"rebuilding {record['build']['name']} in {tmp}")
        proc = rebuild(record, spec_paths, tmp / "cache", tmp / "out", tmp / "cwd", extra)
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            detail = [line for line in stderr.splitlines() if line.strip()][-10:]
            if not specs:
                detail.append("(the spec files were taken from the record; if they refer to "
                              "files or oci: layouts beside them, give the spec files too)")
            return Outcome(False, ["rebuild failed:", *("  " + d for d in detail)],
                           {"rebuild_error": detail})
        return compare(record, tmp / "out", record_path.parent)
    finally:
        if keep:
            log(f"kept the rebuild in {tmp}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
