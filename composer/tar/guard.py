"""tarfile, made to fail loudly where it would stop quietly.

:mod:`tarfile` ends an archive without a word at the first header it cannot parse (a bad
checksum, a malformed pax record, and since the CVE-2025-8194 fix in Debian's 3.11.2 and newer
CPythons, a negative size), unless that header is the very first one. A hostile or damaged
layer would then simply be shorter. Every place that reads a tar through tarfile opens it here:

- :class:`StrictTarInfo` (tarfile's documented ``tarinfo=`` hook) turns a header tarfile could
  not parse, or one cut short by the end of the data, into :class:`HeaderStop`, and a negative
  size into the same error on every Python,
  patched or not (unpatched ones would otherwise read the same members forever);
- :func:`check_end` is the second line: on a seekable file, the block where the next header
  should start must be the zero end-of-archive block or the end of the data, whatever made
  tarfile stop.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO

BLOCKSIZE = tarfile.BLOCKSIZE


class HeaderStop(tarfile.ReadError):
    """A header tarfile could not parse, after the first one (tarfile would stop quietly).

    A :class:`tarfile.ReadError`, so every existing ``except tarfile.TarError`` words it; not a
    ``HeaderError``, so tarfile itself never swallows it."""


class StrictTarInfo(tarfile.TarInfo):
    """A TarInfo whose reading never ends an archive early without an error."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        start = tarfile_.offset
        try:
            return super().fromtarfile(tarfile_)
        except (tarfile.InvalidHeaderError,  # type: ignore[attr-defined]  # not in typeshed
                tarfile.TruncatedHeaderError) as exc:  # type: ignore[attr-defined]
            # tarfile raises these itself only while its offset is 0 (the first header);
            # anywhere else it would return "no more members"
            if tarfile_.offset == 0:
                raise
            truncated = tarfile.TruncatedHeaderError  # type: ignore[attr-defined]
            what = "truncated header" if isinstance(exc, truncated) else exc
            raise HeaderStop(f"{what} at byte {start}; the archive cannot be read past "
                             "it") from None

    def _block(self, count: int) -> int:
        """tarfile's rounding to whole blocks, refusing a negative size the same way on every
        Python (the CVE-2025-8194 fix raises a header error that tarfile then swallows)."""
        if count < 0:
            raise HeaderStop(f"{self.name}: negative size (the next header would not come "
                             "after this one)")
        return super()._block(count)  # type: ignore[misc]


def open_tar(fileobj: BinaryIO, mode: str) -> tarfile.TarFile:
    """``tarfile.open`` for reading (``r:``/``r|`` and friends) with :class:`StrictTarInfo`."""
    return tarfile.open(fileobj=fileobj, mode=mode, encoding="utf-8",  # type: ignore[call-overload]
                        errors="surrogateescape", tarinfo=StrictTarInfo)


def check_end(fh: BinaryIO, offset: int) -> None:
    """Raise :class:`HeaderStop` unless the tar at ``fh`` really ends at ``offset`` (where the
    header after the last member tarfile gave should be): a zero block or the end of the data.
    ``fh`` must be seekable."""
    fh.seek(offset)
    block = fh.read(BLOCKSIZE)
    if block.strip(b"\0"):
        raise HeaderStop(f"corrupt tar header at byte {offset} (bad checksum or garbage); the "
                         "archive cannot be read past it")
