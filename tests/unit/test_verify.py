"""``verify``: a perturbed rebuild from the record reproduces every output, or says what differs."""

from __future__ import annotations

import os

import pytest

from composer.build import BuildRequest, run_build
from composer.cli import main
from composer.errors import ComposerError
from composer.images.cache import Cache
from composer.images.write import export_layout, write_image
from composer.repro.verify import perturbed_env
from outputs import FORMATS
from tests.golden.inputs import IMAGES, NAME, layer, make_inputs

BASIC = ("tar", "kernel+initrd", "tar-kernel-initrd")


def build(tmp_path, formats, spec=None, cache=None, name=NAME):
    spec = spec or make_inputs(tmp_path / "inputs")
    req = BuildRequest(specs=(spec,), formats=tuple(formats), output_dir=tmp_path / "out",
                       name=name, arch="amd64", cache_dir=cache or tmp_path / "cache",
                       offline=True, source_date_epoch=1700000000)
    return spec, {p.name: p for p in run_build(req, log=lambda _m: None)}


def every_format(tmp_path) -> tuple:
    """All registered formats that one build can make together (vhd and dynamic-vhd, iso-bios
    and kernel+iso write the same file); the ISO ones only where their bootloaders are had."""
    from tests.golden.regenerate import one_build

    try:
        build(tmp_path / "probe", [f for f in FORMATS if f.startswith("iso-")])
        return tuple(one_build(FORMATS))
    except ComposerError as exc:
        if os.environ.get("CI") == "true":
            raise
        print(f"ISO formats left out: {exc}")
        return tuple(one_build(f for f in FORMATS if not f.startswith("iso-")))


def test_verify_reproduces_every_format(tmp_path, capsys):
    formats = every_format(tmp_path)
    spec, out = build(tmp_path, formats)
    assert main(["verify", str(out[f"{NAME}.build.json"]), str(spec)]) == 0
    text = capsys.readouterr().out
    assert "DIFFERS" not in text and text.rstrip().endswith("verified")
    assert text.count(": reproduced (") >= len(out) - 2
    # the same through SHA256SUMS
    assert main(["verify", str(out[f"{NAME}.SHA256SUMS"]), str(spec)]) == 0


def test_one_changed_input_byte_fails_with_a_diff(tmp_path, capsys):
    spec, out = build(tmp_path, BASIC)
    # the app image in the layout now differs in one byte of one file, under the same tag
    store = Cache(tmp_path / "store2")
    changed = [layer({"bin/app": b"#!/bin/sh\necho apq\n",
                      "lib/apk/db/installed": b"P:musl\nV:1\n"})]
    assert changed != IMAGES["app"]
    written = write_image(store, changed, config={"Cmd": ["/bin/app"]}, compress=False)
    export_layout(store, written, spec.parent / "oci", "app")
    assert main(["verify", "--json", str(out[f"{NAME}.build.json"]), str(spec)]) == 1
    from composer import canonjson

    doc = canonjson.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    results = {o["name"]: o for o in doc["rebuild"]["outputs"]}
    assert results[f"{NAME}-kernel"]["ok"] and results[f"{NAME}-cmdline"]["ok"]
    tar = results[f"{NAME}.tar"]
    assert not tar["ok"]
    wheres = {d["where"] for d in tar["diff"]["differences"]}
    assert "containers/onboot/000-app/lower/bin/app" in wheres
    initrd = results[f"{NAME}-initrd.img"]["diff"]
    assert initrd["format"] == "gzip(cpio)" and initrd["note"] == "the content differs"
    assert any(d.startswith("images[2].digest") for d in doc["rebuild"]["record_differences"])
    assert main(["verify", str(out[f"{NAME}.build.json"]), str(spec)]) == 1
    text = capsys.readouterr().out
    assert f"{NAME}.tar: DIFFERS" in text and text.rstrip().endswith("NOT verified")


def test_changed_spec_is_refused(tmp_path, capsys):
    spec, out = build(tmp_path, ("tar",))
    spec.write_text(spec.read_text().replace("golden=1", "golden=2"))
    assert main(["verify", str(out[f"{NAME}.build.json"]), str(spec)]) == 1
    assert "differs from the recorded spec golden.yml" in capsys.readouterr().err


