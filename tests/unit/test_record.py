"""Build records and SHA256SUMS: complete, deterministic, free of host details, checkable."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess

import pytest
from zlib_ng import zlib_ng

from composer import canonjson
from composer.errors import ComposerError
from composer.images.layout import read_index
from composer.repro.record import SCHEMA, load_record, parse_sha256sums, sha256sums
from tests.golden.inputs import NAME, SOURCE_DATE_EPOCH
from tests.golden.regenerate import build_golden

FORMATS = ("tar", "kernel+initrd", "tar-kernel-initrd")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return [build_golden(tmp_path_factory.mktemp(f"b{n}"), FORMATS) for n in range(2)]


def test_every_build_writes_record_sums_and_sbom(builds):
    names = sorted(builds[0])
    assert names == sorted([f"{NAME}-cmdline", f"{NAME}-initrd.img", f"{NAME}-initrd.tar",
                            f"{NAME}-kernel", f"{NAME}.tar", f"{NAME}.build.json",
                            f"{NAME}.spdx.json", f"{NAME}.SHA256SUMS",
                            f"{NAME}.build-env.json"])


def test_record_is_byte_identical_across_builds_and_holds_no_host_path(builds):
    for name in (f"{NAME}.build.json", f"{NAME}.SHA256SUMS", f"{NAME}.spdx.json"):
        assert builds[0][name].read_bytes() == builds[1][name].read_bytes(), name
    data = builds[0][f"{NAME}.build.json"].read_bytes()
    for path in (builds[0][f"{NAME}.tar"].parent.parent, builds[1][f"{NAME}.tar"].parent):
        assert str(path).encode() not in data
    assert os.uname().nodename.encode() not in data


def test_record_names_inputs_and_outputs(builds):
    out = builds[0]
    record = load_record(out[f"{NAME}.build.json"])
    assert record["schema"] == SCHEMA
    assert record["build"] == {"arch": "amd64", "compressor": record["build"]["compressor"],
                               "formats": list(FORMATS), "name": NAME,
                               "source_date_epoch": SOURCE_DATE_EPOCH,
                               "sbom": {"rootfs": "sbom.spdx.json", "beside": "spdx"}}
    # the pinned deflate library, never the host's zlib version
    assert (record["build"]["compressor"]
            == f"zlib-ng-{zlib_ng.ZLIBNG_VERSION} gzip -6 blocks 256KiB")
    assert set(record["composer"]["libraries"]) == {"pycdlib", "pyfatfs", "zstandard", "lz4",
                                                    "zlib-ng"}
    assert record["composer"]["libraries"]["zlib-ng"] == importlib.metadata.version("zlib-ng")
    spec = out[f"{NAME}.tar"].parent.parent / "inputs" / f"{NAME}.yml"
    assert record["specs"] == [{"name": f"{NAME}.yml",
                                "sha256": hashlib.sha256(spec.read_bytes()).hexdigest(),
                                "text": spec.read_text()}]
    layout = read_index(spec.parent / "oci", "test")
    tags = {d["annotations"]["org.opencontainers.image.ref.name"]: d["digest"]
            for d in layout["manifests"]}
    assert [(i["ref"], i["digest"]) for i in record["images"]] == [
        ("oci:oci:kernel", tags["kernel"]), ("oci:oci:init", tags["init"]),
        ("oci:oci:app", tags["app"])]
    listed = {o["name"]: (o["sha256"], o["size"]) for o in record["outputs"]}
    assert sorted(listed) == sorted(n for n in out if not n.endswith((".build.json",
                                                                        ".SHA256SUMS",
                                                                        ".build-env.json")))
    for name, (digest, size) in listed.items():
        data = out[name].read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest, size)
    # the tar format is the canonical rootfs itself: its digest is the build's identity
    assert record["rootfs"]["sha256"] == listed[f"{NAME}.tar"][0]


def test_sha256sums_checks_with_coreutils(builds):
    sums = builds[0][f"{NAME}.SHA256SUMS"]
    tool = shutil.which("sha256sum")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("sha256sum (coreutils) is missing")
        pytest.skip("sha256sum not installed")
    proc = subprocess.run([tool, "-c", sums.name], cwd=sums.parent, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = [name for name, _ in parse_sha256sums(sums.read_bytes(), "x")]
    assert f"{NAME}.build.json" in listed and f"{NAME}.SHA256SUMS" not in listed
    assert listed == sorted(listed)
    (sums.parent / f"{NAME}-kernel").write_bytes(b"tampered")
    try:
        proc = subprocess.run([tool, "-c", sums.name], cwd=sums.parent, capture_output=True,
                              text=True, check=False)
        assert proc.returncode != 0 and f"{NAME}-kernel: FAILED" in proc.stdout
    finally:
        shutil.copy(builds[1][f"{NAME}-kernel"], sums.parent / f"{NAME}-kernel")


def test_sha256sums_format_round_trip_and_refusals():
    data = sha256sums([("b", "1" * 64), ("a", "2" * 64)])
    assert data == f"{'2' * 64}  a\n{'1' * 64}  b\n".encode()
    assert parse_sha256sums(data, "x") == [("a", "2" * 64), ("b", "1" * 64)]
    assert parse_sha256sums(f"{'3' * 64} *bin\n".encode(), "x") == [("bin", "3" * 64)]
    with pytest.raises(ComposerError, match="x:1: not a sha256sum line"):
        parse_sha256sums(b"nonsense  file\n", "x")
    with pytest.raises(ComposerError):
        sha256sums([("new\nline", "1" * 64)])


def test_load_record_refuses_other_json(tmp_path):
    path = tmp_path / "r.json"
    path.write_bytes(canonjson.pretty({"schema": "something else"}))
    with pytest.raises(ComposerError, match="not an image-composer build record"):
        load_record(path)


def test_the_machine_goes_into_the_env_file_not_the_record(tmp_path, monkeypatch):
    """Two machines with another zlib (and Python) that make the same outputs: the same record
    and SHA256SUMS; only NAME.build-env.json, listed nowhere, tells them apart."""
    import platform
    import zlib

    first = build_golden(tmp_path / "here", ("tar",))
    # versions no real machine has, so they differ from this one's whatever it runs
    monkeypatch.setattr(zlib, "ZLIB_RUNTIME_VERSION", "9.9.9-elsewhere")
    monkeypatch.setattr(platform, "python_version", lambda: "3.99.0-elsewhere")
    second = build_golden(tmp_path / "there", ("tar",))
    for name in (f"{NAME}.build.json", f"{NAME}.SHA256SUMS", f"{NAME}.tar"):
        assert first[name].read_bytes() == second[name].read_bytes(), name
    env = canonjson.loads(second[f"{NAME}.build-env.json"].read_bytes())
    assert env["zlib"]["runtime"] == "9.9.9-elsewhere"
    assert env["python"]["version"] == "3.99.0-elsewhere"
    assert first[f"{NAME}.build-env.json"].read_bytes() != \
        second[f"{NAME}.build-env.json"].read_bytes()
    sums = first[f"{NAME}.SHA256SUMS"].read_text()
    assert "build-env" not in sums
    assert zlib.ZLIB_RUNTIME_VERSION not in second[f"{NAME}.build.json"].read_text()


def test_multi_platform_record_has_rootfs_by_arch_and_attests_each():
    from composer.repro.attest import statement
    from composer.repro.record import build_record, rootfs_digests

    def record(rootfs) -> dict:
        return build_record(name="s", arch="amd64,arm64", formats=("oci",),
                            source_date_epoch=1, compressor="c", specs=[], images=[],
                            host_files=[], rootfs=rootfs, outputs=[("s-oci.tar", "ab", 2)])

    one = record(("11", 5))
    assert one["rootfs"] == {"sha256": "11", "size": 5}
    assert rootfs_digests(one) == {"": "11"}
    multi = record({"arm64": ("22", 6), "amd64": ("11", 5)})
    assert multi["rootfs"] == {"amd64": {"sha256": "11", "size": 5},
                               "arm64": {"sha256": "22", "size": 6}}
    assert rootfs_digests(multi) == {"amd64": "11", "arm64": "22"}
    assert statement(canonjson.pretty(one))["predicate"]["rootfs"] == "11"
    assert statement(canonjson.pretty(multi))["predicate"]["rootfs"] == {"amd64": "11",
                                                                         "arm64": "22"}
