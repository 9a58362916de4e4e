"""Phase one's linuxkit semantics beyond the bundles: the kernel section, init images over a
kernel (linuxkit issue 3153), image fixups, files, identical images, provenance records.

GNU tar is the oracle for "the modules are reachable at /lib/modules": the rootfs tar is
unpacked with it and the path is opened on the host file system.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from composer.epoch import Epoch
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.resolve import resolve_image
from composer.images.write import write_image
from composer.oci.refs import parse_ref
from composer.rootfs.assemble import Context, build_tree, write_tree
from composer.spec import load_spec
from composer.spec.document import spec_json
from composer.tar.canon import Kind
from composer.tar.read import read_entries
from tests.fixtures.images import Member, directory, file, layer_tar, symlink

GENERATED = 1492533000
KVER = "6.6.1"


def modules_tar() -> bytes:
    return layer_tar([directory("lib"), directory("lib/modules"),
                      directory(f"lib/modules/{KVER}"),
                      file(f"lib/modules/{KVER}/modules.dep", "kernel/a.ko:\n"),
                      directory(f"lib/modules/{KVER}/kernel"),
                      file(f"lib/modules/{KVER}/kernel/a.ko", b"\x7fELF a")])


KERNEL = [layer_tar([file("kernel", b"bzImage", mode=0o600), file("kernel.tar", modules_tar()),
                     file("ucode.cpio", b"070701ucode"), file("System.map", "x")])]
# linuxkit issue 3153: an init image whose /lib is a symlink into /usr
MERGED_USR_INIT = [layer_tar([symlink("lib", "usr/lib"), directory("usr"),
                              directory("usr/lib"), file("usr/lib/libc.so", b"libc"),
                              file("init", "#!/bin/sh\n", mode=0o755)])]


class Env:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.cache = Cache(tmp_path / "cache")

    def image(self, ref: str, layers: list[bytes], config: dict | None = None) -> None:
        written = write_image(self.cache, layers, config=config or {})
        self.cache.tag(parse_ref(ref).cache_name, written.descriptor)

    def build(self, spec_text: str) -> dict[str, tuple]:
        path = self.tmp / "s.yml"
        path.write_text(spec_text)
        spec = load_spec([path])
        images = {r.text: resolve_image(r.text, cache=self.cache, arch="amd64", offline=True)
                  for r in spec.image_refs()}
        epoch = Epoch(None)
        ctx = Context(self.cache, epoch, images)
        tree = build_tree(spec, ctx)
        self.warnings = ctx.warnings
        out = io.BytesIO()
        write_tree(tree, out, epoch)
        self.tar = out.getvalue()
        out.seek(0)
        entries = {}
        for entry, reader in read_entries(out):
            assert entry.path not in entries
            entries[entry.path] = (entry, reader.read() if reader else None)
        return entries


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


# ---- kernel section ---------------------------------------------------------------------------

def test_kernel_section(env):
    env.image("k:1", KERNEL)
    tree = env.build("kernel: {image: 'k:1', cmdline: quiet, ucode: ucode.cpio}\n")
    assert tree["boot/kernel"][1] == b"bzImage"
    assert tree["boot/kernel"][0].mode == 0o600  # the image's mode, linuxkit's mtime, root
    assert tree["boot/kernel"][0].mtime == GENERATED
    assert tree["boot/cmdline"][1] == b"quiet"
    assert tree["boot/ucode.cpio"][1] == b"070701ucode"
    assert tree[f"lib/modules/{KVER}/kernel/a.ko"][1] == b"\x7fELF a"
    assert not {"kernel", "kernel.tar", "System.map", "ucode.cpio"} & set(tree)
    assert set(tree) == {"boot", "boot/cmdline", "boot/kernel", "boot/ucode.cpio", "lib",
                         "lib/modules", f"lib/modules/{KVER}", f"lib/modules/{KVER}/kernel",
                         f"lib/modules/{KVER}/kernel/a.ko", f"lib/modules/{KVER}/modules.dep"}
    for entry, _ in tree.values():
        assert dict(entry.records) == {"LINUXKIT.location": "kernel",
                                       "LINUXKIT.source": "docker.io/library/k:1"}


def test_kernel_tar_none_and_other_binary(env):
    env.image("k:2", [layer_tar([file("bzImage", b"bz")])])
    tree = env.build("kernel: {image: 'k:2', binary: bzImage, tar: none}\n")
    assert tree["boot/kernel"][1] == b"bz" and tree["boot/cmdline"][1] == b""
    assert "lib" not in tree


@pytest.mark.parametrize(("spec", "message"), [
    ("kernel: {image: 'k:2'}", "kernel image has no kernel file 'kernel'"),
    ("kernel: {image: 'k:2', binary: bzImage}",
     "kernel image has no modules tar 'kernel.tar' (set `tar: none` if it has no modules)"),
    ("kernel: {image: 'k:2', binary: bzImage, tar: none, ucode: u.cpio}",
     "kernel image has no ucode file 'u.cpio'"),
])
def test_kernel_errors(env, spec, message):
    env.image("k:2", [layer_tar([file("bzImage", b"bz")])])
    with pytest.raises(ComposerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        env.build(spec + "\n")


# ---- linuxkit issue 3153: an init image with a symlinked /lib ---------------------------------

def resolve(tree: dict, path: str) -> str:
    """Follow symlinks among the parents of ``path`` in the tar's entries."""
    parts, out = path.split("/"), []
    while parts:
        out.append(parts.pop(0))
        node = tree.get("/".join(out))
        if node is not None and node[0].kind is Kind.SYMLINK and parts:
            target = node[0].linkname
            out = [] if target.startswith("/") else out[:-1]
            parts = [p for p in target.split("/") if p] + parts
    return "/".join(out)


