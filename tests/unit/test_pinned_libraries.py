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


MAPS = """
with open("/proc/self/maps") as maps:
    print("\\n".join(sorted({line.split()[-1] for line in maps if ".so" in line})))
"""


def mapped_libraries(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(SWAP)}
    proc = subprocess.run([sys.executable, "-c", code + MAPS], env=env, capture_output=True,
                          text=True, check=True)
    return proc.stdout.split()


def test_compressor_extensions_link_no_system_compression_library():
    """With Python's zlib swapped out (so its libz is not loaded for it), importing and using
    every compressing extension maps no libz, libzstd or liblz4 from the system beyond what
    the interpreter itself maps (Debian's python3 links libz into the executable)."""
    code = """
import lz4.block, lz4.frame, zstandard
from zlib_ng import zlib_ng
d = bytes(range(256)) * 1024
zlib_ng.compress(d); zstandard.ZstdCompressor().compress(d); lz4.block.compress(d)
print(zstandard.backend)
"""
    interpreter = {Path(p).name for p in mapped_libraries("")}
    backend, *mapped = mapped_libraries(code)
    assert backend == "cext"
    names = [Path(p).name for p in mapped]
    assert "zlib_ng.cpython" in " ".join(names)  # the check sees the extensions load
    assert [n for n in names if SYSTEM_COMPRESSORS.match(n) and n not in interpreter] == []


def test_compressor_extensions_need_no_system_compression_library():
    """What each extension asks the dynamic loader for (its ELF NEEDED entries, read by
    objdump): no libz, libzstd or liblz4, whatever the interpreter links."""
    import shutil

    import lz4.block
    import lz4.frame
    import zstandard.backend_c
    from zlib_ng import zlib_ng

    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.fail("objdump is required (apt-get install binutils)") \
            if os.environ.get("CI") == "true" else pytest.skip("apt-get install binutils")
    for module in (zlib_ng, zstandard.backend_c, lz4.block._block, lz4.frame._frame):
        out = subprocess.run([objdump, "-p", str(module.__file__)], capture_output=True,
                             text=True, check=True).stdout
        needed = re.findall(r"^\s*NEEDED\s+(\S+)", out, re.M)
        assert needed, f"{module.__file__}: objdump shows no NEEDED entry"
        assert [n for n in needed if SYSTEM_COMPRESSORS.match(n)] == [], module.__file__
