"""``build --decompress-kernel``: linuxkit's ``decompressKernel``, streamed.

The kernel file of the kernel image is replaced by its decompressed form: a gzip'd kernel (an
arm64 ``Image.gz``) is gunzipped whole; a bzImage (x86) has its gzip'd payload (found from the
2.08+ boot header: setup sectors, ``payload_offset``, ``payload_length``) gunzipped. Anything
else is the error linuxkit gives. The result is stored in the image cache as a blob (named by
its sha256, so the same kernel is decompressed once) and read from there when the tar is written:
memory never holds the kernel.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import replace

from composer.errors import ComposerError
from composer.images.cache import Cache, open_decompressed
from composer.rootfs.tree import HostFile, Node, open_content

GZIP_MAGIC = b"\x1f\x8b"
_BOOT_MAGIC_AT, _HDRS_AT, _MIN_LEN = 0x1FE, 0x202, 0x250


def payload_span(head: bytes, size: int, what: str) -> tuple[int, int]:
    """(offset, length) of the gzip stream inside a kernel whose first bytes are ``head``."""
    if head.startswith(GZIP_MAGIC):
        return 0, size
    if (size > _MIN_LEN and head[_BOOT_MAGIC_AT:_BOOT_MAGIC_AT + 2] == b"\x55\xaa"
            and head[_HDRS_AT:_HDRS_AT + 4] == b"HdrS"):
        major, minor = head[0x206], head[0x207]
        if (major, minor) < (2, 8):
            raise ComposerError(f"{what}: unsupported bzImage version: {major}.{minor}")
        setup_sectors = head[0x1F1]
        offset, length = struct.unpack_from("<II", head, 0x248)
        offset += (setup_sectors + 1) * 512
        if size < offset + length:
            raise ComposerError(f"{what}: compressed bzImage payload exceeds size of image")
        return offset, length
    raise ComposerError(f"{what}: --decompress-kernel: no compressed kernel or no supported "
                        "format found")


class _Span(io.RawIOBase):
    """``length`` bytes of a node's content from ``offset``."""

    def __init__(self, node: Node, offset: int, length: int):
        super().__init__()
        self._handles: dict = {}
        data = open_content(node.content, self._handles)  # type: ignore[arg-type]
        self._src = io.BytesIO(data) if isinstance(data, bytes) else data
        if self._src.seekable():  # a layer span: positioned at its start
            self._src.seek(self._src.tell() + offset)
        else:  # a sparse file's expanding reader: skip forward
            while offset:
                skipped = len(self._src.read(min(offset, 1 << 20)))
                if not skipped:
                    break
                offset -= skipped
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._left)
        chunk = self._src.read(n) if n else b""
        buffer[:len(chunk)] = chunk
        self._left -= len(chunk)
        return len(chunk)

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._src.close()  # a host file's own handle, or the BytesIO
        super().close()


def _read(node: Node, offset: int, length: int) -> bytes:
    with _Span(node, offset, length) as raw:
        return raw.read()


def decompressed(node: Node, cache: Cache, what: str) -> Node:
    """``node`` (the kernel file) with its content decompressed, as a cached blob."""
    size = node.entry.size
    offset, length = payload_span(_read(node, 0, _MIN_LEN), size, what)
    if _read(node, offset, 2) != GZIP_MAGIC:
        raise ComposerError(f"{what}: unsupported bzImage payload format at offset {offset}")
    with _Span(node, offset, length) as raw:
        try:
            plain = open_decompressed(io.BufferedReader(raw), "application/gzip")
            digest, out_size = cache.put_stream(plain, f"{what} (decompressed)")
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise ComposerError(f"{what}: cannot decompress the kernel: {exc}") from None
    return Node(replace(node.entry, size=out_size), HostFile(str(cache.blob_path(digest))),
                node.source, node.location)