def test_modules_reachable_through_symlinked_lib(env, tmp_path):
    env.image("k:1", KERNEL)
    env.image("init:1", MERGED_USR_INIT)
    tree = env.build("kernel: {image: 'k:1'}\ninit: ['init:1']\n")
    assert tree["lib"][0].kind is Kind.SYMLINK and tree["lib"][0].linkname == "usr/lib"
    assert tree[f"usr/lib/modules/{KVER}/modules.dep"][1] == b"kernel/a.ko:\n"
    assert tree["usr/lib/libc.so"][1] == b"libc"
    assert resolve(tree, f"lib/modules/{KVER}/kernel/a.ko") == f"usr/lib/modules/{KVER}/kernel/a.ko"
    # the moved entries keep their provenance
    assert dict(tree[f"usr/lib/modules/{KVER}"][0].records)["LINUXKIT.location"] == "kernel"
    # oracle: GNU tar unpacks it and the kernel finds its modules at /lib/modules
    tar = shutil.which("tar")
    if tar is None:
        if os.environ.get("CI") == "true":
            pytest.fail("GNU tar is needed")
        pytest.skip("no tar")
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run([tar, "-xf", "-", "-C", str(root)], input=env.tar, check=True)
    assert (root / "lib" / "modules" / KVER / "kernel" / "a.ko").read_bytes() == b"\x7fELF a"
    assert (root / "lib").is_symlink()


def test_init_files_win_over_the_kernels_through_the_symlink(env):
    env.image("k:1", KERNEL)
    own = layer_tar([symlink("lib", "usr/lib"), directory("usr"), directory("usr/lib"),
                     directory("usr/lib/modules"), directory(f"usr/lib/modules/{KVER}"),
                     file(f"usr/lib/modules/{KVER}/modules.dep", "from init\n")])
    env.image("init:2", [own])
    tree = env.build("kernel: {image: 'k:1'}\ninit: ['init:2']\n")
    assert tree[f"usr/lib/modules/{KVER}/modules.dep"][1] == b"from init\n"
    assert tree[f"usr/lib/modules/{KVER}/kernel/a.ko"][1] == b"\x7fELF a"


