"""--initrd-compression: every choice unpacks (by the C tools, as the kernel would) to the very
cpio the gzip default holds, is byte-reproducible, and is recorded only when not the default."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from composer.streams import compress
from tests.unit.test_build import layout, run_cli, spec_text  # noqa: F401 - shared fixture

UNPACK = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dc"], "lz4": ["lz4", "-dc"],
          "none": ["cat"]}
MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd", "lz4": b"\x02\x21\x4c\x18",
         "none": b"070701"}


def build(tmp_path: Path, spec: Path, out: str, choice: str | None) -> Path:
    extra = ["--initrd-compression", choice] if choice else []
    proc = run_cli(["build", "-o", str(tmp_path / out), "--cache", str(tmp_path / "cache"),
                    *extra, str(spec)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / out


def unpack(choice: str, data: bytes) -> bytes:
    tool = UNPACK[choice][0]
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} missing: scripts/setup.sh --test installs it")
    return subprocess.run(UNPACK[choice], input=data, capture_output=True, check=True).stdout


def test_every_choice_holds_the_same_cpio(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    default = build(tmp_path, spec, "default", None)
    cpio = unpack("gzip", (default / "demo-initrd.img").read_bytes())
    assert cpio.startswith(b"070701")
    record = json.loads((default / "demo.build.json").read_bytes())
    assert "initrd_compression" not in record["options"]
    for choice in compress.NAMES:
        out = build(tmp_path, spec, choice, choice)
        data = (out / "demo-initrd.img").read_bytes()
        assert data.startswith(MAGIC[choice]), choice
        assert unpack(choice, data) == cpio, choice
        again = build(tmp_path, spec, choice + "-again", choice)
        assert (again / "demo-initrd.img").read_bytes() == data  # reproducible
        options = json.loads((out / "demo.build.json").read_bytes())["options"]
        assert options.get("initrd_compression", "gzip") == choice
        if choice == "gzip":
            assert data == (default / "demo-initrd.img").read_bytes()


def test_an_unknown_choice_is_a_usage_error(tmp_path, layout):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    proc = run_cli(["build", "--initrd-compression", "xz", str(spec)], cwd=tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'xz'" in proc.stderr


def test_lz4_cuts_the_stream_in_8_mib_chunks() -> None:
    import io
    import struct

    data = bytes(range(256)) * (9 << 12)  # 9 MiB: two chunks
    buf = io.BytesIO()
    with compress.writer("lz4", buf) as w:
        w.write(data)
    raw = buf.getvalue()
    assert struct.unpack("<I", raw[:4])[0] == compress.LZ4_MAGIC
    first = struct.unpack("<I", raw[4:8])[0]
    second = struct.unpack("<I", raw[8 + first:12 + first])[0]
    assert 12 + first + second == len(raw)
    assert unpack("lz4", raw) == data
