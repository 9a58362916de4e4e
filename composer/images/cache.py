"""The content-addressed image cache, laid out as an OCI image layout.

Layout under the cache root::

    oci-layout, index.json        OCI image layout; refs are org.opencontainers.image.ref.name
    blobs/sha256/<hex>            every blob, verified (size and sha256) before it is renamed in
    uncompressed/sha256/<hex>     derived: each layer decompressed, named and verified by diff_id
    tmp/                          partial downloads; never read
    lock                          flock(2) serialising index.json updates between processes
    gc.lock                       flock(2): builds hold it shared, ``clean`` exclusive

Crash safety: a blob is renamed into place only after it was verified and fsync'd, and index.json
is replaced atomically, so ``kill -9`` at any point leaves at worst a stray file in ``tmp/``
(removed by :meth:`Cache.clean`, ignored by everything else). Uncompressed layer copies are
derived and dropped after the build (composer.cache.gc.trim), so they are renamed in without an
fsync (which cost a cold build a second per GiB): they are trusted only during the boot that
wrote them. ``uncompressed/boot_id`` names that boot and is written before any copy is; a cache
whose marker names another boot (a power loss or crash, which is a reboot, may have left a copy
renamed but empty) drops every copy first. A ``kill -9`` loses no written page, so within one
boot a renamed copy is whole.

Every byte read back goes through :class:`VerifyingReader`, the one digest-verifying reader: a
blob is trusted only as far as its hash, whichever source it came from.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import tempfile
import types
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from composer import canonjson
from composer.atomic import atomic_file
from composer.errors import ComposerError
from composer.oci.media import REF_ANNOTATION
from composer.streams.digest import (
    CHUNK,
    DigestMismatch,
    HashingWriter,
    VerifyingReader,
    check_digest,
    drain,
    read_into,
    sha256_digest,
)
from composer.streams.types import Readable

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


class _Tee(io.RawIOBase):
    """Reads ``raw`` and writes every byte it hands out to ``copy`` as well."""

    def __init__(self, raw: Readable, copy: BinaryIO):
        super().__init__()
        self._raw, self._copy = raw, copy

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = read_into(self._raw, buffer)
        if n:
            self._copy.write(memoryview(buffer)[:n])
        return n


_INFLATE: types.ModuleType
try:  # ISA-L inflates about 1.5x faster than zlib; the bytes are the same by definition (and
    # every layer is verified against its diff_id anyway)
    from isal import isal_zlib as _INFLATE

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (_INFLATE.error,)
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _INFLATE = zlib
    _INFLATE_ERRORS = ()


class _Gunzip(io.RawIOBase):
    """gzip decompression in 1 MiB steps (GzipFile reads 8 KiB at a time, which made gunzip
    the largest cost of phase one). Multi-member streams are followed; a truncated stream or
    trailing garbage is an error, never silently accepted."""

    def __init__(self, raw: Readable):
        super().__init__()
        self._raw = raw
        self._z = _INFLATE.decompressobj(31)
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            if self._eof:
                return 0
            if self._z.eof:
                self._next_member()
                continue
            data = self._z.unconsumed_tail or self._raw.read(CHUNK)
            if not data:
                raise EOFError("compressed stream ended before the end-of-stream marker")
            self._pending = self._inflate(data)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _inflate(self, data: bytes) -> bytes:
        try:
            return self._z.decompress(data, CHUNK)
        except _INFLATE_ERRORS as exc:  # ISA-L's own error class, worded as zlib's
            raise zlib.error(str(exc)) from exc

    def _next_member(self) -> None:
        """After a member: another member, zero padding (as gzip(1) allows), or the end."""
        rest = self._z.unused_data
        while True:
            rest = rest.lstrip(b"\0")
            if rest:
                break
            rest = self._raw.read(CHUNK)
            if not rest:
                self._eof = True
                return
        if len(rest) < 2:
            rest += self._raw.read(1)
        if rest[:2] != b"\x1f\x8b":
            raise EOFError("data after the end of the gzip stream")
        self._z = _INFLATE.decompressobj(31)
        self._pending = self._inflate(rest)


def open_decompressed(raw: io.RawIOBase | io.BufferedIOBase, media_type: str) -> BinaryIO:
    """A layer's uncompressed tar stream, by media type (or by magic bytes if it says nothing)."""
    buffered = io.BufferedReader(raw, CHUNK) if not isinstance(raw, io.BufferedReader) else raw
    head = buffered.peek(4)[:4]
    if media_type.endswith("+zstd") or head == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    if media_type.endswith("+gzip") or media_type.endswith(".gzip") or head[:2] == b"\x1f\x8b":
        return io.BufferedReader(_Gunzip(buffered), CHUNK)
    return buffered


def boot_id() -> str | None:
    """This boot's id (Linux), None where there is none: then every copy is fsync'd."""
    return _read_text(Path("/proc/sys/kernel/random/boot_id")) or None


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


