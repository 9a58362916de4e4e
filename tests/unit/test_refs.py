"""Reference parsing: Docker's normalisation rules, and ``oci:`` layout refs."""

from __future__ import annotations

import pytest

from composer.errors import ComposerError
from composer.oci.refs import LayoutRef, Ref, RefError, parse_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("library/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
        ("foo/bar", "docker.io", "foo/bar", "latest", None),
        ("foo/bar/baz:v1", "docker.io", "foo/bar/baz", "v1", None),
        ("foo__bar/x-y.z", "docker.io", "foo__bar/x-y.z", "latest", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("localhost:5000/x", "localhost:5000", "x", "latest", None),
        ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000", "a/b", "tag", None),
        ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
        ("example.com/a/b/c:v1.0", "example.com", "a/b/c", "v1.0", None),
        ("ghcr.io/o/r:1.2.3_rc-1", "ghcr.io", "o/r", "1.2.3_rc-1", None),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST),
        (f"busybox:1.36@{DIGEST}", "docker.io", "library/busybox", "1.36", DIGEST),
        (f"localhost:5000/x:t@{DIGEST}", "localhost:5000", "x", "t", DIGEST),
    ],
)
def test_docker_normalisation(text, registry, repository, tag, digest):
    ref = parse_ref(text)
    assert ref == Ref(registry, repository, tag, digest)
    # The printed form parses back to the same ref (it is what records and the cache keep).
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "loopback", "api_host"),
    [
        ("busybox", False, "registry-1.docker.io"),
        ("example.com/x", False, "example.com"),
        ("localhost/x", True, "localhost"),
        ("localhost:5000/x", True, "localhost:5000"),
        ("127.0.0.1:5000/x", True, "127.0.0.1:5000"),
        ("127.1.2.3:5000/x", True, "127.1.2.3:5000"),
        ("[::1]:5000/x", True, "[::1]:5000"),
        ("10.0.0.1:5000/x", False, "10.0.0.1:5000"),
        ("localhost.example.com/x", False, "localhost.example.com"),
    ],
)
def test_loopback_and_api_host(text, loopback, api_host):
    ref = parse_ref(text)
    assert isinstance(ref, Ref)
    assert ref.is_loopback is loopback
    assert ref.api_host == api_host


def test_cache_names():
    assert parse_ref("busybox").cache_name == "docker.io/library/busybox:latest"
    assert parse_ref(f"busybox@{DIGEST}").cache_name == f"docker.io/library/busybox@{DIGEST}"
    assert str(parse_ref(f"busybox:1@{DIGEST}")) == f"docker.io/library/busybox:1@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "invalid reference"),
        (" busybox", "invalid reference"),
        ("Busybox", "must be lowercase"),
        ("foo/Bar", "must be lowercase"),
        ("busybox@sha256:abc", "bad digest"),
        ("busybox@sha256:" + "AB" * 32, "bad digest"),
        ("busybox@md5:" + "a" * 32, "bad digest"),
        ("busybox@", "bad digest"),
        ("busybox:bad tag", "bad tag"),
        ("busybox:" + "a" * 129, "bad tag"),
        ("busybox:-x", "bad tag"),
        ("foo//bar", "bad name component"),
        ("foo-/bar", "bad name component"),
        ("http://example.com/x", "bad registry"),
        ("oci:", "empty layout path"),
    ],
)
def test_bad_refs(text, reason):
    with pytest.raises(RefError, match=reason) as info:
        parse_ref(text)
    assert isinstance(info.value, ComposerError)  # reported as one line, never a traceback
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "path", "tag"),
    [
        ("oci:dir", "dir", None),
        ("oci:dir:v1", "dir", "v1"),
        ("oci:images/base:1.0", "images/base", "1.0"),
        ("oci:/abs/layout:latest", "/abs/layout", "latest"),
        ("oci:../up/layout", "../up/layout", None),
        ("oci:a:b/c", "a:b/c", None),  # the part after the last ':' has a '/': no tag
    ],
)
def test_layout_refs(text, path, tag):
    ref = parse_ref(text)
    assert ref == LayoutRef(path, tag)
    assert str(ref) == text