def test_dangling_lib_symlink_still_gets_the_modules(env):
    env.image("k:1", KERNEL)
    env.image("init:3", [layer_tar([symlink("lib", "/usr/lib")])])
    tree = env.build("kernel: {image: 'k:1'}\ninit: ['init:3']\n")
    assert tree[f"usr/lib/modules/{KVER}/modules.dep"][0].kind is Kind.FILE
    for path in ("usr", "usr/lib"):  # made implicitly, still with records
        assert tree[path][0].kind is Kind.DIR and tree[path][0].records


def test_later_init_image_replacing_dir_with_symlink(env):
    """The same rule between init images: init[0]'s /lib content survives init[1]'s symlink."""
    env.image("a:1", [layer_tar([directory("lib"), file("lib/ld.so", b"ld")])])
    env.image("b:1", MERGED_USR_INIT)
    tree = env.build("init: ['a:1', 'b:1']\n")
    assert tree["usr/lib/ld.so"][1] == b"ld"
    assert dict(tree["usr/lib/ld.so"][0].records)["LINUXKIT.location"] == "init[0]"


# ---- image fixups -----------------------------------------------------------------------------

def test_fixups(env):
    env.image("init:4", [layer_tar([
        directory("etc", mode=0o750, uid=5), file("etc/hosts", "junk\n", mode=0o600),
        file("etc/hostname", "x"), file("etc/resolv.conf", "nameserver 1.1.1.1\n"),
        file("Dockerfile", "FROM x"), directory("dev"), directory("dev/pts"),
        file("dev/pts/0", ""), Member("dev/console", kind=tarfile.CHRTYPE),
    ])])
    tree = env.build("init: ['init:4']\n")
    etc = tree["etc"][0]  # always remade, as linuxkit's re-emitted directory does
    assert (etc.mode, etc.uid, etc.mtime) == (0o755, 0, GENERATED)
    hosts = tree["etc/hosts"]
    assert hosts[0].mode == 0o600 and hosts[1].startswith(b"127.0.0.1       localhost\n")
    assert tree["etc/resolv.conf"][0].kind is Kind.SYMLINK
    assert tree["etc/mtab"][0].linkname == "/proc/mounts"
    for gone in ("etc/hostname", "Dockerfile", "dev/console", "dev/pts/0"):
        assert gone not in tree
    for made in ("dev/pts", "dev/shm", "proc", "sys"):
        assert tree[made][0].kind is Kind.DIR and tree[made][0].mode == 0o755


# ---- files ------------------------------------------------------------------------------------

def test_files_section(env, tmp_path, monkeypatch):
    env.image("init:5", [layer_tar([directory("etc", mode=0o755),
                                    directory("var", mode=0o711)])])
    env.image("svc:1", [layer_tar([file("bin/x", "x")])])
    (tmp_path / "data.txt").write_text("from the host\n")
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    tree = env.build("""\
init: ['init:5']
onboot: [{name: first, image: 'svc:1'}]
services: [{name: app, image: 'svc:1'}]
files:
  - {path: /var/lib/app/conf, contents: "x=1\\n", mode: "0640", uid: app, gid: first}
  - {path: etc/ssh/key, source: data.txt}
  - {path: root/.ssh/authorized_keys, source: ~/.ssh/id_rsa.pub, optional: true}
  - {path: etc/link, symlink: /etc/hosts}
  - {path: srv/empty, directory: true}
  - {path: etc/spec.json, metadata: json, mode: "0444"}
""")
    conf = tree["var/lib/app/conf"][0]
    assert (conf.mode, conf.uid, conf.gid) == (0o640, 101, 100)
    # missing parents: the file's owner, its mode plus x where r or w is set (0640 -> 0750)
    for parent in ("var/lib", "var/lib/app"):
        entry = tree[parent][0]
        assert (entry.mode, entry.uid, entry.gid) == (0o750, 101, 100)
        assert dict(entry.records) == {"LINUXKIT.location": "files[0]",
                                       "LINUXKIT.source": "linuxkit.files"}
    assert tree["var"][0].mode == 0o711  # exists in an image: left alone (linuxkit rewrites it)
    assert tree["etc/ssh/key"][1] == b"from the host\n" and tree["etc/ssh/key"][0].mode == 0o600
    assert tree["etc/ssh"][0].mode == 0o700
    assert "root/.ssh/authorized_keys" not in tree and "root" not in tree
    assert tree["etc/link"][0].kind is Kind.SYMLINK and tree["etc/link"][0].mode == 0o600
    assert tree["srv/empty"][0].kind is Kind.DIR and tree["srv/empty"][0].mode == 0o700
    spec = load_spec([tmp_path / "s.yml"])
    assert tree["etc/spec.json"][1] == spec_json(spec)
    assert tree["etc/spec.json"][0].mode == 0o444