class Cache:
    """A cache directory. Cheap to construct; creates its layout on first use."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._boot_checked = False
        #: called (in the storing thread) with each uncompressed layer file this object has
        #: just stored: phase one reads the layer's headers there, while other layers download
        self.on_layer: Callable[[Path], None] | None = None

    # -- paths -----------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / check_digest(digest)

    def uncompressed_path(self, diff_id: str) -> Path:
        if not self._boot_checked:
            self._check_boot()
        return self.root / "uncompressed" / "sha256" / check_digest(diff_id)

    def _check_boot(self) -> None:
        """Drop the uncompressed copies if another boot wrote them (see the module's
        docstring). Under the index lock, so two builds never both drop and one of them
        writes meanwhile."""
        self._boot_checked = True
        current = boot_id()
        marker = self.root / "uncompressed" / "boot_id"
        found = _read_text(marker)
        if current is None or not found or found == current:
            return  # (no marker: every copy there was fsync'd)
        with self.locked():
            self._drop_other_boots(current)

    def _drop_other_boots(self, current: str) -> None:
        marker = self.root / "uncompressed" / "boot_id"
        found = _read_text(marker)
        if found and found != current:
            directory = self.root / "uncompressed" / "sha256"
            for stale in directory.iterdir() if directory.is_dir() else ():
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            marker.unlink()

    def _copies_durable(self) -> bool:
        """Whether a new uncompressed copy must be fsync'd: only where no boot id marks it
        (the marker is written first otherwise)."""
        current = boot_id()
        marker = self.root / "uncompressed" / "boot_id"
        if current is None:
            return True
        if _read_text(marker) != current:
            with self.locked():
                self._drop_other_boots(current)
                if _read_text(marker) != current:
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    self._atomic_write(marker, current.encode())
        return False

    def _ensure(self) -> None:
        for sub in ("blobs/sha256", "uncompressed/sha256", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._atomic_write(layout, canonjson.compact({"imageLayoutVersion": "1.0.0"}))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for read-modify-write of index.json, shared with other processes.

        A cache directory that linuxkit uses too (it has linuxkit's ``.lock``) is also locked
        the way linuxkit locks it (a POSIX record lock on ``.lock``), so neither tool loses
        the other's index.json update."""
        self._ensure()
        with open(self.root / "lock", "a+b") as fh, contextlib.ExitStack() as linuxkit:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                theirs = self.root / ".lock"
                if theirs.is_file():
                    lk = linuxkit.enter_context(open(theirs, "r+b"))
                    fcntl.lockf(lk, fcntl.LOCK_EX)
                    linuxkit.callback(fcntl.lockf, lk, fcntl.LOCK_UN)
                yield
            finally:
                linuxkit.close()
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Held (shared) while a build reads the cache, so ``clean`` never deletes under it."""
        self._ensure()
        with open(self.root / "gc.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """No build is using the cache while this is held (for ``clean`` and ``rm``)."""
        self._ensure()
        with open(self.root / "gc.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive_now(self) -> Iterator[bool]:
        """Like :meth:`exclusive` but never waits: yields whether no build was using the cache
        (so a build can drop derived files without breaking another one that reads them)."""
        self._ensure()
        with open(self.root / "gc.lock", "a+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _atomic_write(self, dest: Path, data: bytes) -> None:
        with atomic_file(dest) as fh:
            fh.write(data)

    # -- blobs -----------------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_blob(self, source: Readable, digest: str, size: int | None, what: str) -> Path:
        """Store a blob from a stream; verified while streaming; nothing is stored on mismatch."""
        dest = self.blob_path(digest)
        if dest.is_file():
            return dest
        self._ensure()
        reader = VerifyingReader(source, digest, size, what)
        self._store(reader, dest)
        return dest

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        self.put_blob(io.BytesIO(data), digest, len(data), "blob")
        return digest

    def put_stream(self, source: Readable, what: str, expect: str | None = None
                   ) -> tuple[str, int]:
        """Store a blob whose digest is not known in advance (docker-archive layers, say).

        It is hashed while it is written; ``expect``, if given, must match. Returns
        ``(digest, size)``.
        """
        with self.new_blob(what, expect) as blob:
            drain(source, blob)
        return blob.digest, blob.size

    @contextlib.contextmanager
    def new_blob(self, what: str, expect: str | None = None) -> Iterator[HashingWriter]:
        """Write a new blob; it is named by its sha256 (``expect``, if given, must match) and
        renamed into place when the block ends without an error."""
        self._ensure()
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as fh:
                blob = HashingWriter(fh)
                yield blob
                fh.flush()
                os.fsync(fh.fileno())
            if expect is not None and blob.digest != expect:
                raise DigestMismatch(f"{what}: content is {blob.digest}, expected {expect}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.blob_path(blob.digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _store(self, reader: Readable, dest: Path) -> None:
        with atomic_file(dest, self.root / "tmp") as fh:
            drain(reader, fh)

    def open_blob(self, digest: str, size: int | None = None, what: str = ""
                  ) -> io.BufferedReader:
        """A verifying reader over a cached blob."""
        path = self.blob_path(digest)
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the reader
        except FileNotFoundError:
            raise ComposerError(f"{what or digest}: not in the cache") from None
        return io.BufferedReader(VerifyingReader(raw, digest, size, what or digest), CHUNK)

    def read_blob(self, digest: str, size: int | None = None, what: str = "") -> bytes:
        with self.open_blob(digest, size, what) as fh:
            return fh.read()

    def uncompressed_layer(self, digest: str, size: int, media_type: str, diff_id: str,
                           what: str) -> Path:
        """The layer as a plain tar file, verified against both its digest and its diff_id.

        Flattening seeks in it, so the rootfs can be written in sorted order without holding any
        file content in memory. Layers fetched by :meth:`put_layer` already have it.
        """
        dest = self.uncompressed_path(diff_id)
        if dest.is_file():
            return dest
        self._ensure()
        with self.open_blob(digest, size, what) as compressed:
            self._decompress_into(compressed, media_type, diff_id, what)
        self._stored(dest)
        return dest

    def _stored(self, path: Path) -> None:
        if self.on_layer is not None:
            self.on_layer(path)

    def put_layer(self, source: Readable, digest: str, size: int, media_type: str, diff_id: str,
                  what: str) -> None:
        """Store a layer blob and its uncompressed tar from one read of ``source``.

        The compressed bytes are written to the blob file as the decompressor consumes them, so
        each byte is read, hashed and written once (a separate pass would read and hash the blob
        again). Each file is renamed into place only after both digests were verified.
        """
        if self.uncompressed_path(diff_id).is_file():
            self.put_blob(source, digest, size, what)
            return
        if self.has_blob(digest):  # another build stored it meanwhile
            self.uncompressed_layer(digest, size, media_type, diff_id, what)
            return
        self._ensure()
        verified = VerifyingReader(source, digest, size, what)
        with atomic_file(self.blob_path(digest), self.root / "tmp") as blob:
            tee = io.BufferedReader(_Tee(verified, blob), CHUNK)
            self._decompress_into(tee, media_type, diff_id, what)
            drain(tee)  # whatever the decompressor left unread, so the digest is checked
        self._stored(self.uncompressed_path(diff_id))

    def _decompress_into(self, compressed: io.BufferedIOBase, media_type: str, diff_id: str,
                         what: str) -> None:
        """Decompress a layer into ``uncompressed/``, verified by diff_id. A corrupt download is
        reported as a digest mismatch, not as the bad gzip stream it also is."""
        dest = self.uncompressed_path(diff_id)  # (checks the boot marker first)
        try:
            with atomic_file(dest, self.root / "tmp", durable=self._copies_durable()) as fh:
                plain = open_decompressed(compressed, media_type)
                drain(VerifyingReader(plain, diff_id, None, f"{what} (uncompressed)",
                                      close_raw=False), fh)
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            if isinstance(exc, DigestMismatch):
                raise
            drain(compressed)
            raise ComposerError(f"{what}: cannot decompress layer: {exc}") from exc

    # -- refs ------------------------------------------------------------------------------
    def _read_index(self) -> dict:
        path = self.root / "index.json"
        if not path.is_file():
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        try:
            return canonjson.loads(path.read_bytes())
        except ValueError as exc:
            raise ComposerError(f"{path}: corrupt cache index: {exc}") from exc

    def lookup(self, ref_name: str) -> dict | None:
        """The descriptor a ref name points to in the cache, if any."""
        for desc in self._read_index()["manifests"]:
            if desc.get("annotations", {}).get(REF_ANNOTATION) == ref_name:
                return desc
        return None

    def refs(self) -> list[tuple[str, dict]]:
        out = []
        for desc in self._read_index()["manifests"]:
            name = desc.get("annotations", {}).get(REF_ANNOTATION)
            if name:
                out.append((name, desc))
        return sorted(out, key=lambda item: item[0])

    def tag(self, ref_name: str, descriptor: dict) -> None:
        """Point ``ref_name`` at a descriptor whose blob is already stored."""
        if not self.has_blob(descriptor["digest"]):
            raise ComposerError(f"{ref_name}: refusing to tag a blob that is not in the cache")
        with self.locked():
            index = self._read_index()
            kept = [d for d in index["manifests"]
                    if d.get("annotations", {}).get(REF_ANNOTATION) != ref_name]
            entry = dict(descriptor)
            entry["annotations"] = {**descriptor.get("annotations", {}), REF_ANNOTATION: ref_name}
            kept.append(entry)
            kept.sort(key=lambda d: d["annotations"][REF_ANNOTATION])
            index["manifests"] = kept
            self._atomic_write(self.root / "index.json", canonjson.pretty(index))

    def untag(self, ref_name: str) -> bool:
        """Forget a ref name (its blobs stay until ``clean``); False if it was not there."""
        with self.locked():
            index = self._read_index()
            kept = [d for d in index["manifests"]
                    if d.get("annotations", {}).get(REF_ANNOTATION) != ref_name]
            if len(kept) == len(index["manifests"]):
                return False
            index["manifests"] = kept
            self._atomic_write(self.root / "index.json", canonjson.pretty(index))
            return True
