"""``build --decompress-kernel`` (linuxkit's decompressKernel): a gzip'd kernel is gunzipped, a
bzImage's gzip'd payload is found from its boot header and gunzipped, anything else is refused;
the build record carries the flag so ``verify`` repeats it."""

from __future__ import annotations

import gzip
import random
import struct

import pytest

from composer import canonjson
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from composer.rootfs.kernelgz import payload_span
from composer.tar.read import read_entries
from tests.unit.test_build import run_cli, tar_of

PLAIN = random.Random("kernel").randbytes(300_000) + b"the end of the kernel"


def bzimage(payload: bytes, setup_sectors: int = 3) -> bytes:
    """A minimal 2.08+ bzImage: boot sector magic, HdrS, version, payload offset and length."""
    setup = bytearray((setup_sectors + 1) * 512)
    setup[0x1F1] = setup_sectors
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrS"
    setup[0x206:0x208] = bytes((2, 15))
    struct.pack_into("<II", setup, 0x248, 100, len(payload))  # 100 bytes into the protected part
    return bytes(setup) + b"\x90" * 100 + payload + b"\0" * 64


GZ = gzip.compress(PLAIN, mtime=0)


def test_payload_span_follows_linuxkit():
    assert payload_span(GZ[:0x250], len(GZ), "k") == (0, len(GZ))
    image = bzimage(GZ)
    assert payload_span(image[:0x250], len(image), "k") == (4 * 512 + 100, len(GZ))
    with pytest.raises(ComposerError, match="no compressed kernel"):
        payload_span(PLAIN[:0x250], len(PLAIN), "k")
    truncated = bzimage(GZ)[: 4 * 512 + 200]
    with pytest.raises(ComposerError, match="exceeds size"):
        payload_span(truncated[:0x250], len(truncated), "k")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    base = tmp_path_factory.mktemp("kernels")
    store = Cache(base / "store")
    for tag, kernel in (("gz", GZ), ("bz", bzimage(GZ)), ("plain", PLAIN)):
        written = write_image(store, [tar_of({"kernel": kernel})])
        export_layout(store, written, base / "oci", tag)
    written = write_image(store, [tar_of({"init": b"#!/bin/sh\n"})])
    export_layout(store, written, base / "oci", "init")
    return base / "oci"


def build(tmp_path, layout, tag, *flags):
    spec = tmp_path / f"{tag}.yml"
    spec.write_text(f"kernel:\n  image: oci:{layout}:{tag}\n  cmdline: c\n  tar: none\n"
                    f"init:\n  - oci:{layout}:init\n")
    out = tmp_path / f"out-{tag}{len(flags)}"
    proc = run_cli(["build", "-f", "tar,kernel+initrd", "-o", str(out), "--cache",
                    str(tmp_path / "cache"), *flags, str(spec)], cwd=tmp_path)
    return proc, out, tag


@pytest.mark.parametrize("tag", ["gz", "bz"])
def test_decompressed_kernel_is_the_plain_kernel_in_tar_and_kernel_output(tmp_path, kernels, tag):
    proc, out, name = build(tmp_path, kernels, tag, "--decompress-kernel")
    assert proc.returncode == 0, proc.stderr
    assert (out / f"{name}-kernel").read_bytes() == PLAIN
    with open(out / f"{name}.tar", "rb") as fh:
        found = {e.path: r.read() for e, r in read_entries(fh) if r is not None}
    assert found["boot/kernel"] == PLAIN
    record = canonjson.loads((out / f"{name}.build.json").read_bytes())
    assert record["build"]["decompress_kernel"] is True
    # without the flag the kernel is as the image has it, and the record says nothing
    proc, out, _ = build(tmp_path, kernels, tag)
    assert proc.returncode == 0, proc.stderr
    assert (out / f"{name}-kernel").read_bytes() != PLAIN
    assert "decompress_kernel" not in canonjson.loads(
        (out / f"{name}.build.json").read_bytes())["build"]


def test_a_kernel_that_is_not_compressed_is_one_error_and_no_output(tmp_path, kernels):
    proc, out, _ = build(tmp_path, kernels, "plain", "--decompress-kernel")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no compressed kernel" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_linuxkits_single_dash_spelling_works(tmp_path, kernels):
    proc, out, name = build(tmp_path, kernels, "gz", "-decompress-kernel")
    assert proc.returncode == 0, proc.stderr
    assert (out / f"{name}-kernel").read_bytes() == PLAIN
