"""Output bytes do not depend on the machine's zlib: the golden inputs built in a process whose
Python ``zlib`` is another implementation (tests/fixtures/zlibswap/sitecustomize.py: ISA-L, or
zlib-ng's module as on a zlib-ng host) give exactly the golden digests, because every deflate
stream comes from the pinned zlib-ng (composer.streams.deflate). And the pin is what does it:
pointed at the replacement instead (``--unpin``), the same build's compressed bytes change.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer import canonjson
from composer.images.write import gzip_bytes
from tests.golden.regenerate import DIGESTS
from tests.golden.swap_build import LAYER

ROOT = Path(__file__).resolve().parents[2]
SWAP = ROOT / "tests" / "fixtures" / "zlibswap"
GOLDEN = canonjson.loads(DIGESTS.read_bytes())
# the formats whose bytes hold deflate streams of their own (the initrd is in the ISOs and
# disks as well), for the shorter runs
DEFLATED = ("kernel+initrd", "vmdk", "gcp")
PLAIN = ("golden-kernel", "golden-cmdline", "golden.spdx.json")
PINNED_LAYER = hashlib.sha256(gzip_bytes(LAYER)).hexdigest()  # here: real zlib, the pin on


def swapped_build(tmp_path: Path, swap: str, formats: tuple[str, ...], *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SWAP), str(ROOT)]),
           "IMAGE_COMPOSER_ZLIB_SWAP": swap}
    proc = subprocess.run([sys.executable, "-m", "tests.golden.swap_build", str(tmp_path),
                           ",".join(formats), *extra], cwd=ROOT, env=env, capture_output=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(proc.stdout)
    assert result["zlib"] == swap  # the replacement was in use ...
    assert result["real_zlib_loaded"] == []  # ... and Python's own zlib never even loaded
    return result


def test_every_golden_output_is_the_same_with_isal_as_zlib(tmp_path):
    result = swapped_build(tmp_path, "isal", tuple(GOLDEN["formats"]))
    differ = sorted(n for n, digest in GOLDEN["outputs"].items()
                    if result["outputs"].get(n) != digest)
    assert differ == []
    assert sorted(result["outputs"]) == sorted(GOLDEN["outputs"])
    assert result["layer"] == PINNED_LAYER


def test_deflated_outputs_are_the_same_with_zlib_ng_as_zlib(tmp_path):
    result = swapped_build(tmp_path, "zlib-ng", DEFLATED)
    assert result["outputs"] == {n: GOLDEN["outputs"][n] for n in result["outputs"]}
    assert result["layer"] == PINNED_LAYER


def test_without_the_pin_the_bytes_change(tmp_path):
    """The wrapper pointed at the replacement zlib: every deflate stream differs (the content
    does not), everything uncompressed stays the same."""
    result = swapped_build(tmp_path, "isal", DEFLATED, "--unpin")
    changed = {"golden-initrd.img", "golden.vmdk", "golden.img.tar.gz"}
    assert changed | set(PLAIN) == set(result["outputs"])
    for name in changed:
        assert result["outputs"][name] != GOLDEN["outputs"][name], name
    for name in PLAIN:
        assert result["outputs"][name] == GOLDEN["outputs"][name], name
    assert result["content"] == GOLDEN["content"]  # the same initrd, compressed otherwise
    assert result["layer"] != PINNED_LAYER


@pytest.mark.parametrize("swap", ["isal", "zlib-ng"])
def test_the_swap_is_in_place_before_anything_imports_zlib(swap):
    """Guards the fixture itself: the replacement is what ``import zlib`` gives, it really
    compresses differently from the pin (isal) or is the same library (zlib-ng), and gzip,
    which zlib_ng's C module imports, works on top of it."""
    code = ("import gzip, zlib, hashlib; from zlib_ng import zlib_ng\n"
            "d = bytes(range(256)) * 4096\n"
            "assert gzip.decompress(gzip.compress(d)) == d\n"
            "print(zlib.SWAPPED, zlib.compress(d, 6) == zlib_ng.compress(d, 6))")
    env = {**os.environ, "PYTHONPATH": str(SWAP), "IMAGE_COMPOSER_ZLIB_SWAP": swap}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          check=True)
    assert proc.stdout.split() == [swap.encode(), b"False" if swap == "isal" else b"True"]
