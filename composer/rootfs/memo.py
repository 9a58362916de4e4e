"""Phase-one results kept in the cache, so a rebuild with nothing changed skips phase one.

The canonical rootfs tar is a pure function of: the merged spec, the digest of every image it
uses, the content of every ``files: source``, the time policy, and the phase-one code itself.
:func:`rootfs_key` hashes exactly those (the code by the bytes of its source files, so a changed
flattener can never reuse an old result, version bump or not). Results live in
``CACHE/rootfs/<key>.tar`` with ``<key>.json`` (sha256, size, entry count) written after it;
an entry without its ``.json``, or whose tar does not match it, is ignored and rebuilt.
``cache clean`` removes them all (they are derived data).

The ``.json`` also keeps the tar's stat signature (device, inode, size, mtime in ns). While it
is unchanged the tar is known to be untouched and is not re-hashed, which makes a no-op rebuild
nearly free; any write or truncation changes the mtime, any replacement the inode, and brings
back the full hash. (ctime is left out on purpose: a ``tar`` output may be a hard link of the
entry, and linking changes it. Writing to such an output changes the shared mtime, so the entry
is re-hashed, not trusted.) ``cache verify`` always re-hashes.

The tar and its ``.json`` are renamed in without an fsync (a cold build's largest file: the
fsync cost it a second per GiB): the ``.json`` names the boot that wrote it, and the stat
signature is trusted only in that boot. A power loss or kernel crash, the only way an un-fsync'd
rename can come back empty or stale, is a reboot, after which the tar is re-hashed before it is
used (and recorded again, as this boot's, once it matched). Where there is no boot id, both are
fsync'd as before.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from composer import canonjson
from composer.epoch import Epoch
from composer.images.cache import boot_id
from composer.images.model import Image
from composer.spec.model import Spec

_PHASE_ONE = Path(__file__).resolve().parents[1]  # the composer package
_code_digest: str | None = None


def code_fingerprint() -> str:
    """sha256 over the composer package's source files (names and bytes, sorted by name)."""
    global _code_digest
    if _code_digest is None:
        hasher = hashlib.sha256()
        for path in sorted(_PHASE_ONE.rglob("*.py"), key=lambda p: p.as_posix()):
            hasher.update(path.relative_to(_PHASE_ONE).as_posix().encode() + b"\0")
            hasher.update(hashlib.sha256(path.read_bytes()).digest())
        _code_digest = hasher.hexdigest()
    return _code_digest


def _file_digest(path: str) -> str:
    from composer.streams.digest import sha256_file

    try:
        return sha256_file(Path(path))[0]
    except OSError as exc:
        return f"unreadable:{exc.errno}"


def rootfs_key(spec: Spec, images: dict[str, Image], epoch: Epoch, sbom_path: str = "",
               layouts: dict | None = None, decompress_kernel: bool = False) -> str:
    from composer.spec.document import spec_json
    from composer.spec.goyaml import linuxkit_yaml

    # by rootfs path, never host path: two checkouts in two places (two CI builders sharing a
    # remote cache) give the same key for the same content
    sources = [[f.path, _file_digest(f.source)] for f in spec.files if f.source is not None]
    layers = {text: [layer.diff_id for layer in image.layers] for text, image in images.items()}
    document = {
        "code": code_fingerprint(),
        "spec": hashlib.sha256(spec_json(spec)).hexdigest(),
        # metadata: yaml files hold values as written, which spec_json normalises away
        "metadata": hashlib.sha256(linuxkit_yaml(spec)).hexdigest()
        if any(f.metadata == "yaml" for f in spec.files) else "",
        "images": {text: image.digest for text, image in sorted(images.items())},
        "layers": dict(sorted(layers.items())),
        "sources": sources,
        "source_date_epoch": epoch.source_date_epoch,
        # linuxkit's in-image SBOM: where it goes, and the attested statements it merges
        "sbom": [sbom_path, {text: [list(s) for s in image.sboms]
                             for text, image in sorted(images.items()) if image.sboms}]
        if sbom_path else "",
        # format: oci volumes: the index and every blob written into them
        "decompress_kernel": decompress_kernel,
        "layouts": {str(n): [list(layout.index), [list(b) for b in layout.blobs]]
                    for n, layout in sorted((layouts or {}).items())},
    }
    return hashlib.sha256(canonjson.compact(document)).hexdigest()


