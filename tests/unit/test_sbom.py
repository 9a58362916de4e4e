"""The SPDX 2.3 SBOM: input images, dpkg and apk packages, deterministic, content-derived."""

from __future__ import annotations

import hashlib
import io

from composer import canonjson
from composer.repro.sbom import NAMESPACE_BASE, spdx_document
from composer.rootfs.packages import parse_apk_installed, parse_dpkg_status
from composer.tar.canon import CanonicalTarWriter, Entry, Kind
from tests.golden.inputs import APK_INSTALLED, DPKG_STATUS

IMAGES = [{"ref": "docker.io/library/alpine:3.20", "name": "docker.io/library/alpine:3.20",
           "digest": "sha256:" + "1" * 64, "index_digest": None},
          {"ref": "oci:oci:init", "name": "oci:oci:init", "digest": "sha256:" + "2" * 64,
           "index_digest": None}]


def rootfs(tmp_path, extra: bytes = b""):
    files = {"containers/services/app/lower/lib/apk/db/installed": APK_INSTALLED,
             "var/lib/dpkg/status": DPKG_STATUS + extra}
    entries: dict[str, Entry] = {}
    for path, data in files.items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            entries[d] = Entry(d, Kind.DIR, mode=0o755)
        entries[path] = Entry(path, Kind.FILE, size=len(data))
    buf = io.BytesIO()
    w = CanonicalTarWriter(buf)
    for path in sorted(entries, key=lambda p: p.encode().replace(b"/", b"\0")):
        w.add(entries[path], files.get(path))
    w.close()
    out = tmp_path / "rootfs.tar"
    out.write_bytes(buf.getvalue())
    return out, hashlib.sha256(buf.getvalue()).hexdigest()


def test_parsers_keep_installed_packages_only():
    assert parse_dpkg_status(DPKG_STATUS.decode()) == [
        {"name": "base-files", "version": "12.4+deb12u5", "arch": "amd64", "type": "deb"},
        {"name": "libc6", "version": "2.36-9+deb12u4", "arch": "amd64", "type": "deb"}]
    assert [(p["name"], p["version"], p["license"])
            for p in parse_apk_installed(APK_INSTALLED.decode())] == [
        ("musl", "1.2.4-r2", "MIT"), ("busybox", "1.36.1-r15", "GPL-2.0-only")]


def test_document_lists_images_and_packages_with_locations(tmp_path):
    path, digest = rootfs(tmp_path)
    doc = spdx_document("demo", path, digest, IMAGES, 1700000000)
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    by_name = {p["name"]: p for p in doc["packages"]}
    assert by_name["demo"]["checksums"][0]["checksumValue"] == digest
    assert by_name["docker.io/library/alpine:3.20"]["versionInfo"] == "sha256:" + "1" * 64
    assert by_name["libc6"]["externalRefs"][0]["referenceLocator"] == \
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
    assert by_name["libc6"]["sourceInfo"] == "deb database in /"
    assert by_name["musl"]["sourceInfo"] == "apk database in containers/services/app/lower"
    assert "removed-thing" not in by_name
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(ids) == len(set(ids))
    contains = {r["relatedSpdxElement"] for r in doc["relationships"]
                if r["relationshipType"] == "CONTAINS"}
    assert contains == {p["SPDXID"] for p in doc["packages"]
                        if p["SPDXID"].startswith("SPDXRef-Package-")}
    assert "externalRefs" not in by_name["oci:oci:init"]  # a local layout has no purl
    for package in doc["packages"]:
        assert {"SPDXID", "name", "downloadLocation"} <= set(package)


def test_namespace_is_derived_from_content_and_bytes_are_stable(tmp_path):
    path, digest = rootfs(tmp_path)
    one = spdx_document("demo", path, digest, IMAGES, 1700000000)
    two = spdx_document("demo", path, digest, IMAGES, 1700000000)
    assert canonjson.pretty(one) == canonjson.pretty(two)
    body = {k: v for k, v in one.items() if k != "documentNamespace"}
    assert one["documentNamespace"] == (
        f"{NAMESPACE_BASE}demo-{hashlib.sha256(canonjson.compact(body)).hexdigest()}")
    (tmp_path / "x").mkdir()
    extra = b"\nPackage: extra\nStatus: install ok installed\nVersion: 1\n"
    other_path, other_digest = rootfs(tmp_path / "x", extra)
    other = spdx_document("demo", other_path, other_digest, IMAGES, 1700000000)
    assert other["documentNamespace"] != one["documentNamespace"]
    assert "extra" in {p["name"] for p in other["packages"]}


def test_packages_from_the_tree_equal_packages_from_its_tar(tmp_path):
    """Phase one lists packages from the tree it wrote; a scan of the tar must agree."""
    from composer.build import tree_packages
    from composer.epoch import Epoch
    from composer.rootfs.assemble import write_tree
    from composer.rootfs.packages import find_packages
    from composer.rootfs.tree import HostFile, Node, Span, Tree

    layer = tmp_path / "layer.bin"
    layer.write_bytes(b"junk" + APK_INSTALLED + b"more")
    host = tmp_path / "status"
    host.write_bytes(DPKG_STATUS)
    tree = Tree(0)
    tree.put("var/lib/dpkg/status", Node(Entry("", Kind.FILE, size=len(DPKG_STATUS)),
                                          HostFile(str(host))))
    tree.put("containers/onboot/a/lower/var/lib/dpkg/status",
             Node(Entry("", Kind.FILE, size=len(DPKG_STATUS)), DPKG_STATUS))
    apk = Node(Entry("", Kind.FILE, size=len(APK_INSTALLED)),
               Span(str(layer), 4, len(APK_INSTALLED)))
    tree.put("containers/services/b/lower/lib/apk/db/installed", apk)
    tree.put("containers/services/c/lower/lib/apk/db/installed", apk)  # a hard link
    out = tmp_path / "rootfs.tar"
    kept: list = []
    with open(out, "wb") as fh:
        write_tree(tree, fh, Epoch(None), databases=kept)
    from_tree = tree_packages(tree, Epoch(None))
    assert from_tree == find_packages(out)
    assert tree_packages(tree, Epoch(None), kept) == from_tree  # what phase one uses
    assert len(kept) == 3  # the hard link's second path is no database file
    assert {p["location"] for p in from_tree} == {
        "/", "containers/onboot/a/lower", "containers/services/b/lower"}
