"""Reading a raw disk image for the container writers: its non-zero chunks, holes skipped.

Every container (qcow2, VHD, VMDK, the gcp tar) stores only the parts of a disk that are not zero,
so each one walks the raw image through :func:`data_chunks`. Holes are skipped with
``SEEK_DATA``/``SEEK_HOLE`` (a 25 GiB sparse disk costs nothing), but what counts as zero is
decided by the **content** in fixed 64 KiB chunks, never by where the filesystem happens to keep
holes: the same disk gives the same bytes whether it was copied sparse or not.

The identifiers a container carries (VHD UUID, VMDK CID) are derived from a caller's seed and
:class:`ContentDigest`, a digest of exactly that content: the size plus every non-zero chunk with
its offset. It costs one hash of the data, none for the zeros.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from composer.errors import ComposerError

CHUNK = 64 * 1024  # the zero-detection unit: part of every container's identity
READ = 1 << 20  # bytes per read while walking a data region
_ZERO = bytes(CHUNK)

MiB = 1 << 20
GiB = 1 << 30
# linuxkit's fixed virtual sizes (its -size flag does not apply to these formats)
LINUXKIT_SIZES = {"vhd": GiB, "vmdk": GiB, "gcp": GiB, "dynamic-vhd": 25 * GiB}


def round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def pad_raw(path: Path, size: int) -> None:
    """Grow the raw image at ``path`` to ``size`` bytes with a hole (no blocks written).

    What callers do before handing a disk to a container of fixed virtual size; a disk already
    larger than ``size`` is a user error (the content does not fit the format's size).
    """
    current = os.stat(path).st_size
    if current > size:
        raise ComposerError(f"the disk image is {current} bytes, more than the {size} bytes "
                            f"of the output format; ask for a larger --size")
    if current < size:
        os.truncate(path, size)


def _data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the regions the filesystem says may hold data; all of it if it can't say."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole after pos
                return
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                yield pos, size
                return
            raise
        if start >= size:
            return
        yield start, min(end, size)
        pos = end


def data_chunks(fd: int, size: int, chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """``(offset, data)`` of every ``chunk``-aligned chunk of the first ``size`` bytes of ``fd``
    that holds a non-zero byte, in offset order. ``data`` is ``chunk`` bytes long except for a
    short last chunk when ``size`` is not a multiple of ``chunk``. Memory: one read buffer."""
    if chunk <= 0 or chunk % 512:
        raise ValueError(f"chunk size {chunk} must be a positive multiple of 512")
    step = round_up(READ, chunk)
    zero = _ZERO if chunk == CHUNK else bytes(chunk)
    done = 0  # everything before this offset has been yielded or found zero
    for start, end in _data_regions(fd, size):
        start = max(done, start - start % chunk)
        end = min(size, round_up(end, chunk))
        pos = start
        while pos < end:
            want = min(step, end - pos)
            buf = os.pread(fd, want, pos)
            if len(buf) != want:
                raise ComposerError(f"the disk image changed while it was read (short read at "
                                    f"offset {pos + len(buf)})")
            for i in range(0, want, chunk):
                piece = buf[i:i + chunk]
                if piece != zero[:len(piece)]:
                    yield pos + i, piece
            del buf, piece  # one buffer alive at a time, not two
            pos += want
        done = max(done, end)


class ContentDigest:
    """SHA-256 of a disk's content as the containers store it: size, then (offset, chunk) for
    each non-zero chunk in order. Equal disks give equal digests however they were written."""

    def __init__(self, size: int):
        self._hash = hashlib.sha256(b"image-composer disk content v1\0" + struct.pack(">Q", size))

    def update(self, offset: int, data: bytes) -> None:
        self._hash.update(struct.pack(">Q", offset))
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()


def derive(label: str, seed: bytes, content: bytes, n: int) -> bytes:
    """``n`` bytes for the identifier ``label`` from the caller's seed and a content digest."""
    h = hashlib.sha256(b"image-composer " + label.encode() + b"\0")
    h.update(struct.pack(">Q", len(seed)) + seed + content)
    return h.digest()[:n]


def derive_uuid(label: str, seed: bytes, content: bytes) -> bytes:
    """16 bytes shaped as an RFC 9562 version-8 (hash-based, custom) UUID, in RFC byte order."""
    b = bytearray(derive(label, seed, content, 16))
    b[6] = (b[6] & 0x0F) | 0x80
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


def disk_size(fd: int) -> int:
    return os.fstat(fd).st_size