def registry_spec(tmp_path) -> tuple:
    """A user cache holding a never-pushed registry image, and a spec naming it by tag."""
    user = Cache(tmp_path / "user-cache")
    written = write_image(user, IMAGES["init"], compress=False)
    user.tag("registry.invalid/demo/init:1", written.descriptor)
    spec = tmp_path / "reg.yml"
    spec.write_text("init:\n  - registry.invalid/demo/init:1\n")
    return user, spec


def test_registry_images_are_pinned_by_digest_and_copied_from_a_cache(tmp_path, capsys):
    user, spec = registry_spec(tmp_path)
    _, out = build(tmp_path, ("tar",), spec=spec, cache=user.root, name="reg")
    record = str(out["reg.build.json"])
    # the tag moves on afterwards: verify still rebuilds from the recorded digest
    moved = write_image(user, IMAGES["app"], compress=False)
    user.tag("registry.invalid/demo/init:1", moved.descriptor)
    index_before = (user.root / "index.json").read_bytes()
    # no SPEC argument: the record's copy of the spec is used
    assert main(["verify", record, "--cache", str(user.root), "--offline"]) == 0, \
        capsys.readouterr()
    assert (user.root / "index.json").read_bytes() == index_before  # the cache is only read
    capsys.readouterr()
    assert main(["verify", record, "--offline"]) == 1
    assert "not in the cache (offline)" in capsys.readouterr().err


def test_specs_from_the_record_with_relative_layouts_say_to_pass_the_specs(tmp_path, capsys):
    _, out = build(tmp_path, ("tar",))
    assert main(["verify", str(out[f"{NAME}.build.json"])]) == 1
    text = capsys.readouterr().out
    assert "rebuild failed" in text and "give the spec files too" in text


def test_perturbed_environment_differs_in_every_setting():
    base = {"TZ": "UTC", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "5",
            "LC_TIME": "de_DE", "HOME": "/root"}
    env, umask = perturbed_env(base)
    assert env["TZ"] != "UTC" and env["LC_ALL"] != "C.UTF-8" and env["PYTHONHASHSEED"] != "0"
    assert "SOURCE_DATE_EPOCH" not in env and "LC_TIME" not in env and env["HOME"] == "/root"
    mask = os.umask(0o022)
    os.umask(mask)
    assert umask != mask
    again, _ = perturbed_env(env)
    assert again["TZ"] != env["TZ"] and again["PYTHONHASHSEED"] != env["PYTHONHASHSEED"]


@pytest.mark.parametrize("bad", ["nonexistent.build.json"])
def test_missing_record_is_one_line_error(tmp_path, capsys, bad):
    assert main(["verify", str(tmp_path / bad)]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_a_build_with_an_overridden_bootloader_is_verified_with_the_file(tmp_path, capsys):
    """The record has the override's digest only; verify needs the file, and checks it."""
    import hashlib

    from outputs import bootloaders
    from outputs.bootloaders import DEFAULTS

    try:
        ldlinux = bootloaders.load(DEFAULTS["ldlinux.c32"])
    except ComposerError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"bootloaders unavailable: {exc}")
        pytest.skip(f"bootloaders unavailable: {exc}")
    cfg = tmp_path / "my-ldlinux.c32"
    cfg.write_bytes(ldlinux + b"\0" * 512)
    digest = "sha256:" + hashlib.sha256(cfg.read_bytes()).hexdigest()
    spec = make_inputs(tmp_path / "inputs")
    req = BuildRequest(specs=(spec,), formats=("iso-bios",), output_dir=tmp_path / "out",
                       name=NAME, arch="amd64", cache_dir=tmp_path / "cache", offline=True,
                       source_date_epoch=1700000000,
                       output_options={"bootloaders": (
                           bootloaders.Pin("ldlinux.c32", str(cfg), digest),)})
    record = {p.name: p for p in run_build(req, log=lambda _m: None)}[f"{NAME}.build.json"]
    # without the file: a clear answer, no rebuild
    assert main(["verify", str(record), str(spec)]) == 1
    assert "--bootloader ldlinux.c32=PATH" in capsys.readouterr().err
    # a different file under that role: refused by the rebuild's own digest check
    other = tmp_path / "other.c32"
    other.write_bytes(b"not it")
    assert main(["verify", str(record), str(spec), "--bootloader", f"ldlinux.c32={other}"]) == 1
    assert "NOT verified" in capsys.readouterr().out
    # the same file: reproduced
    assert main(["verify", str(record), str(spec), "--bootloader", f"ldlinux.c32={cfg}"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("verified")
