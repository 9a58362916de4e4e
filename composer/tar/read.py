"""Reading tars: the streaming entry reader every phase-two converter uses, and tarfile's
failures turned into clean errors.

On a seekable file :mod:`composer.tar.headers` parses the headers; where it gives up,
:mod:`tarfile` reads the archive again and has the last word.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Callable, Iterator
from typing import IO, BinaryIO

from composer.tar import headers
from composer.tar.canon import CanonError, Entry, Kind, entry_from_tarinfo


@contextlib.contextmanager
def tarfile_errors(error: Callable[[str], Exception], prefix: str = "") -> Iterator[None]:
    """tarfile's failures as one clean ``error``, including the bare ValueErrors its own
    parsers raise on some hostile headers (a sparse member without a map, say) and the
    OverflowError of an infinite pax time."""
    try:
        yield
    except tarfile.TarError as exc:
        raise error(f"{prefix}unreadable tar: {exc}") from exc
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, CanonError):
            raise
        raise error(f"{prefix}unreadable tar: {exc}") from exc


def tarfile_members(tf: tarfile.TarFile, fh: BinaryIO | None = None
                    ) -> Iterator[tarfile.TarInfo]:
    """tarfile's members one at a time, none kept (memory stays flat). A member whose size
    would send tarfile back to an earlier header (a hostile negative size) is an error: tarfile
    itself would read the same members again forever. Given the seekable file ``fh`` the tar
    was opened on, the archive must end where the last member does
    (:func:`composer.tar.guard.check_end`): tarfile never silently drops the rest of it."""
    from composer.tar import guard

    after = None
    for info in tf:
        tf.members.clear()  # type: ignore[attr-defined]  # typeshed omits TarFile.members
        if tf.offset <= info.offset:
            raise CanonError(f"{info.name}: negative size (the next header would not come "
                             "after this one)")
        after = tf.offset
        yield info
    if fh is not None and after is not None:
        guard.check_end(fh, after)


def read_entries(stream: BinaryIO) -> Iterator[tuple[Entry, IO[bytes] | io.RawIOBase | None]]:
    """Stream a tar's entries with a reader for each regular file's content.

    The reader is only valid until the next entry is requested. Memory stays flat: members are
    not accumulated. On a seekable file headers are parsed by :mod:`composer.tar.headers` and
    content nobody reads is never read (a header-only scan of a rootfs costs its headers, not its
    size); where that reader gives up, :mod:`tarfile` reads the archive again from the start and has
    the last word (the members the fast reader already gave are not given twice).
    """
    seekable = False
    with contextlib.suppress(AttributeError, OSError, ValueError):
        seekable = stream.seekable()
    done = 0
    if seekable:
        start = stream.tell()
        try:
            for member in headers.members(stream):
                entry = member.entry
                yield entry, (headers.Content(stream, member.offset_data, entry.size)
                              if entry.kind is Kind.FILE else None)
                done += 1
            return
        except headers.GiveUp:
            stream.seek(start)
    from composer.tar import guard

    with tarfile_errors(CanonError), guard.open_tar(stream, "r:" if seekable else "r|") as tf:
        for info in tarfile_members(tf, stream if seekable else None):
            if done:
                done -= 1  # already yielded by the fast reader: the same entry
                continue
            entry = entry_from_tarinfo(info)
            yield entry, (tf.extractfile(info) if entry.kind is Kind.FILE else None)
