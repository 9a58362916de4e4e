"""linuxkit's command line, as linuxkit spells it: flags parse to what this tool's own spellings
parse to; the flags that make no sense here are refused with a reason; ``--o`` writes one
output to a file or stdout; mirrors and CA files are read as linuxkit reads them.

The registry side of ``--mirror`` and ``--cert-file`` runs against real registries in
tests/integration/test_linuxkit_cli.py.
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

import pytest

from composer.cli import build_parser, main
from composer.commands.lkflags import merge_root_options, normalise
from composer.defaults import default_cache_dir
from composer.errors import ComposerError, UsageError
from composer.images.network import mirror_for, parse_mirrors, read_cert_files
from composer.images.registry import RegistryClient
from composer.oci.refs import parse_registry_ref
from tests.unit.test_build import layout, spec_text  # noqa: F401 - layout is a fixture


def parse(argv: list[str]) -> argparse.Namespace:
    return merge_root_options(build_parser().parse_args(normalise(argv)))


def comparable(ns: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(ns).items() if k != "func"}


# -- spellings ---------------------------------------------------------------------------------
def test_single_dash_long_flags_become_double_dash_and_nothing_else_changes():
    assert normalise(["build", "-format", "tar", "-name=x", "-o", "out", "-f", "tar",
                      "-qv", "spec.yml"]) == \
        ["build", "--format", "tar", "--name=x", "-o", "out", "-f", "tar", "-qv", "spec.yml"]
    assert normalise(["build", "--", "-format"]) == ["build", "--", "-format"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["-v", "2", "build", "x.yml"], ["--verbose=2", "build", "x.yml"]),
    (["build", "-v", "x.yml"], ["build", "--verbose=2", "x.yml"]),  # the spec is no level
    (["build", "--verbose", "0", "x.yml"], ["build", "--verbose=0", "x.yml"]),
    (["build", "-verbose=3", "x.yml"], ["build", "--verbose=3", "x.yml"]),
])
def test_verbosity_levels(argv, expected):
    assert normalise(argv) == expected


def test_linuxkit_build_line_parses_as_ours():
    theirs = parse(["build", "-format", "tar", "-format", "kernel+initrd", "-name", "n",
                    "-dir", "out", "-size", "2G", "-pull", "-docker", "-arch", "arm64",
                    "-cache", "c", "-mirror", "docker.io=http://m:5000", "-cert-file", "ca.pem",
                    "-dry-run", "-no-sbom", "x.yml"])
    ours = parse(["build", "-f", "tar", "--format", "kernel+initrd", "--name", "n", "-o", "out",
                  "--size", "2G", "--pull", "--docker", "--arch", "arm64", "--cache", "c",
                  "--mirror", "docker.io=http://m:5000", "--cert-file", "ca.pem", "--dry-run",
                  "--no-sbom", "x.yml"])
    assert comparable(theirs) == comparable(ours)
    assert theirs.output == Path("out") and theirs.formats == ["tar", "kernel+initrd"]


def test_persistent_flags_before_the_command_reach_it():
    args = parse(["--cache", "c", "--mirror", "a.example=http://m", "-v", "0",
                  "--cert-file", "ca.pem", "build", "--mirror", "b.example=https://n", "x.yml"])
    assert args.cache == Path("c")
    assert args.mirror == ["a.example=http://m", "b.example=https://n"]  # the command's last
    assert args.cert_file == ["ca.pem"]
    assert args.quiet is True and args.verbose == 0
    # a command without a use for a flag ignores it, as linuxkit does
    assert not hasattr(parse(["--mirror", "http://m", "cache", "ls"]), "mirror")
    assert parse(["--cache", "c", "cache", "ls"]).cache == Path("c")
    assert parse(["-q", "cache", "pull", "alpine"]).quiet is True
    export = parse(["--cache", "c", "cache", "export", "-format", "filesystem", "-outfile", "-",
                    "-platform", "linux/arm64", "alpine"])  # as linuxkit's own tests call it
    assert (export.cache, export.format, export.outfile, export.platform) == \
        (Path("c"), "filesystem", "-", "linux/arm64")


def test_linuxkit_cache_is_the_cache_after_ours():
    assert default_cache_dir({"LINUXKIT_CACHE": "/lk"}) == Path("/lk")
    assert default_cache_dir({"LINUXKIT_CACHE": "/lk", "IMAGE_COMPOSER_CACHE": "/ic"}) == \
        Path("/ic")


# -- mirrors and CA files ------------------------------------------------------------------------
def test_mirrors_parse_as_linuxkit_parses_them():
    env = {"LINUXKIT_MIRROR": "docker.io=http://env:5000, https://all.example"}
    mirrors = parse_mirrors(["docker.io=https://cli.example/prefix/"], env)
    assert mirrors == {"docker.io": "https://cli.example/prefix/",
                       "index.docker.io": "https://cli.example/prefix/",
                       "registry-1.docker.io": "https://cli.example/prefix/",
                       "*": "https://all.example"}
    target, tls = mirror_for(mirrors, parse_registry_ref("alpine:3.19"))  # type: ignore[misc]
    assert (str(target), tls) == ("cli.example/prefix/library/alpine:3.19", True)
    target, tls = mirror_for(mirrors, parse_registry_ref("quay.io/a/b@sha256:" + "0" * 64))  # type: ignore[misc]
    assert (str(target), tls) == ("all.example/a/b@sha256:" + "0" * 64, True)
    assert mirror_for({}, parse_registry_ref("alpine")) is None


@pytest.mark.parametrize("value", ["mirror.example", "ftp://m", "http://", "a b=http://m",
                                   "http://m?x=1"])
def test_bad_mirrors_are_usage_errors(value):
    with pytest.raises(UsageError, match="--mirror"):
        parse_mirrors([value], {})


def test_a_mirror_decides_the_scheme_even_on_loopback():
    client = RegistryClient(mirrors={"127.0.0.1:5000": "https://127.0.0.1:5443/p",
                                     "quay.io": "http://quay-mirror.example"})
    ref = parse_registry_ref("127.0.0.1:5000/app:1")
    mirrored = client.pull_ref(ref)
    assert client.repo_url(mirrored) == "https://127.0.0.1:5443/v2/p/app"
    assert client.repo_url(ref) == "http://127.0.0.1:5000/v2/app"  # pushes: the origin, as ever
    quay = client.pull_ref(parse_registry_ref("quay.io/a/b:1"))
    assert client.repo_url(quay) == "http://quay-mirror.example/v2/a/b"


def test_cert_files_must_hold_certificates(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ComposerError, match=r"junk\.pem: no PEM certificate"):
        read_cert_files([junk])
    with pytest.raises(ComposerError, match=r"missing\.pem: cannot read"):
        read_cert_files([tmp_path / "missing.pem"])
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ComposerError, match="not PEM certificates"):
        RegistryClient(extra_ca=read_cert_files([broken]))


# -- build flags that take no part here, and --o -------------------------------------------------
def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["-"], "-: a spec from stdin is not supported"),
    (["https://example.invalid/x.yml"], "a spec from a URL is not supported"),
    (["--input-tar", "{tar}", "--pull"], "cannot use --input-tar and --pull together"),
    (["--input-tar", "{tar}", "--o", "{tar}"], "cannot be the same"),
    (["--input-tar", "{junk}"], "not a tar file"),
    (["--input-tar", "{missing}"], "no such file"),
    (["--o", "x.tar", "-f", "tar", "-f", "kernel+initrd"], "--o writes one output"),
    (["--o", "x.tar", "--dir", "out"], "--o cannot be used with --dir"),
    (["--o", "x.tar", "--name", "n"], "--o cannot be used with --name"),
    (["--o", "x", "-f", "kernel+initrd"], "format kernel+initrd makes 3 files"),
])
def test_refused_flag_combinations_say_why(tmp_path, capsys, extra, message):
    tar = tmp_path / "in.tar"
    with tarfile.open(tar, "w") as tf:
        tf.addfile(tarfile.TarInfo("empty"))
    (tmp_path / "junk").write_bytes(b"\x01" * 2048)
    spec = tmp_path / "s.yml"
    spec.write_text("init: []\n")
    argv = [a.format(tar=tar, junk=tmp_path / "junk", missing=tmp_path / "nope")
            for a in extra]
    code, err = run(["build", "--cache", str(tmp_path / "c"), *argv, str(spec)], capsys)
    assert code == 2, err
    assert message in err and err.count("\n") == 1


def test_input_tar_is_accepted_and_changes_nothing(tmp_path, layout, capsys):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    cache = str(tmp_path / "cache")
    assert main(["build", "-format", "tar", "-dir", str(tmp_path / "a"), "-cache", cache,
                 str(spec)]) == 0
    first = (tmp_path / "a" / "demo.tar").read_bytes()
    assert main(["build", "--format", "tar", "--dir", str(tmp_path / "b"), "--cache", cache,
                 "--input-tar", str(tmp_path / "a" / "demo.tar"), str(spec)]) == 0
    assert (tmp_path / "b" / "demo.tar").read_bytes() == first
    capsys.readouterr()

    # --o FILE: the one file, nothing beside it; --o -: the same bytes on stdout
    out = tmp_path / "single" / "image.tar"
    out.parent.mkdir()
    assert main(["build", "--o", str(out), "--cache", cache, str(spec)]) == 0  # default: tar
    assert out.read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["image.tar"]
    assert capsys.readouterr().out == f"{out}\n"


def test_o_dash_streams_the_output_to_stdout(tmp_path, layout, capsysbinary):  # noqa: F811
    spec = tmp_path / "demo.yml"
    spec.write_text(spec_text(layout))
    cache = str(tmp_path / "cache")
    assert main(["build", "-f", "tar", "-o", str(tmp_path / "a"), "--cache", cache,
                 str(spec)]) == 0
    capsysbinary.readouterr()
    assert main(["build", "--o", "-", "-q", "--cache", cache, str(spec)]) == 0
    assert capsysbinary.readouterr().out == (tmp_path / "a" / "demo.tar").read_bytes()
    assert main(["build", "-o", "-", "-f", "docker-context", "-q", "--cache", cache,
                 str(spec)]) == 0  # linuxkit's old spelling: -o - is stdout too
    streamed = capsysbinary.readouterr().out
    assert streamed[257:262] == b"ustar" and len(streamed) % 512 == 0
    assert sorted(p.name for p in (Path(cache) / "tmp").iterdir()) == []


def test_outputs_are_named_after_the_last_spec_as_linuxkit_names_them(tmp_path, layout):  # noqa: F811
    base, extra = tmp_path / "base.yml", tmp_path / "extra.yml"
    base.write_text(spec_text(layout))
    extra.write_text('files:\n  - path: etc/extra\n    contents: "x"\n')
    assert main(["build", "-f", "tar", "--dir", str(tmp_path / "out"), "--cache",
                 str(tmp_path / "cache"), str(base), str(extra)]) == 0
    assert (tmp_path / "out" / "extra.tar").is_file()
    assert not (tmp_path / "out" / "base.tar").exists()


# -- cache import of other tools' archives -------------------------------------------------------
def _archive(store, tmp_path: Path, written, index_entry: dict) -> Path:
    """An OCI archive of ``written`` whose index.json holds ``index_entry`` (as another tool
    wrote it)."""
    from composer import canonjson
    from composer.cache.maintain import write_archive

    manifest = canonjson.loads(written.manifest)
    files: dict = {f"blobs/sha256/{d['digest'].split(':')[1]}": store.blob_path(d["digest"])
                   for d in [written.descriptor, manifest["config"], *manifest["layers"]]}
    files["index.json"] = canonjson.pretty({"schemaVersion": 2, "manifests": [index_entry]})
    files["oci-layout"] = canonjson.compact({"imageLayoutVersion": "1.0.0"})
    path = tmp_path / "archive.tar"
    with open(path, "wb") as fh:
        write_archive(store, files, fh)
    return path


def test_import_reads_linuxkit_and_buildx_archives(tmp_path):
    from composer.cache.maintain import import_archive, list_refs
    from composer.images.cache import Cache
    from composer.oci.media import OCI_INDEX, OCI_MANIFEST
    from tests.fixtures.images import sample_image

    store = Cache(tmp_path / "store")
    written = sample_image(store)
    plain = {k: written.descriptor[k] for k in ("digest", "size")}
    # linuxkit's cache export: an image manifest labelled as an index, named by ref.name
    linuxkit = _archive(store, tmp_path, written, {
        **plain, "mediaType": OCI_INDEX,
        "annotations": {"org.opencontainers.image.ref.name": "docker.io/lk/app:1"}})
    cache = Cache(tmp_path / "c1")
    assert import_archive(cache, linuxkit) == ["docker.io/lk/app:1"]
    (info,) = list_refs(cache)
    assert info.complete and info.media_type == OCI_MANIFEST and info.digest == written.digest
    # docker buildx --output type=oci: ref.name is the tag, containerd's annotation the name
    buildx = _archive(store, tmp_path, written, {
        **plain, "mediaType": OCI_MANIFEST,
        "annotations": {"org.opencontainers.image.ref.name": "1",
                        "io.containerd.image.name": "docker.io/lk/app:1"}})
    cache = Cache(tmp_path / "c2")
    assert import_archive(cache, buildx) == ["docker.io/lk/app:1"]
    assert list_refs(cache)[0].complete


def test_a_cache_linuxkit_shares_is_locked_as_linuxkit_locks_it(tmp_path):
    """While index.json is being updated, linuxkit's lock (a POSIX record lock on .lock) is
    held too, so a linuxkit process sharing the directory waits."""
    import subprocess
    import sys

    from composer.images.cache import Cache

    cache = Cache(tmp_path / "shared")
    probe = ("import fcntl,sys\nf=open(sys.argv[1],'r+b')\n"
             "try:\n fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n"
             " print('held')\nelse:\n print('free')\n")

    def state() -> str:
        return subprocess.run([sys.executable, "-c", probe, str(cache.root / ".lock")],
                              capture_output=True, text=True, check=True).stdout.strip()

    with cache.locked():
        pass  # the directory exists now
    (cache.root / ".lock").touch()  # linuxkit has used it
    with cache.locked():
        assert state() == "held"
    assert state() == "free"
