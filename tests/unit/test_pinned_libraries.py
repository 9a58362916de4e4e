"""The libraries that shape output bytes are pinned exactly and bring their own code: none of
them links a system compression library, so a pin means the same bytes on every machine.

- zlib-ng (THE deflate, composer.streams.deflate), zstandard and lz4 (the zstd and lz4
  initrds) are C extensions whose wheels link zlib-ng, libzstd and liblz4 statically;
- pycdlib and pyfatfs are pure Python.

The record lists them (composer.repro.record.PINNED_LIBRARIES); pyproject.toml pins each with
``==``, and the installed versions must be those.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from composer.repro.record import PINNED_LIBRARIES

ROOT = Path(__file__).resolve().parents[2]
SWAP = ROOT / "tests" / "fixtures" / "zlibswap"
SYSTEM_COMPRESSORS = re.compile(r"^lib(z|zstd|lz4|deflate|isal|z-ng)\.so")


def pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {m.group(1).lower(): m.group(2) for d in deps
            if (m := re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;,]+)", d))}


@pytest.mark.parametrize("name", PINNED_LIBRARIES)
def test_byte_shaping_libraries_are_pinned_exactly_and_installed_as_pinned(name):
    assert name in pins(), f"{name} is not pinned with == in pyproject.toml"
    assert importlib.metadata.version(name) == pins()[name]


@pytest.mark.parametrize("name", ["pycdlib", "pyfatfs"])
def test_pure_python_pins_have_no_compiled_code(name):
    files = importlib.metadata.files(name) or []
    assert files, f"{name}: no file list"
    assert [f for f in files if f.suffix in (".so", ".pyd", ".dylib")] == []


def test_compressor_extensions_link_no_system_compression_library():
    """With Python's zlib swapped out (so its libz is not loaded for it), importing and using
    every compressing extension maps no libz, libzstd or liblz4 from the system."""
    code = """
import lz4.block, lz4.frame, zstandard
from zlib_ng import zlib_ng
d = bytes(range(256)) * 1024
zlib_ng.compress(d); zstandard.ZstdCompressor().compress(d); lz4.block.compress(d)
print(zstandard.backend)
with open("/proc/self/maps") as maps:
    print("\\n".join(sorted({line.split()[-1] for line in maps if ".so" in line})))
"""
    env = {**os.environ, "PYTHONPATH": str(SWAP)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)
    backend, *mapped = proc.stdout.split()
    assert backend == "cext"
    names = [Path(p).name for p in mapped]
    assert "zlib_ng.cpython" in " ".join(names)  # the check sees the extensions load
    assert [n for n in names if SYSTEM_COMPRESSORS.match(n)] == []