def test_missing_source_is_an_error_with_position(env, tmp_path):
    with pytest.raises(ComposerError, match=r"s\.yml:1:9: files\[0\]: cannot read source "):
        env.build("files: [{path: a, source: nope.txt}]\n")


# ---- containers -------------------------------------------------------------------------------

def test_identical_images_extracted_once_whatever_the_ref(env):
    layers = [layer_tar([file("bin/x", "x")])]
    env.image("one:1", layers)
    env.image("registry.example/two:2", layers)  # the same manifest under another name
    tree = env.build("""\
onboot:
  - {name: a, image: 'one:1', readonly: true}
  - {name: b, image: 'registry.example/two:2'}
services:
  - {name: c, image: 'one:1', readonly: true}
""")
    assert "containers/onboot/000-a/rootfs/bin/x" in tree
    assert not any(p.startswith(("containers/onboot/001-b/lower", "containers/services/c/lower"))
                   for p in tree)
    assert tree["containers/services/c/rootfs"][0].kind is Kind.DIR
    assert tree["containers/onboot/001-b/tmp"][0].kind is Kind.DIR


def test_every_entry_has_provenance_records(env):
    env.image("k:1", KERNEL)
    env.image("init:1", MERGED_USR_INIT)
    env.image("sparse:1", [layer_tar([file("deep/er/file", "no parent entries")])])
    tree = env.build("kernel: {image: 'k:1'}\ninit: ['init:1']\n"
                     "onboot: [{name: a, image: 'sparse:1'}]\n"
                     "volumes: [{name: v}]\nfiles: [{path: x/y, contents: z}]\n")
    for path, (entry, _) in tree.items():
        records = dict(entry.records)
        assert set(records) == {"LINUXKIT.source", "LINUXKIT.location"}, path
    assert dict(tree["containers/onboot/000-a/lower/deep"][0].records)["LINUXKIT.source"] == \
        "docker.io/library/sparse:1"


# ---- init images' apk databases (linuxkit's apkTarWriter) ------------------------------------

APK_DB = "lib/apk/db/installed"


def apk_image(name: str, *, extra: list | None = None) -> list[bytes]:
    return [layer_tar([directory("lib"), directory("lib/apk"), directory("lib/apk/db"),
                       file(APK_DB, f"P:{name}\nV:1.0-r0\nA:x86_64\n", mode=0o640),
                       *(extra or [])])]


