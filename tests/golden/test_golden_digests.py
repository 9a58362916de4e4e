"""The committed golden digests: an honest build of the synthetic inputs must give these bytes,
on every machine. Nothing here depends on the host's zlib: every deflate stream comes from the
pinned zlib-ng (composer.streams.deflate), so the comparison is unconditional; test_zlib_swap.py
proves it by building with Python's zlib replaced.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile

import pytest

from composer import canonjson
from composer.errors import ComposerError
from outputs import FORMATS, compressor_id
from tests.golden.regenerate import (
    ARM64_FORMATS,
    DIGESTS,
    RPI3_FORMATS,
    RPI3_NAME,
    TWO_ARCH_FORMATS,
    build_golden,
    build_two_arch,
    digests,
)

GOLDEN = canonjson.loads(DIGESTS.read_bytes())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    formats = tuple(GOLDEN["formats"])
    missing = [f for f in formats if f not in FORMATS]
    assert not missing, f"golden formats no longer registered: {missing}"
    try:
        return build_golden(tmp_path_factory.mktemp("golden"), formats)
    except ComposerError as exc:
        # the ISO formats need the pinned Debian bootloader packages (fetched once, cached)
        if "bootloader" in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(f"cannot build the ISO goldens here: {exc}")
        raise


def test_every_golden_output_is_built(built):
    assert sorted(GOLDEN["outputs"]) == sorted(digests(built, tuple(GOLDEN["formats"]))
                                               ["outputs"])


@pytest.mark.parametrize("name", sorted(GOLDEN["outputs"]))
def test_output_matches_golden_digest(built, name):
    check_output(built, name, GOLDEN)


ARM64 = GOLDEN["arm64"]


@pytest.fixture(scope="module")
def built_arm64(tmp_path_factory):
    """The same inputs with arm64 configs, cross-built here for every format arm64 has."""
    assert tuple(ARM64["formats"]) == ARM64_FORMATS
    try:
        return build_golden(tmp_path_factory.mktemp("golden-arm64"), ARM64_FORMATS, "arm64")
    except ComposerError as exc:
        if "bootloader" in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(f"cannot build the EFI goldens here: {exc}")
        raise


def test_every_arm64_golden_output_is_built(built_arm64):
    assert sorted(ARM64["outputs"]) == sorted(digests(built_arm64, ARM64_FORMATS)["outputs"])


@pytest.mark.parametrize("name", sorted(ARM64["outputs"]))
def test_arm64_output_matches_golden_digest(built_arm64, name):
    check_output(built_arm64, name, ARM64)


RPI3 = ARM64["rpi3"]


@pytest.fixture(scope="module")
def built_rpi3(tmp_path_factory):
    """rpi3 (NAME.tar, as tar writes): its own arm64 build, the inputs with a Pi 3 device tree."""
    assert tuple(RPI3["formats"]) == RPI3_FORMATS
    try:
        return build_golden(tmp_path_factory.mktemp("golden-rpi3"), RPI3_FORMATS, "arm64",
                            RPI3_NAME)
    except ComposerError as exc:
        if "bootloader" in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(f"cannot build the rpi3 golden here: {exc}")
        raise


def test_every_rpi3_golden_output_is_built(built_rpi3):
    assert sorted(RPI3["outputs"]) == sorted(digests(built_rpi3, RPI3_FORMATS, RPI3_NAME)
                                             ["outputs"])


@pytest.mark.parametrize("name", sorted(RPI3["outputs"]))
def test_rpi3_output_matches_golden_digest(built_rpi3, name):
    check_output(built_rpi3, name, RPI3)


TWO_ARCH = GOLDEN["two-arch"]


@pytest.fixture(scope="module")
def built_two_arch(built, built_arm64, tmp_path_factory):
    """docker and oci for amd64 and arm64 at once, over the two builds' (golden) rootfs tars."""
    assert tuple(TWO_ARCH["formats"]) == TWO_ARCH_FORMATS
    return build_two_arch(tmp_path_factory.mktemp("golden-two-arch"), built["golden.tar"],
                          built_arm64["golden.tar"])


@pytest.mark.parametrize("name", sorted(TWO_ARCH["outputs"]))
def test_two_arch_output_matches_golden_digest(built_two_arch, name):
    assert sorted(built_two_arch) == sorted(TWO_ARCH["outputs"])
    check_output(built_two_arch, name, TWO_ARCH)


def test_two_arch_platforms_are_the_single_arch_golden_images(built, built_arm64,
                                                              built_two_arch):
    def top(archive) -> dict:
        with tarfile.open(archive) as tf:
            [desc] = json.loads(tf.extractfile("index.json").read())["manifests"]
            if desc["mediaType"].endswith("index.v1+json"):
                return json.loads(tf.extractfile("blobs/sha256/" + desc["digest"][7:]).read())
            return desc

    entries = top(built_two_arch["golden-oci.tar"])["manifests"]
    assert [(m["platform"]["architecture"], m["digest"]) for m in entries] == [
        ("amd64", top(built["golden-oci.tar"])["digest"]),
        ("arm64", top(built_arm64["golden-oci.tar"])["digest"])]


def check_output(built, name, golden):
    """``name`` of ``built`` has exactly the digest ``golden`` lists."""
    top = name.split("/", 1)[0]
    data = (built[top] / name.split("/", 1)[1] if "/" in name else built[name]).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    assert actual == golden["outputs"][name], (
        f"{name}: sha256 {actual}, golden {golden['outputs'][name]}; run "
        f"`image-composer diff` against a build from the commit that made the goldens")


def test_goldens_were_made_by_the_pinned_compressor():
    """A new zlib-ng pin changes deflate bytes: regenerate the goldens with it, saying so."""
    assert compressor_id() == GOLDEN["compressor"]


@pytest.mark.parametrize("name", sorted(GOLDEN["content"]))
def test_initrd_content_matches_golden(built, name):
    data = gzip.decompress(built[name].read_bytes())
    assert hashlib.sha256(data).hexdigest() == GOLDEN["content"][name]
