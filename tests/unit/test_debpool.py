"""composer.debian.pool against a local stand-in for Debian's archive (a loopback HTTP server with a
``pool/`` tree of synthetic .debs): exact pins, verification as bytes stream in, the cache, the
mirror list, and every problem named in one error."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.debian import pool as debpool
from composer.debian.pool import DebFile, PoolDeb, PoolError
from composer.errors import ComposerError
from tests.unit.test_deb import make_deb


class Archive:
    """A directory served over HTTP on a loopback port; ``hits`` counts requests per path."""

    def __init__(self, root: Path):
        self.root = root
        self.hits: dict[str, int] = {}
        archive = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                archive.hits[self.path] = archive.hits.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, deb: PoolDeb, members, *, security: bool = False) -> bytes:
        """Write a .deb for ``deb`` at its pool path; returns its bytes."""
        path = self.root / deb.pool_paths()[1 if security else 0]
        path.parent.mkdir(parents=True, exist_ok=True)
        make_deb(path, members, package=deb.package, version=deb.version)
        return path.read_bytes()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def archive(tmp_path) -> Iterator[Archive]:
    served = Archive(tmp_path / "archive")
    yield served
    served.close()


def env(archive: Archive, tmp_path: Path, *extra: str) -> dict[str, str]:
    return {debpool.MIRRORS_ENV: " ".join((*extra, archive.url)),
            debpool.CACHE_ENV: str(tmp_path / "cache")}


BOOT = [("./", None, {}), ("./usr/", None, {}), ("./usr/lib/", None, {}),
        ("./usr/lib/boot.bin", b"boot code", {}), ("./usr/lib/other.c32", b"module", {})]


def pinned(archive: Archive, package: str = "boot-bin", version: str = "2:1.0-1",
           source: str = "bootsrc", security: bool = False) -> PoolDeb:
    probe = PoolDeb(package, version, "all", "0" * 64, source)
    data = archive.add(probe, BOOT, security=security)
    return PoolDeb(package, version, "all", hashlib.sha256(data).hexdigest(), source)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_pool_paths_are_debians():
    deb = PoolDeb("isolinux", "3:6.04~git20190206.bf6db5b4+dfsg1-3", "all", "0" * 64, "syslinux")
    assert deb.pool_paths() == (
        "pool/main/s/syslinux/isolinux_6.04~git20190206.bf6db5b4+dfsg1-3_all.deb",
        "pool/updates/main/s/syslinux/isolinux_6.04~git20190206.bf6db5b4+dfsg1-3_all.deb")
    assert PoolDeb("libfoo1", "1-1", "amd64", "0" * 64).pool_paths()[0] == \
        "pool/main/libf/libfoo1/libfoo1_1-1_amd64.deb"
    firmware = PoolDeb("raspi-firmware", "1.20220830+ds-1", "all", "0" * 64,
                       component="non-free-firmware")
    assert firmware.pool_paths() == (
        "pool/non-free-firmware/r/raspi-firmware/raspi-firmware_1.20220830+ds-1_all.deb",
        "pool/updates/non-free-firmware/r/raspi-firmware/raspi-firmware_1.20220830+ds-1_all.deb")
    with pytest.raises(ComposerError, match="unknown archive component 'free'"):
        PoolDeb("x", "1", "all", "0" * 64, component="free")


def test_fetch_verifies_and_caches(archive, tmp_path):
    deb = pinned(archive)
    environ = env(archive, tmp_path)
    paths = debpool.fetch([deb], environ=environ)
    assert sha(paths[deb].read_bytes()) == deb.sha256
    assert paths[deb].parent == tmp_path / "cache"
    again = debpool.fetch([deb], environ=environ)
    assert again == paths
    assert archive.hits == {"/" + deb.pool_paths()[0]: 1}  # the second time from the cache


def test_security_pool_and_later_mirrors_are_tried(archive, tmp_path):
    deb = pinned(archive, security=True)
    environ = env(archive, tmp_path, "http://127.0.0.1:9")  # nothing listens on port 9
    paths = debpool.fetch([deb], environ=environ)
    assert sha(paths[deb].read_bytes()) == deb.sha256


def test_every_problem_is_one_error_and_nothing_wrong_is_kept(archive, tmp_path):
    good = pinned(archive, "good")
    changed = PoolDeb("changed", "1-1", "all", "1" * 64)
    archive.add(changed, BOOT)  # served, but not the pinned bytes
    gone = PoolDeb("gone", "1-1", "all", "2" * 64)
    with pytest.raises(PoolError) as info:
        debpool.fetch([gone, good, changed], environ=env(archive, tmp_path))
    text = str(info.value)
    assert text.startswith("2 pinned Debian package(s) unavailable: ")
    assert "changed=1-1 (all): " in text and "not the pinned file" in text
    assert "gone=1-1 (all): not found: " in text and "404" in text
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [good.filename]


def test_a_corrupted_cache_file_is_fetched_again(archive, tmp_path):
    deb = pinned(archive)
    environ = env(archive, tmp_path)
    path = debpool.fetch([deb], environ=environ)[deb]
    path.write_bytes(b"rotten")
    assert sha(debpool.fetch([deb], environ=environ)[deb].read_bytes()) == deb.sha256


def test_offline_uses_only_the_cache(archive, tmp_path):
    deb = pinned(archive)
    with pytest.raises(PoolError, match=r"not in .* \(offline\)"):
        debpool.fetch([deb], environ=env(archive, tmp_path), offline=True)
    debpool.fetch([deb], environ=env(archive, tmp_path))
    assert debpool.fetch([deb], environ=env(archive, tmp_path), offline=True)


def test_extract_takes_pinned_files_out(archive, tmp_path):
    deb = pinned(archive)
    files = {"boot": DebFile(deb, "usr/lib/boot.bin", sha(b"boot code")),
             "mod": DebFile(deb, "usr/lib/other.c32", sha(b"module"))}
    assert debpool.extract(files, environ=env(archive, tmp_path)) == {
        "boot": b"boot code", "mod": b"module"}


def test_extract_names_every_wrong_file(archive, tmp_path):
    deb = pinned(archive, "other-bin")
    files = {"a-missing": DebFile(deb, "usr/lib/nope.bin", "3" * 64),
             "b-changed": DebFile(deb, "usr/lib/boot.bin", "4" * 64),
             "c-good": DebFile(deb, "usr/lib/other.c32", sha(b"module"))}
    with pytest.raises(PoolError) as info:
        debpool.extract(files, environ=env(archive, tmp_path))
    text = str(info.value)
    assert text.startswith("2 pinned file(s) wrong: ")
    assert "a-missing: other-bin=2:1.0-1:/usr/lib/nope.bin is not a file in the package" in text
    assert f"b-changed: other-bin=2:1.0-1:/usr/lib/boot.bin has sha256 {sha(b'boot code')}" \
        in text


def test_the_default_mirrors_and_cache(monkeypatch):
    assert debpool.mirrors({}) == debpool.DEFAULT_MIRRORS
    assert debpool.mirrors({debpool.MIRRORS_ENV: "http://a/debian/ http://b"}) == \
        ("http://a/debian", "http://b")
    assert debpool.cache_dir({"HOME": "/h"}) == Path("/h/.cache/image-composer-debs")
    assert debpool.cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/image-composer-debs")


def test_the_bootloader_rows_are_pins_of_debian_12():
    """Each default bootloader is a row: a pinned .deb of bookworm and a pinned file in it."""
    from outputs import bootloader_debs, bootloaders

    assert sorted(bootloader_debs.FILES) == sorted(bootloaders.DEFAULTS)
    for role, row in bootloader_debs.FILES.items():
        assert bootloaders.DEFAULTS[role].digest == f"sha256:{row.sha256}"
        assert not row.member.startswith("/")


def test_fetch_debs_takes_pins_from_the_pool_whatever_apt_has(archive, tmp_path):
    """examples/fetch-debs: the pins of a package directory straight from the archive (no apt),
    and every pin it cannot have in one error line."""
    import os
    import subprocess
    import sys

    good = pinned(archive, "good-bin", "1:2.0-1")
    changed = PoolDeb("changed", "1-1", "all", "1" * 64)
    archive.add(changed, BOOT)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    pins = "".join(f"  - {{name: {d.package}, version: '{d.version}', sha256: {d.sha256}, "
                   f"arch: all{', source: ' + d.source if d.source else ''}}}\n"
                   for d in (good, changed, PoolDeb("gone", "1-1", "all", "2" * 64)))
    (pkg / "build.yml").write_text(f"image: demo\ndebs:\n{pins}")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(root / "examples" / "fetch-debs"), "--dest", str(tmp_path / "d"),
         str(pkg)], capture_output=True, text=True, check=False,
        env={**os.environ, debpool.MIRRORS_ENV: archive.url, "PATH": "/nonexistent"})
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: 2 pinned package(s) unavailable: ")
    assert "changed=1-1 (all)" in errors[0] and "gone=1-1 (all)" in errors[0]
    assert "fetched  good-bin_1%3a2.0-1_all.deb" in proc.stdout
    assert sha((tmp_path / "d" / "good-bin_1%3a2.0-1_all.deb").read_bytes()) == good.sha256


def test_offline_mode_holds_for_everything_called_inside_it(archive, tmp_path):
    """``build --offline`` wraps phase two in offline_mode: the bootloader .debs it needs are
    then taken from the cache or refused, never downloaded."""
    deb = pinned(archive)
    with debpool.offline_mode(), pytest.raises(PoolError, match=r"\(offline\)"):
        debpool.fetch([deb], environ=env(archive, tmp_path))
    assert archive.hits == {}
    debpool.fetch([deb], environ=env(archive, tmp_path))  # outside: it downloads
    assert archive.hits