def test_apk_databases_of_init_images_are_concatenated_in_image_order(env):
    env.image("a:1", apk_image("alpha"))
    env.image("b:1", [layer_tar([file("bin/nothing", "no database here")])])
    env.image("c:1", apk_image("gamma"))
    env.image("d:1", apk_image("delta"))
    tree = env.build("init: ['d:1', 'b:1', 'a:1', 'c:1']\n")
    entry, data = tree[APK_DB]
    # each database followed by two newlines, in init order (not last-image-wins)
    assert data == (b"P:delta\nV:1.0-r0\nA:x86_64\n\n\n" b"P:alpha\nV:1.0-r0\nA:x86_64\n\n\n"
                    b"P:gamma\nV:1.0-r0\nA:x86_64\n\n\n")
    assert (entry.mode, entry.uid, entry.gid) == (0o644, 0, 0)
    assert dict(entry.records) == {"LINUXKIT.source": "LINUXKIT.apkinit",
                                   "LINUXKIT.location": "init"}
    from composer.rootfs.packages import parse_apk_installed
    assert [p["name"] for p in parse_apk_installed(data.decode())] == ["delta", "alpha", "gamma"]


def test_a_single_apk_database_is_left_as_the_image_has_it(env):
    env.image("a:1", apk_image("alpha"))
    env.image("b:1", [layer_tar([file("bin/nothing", "x")])])
    tree = env.build("init: ['a:1', 'b:1']\n")
    entry, data = tree[APK_DB]
    assert data == b"P:alpha\nV:1.0-r0\nA:x86_64\n" and entry.mode == 0o640
    assert dict(entry.records)["LINUXKIT.location"] == "init[0]"


def test_container_apk_databases_are_not_merged(env):
    env.image("a:1", apk_image("alpha"))
    env.image("c:1", apk_image("gamma"))
    tree = env.build("init: ['a:1']\nonboot: [{name: x, image: 'c:1'}]\n")
    assert tree[APK_DB][1] == b"P:alpha\nV:1.0-r0\nA:x86_64\n"
    assert tree[f"containers/onboot/000-x/lower/{APK_DB}"][1].startswith(b"P:gamma\n")


# ---- provenance names the image as the spec wrote it (linuxkit's ReferenceExpand) ------------

@pytest.mark.parametrize(("written", "recorded"), [
    ("app", "docker.io/library/app"),  # no :latest added
    ("app:2", "docker.io/library/app:2"),
    ("org/app", "docker.io/org/app"),
    ("registry.example/app", "registry.example/app"),
    ("localhost/app", "localhost/app"),
])
def test_provenance_source_is_the_ref_as_written(env, written, recorded):
    env.image(written, [layer_tar([file("bin/x", "x")])])
    tree = env.build(f"init: ['{written}']\nonboot: [{{name: a, image: '{written}'}}]\n")
    assert dict(tree["bin/x"][0].records)["LINUXKIT.source"] == recorded
    assert dict(tree["containers/onboot/000-a/lower/bin/x"][0].records)[
        "LINUXKIT.source"] == recorded


# ---- a layer's root entry must be a directory -------------------------------------------------

@pytest.mark.parametrize("kind", [tarfile.REGTYPE, tarfile.SYMTYPE])
def test_root_entry_that_is_not_a_directory_is_an_error_naming_the_layer(env, kind):
    member = Member(".", kind=kind, data=b"x" if kind == tarfile.REGTYPE else b"",
                    linkname="elsewhere" if kind == tarfile.SYMTYPE else "")
    env.image("bad:1", [layer_tar([file("bin/x", "x")]),
                        layer_tar([member, file("etc/y", "y")], sort=False)])
    what = "file" if kind == tarfile.REGTYPE else "symlink"
    with pytest.raises(ComposerError, match=(
            r"docker\.io/library/bad:1 layer 1 \(sha256:[0-9a-f]{64}\): the entry for the root "
            rf"\('\.'\) is a {what}, not a directory")):
        env.build("init: ['bad:1']\n")


def test_root_directory_entry_is_fine(env):
    env.image("ok:1", [layer_tar([directory("."), file("etc/y", "y")], sort=False)])
    assert env.build("init: ['ok:1']\n")["etc/y"][1] == b"y"