@dataclass(frozen=True)
class Stored:
    path: Path
    sha256: str
    size: int
    entries: int


def directory(cache_root: Path) -> Path:
    return cache_root / "rootfs"


def stat_signature(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def lookup(cache_root: Path, key: str) -> Stored | None:
    """The stored result for ``key``: trusted only as far as its digest, which is re-computed
    unless the tar's stat signature shows it untouched since it was hashed."""
    tar = directory(cache_root) / f"{key}.tar"
    meta = directory(cache_root) / f"{key}.json"
    try:
        info = canonjson.loads(meta.read_bytes())
        stored = Stored(tar, info["sha256"], info["size"], info["entries"])
        if info.get("stat") == stat_signature(tar) and info.get("boot") == boot_id():
            return stored
        if tar.stat().st_size != stored.size or _file_digest(str(tar)) != stored.sha256:
            return None
        record(cache_root, key, stored.sha256, stored.size, stored.entries)
        return stored
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verify(cache_root: Path, key: str) -> bool:
    """Whether the entry's tar really hashes to what its ``.json`` says (for ``cache verify``)."""
    try:
        info = canonjson.loads((directory(cache_root) / f"{key}.json").read_bytes())
        return _file_digest(str(directory(cache_root) / f"{key}.tar")) == info["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def record(cache_root: Path, key: str, sha256: str, size: int, entries: int) -> None:
    """Write ``<key>.json`` for a finished ``<key>.tar`` (hashed by the caller, as written)."""
    from composer.atomic import atomic_file

    signature = stat_signature(directory(cache_root) / f"{key}.tar")
    boot = boot_id()
    with atomic_file(directory(cache_root) / f"{key}.json", durable=boot is None) as fh:
        fh.write(canonjson.compact({"boot": boot, "entries": entries, "sha256": sha256,
                                    "size": size, "stat": signature}))


def durable() -> bool:
    """Whether a new rootfs tar must be fsync'd before it is renamed in (no boot id here)."""
    return boot_id() is None


def tar_path(cache_root: Path, key: str) -> Path:
    path = directory(cache_root) / f"{key}.tar"
    os.makedirs(path.parent, exist_ok=True)
    return path


def packages_path(cache_root: Path, rootfs_sha256: str) -> Path:
    key = hashlib.sha256(f"{code_fingerprint()}:{rootfs_sha256}".encode()).hexdigest()
    return directory(cache_root) / f"packages-{key}.json"


def packages_file(cache_root: Path, rootfs_sha256: str) -> Path:
    """Where the package list of a rootfs is kept (the remote cache ships it with the tar)."""
    return packages_path(cache_root, rootfs_sha256)


def packages(cache_root: Path, stored: Stored, sbom_path: str = "") -> list[dict[str, str]]:
    """The SBOM's package list for a stored rootfs: found once, then kept beside it (scanning
    every header of a large rootfs costs seconds; the list is a function of its bytes)."""
    from composer.rootfs.packages import find_packages

    try:
        found = canonjson.loads(packages_path(cache_root, stored.sha256).read_bytes())
        if isinstance(found, list):
            return found
    except (OSError, ValueError):
        pass
    found = find_packages(stored.path, sbom_path)
    remember_packages(cache_root, stored.sha256, found)
    return found


def remember_packages(cache_root: Path, rootfs_sha256: str,
                      found: list[dict[str, str]]) -> None:
    """Keep the package list of the rootfs whose sha256 is given (phase one finds it in the
    tree it has just written, which saves a scan of the tar)."""
    from composer.atomic import atomic_file

    path = packages_path(cache_root, rootfs_sha256)
    os.makedirs(path.parent, exist_ok=True)
    with atomic_file(path) as fh:
        fh.write(canonjson.compact(found))
