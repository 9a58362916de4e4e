"""Say what differs between two outputs of the same format, for people and for ``--json``.

Formats are recognised by their bytes, not their names: gzip (compared as compressed bytes and
as content, so a difference in the compression alone is named as such), newc cpio (an initrd),
tar (canonical or not; a docker archive is a tar, and its JSON members are compared key by key),
ISO 9660 (through pycdlib, by Rock Ridge path), JSON (build records, SBOMs: key by key), and
anything else as bytes (first differing offset).

Each archive is read once, streaming: per member only its header fields and the sha256 of its
content are kept (small JSON members also keep their text), so memory grows with the number of
members, never with their size.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from composer import canonjson
from composer.errors import ComposerError
from composer.streams.types import Readable
from composer.tar.canon import CanonError
from composer.tar.read import read_entries

CHUNK = 1 << 20
MAX_JSON_MEMBER = 1 << 20
MAX_REPORTED = 200  # per comparison: enough to act on, never a flood
SPOOL = 64 << 10  # ISO members are spooled to disk beyond this
HIDDEN = ("json", "nested")  # kept for deeper comparison, not compared as fields
INDEXES = ("manifest.json", "index.json")  # parsed in the first pass, to pair docker layers
MAX_DEPTH = 3  # archives in archives in archives (an initrd in a tar) are diffed this deep
MAX_NESTED = 32  # differing members diffed inside (first differing byte, keys, members)
Pair = tuple[str, str, str]  # member path in A, member path in B, label in the report
Sinks = dict[str, BinaryIO]  # member path -> where a second pass copies its content


@dataclass(frozen=True)
class Difference:
    """One difference: ``where`` is a member path or JSON key path ("" for the file itself)."""

    where: str
    what: str  # "missing", "added", a header field, "content", "order", "compression", ...
    a: Any = None
    b: Any = None

    def text(self) -> str:
        place = f"{self.where}: " if self.where else ""
        if self.what == "missing":
            return f"{place}only in A"
        if self.what == "added":
            return f"{place}only in B"
        if self.a is None and self.b is None:
            return f"{place}{self.what}"
        return f"{place}{self.what}: {_show(self.a)} -> {_show(self.b)}"


def _show(value: Any) -> str:
    if isinstance(value, str) and ("\n" in value or len(value) > 100):
        return f"<{len(value)} characters, sha256 {hashlib.sha256(value.encode()).hexdigest()}>"
    if isinstance(value, int) and not isinstance(value, bool) and value > 7:
        return str(value)
    return canonjson.compact(value).decode() if not isinstance(value, str) else value


@dataclass(frozen=True)
class Report:
    format: str
    differences: tuple[Difference, ...]
    note: str = ""

    @property
    def identical(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        head = f"{self.format}: " + ("identical" if self.identical else
                                     f"{len(self.differences)} difference(s)")
        out = [head + (f" ({self.note})" if self.note else "")]
        out += ["  " + d.text() for d in self.differences[:MAX_REPORTED]]
        if len(self.differences) > MAX_REPORTED:
            out.append(f"  ... and {len(self.differences) - MAX_REPORTED} more")
        return out

    def as_json(self) -> dict[str, Any]:
        return {"format": self.format, "identical": self.identical, "note": self.note,
                "differences": [asdict(d) for d in self.differences]}


# -- recognising formats ---------------------------------------------------------------------
def sniff(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:6] == b"070701":
        return "cpio"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) > 0x8006 and head[0x8001:0x8006] == b"CD001":
        return "iso"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "bytes"


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(0x8010)


def diff_files(a: Path, b: Path, depth: int = 0) -> Report:
    """Compare two files of the same format; the format is taken from A's bytes.

    Archive members that differ and are archives themselves (the initrd in
    ``NAME-initrd.tar`` or an ISO, a docker archive's layers and config) are extracted to
    temporary files in a second pass and diffed in turn, ``MAX_DEPTH`` levels deep.
    """
    for p in (a, b):
        if not Path(p).is_file():
            raise ComposerError(f"{p}: no such file")
    fmt_a, fmt_b = sniff(_head(a)), sniff(_head(b))
    if fmt_a != fmt_b:
        return Report("bytes", (Difference("", "format", fmt_a, fmt_b),))
    if _same_bytes(a, b):
        return Report(fmt_a, ())
    pairs: list[Pair] = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        report = diff_streams(fa, fb, fmt_a, pairs)
    if pairs and depth < MAX_DEPTH:
        nested = _nested(Path(a), Path(b), report.format, pairs[:MAX_NESTED], depth)
        report = Report(report.format, report.differences + nested, report.note)
    return report


_WALKERS = {"tar": lambda s, k: tar_members(s, k), "cpio": lambda s, k: cpio_members(s, k),
            "iso": lambda s, k: iso_members(s, k)}


def _nested(a: Path, b: Path, fmt: str, pairs: list[Pair], depth: int
            ) -> tuple[Difference, ...]:
    """Second pass: copy the paired members out of both archives, then diff each pair."""
    inner = fmt[5:-1] if fmt.startswith("gzip(") else fmt
    if inner not in _WALKERS:
        return ()
    out: list[Difference] = []
    with tempfile.TemporaryDirectory(prefix="image-composer-diff-") as tmp:
        files: dict[tuple[int, str], Path] = {}
        for side, (path, members) in enumerate(((a, [p[0] for p in pairs]),
                                                (b, [p[1] for p in pairs]))):
            with contextlib.ExitStack() as stack:
                sinks: Sinks = {}
                for n, member in enumerate(members):
                    files[(side, member)] = Path(tmp) / f"{side}-{n}"
                    sinks[member] = stack.enter_context(open(files[(side, member)], "wb"))
                raw = stack.enter_context(open(path, "rb"))
                stream = gzip.GzipFile(fileobj=raw) if fmt.startswith("gzip(") else raw
                for _ in _WALKERS[inner](stream, sinks):
                    pass
        for pa, pb, label in pairs:
            report = diff_files(files[(0, pa)], files[(1, pb)], depth + 1)
            if report.note:
                out.append(Difference(label, f"{report.format}: {report.note}"))
            for d in report.differences:
                out.append(Difference(f"{label}:{d.where}" if d.where else label, d.what,
                                      d.a, d.b))
    return tuple(out)


def diff_streams(fa: BinaryIO, fb: BinaryIO, fmt: str, pairs: list[Pair] | None = None
                 ) -> Report:
    """Compare two streams of format ``fmt``; differing archive members that are archives
    themselves are appended to ``pairs`` for :func:`diff_files` to look into."""
    pairs = [] if pairs is None else pairs
    if fmt == "gzip":
        return _diff_gzip(fa, fb, pairs)
    if fmt == "cpio":
        return Report("cpio", tuple(_diff_members(cpio_members(fa), cpio_members(fb), pairs)))
    if fmt == "tar":
        return Report("tar", tuple(_diff_members(tar_members(fa), tar_members(fb), pairs)))
    if fmt == "iso":
        return Report("iso", tuple(_diff_members(iso_members(fa), iso_members(fb), pairs)))
    if fmt == "json":
        try:
            ja, jb = canonjson.loads(fa.read()), canonjson.loads(fb.read())
        except (ValueError, UnicodeDecodeError):
            fa.seek(0)
            fb.seek(0)
            return Report("bytes", tuple(_diff_bytes(fa, fb)))
        return Report("json", tuple(diff_json(ja, jb)))
    return Report("bytes", tuple(_diff_bytes(fa, fb)))


def _same_bytes(a: Path, b: Path) -> bool:
    return _sha256(open(a, "rb")) == _sha256(open(b, "rb"))


def _sha256(fh: BinaryIO) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


# -- bytes -------------------------------------------------------------------------------------
def _diff_bytes(fa: BinaryIO, fb: BinaryIO, where: str = "") -> Iterator[Difference]:
    offset = 0
    while True:
        ca, cb = fa.read(CHUNK), fb.read(CHUNK)
        if ca != cb:
            yield _first_byte(where, ca, cb, offset)
            rest_a, rest_b = len(ca) + _drain(fa), len(cb) + _drain(fb)
            if rest_a != rest_b:
                yield Difference(where, "size", offset + rest_a, offset + rest_b)
            return
        if not ca:
            return
        offset += len(ca)


def _first_byte(where: str, a: bytes, b: bytes, offset: int = 0) -> Difference:
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    if n is None:
        n = min(len(a), len(b))
    show = lambda data: data[n:n + 8].hex() or "end of data"  # noqa: E731
    return Difference(where, f"first differing byte at offset {offset + n}", show(a), show(b))


def _drain(fh: BinaryIO) -> int:
    n = 0
    while chunk := fh.read(CHUNK):
        n += len(chunk)
    return n


# -- gzip ------------------------------------------------------------------------------------
def _diff_gzip(fa: BinaryIO, fb: BinaryIO, pairs: list[Pair]) -> Report:
    """Content first: if the decompressed bytes agree, only the compression differs."""
    try:
        ha = _sha256(gzip.GzipFile(fileobj=fa))  # type: ignore[arg-type]
        hb = _sha256(gzip.GzipFile(fileobj=fb))  # type: ignore[arg-type]
    except (OSError, EOFError, zlib.error) as exc:
        raise ComposerError(f"cannot decompress: {exc}") from None
    if ha == hb:
        fa.seek(0)
        fb.seek(0)
        header = [d for d in (_gzip_header(fa, fb)) if d]
        return Report("gzip", (Difference("", "compression", "content identical",
                                          "compressed bytes differ"), *header),
                      note="only the compression differs")
    fa.seek(0)
    fb.seek(0)
    inner_a, inner_b = gzip.GzipFile(fileobj=fa), gzip.GzipFile(fileobj=fb)
    head = inner_a.peek(0x8010)[:0x8010] if hasattr(inner_a, "peek") else b""
    fmt = sniff(head)
    fa.seek(0)
    inner_a = gzip.GzipFile(fileobj=fa)
    inner = diff_streams(inner_a, inner_b, fmt, pairs)  # type: ignore[arg-type]
    return Report(f"gzip({inner.format})", inner.differences, note="the content differs")


def _gzip_header(fa: BinaryIO, fb: BinaryIO) -> list[Difference]:
    a, b = fa.read(10), fb.read(10)
    out = []
    for label, sl in (("gzip mtime", slice(4, 8)), ("gzip flags", slice(3, 4)),
                      ("gzip XFL (level hint)", slice(8, 9)), ("gzip OS", slice(9, 10))):
        if a[sl] != b[sl]:
            out.append(Difference("", label, a[sl].hex(), b[sl].hex()))
    return out


# -- archives as member maps ---------------------------------------------------------------------
Member = dict[str, Any]


def _diff_members(ma: Iterator[tuple[str, Member]], mb: Iterator[tuple[str, Member]],
                  pairs: list[Pair]) -> Iterator[Difference]:
    a = list(ma)
    b = list(mb)
    da, db = dict(a), dict(b)
    pairs += _pairs(da, db)
    if len(da) != len(a):
        yield Difference("", "duplicate paths in A")
    if len(db) != len(b):
        yield Difference("", "duplicate paths in B")
    for path in sorted(da.keys() | db.keys()):
        if path not in db:
            yield Difference(path, "missing")
        elif path not in da:
            yield Difference(path, "added")
        else:
            yield from _diff_member(path, da[path], db[path])
    common = set(da) & set(db)
    order_a = [p for p, _ in a if p in common]
    order_b = [p for p, _ in b if p in common]
    if order_a != order_b:
        first = next(i for i, (x, y) in enumerate(zip(order_a, order_b, strict=False)) if x != y)
        yield Difference(order_a[first], "order", f"entry {first} in A",
                         f"entry {first} in B is {order_b[first]}")


def _pairs(da: dict[str, Member], db: dict[str, Member]) -> list[Pair]:
    """Members worth diffing inside: same path, different content, both the same archive
    format; and a docker archive's config and layers, paired by position in manifest.json."""
    out: list[Pair] = []
    for path in sorted(da.keys() & db.keys()):
        ma, mb = da[path], db[path]
        if ma.get("sha256") != mb.get("sha256") and ma.get("nested") \
                and ma.get("nested") == mb.get("nested") and "json" not in ma:
            out.append((path, path, path))
    ja, jb = da.get("manifest.json", {}).get("json"), db.get("manifest.json", {}).get("json")
    if isinstance(ja, list) and isinstance(jb, list):
        for i, (ia, ib) in enumerate(zip(ja, jb, strict=False)):
            if not isinstance(ia, dict) or not isinstance(ib, dict):
                continue
            names = [("Config", ia.get("Config"), ib.get("Config"))]
            names += [(f"Layers[{j}]", x, y) for j, (x, y) in enumerate(
                zip(ia.get("Layers") or [], ib.get("Layers") or [], strict=False))]
            for label, x, y in names:
                if isinstance(x, str) and isinstance(y, str) and x != y and x in da \
                        and y in db and da[x].get("sha256") != db[y].get("sha256"):
                    out.append((x, y, f"manifest.json:[{i}].{label}"))
    return out


def _diff_member(path: str, a: Member, b: Member) -> Iterator[Difference]:
    for key in sorted(a.keys() | b.keys()):
        if key in HIDDEN:
            continue
        if a.get(key) != b.get(key):
            yield Difference(path, key, a.get(key), b.get(key))
    if a.get("sha256") != b.get("sha256") and a.get("json") is not None \
            and b.get("json") is not None:
        for d in diff_json(a["json"], b["json"]):
            yield Difference(f"{path}:{d.where}" if d.where else path, d.what, d.a, d.b)


def _content(data: Readable | None, path: str, sinks: Sinks | None = None) -> dict[str, Any]:
    """sha256 of a member's content (copied to ``sinks[path]`` if there is one) and its format
    (:func:`sniff`); docker's and OCI's index files are also parsed. Nothing else is kept."""
    if data is None:
        return {}
    sink = sinks.get(path) if sinks else None
    nested = None
    h = hashlib.sha256()
    keep: bytearray | None = bytearray() if path in INDEXES else None
    while chunk := data.read(CHUNK):
        if nested is None:
            nested = sniff(chunk)
        if sink is not None:
            sink.write(chunk)
        h.update(chunk)
        if keep is not None:
            keep += chunk
            if len(keep) > MAX_JSON_MEMBER:
                keep = None
    out: dict[str, Any] = {"sha256": h.hexdigest(), "nested": nested}
    if keep is not None:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            out["json"] = canonjson.loads(bytes(keep))
    return out


def tar_members(stream: BinaryIO, sinks: Sinks | None = None
                ) -> Iterator[tuple[str, Member]]:
    try:
        for e, data in read_entries(stream):
            fields: Member = {"type": e.kind.name.lower(), "mode": oct(e.mode), "uid": e.uid,
                              "gid": e.gid, "mtime": e.mtime, "size": e.size}
            if e.linkname:
                fields["link"] = e.linkname
            if e.devmajor or e.devminor:
                fields["device"] = f"{e.devmajor},{e.devminor}"
            if e.xattrs:
                fields["xattrs"] = {k: v.hex() for k, v in e.xattrs}
            if e.records:
                fields["pax"] = dict(e.records)
            yield e.path, {**fields, **_content(data, e.path, sinks)}
    except CanonError as exc:
        raise ComposerError(str(exc)) from None


def cpio_members(stream: Readable, sinks: Sinks | None = None
                 ) -> Iterator[tuple[str, Member]]:
    """newc records (see :mod:`outputs.initrd.cpio`); a second archive after the trailer is
    read too."""
    offset = 0

    def read(n: int) -> bytes:
        nonlocal offset
        data = stream.read(n)
        offset += len(data)
        return data

    while True:
        magic = read(6)
        while magic[:1] == b"\0":  # padding between concatenated archives
            magic = magic[1:] + read(1)
        if not magic:
            return
        if magic[:2] == b"\x1f\x8b":  # early microcode cpio, then the gzip'd initrd
            inner = gzip.GzipFile(fileobj=_Prefixed(magic, stream))
            yield from cpio_members(inner, sinks)
            return
        if magic != b"070701":
            raise ComposerError(f"cpio: bad magic {magic!r} at offset {offset - 6}")
        raw = read(104)
        names = ("ino", "mode", "uid", "gid", "nlink", "mtime", "size", "devmajor", "devminor",
                 "rdevmajor", "rdevminor", "namesize", "check")
        try:
            v = dict(zip(names, (int(raw[i:i + 8], 16) for i in range(0, 104, 8)), strict=True))
        except ValueError:
            raise ComposerError(f"cpio: bad header at offset {offset - 110}") from None
        name = read(v["namesize"])[:-1].decode("utf-8", "surrogateescape")
        read(-offset % 4)
        if name == "TRAILER!!!":
            continue
        body = io.BytesIO(read(v["size"])) if v["size"] <= CHUNK else _Limited(stream, v["size"])
        content = _content(body, name, sinks)
        if isinstance(body, _Limited):
            offset += v["size"]
        read(-offset % 4)
        fields: Member = {"mode": oct(v["mode"]), "uid": v["uid"], "gid": v["gid"],
                          "nlink": v["nlink"], "mtime": v["mtime"], "size": v["size"],
                          "ino": v["ino"]}
        if v["rdevmajor"] or v["rdevminor"]:
            fields["device"] = f"{v['rdevmajor']},{v['rdevminor']}"
        yield name, {**fields, **content}


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of the stream."""

    def __init__(self, prefix: bytes, raw: Readable):
        super().__init__()
        self._prefix, self._raw = prefix, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Limited(io.RawIOBase):
    """The next ``size`` bytes of a stream, so big cpio members are hashed without loading."""

    def __init__(self, raw: Readable, size: int):
        super().__init__()
        self._raw, self._left = raw, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._raw.read(n) if n else b""
        self._left -= len(data)
        if n and not data:
            raise ComposerError("cpio: archive ends inside a member")
        return data


def iso_members(stream: BinaryIO, sinks: Sinks | None = None
                ) -> Iterator[tuple[str, Member]]:
    """Every file and directory of an ISO by Rock Ridge path (ISO 9660 path without it)."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(stream)
    except PyCdlibException as exc:
        raise ComposerError(f"not a readable ISO: {exc}") from None
    try:
        rr = iso.has_rock_ridge()
        key = "rr_path" if rr else "iso_path"
        items: list[tuple[str, Member]] = []
        for top, dirs, files in iso.walk(**{key: "/"}):
            for d in dirs:
                items.append((_join(top, d), {"type": "dir"}))
            for f in files:
                path = _join(top, f)
                with tempfile.SpooledTemporaryFile(SPOOL) as spool:  # pycdlib seeks
                    iso.get_file_from_iso_fp(cast(BinaryIO, spool), **{key: "/" + path})
                    size = spool.tell()
                    spool.seek(0)
                    items.append((path, {"type": "file", "size": size,
                                         **_content(spool, path, sinks)}))
        yield from sorted(items)
    finally:
        iso.close()


def _join(top: str, name: str) -> str:
    return (top.rstrip("/") + "/" + name).lstrip("/")


# -- JSON ----------------------------------------------------------------------------------
def diff_json(a: Any, b: Any, where: str = "") -> Iterator[Difference]:
    """Differences between two JSON values by key path (``outputs[2].sha256``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            sub = f"{where}.{key}" if where else key
            if key not in b:
                yield Difference(sub, "missing")
            elif key not in a:
                yield Difference(sub, "added")
            else:
                yield from diff_json(a[key], b[key], sub)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            sub = f"{where}[{i}]"
            if i >= len(b):
                yield Difference(sub, "missing")
            elif i >= len(a):
                yield Difference(sub, "added")
            else:
                yield from diff_json(a[i], b[i], sub)
    elif a != b or type(a) is not type(b):
        yield Difference(where, "value", a, b)
