"""The lock file: every image ref of a spec pinned to a manifest digest, per architecture.

``image-composer lock SPEC...`` writes ``SPEC.lock`` next to the first spec (``hello.yml`` ->
``hello.lock``); ``build`` uses it when it is there. The format is documented in docs/lock.md:
JSON, written by :func:`composer.canonjson.pretty` (sorted keys), so the same pins always give
the same bytes and diffs stay small.

Tags are re-resolved only by ``lock --update`` or ``build --pull``; ``build --locked`` refuses to
run when the lock is missing, lacks a ref, or the specs changed since it was written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from composer import canonjson
from composer.atomic import atomic_file
from composer.errors import ComposerError, UsageError
from composer.images.cache import Cache
from composer.images.model import Image
from composer.images.network import Network
from composer.images.registry import RegistryClient
from composer.oci.refs import Ref, RefError, parse_ref
from composer.progress import Progress
from composer.streams.digest import check_digest

LOCK_VERSION = 1
Log = Callable[[str], None]


@dataclass(frozen=True)
class Pin:
    """The manifest a ref resolved to for one architecture, and the index it came through."""

    digest: str
    index: str | None = None

    def to_json(self) -> dict:
        return {"digest": self.digest, **({"index": self.index} if self.index else {})}


@dataclass(frozen=True)
class Lock:
    specs: dict[str, str]  # spec file (relative to the lock's directory) -> sha256 hex
    images: dict[str, dict[str, Pin]]  # ref as written -> arch -> pin

    def pin(self, ref: str, arch: str) -> Pin | None:
        return self.images.get(ref, {}).get(arch)

    def to_bytes(self) -> bytes:
        return canonjson.pretty({
            "lockVersion": LOCK_VERSION,
            "specs": dict(sorted(self.specs.items())),
            "images": {ref: {arch: pin.to_json() for arch, pin in sorted(arches.items())}
                       for ref, arches in sorted(self.images.items())},
        })


def lock_path(specs: Sequence[Path]) -> Path:
    first = Path(specs[0])
    return first.with_name(first.stem + ".lock")


def spec_hashes(specs: Sequence[Path], lock_file: Path) -> dict[str, str]:
    """Spec files by their path relative to the lock (never the cwd), with their sha256."""
    out = {}
    for spec in specs:
        try:
            data = Path(spec).read_bytes()
        except OSError as exc:
            raise ComposerError(f"{spec}: cannot read: {exc.strerror}") from None
        rel = os.path.relpath(Path(spec).resolve(), lock_file.resolve().parent)
        out[Path(rel).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def _bad(path: Path, why: str) -> ComposerError:
    return ComposerError(f"{path}: not a valid lock file: {why}")


def _digest(value: object, path: Path, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(path, f"{where} is not a digest")
    try:
        check_digest(value)
    except ComposerError:
        raise _bad(path, f"{where}: malformed digest {value!r}") from None
    return value


def parse_lock(data: bytes, path: Path) -> Lock:
    try:
        doc = canonjson.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _bad(path, "not a JSON object")
    if doc.get("lockVersion") != LOCK_VERSION:
        raise _bad(path, f"lockVersion {doc.get('lockVersion')!r} (this version reads "
                         f"{LOCK_VERSION}; rerun image-composer lock)")
    specs, images = doc.get("specs"), doc.get("images")
    if not isinstance(specs, dict) or not all(isinstance(v, str) for v in specs.values()):
        raise _bad(path, "specs must map file names to sha256 hashes")
    if not isinstance(images, dict):
        raise _bad(path, "images must be an object")
    pins: dict[str, dict[str, Pin]] = {}
    for ref, arches in images.items():
        if not isinstance(arches, dict):
            raise _bad(path, f"images[{ref!r}] must be an object")
        for arch, entry in arches.items():
            where = f"images[{ref!r}][{arch!r}]"
            if not isinstance(entry, dict):
                raise _bad(path, f"{where} must be an object")
            index = entry.get("index")
            pins.setdefault(ref, {})[arch] = Pin(
                _digest(entry.get("digest"), path, f"{where}.digest"),
                _digest(index, path, f"{where}.index") if index is not None else None)
    return Lock(dict(specs), pins)


def read_lock(path: Path) -> Lock | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_lock(data, path)


def write_lock(path: Path, lock: Lock) -> None:
    """Atomically, mode 0644 whatever the umask."""
    with atomic_file(path) as fh:
        fh.write(lock.to_bytes())


# -- resolving with a lock ----------------------------------------------------------------------
@dataclass(frozen=True)
class Wanted:
    """One image a spec uses: the ref as written, and the directory relative paths start from."""

    text: str
    base_dir: Path | None
    where: str = ""  # "FILE:LINE:COL" for error messages


@dataclass(frozen=True)
class Resolver:
    """Everything resolution needs besides the refs; build and lock share it."""

    cache: Cache
    arch: str
    pull: bool = False
    offline: bool = False
    docker: bool = False
    client: RegistryClient | None = None
    progress: Progress | None = None
    log: Log | None = None
    deferred: list[Callable[[], None]] | None = None  # see resolve_image

    def resolve(self, text: str, base_dir: Path | None, pull: bool | None = None) -> Image:
        from composer.images.resolve import resolve_image

        return resolve_image(text, cache=self.cache, arch=self.arch,
                             pull=self.pull if pull is None else pull, offline=self.offline,
                             base_dir=base_dir, log=self.log, client=self.client,
                             docker=self.docker, progress=self.progress,
                             deferred=self.deferred)


def _registry_ref(text: str) -> Ref | None:
    with contextlib.suppress(RefError):
        ref = parse_ref(text)
        return ref if isinstance(ref, Ref) else None
    return None


def resolve_pinned(want: Wanted, pin: Pin, lock_file: Path, r: Resolver) -> Image:
    """The image a pin names. Registry refs are fetched by digest (the tag is not consulted);
    local sources are resolved and must still give the pinned digest. ``--docker`` does not
    apply to pinned registry refs: the engine cannot prove it holds the pinned manifest."""
    ref = _registry_ref(want.text)
    if ref is None:
        image = r.resolve(want.text, want.base_dir)
    else:
        by_digest = f"{ref.name}@{pin.index or pin.digest}"
        image = dataclasses.replace(r.resolve(by_digest, want.base_dir), ref=str(ref))
    if image.digest != pin.digest:
        raise ComposerError(f"{want.text}: resolves to {image.digest} but {lock_file} pins "
                            f"{pin.digest} for {r.arch}; run image-composer lock --update")
    return image


def resolve_wanted(wanted: Sequence[Wanted], r: Resolver, *, lock_file: Path | None,
                   specs: Sequence[Path] = (), locked: bool = False) -> dict[str, Image]:
    """Resolve every ref, through the lock when there is one; the build's entry point.

    ``locked`` demands a lock that covers every ref for ``r.arch`` and specs unchanged since
    it was written. Offline, every image missing from the cache is named in one error.
    """
    from composer.images.resolve import Missing

    lock = read_lock(lock_file) if lock_file is not None else None
    if locked:
        if r.pull:
            raise UsageError("--locked and --pull cannot be used together")
        if lock is None or lock_file is None:
            raise ComposerError(f"--locked: no lock file {lock_file}; run image-composer lock")
        changed = sorted(set(spec_hashes(specs, lock_file).items()) ^ set(lock.specs.items()))
        if changed:
            names = sorted({name for name, _ in changed})
            raise ComposerError(f"--locked: {', '.join(names)} changed since {lock_file} was "
                                "written; run image-composer lock")
        absent = [w.text for w in wanted if lock.pin(w.text, r.arch) is None]
        if absent:
            raise ComposerError(f"--locked: {lock_file} has no {r.arch} pin for "
                                f"{', '.join(absent)}; run image-composer lock --arch {r.arch}")
    images: dict[str, Image] = {}
    missing: list[str] = []
    for want in wanted:
        pin = lock.pin(want.text, r.arch) if lock is not None and not r.pull else None
        try:
            if pin is not None and lock_file is not None:
                images[want.text] = resolve_pinned(want, pin, lock_file, r)
            else:
                images[want.text] = r.resolve(want.text, want.base_dir)
        except Missing:
            missing.append(want.text)
        except ComposerError as exc:
            raise ComposerError(f"{want.where}: {exc}" if want.where else str(exc)) from exc
    if missing:
        raise ComposerError(f"offline, and not in the cache: {', '.join(missing)}")
    return images


def update_lock(wanted: Sequence[Wanted], specs: Sequence[Path], arches: Sequence[str],
                r: Resolver, *, update: bool) -> tuple[Path, Lock]:
    """Pin every ref for every arch (and any arch the old lock had); write and return the lock.

    Pins already in the lock are kept unless ``update``, which re-resolves tags from the
    registry. Refs no longer in the specs are dropped.
    """
    path = lock_path(specs)
    old = read_lock(path)
    all_arches = sorted(set(arches) | {a for p in (old.images.values() if old else [])
                                       for a in p})
    images: dict[str, dict[str, Pin]] = {}
    for want in wanted:
        for arch in all_arches:
            pin = old.pin(want.text, arch) if old is not None and not update else None
            if pin is None:
                ra = dataclasses.replace(r, arch=arch)
                try:
                    image = ra.resolve(want.text, want.base_dir, pull=update)
                except ComposerError as exc:
                    raise ComposerError(f"{want.where}: {exc}" if want.where else str(exc)
                                        ) from exc
                pin = Pin(image.digest, image.index_digest)
            images.setdefault(want.text, {})[arch] = pin
    lock = Lock(spec_hashes(specs, path), images)
    write_lock(path, lock)
    return path, lock


def wanted_from_spec(spec) -> list[Wanted]:
    """The spec's images in spec order (:meth:`Spec.image_refs`)."""

    return [Wanted(ref.text, Path(ref.pos.file).parent if ref.pos else None,
                   str(ref.pos) if ref.pos else "")
            for ref in spec.image_refs()]



def resolve_spec(spec, cache: Cache, *, arch: str, pull: bool, offline: bool, log: Log,
                 specs: Sequence[Path] = (), locked: bool = False, docker: bool = False,
                 quiet: bool = False, insecure: Sequence[str] = (),
                 network: Network | None = None,
                 deferred: list[Callable[[], None]] | None = None) -> dict[str, Image]:
    """What ``build`` calls: the spec's images through ``SPEC.lock`` (if ``specs`` are given and
    it exists), with progress on stderr (bars on a TTY, a line per image otherwise, nothing
    when ``quiet``) and the user's docker credentials. ``deferred``: see
    :func:`composer.images.resolve.resolve_image`."""
    import sys

    from composer.images.resolve import default_client
    from composer.progress import for_stream

    resolver = Resolver(cache=cache, arch=arch, pull=pull, offline=offline, docker=docker,
                        client=None if offline else default_client(set(insecure), network),
                        progress=for_stream(sys.stderr, quiet),
                        log=(lambda _message: None) if quiet else log, deferred=deferred)
    return resolve_wanted(wanted_from_spec(spec), resolver,
                          lock_file=lock_path(specs) if specs else None, specs=specs,
                          locked=locked)
