"""What a phase-two converter may be told besides the rootfs tar: nothing that varies per host.

:class:`Options` is the value converters get; :data:`OUTPUT_OPTIONS` is THE table of them: for
each field its command-line flag, how the flag's text is parsed, what the build record keeps of
it and which arguments make ``verify``'s rebuild use it again. The CLI, the record and verify
loop over the table, so a new option is one row (and ``test_options.py`` holds the round trip:
options -> record -> rebuild arguments -> the same options).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from composer.errors import ComposerError, UsageError
from composer.streams import compress
from composer.streams.gz import DEFAULT_LEVEL, check_level
from outputs.bootloaders import Pin, check_overrides, parse_pin


@dataclass(frozen=True)
class Options:
    """``mtime``: the timestamp of entries a converter synthesises itself (the members of the
    ``tar-kernel-initrd`` wrapper tar); the build passes ``Epoch.generated``.

    ``gzip_level``: deflate level 1-9 for gzip'd outputs (the initrd). The default 6 is gzip's
    and zlib's own default; it is part of the output's identity, so it goes into the build
    record (see :func:`composer.streams.gz.compressor_id`).

    ``bootloaders``: pinned bootloader files that replace the defaults of the ISO formats, at
    most one per role (see :mod:`outputs.bootloaders`; the CLI's ``--bootloader``).

    ``disk_size_mib``: the disk size of the fixed-size disk formats (``aws`` and the raw layer of
    ``qcow2-bios``; the CLI's ``--size``, linuxkit's default 1024 MiB). Other formats ignore it.

    ``arch``, ``image_tag``, ``entrypoint``: for the image formats
    (:mod:`outputs.image.formats`): the config's architecture (the build's ``--arch``), the
    repository tag (``--tag``; default ``NAME:latest``) and the entrypoint (default ``/bin/rc.init``
    if the rootfs has it, else
    ``/init``).
    """

    mtime: int
    gzip_level: int = DEFAULT_LEVEL
    initrd_compression: str = "gzip"
    bootloaders: tuple[Pin, ...] = ()
    arch: str = "amd64"
    image_tag: str | None = None
    entrypoint: tuple[str, ...] | None = None
    disk_size_mib: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.mtime, int) or isinstance(self.mtime, bool) or self.mtime < 0:
            raise ComposerError(f"output mtime must be a non-negative integer, not {self.mtime!r}")
        check_level(self.gzip_level)
        compress.check(self.initrd_compression)
        check_overrides(self.bootloaders)
        if (not isinstance(self.disk_size_mib, int) or isinstance(self.disk_size_mib, bool)
                or not 0 < self.disk_size_mib <= 1 << 24):
            raise ComposerError(f"disk size must be 1 MiB to 16 TiB, not {self.disk_size_mib!r}")
        if self.entrypoint is not None and (
                not isinstance(self.entrypoint, tuple) or not self.entrypoint
                or not all(isinstance(a, str) for a in self.entrypoint)):
            raise ComposerError(f"entrypoint must be a non-empty tuple of strings, "
                                f"not {self.entrypoint!r}")


def parse_entrypoint(value: str) -> tuple[str, ...]:
    """``--entrypoint``: a JSON list of strings, or a single path."""
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise UsageError(f"--entrypoint: not a JSON list: {exc}") from None
        if not (isinstance(parsed, list) and parsed and all(isinstance(v, str) for v in parsed)):
            raise UsageError("--entrypoint: must be a non-empty JSON list of strings")
        return tuple(parsed)
    return (value,)


_SIZE = re.compile(r"^\s*(\d+)\s*([MmGg]?)\s*$")


def parse_size_mib(text: str) -> int:
    """linuxkit's ``-size`` (``getDiskSizeMB``): ``NNNM`` is MiB; ``NNNG`` or a bare number
    is GiB."""
    match = _SIZE.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--size {text!r}: give a size like 1024M or 2G")
    value = int(match.group(1))
    return value if match.group(2) in ("M", "m") else value * 1024


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class OutputOption:
    """One converter option.

    ``flag``: the build's command-line flag, or None when the build sets the field itself
    (``mtime`` from the epoch, ``arch`` from ``--arch``). ``parse``: the flag's text (a list of
    them when ``repeat``) -> the field's value. ``recorded``: kept in the record's ``options``
    (as ``to_record(value)``). ``to_argv``: the recorded value -> the flags that make a rebuild
    use it again; None when the rebuild gets it another way (``arch`` and ``mtime`` with the
    build's own flags; bootloaders as files the verifier must hand over).
    """

    field: str
    flag: str | None = None
    help: str = ""
    metavar: str | None = None
    repeat: bool = False
    parse: Callable[[Any], Any] = _plain
    recorded: bool = True
    to_record: Callable[[Any], Any] = _plain
    to_argv: Callable[[Any], list[str]] | None = None
    choices: tuple[str, ...] | None = None
    default: Any = None  # recorded only when different (older records stay byte-identical)
    formats: tuple[str, ...] | None = None  # recorded only when one of these is built

    @property
    def dest(self) -> str:
        return f"output_{self.field}"


OUTPUT_OPTIONS: tuple[OutputOption, ...] = (
    OutputOption("mtime", recorded=False),  # the epoch: recorded as the build's own field
    OutputOption("gzip_level"),
    OutputOption("arch"),
    OutputOption("image_tag", "--tag", metavar="NAME:TAG",
                 help="docker/oci formats: the image's repo tag (default: NAME:latest)",
                 parse=str, to_argv=lambda v: ["--tag", v]),
    OutputOption("entrypoint", "--entrypoint", metavar="JSON|PATH",
                 help='docker/oci formats: entrypoint, e.g. \'["/init"]\' (default: '
                      "/bin/rc.init if present, else /init)",
                 parse=parse_entrypoint,
                 to_argv=lambda v: ["--entrypoint", json.dumps(v)]),
    OutputOption("initrd_compression", "--initrd-compression", metavar="|".join(compress.NAMES),
                 help="initrd formats (and every format that boots one): how the initrd is "
                      "compressed (default: gzip, as linuxkit)",
                 parse=compress.check, choices=compress.NAMES, default="gzip",
                 to_argv=lambda v: ["--initrd-compression", v]),
    OutputOption("disk_size_mib", "--size", metavar="SIZE",
                 help="aws and qcow2-bios: the disk size, as linuxkit: 1024M, 2G (a bare "
                      "number is GiB; default 1024M)",
                 parse=parse_size_mib, formats=("aws", "qcow2-bios"),
                 to_argv=lambda v: ["--size", f"{v}M"]),
    OutputOption("bootloaders", "--bootloader", metavar="ROLE=PATH@sha256:HEX", repeat=True,
                 help="ISO and disk formats: use this bootloader file, pinned by digest "
                      "(repeatable; see docs/iso.md)",
                 parse=lambda values: tuple(parse_pin(v) for v in values),
                 recorded=False),  # recorded per format, by role and digest: see record()
)


def add_flags(parser: Any) -> None:
    """The table's flags on an argparse parser (``build``'s)."""
    for opt in OUTPUT_OPTIONS:
        if opt.flag:
            parser.add_argument(opt.flag, dest=opt.dest, metavar=opt.metavar, help=opt.help,
                                action="append" if opt.repeat else "store",
                                default=[] if opt.repeat else None, choices=opt.choices)


def from_args(args: Any) -> dict[str, Any]:
    """Field -> value for the flags given on the command line (parsed; absent ones left out)."""
    out: dict[str, Any] = {}
    for opt in OUTPUT_OPTIONS:
        if opt.flag:
            raw = getattr(args, opt.dest, None)
            if raw not in (None, []):
                out[opt.field] = opt.parse(raw)
    return out


def record(options: Options, pins: Iterable[Pin], formats: Iterable[str] = ()
           ) -> dict[str, Any]:
    """What the build record keeps of ``options``: the recorded fields, and the bootloaders
    the chosen formats use (``pins``) by role and digest only: their host path is not an
    input, their content is."""
    chosen = set(formats)
    out = {opt.field: opt.to_record(getattr(options, opt.field))
           for opt in OUTPUT_OPTIONS
           if opt.recorded and (opt.default is None or getattr(options, opt.field) != opt.default)
           and (opt.formats is None or chosen & set(opt.formats))}
    by_role = {pin.role: pin.digest for pin in pins}
    if by_role:
        out["bootloaders"] = dict(sorted(by_role.items()))
    return out


def rebuild_argv(recorded: Mapping[str, Any]) -> list[str]:
    """The build flags that give a rebuild the recorded options back (those with a flag)."""
    argv: list[str] = []
    for opt in OUTPUT_OPTIONS:
        value = recorded.get(opt.field)
        if opt.to_argv is not None and value not in (None, [], ""):
            argv += opt.to_argv(value)
    return argv
