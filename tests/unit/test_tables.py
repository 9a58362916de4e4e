"""The format and output-option tables: one row per format or option, and what is derived
from them (CLI flags, the record, verify's rebuild arguments, clashes, --push/--load)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from composer.cli import build_parser
from composer.errors import UsageError
from composer.repro.record import options_record, rebuild_arguments
from outputs import FORMATS, Options, check_clashes, get_format
from outputs.bootloaders import Pin
from outputs.formats import Format
from outputs.options import OUTPUT_OPTIONS, from_args


def _parse_build(argv: list[str]) -> dict:
    args = build_parser().parse_args(["build", *argv, "spec.yml"])
    return from_args(args)


def test_options_survive_record_and_rebuild_arguments(tmp_path: Path) -> None:
    """Options -> record -> verify's rebuild flags -> the build's parser -> the same Options."""
    loader = tmp_path / "ldlinux.c32"
    loader.write_bytes(b"not really ldlinux\n")
    digest = "sha256:" + hashlib.sha256(loader.read_bytes()).hexdigest()
    given = Options(mtime=1700000000, arch="amd64", image_tag="example.org/x/hello:1.0",
                    entrypoint=("/bin/sh", "-c", 'echo "hi there"'), initrd_compression="zstd",
                    bootloaders=(Pin("ldlinux.c32", str(loader), digest),))
    recorded = options_record(given, ("docker", "iso-bios"))
    assert recorded["bootloaders"]["ldlinux.c32"] == digest
    argv = rebuild_arguments(recorded)
    # bootloaders come back as files the verifier hands over (verify.bootloader_args)
    argv += ["--bootloader", f"ldlinux.c32={loader}@{digest}"]
    parsed = _parse_build(argv)
    again = Options(mtime=given.mtime, arch=recorded["arch"], gzip_level=recorded["gzip_level"],
                    **parsed)
    assert again == given


def test_every_option_row_is_complete() -> None:
    fields = {f for f in Options.__dataclass_fields__}
    assert {opt.field for opt in OUTPUT_OPTIONS} == fields  # every Options field has a row
    for opt in OUTPUT_OPTIONS:
        if opt.flag:
            assert opt.flag.startswith("--") and opt.help
        if opt.recorded and opt.flag:
            assert opt.to_argv is not None, f"{opt.field}: recorded but not given back to verify"


def test_absent_flags_leave_the_defaults() -> None:
    assert _parse_build([]) == {}


def test_bad_option_text_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--entrypoint"):
        _parse_build(["--entrypoint", "[1, 2]"])
    with pytest.raises(UsageError, match="--bootloader"):
        _parse_build(["--bootloader", "nonsense"])


DISKS = {"raw-bios", "raw-efi", "aws", "qcow2-bios", "qcow2-efi", "vhd", "dynamic-vhd", "vmdk",
         "gcp"}


def test_format_rows() -> None:
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.files and fmt.help
        module, _, func = fmt.converter.partition(":")
        assert module.startswith("outputs.") and func.startswith("write_")
    assert {f for f in FORMATS if FORMATS[f].pushable} == {"docker", "oci", "oci-dir"}
    assert {f for f in FORMATS if FORMATS[f].loadable} == {"docker"}
    assert {f for f in FORMATS if FORMATS[f].pins} == {"iso-bios", "iso-efi", "iso-efi-initrd",
                                                         "iso-hybrid", "rpi3"} | DISKS


def test_every_converter_resolves() -> None:
    import importlib

    for fmt in FORMATS.values():
        module, _, func = fmt.converter.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), fmt.name


def test_unknown_format_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown format 'nope'.*kernel\+initrd"):
        get_format("nope")


def test_two_formats_writing_one_file_clash(monkeypatch) -> None:
    check_clashes(["kernel+initrd", "tar", "iso-bios", "docker"])  # no common file
    extra = Format("kernel+thing", ("{name}-kernel", "{name}-cmdline", "{name}.thing"),
                   "outputs.tar:write_tar", "tar", "test row",
                   shared=frozenset({"{name}-kernel"}))
    monkeypatch.setitem(FORMATS, extra.name, extra)
    with pytest.raises(UsageError, match="kernel\\+initrd and kernel\\+thing both write "
                                         "NAME-cmdline"):
        check_clashes(["kernel+initrd", "kernel+thing"])  # its cmdline is not shared
    with pytest.raises(UsageError, match=r"formats iso-bios and kernel\+iso both write NAME\.iso"):
        check_clashes(["iso-bios", "kernel+iso"])
    with pytest.raises(UsageError, match=r"formats vhd and dynamic-vhd both write NAME\.vhd"):
        check_clashes(["vhd", "dynamic-vhd"])
    both = Format("kernel+initrd", FORMATS["kernel+initrd"].files, "x:write_x", "initrd", "h",
                  shared=frozenset({"{name}-kernel", "{name}-cmdline"}))
    monkeypatch.setitem(FORMATS, "kernel+initrd", both)
    monkeypatch.setitem(FORMATS, extra.name, Format(
        extra.name, extra.files, extra.converter, "tar", "h",
        shared=frozenset({"{name}-kernel", "{name}-cmdline"})))
    check_clashes(["kernel+initrd", "kernel+thing"])  # the same bytes: no clash


def test_the_cli_refuses_clashing_and_unknown_formats(tmp_path: Path) -> None:
    from composer.cli import main

    assert main(["build", "-f", "nope", str(tmp_path / "x.yml")]) == 2


def test_push_and_load_ask_the_table(tmp_path: Path, capsys) -> None:
    from composer.cli import main

    spec = tmp_path / "x.yml"
    spec.write_text("init: []\n")
    assert main(["build", "-f", "tar", "--push", "localhost:5000/x", str(spec)]) == 2
    assert "docker, oci, oci-dir" in capsys.readouterr().err
    assert main(["build", "-f", "oci", "--load", str(spec)]) == 2
    assert "add -f docker" in capsys.readouterr().err


def test_import_outputs_loads_no_family_and_no_heavy_library() -> None:
    """``import outputs`` (every build does it) loads only the tables: the families and
    pycdlib/pyfatfs come when their format is built (ff75170: 245 ms -> 67 ms)."""
    code = ("import sys, outputs, composer.build, composer.commands.build\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pycdlib', 'pyfatfs', 'fs') or m.startswith(('outputs.iso', 'outputs.image', "
            "'outputs.initrd', 'outputs.disk', 'composer.images.registry', "
            "'composer.images.resolve')))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
