"""The spec loader: values, defaults, merging, and every error with its exact position."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.errors import ComposerError, Position, SpecError
from composer.spec import load_spec
from composer.spec.model import Container, File, ImageRef, Kernel, Spec
from composer.spec.yamlpos import MAX_BYTES

DIGEST = "sha256:" + "a" * 64


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path so specs can be named relatively and messages stay short."""
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str | bytes) -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def errors(*paths: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(list(paths))
    assert info.value.exit_status == 2
    return info.value.lines()


def one_error(text: str | bytes, name: str = "s.yml") -> str:
    lines = errors(write(name, text))
    assert len(lines) == 1, lines
    return lines[0]


MINIMAL = """\
kernel:
  image: linuxkit/kernel:6.6.71
  cmdline: "console=ttyS0"
init:
  - linuxkit/init:v1
  - linuxkit/runc:v1
onboot:
  - name: dhcpcd
    image: linuxkit/dhcpcd:v1
    command: ["/sbin/dhcpcd", "--nobackground"]
services:
  - name: getty
    image: linuxkit/getty:v1
    env:
     - INSECURE=true
files:
  - path: /etc/motd
    contents: "hello\\n"
    mode: "0644"
"""


# ---- valid specs ----------------------------------------------------------------------------

def test_minimal_spec() -> None:
    spec = load_spec([write("m.yml", MINIMAL)])
    assert spec == Spec(
        sources=("m.yml",),
        kernel=Kernel(image=ImageRef("linuxkit/kernel:6.6.71"), cmdline="console=ttyS0"),
        init=(ImageRef("linuxkit/init:v1"), ImageRef("linuxkit/runc:v1")),
        onboot=(Container("dhcpcd", ImageRef("linuxkit/dhcpcd:v1"),
                          command=("/sbin/dhcpcd", "--nobackground")),),
        services=(Container("getty", ImageRef("linuxkit/getty:v1"), env=("INSECURE=true",)),),
        files=(File("etc/motd", contents="hello\n", mode=0o644),),
    )
    assert spec.kernel is not None
    assert spec.kernel.image.pos == Position("m.yml", 2, 10)
    assert spec.init[1].pos == Position("m.yml", 6, 5)
    assert spec.onboot[0].pos == Position("m.yml", 8, 5)
    assert spec.services[0].image.pos == Position("m.yml", 13, 12)
    assert spec.files[0].pos == Position("m.yml", 17, 5)
    assert spec.warnings == ()


def test_defaults() -> None:
    spec = load_spec([write("d.yml", """\
kernel: {image: k}
services: [{name: s, image: i}]
files:
  - {path: a, contents: ""}
  - {path: b, directory: true}
  - {path: c, symlink: /a}
""")])
    assert spec.kernel == Kernel(ImageRef("k"), cmdline="", binary="kernel", tar="kernel.tar",
                                 ucode=None)
    svc = spec.services[0]
    assert (svc.command, svc.env, svc.extra) == (None, None, ())
    a, b, c = spec.files
    assert a == File("a", contents="")  # an empty file is still a regular file
    assert (a.mode, a.uid, a.gid, a.optional, a.directory) == (None, 0, 0, False, False)
    assert b == File("b", directory=True)
    assert c == File("c", symlink="/a")
    assert spec.init == spec.onboot == spec.onshutdown == ()


def test_no_kernel_is_allowed_and_empty_mapping_is_an_empty_spec() -> None:
    spec = load_spec([write("e.yml", "{}\n")])
    assert spec == Spec(sources=("e.yml",))
    assert load_spec([write("i.yml", "init: [busybox]\n")]).kernel is None


@pytest.mark.parametrize(("tar", "expected"), [('"none"', None), ('""', None),
                                               ("mods.tar", "mods.tar")])
def test_kernel_tar(tar: str, expected: str | None) -> None:
    spec = load_spec([write("k.yml", f"kernel: {{image: k, tar: {tar}, ucode: u.cpio, "
                                     "binary: bzImage}\n")])
    assert spec.kernel == Kernel(ImageRef("k"), binary="bzImage", tar=expected, ucode="u.cpio")


def test_image_refs_kept_as_written() -> None:
    refs = ["busybox", "localhost:5000/a/b:t", f"alpine@{DIGEST}", "oci:./layout:v1"]
    spec = load_spec([write("r.yml", "init:\n" + "".join(f"  - {r}\n" for r in refs))])
    assert [r.text for r in spec.init] == refs


def test_container_extra_keys_in_yaml_order() -> None:
    spec = load_spec([write("x.yml", """\
services: [{name: wheel, image: w}]
onboot:
  - name: sysctl
    readonly: true
    image: linuxkit/sysctl:v1
    capabilities: [CAP_SYS_ADMIN]
    binds.add: ["/etc:/etc"]
    net: host
    uid: 100
    additionalGids: [1, wheel]
    oomScoreAdj: -500
    sysctl: {net.ipv4.ip_forward: "1"}
    mounts: [{destination: /x, type: bind, source: /y, options: [rbind]}]
    resources: {memory: {limit: 1024}}
    runtime: {mkdir: [/var/x], bindNS: {net: /run/netns/x}}
""")])
    extra = spec.onboot[0].extra
    assert [k for k, _ in extra] == ["readonly", "capabilities", "binds.add", "net", "uid",
                                     "additionalGids", "oomScoreAdj", "sysctl", "mounts",
                                     "resources", "runtime"]
    assert dict(extra) == {
        "readonly": True, "capabilities": ["CAP_SYS_ADMIN"], "binds.add": ["/etc:/etc"],
        "net": "host", "uid": 100, "additionalGids": [1, "wheel"], "oomScoreAdj": -500,
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "mounts": [{"destination": "/x", "type": "bind", "source": "/y", "options": ["rbind"]}],
        "resources": {"memory": {"limit": 1024}},
        "runtime": {"mkdir": ["/var/x"], "bindNS": {"net": "/run/netns/x"}},
    }


def test_file_paths_normalised() -> None:
    spec = load_spec([write("p.yml", """\
files:
  - {path: //etc//x/./y/, contents: a}
  - {path: a/../b, contents: a}
  - {path: etc/, directory: true}
""")])
    assert [f.path for f in spec.files] == ["etc/x/y", "b", "etc"]


@pytest.mark.parametrize(("text", "mode"), [('"0644"', 0o644), ("0644", 0o644), ('"644"', 0o644),
                                            ('"4755"', 0o4755), ("0", 0), ('"07777"', 0o7777)])
def test_file_mode(text: str, mode: int) -> None:
    spec = load_spec([write("m.yml", f"files: [{{path: a, contents: x, mode: {text}}}]\n")])
    assert spec.files[0].mode == mode


def test_file_source_relative_to_spec_and_home(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = load_spec([write("sub/s.yml", """\
files:
  - {path: a, source: data/a.txt}
  - {path: b, source: ~/.ssh/id.pub, optional: true, uid: 1000, gid: root}
  - {path: c, source: /abs/c}
  - {path: d, metadata: yaml}
""")])
    a, b, c, d = spec.files
    assert a.source == str(tmp_path / "sub" / "data" / "a.txt")  # the file need not exist
    assert (b.source, b.optional, b.uid, b.gid) == (str(tmp_path / "home/.ssh/id.pub"), True,
                                                    1000, "root")
    assert (a.source_text, b.source_text) == ("data/a.txt", "~/.ssh/id.pub")
    assert c.source == "/abs/c"
    assert d.metadata == "yaml"


def test_trust_is_a_warning() -> None:
    spec = load_spec([write("t.yml", "init: [busybox]\ntrust:\n  org: [linuxkit]\n")])
    assert len(spec.warnings) == 1
    pos, msg = spec.warnings[0]
    assert pos == Position("t.yml", 2, 1)
    assert msg.startswith("trust: ignored")
    assert one_error("trust: {orgs: [x]}\n") == \
        "s.yml:1:9: trust: unknown key 'orgs' (did you mean 'org'?)"


def test_absolute_spec_path_is_reported_as_given(tmp_path: Path) -> None:
    path = tmp_path / "abs.yml"
    path.write_text("kernal: {image: k}\n")
    assert errors(path) == [f"{path}:1:1: unknown top-level key 'kernal' (did you mean "
                            "'kernel'?)"]


# ---- merging --------------------------------------------------------------------------------

def test_multi_file_merge() -> None:
    a = write("a.yml", """\
kernel: {image: k1, cmdline: "console=tty0", binary: vmlinuz, tar: none}
init: [i1]
onboot: [{name: x, image: o1}]
services: [{name: s1, image: s1}]
files: [{path: a, contents: a}]
""")
    b = write("b.yml", """\
kernel: {image: k2, cmdline: ""}
init: [i2]
onboot: [{name: x, image: o2}]
onshutdown: [{name: y, image: d}]
services: [{name: s2, image: s2}]
files: [{path: b, contents: b}]
""")
    c = write("c.yml", "kernel: {tar: mods.tar, ucode: u}\ninit: [i3]\n")
    spec = load_spec([a, b, c])
    assert spec.sources == ("a.yml", "b.yml", "c.yml")
    # image: last non-empty; cmdline "" does not override; tar: last set wins.
    assert spec.kernel == Kernel(ImageRef("k2"), cmdline="console=tty0", binary="vmlinuz",
                                 tar="mods.tar", ucode="u")
    assert spec.kernel.image.pos == Position("b.yml", 1, 17)
    assert [r.text for r in spec.init] == ["i1", "i2", "i3"]
    assert [(c.name, c.image.text) for c in spec.onboot] == [("x", "o1"), ("x", "o2")]
    assert [c.name for c in spec.onshutdown] == ["y"]
    assert [c.name for c in spec.services] == ["s1", "s2"]
    assert [f.path for f in spec.files] == ["a", "b"]
    # order matters: b then a
    assert load_spec([b, a]).kernel == Kernel(ImageRef("k1"), cmdline="console=tty0",
                                              binary="vmlinuz", tar=None)


def test_tar_explicitly_emptied_by_later_file() -> None:
    a = write("a.yml", "kernel: {image: k, tar: mods.tar}\n")
    b = write("b.yml", 'kernel: {tar: ""}\n')
    assert load_spec([a, b]).kernel == Kernel(ImageRef("k"), tar=None)


def test_duplicate_service_names_across_files() -> None:
    a = write("a.yml", "services:\n  - {name: getty, image: g}\n")
    b = write("b.yml", "services:\n  - {name: other, image: o}\n  - name: getty\n    image: g2\n")
    assert errors(a, b) == ["b.yml:3:11: duplicate service name 'getty' (first at a.yml:2:12)"]


def test_duplicate_service_name_within_a_file() -> None:
    assert one_error("services:\n  - {name: a, image: x}\n  - {name: a, image: y}\n") == \
        "s.yml:3:12: duplicate service name 'a' (first at s.yml:2:12)"


def test_kernel_without_image_after_merge() -> None:
    a = write("a.yml", "init: [busybox]\n")
    b = write("b.yml", "kernel:\n  cmdline: x\n")
    assert errors(a, b) == ["b.yml:1:1: kernel: missing required key 'image'"]
    c = write("c.yml", "kernel: {image: k}\n")
    assert load_spec([c, b]).kernel == Kernel(ImageRef("k"), cmdline="x")


# ---- schema errors, each with its exact position ---------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("servces: []\n", "1:1: unknown top-level key 'servces' (did you mean 'services'?)"),
    ("zzz: 1\n", "1:1: unknown top-level key 'zzz'"),
    ("kernel:\n  image: k\n  cmdlin: x\n",
     "3:3: kernel: unknown key 'cmdlin' (did you mean 'cmdline'?)"),
    ("services:\n  - name: a\n    Image: b\n",
     "2:5: services[0]: missing required key 'image'"),
    ("onboot:\n  - {name: a, image: b, capabilites: []}\n",
     "2:25: onboot[0]: unknown key 'capabilites' (did you mean 'capabilities'?)"),
    ("onboot:\n  - {name: a, image: b, mounts: [{destination: /x, opts: []}]}\n",
     "2:52: onboot[0].mounts[0]: unknown key 'opts' (did you mean 'options'?)"),
    ("files:\n  - {pth: a, contents: b}\n",
     "2:5: files[0]: missing required key 'path'"),
])
def test_unknown_and_missing_keys(text: str, expected: str) -> None:
    lines = errors(write("s.yml", text))
    assert f"s.yml:{expected}" in lines


def test_unknown_key_and_missing_key_both_reported() -> None:
    assert errors(write("s.yml", "files:\n  - {pth: a, contents: b}\n")) == [
        "s.yml:2:5: files[0]: missing required key 'path'",
        "s.yml:2:6: files[0]: unknown key 'pth' (did you mean 'path'?)",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("kernel: k\n", "1:9: kernel: expected a mapping, got a string"),
    ("kernel:\n", "1:8: kernel: expected a mapping, got null"),
    ("init: busybox\n", "1:7: init: expected a list, got a string"),
    ("init: [1]\n", "1:8: init[0]: expected a string, got an integer (quote it)"),
    ("kernel: {image: k, cmdline: [a]}\n", "1:29: kernel.cmdline: expected a string, got a list"),
    ("services: [{name: a, image: b, command: sh}]\n",
     "1:41: services[0].command: expected a list, got a string"),
    ("services: [{name: a, image: b, command: [sleep, 10]}]\n",
     "1:49: services[0].command[1]: expected a string, got an integer (quote it)"),
    ("services: [{name: a, image: b, env: [FOO]}]\n",
     "1:38: services[0].env[0]: expected NAME=VALUE, got 'FOO'"),
    ("services: [{name: a, image: b, env: ['=x']}]\n",
     "1:38: services[0].env[0]: expected NAME=VALUE, got '=x'"),
    ("services: [{name: yes, image: b}]\n",
     "1:19: services[0].name: expected a string, got a boolean (quote it)"),
    ("services: [{name: ../x, image: b}]\n",
     "1:19: services[0].name: invalid name '../x': use letters, digits, '_', '.' and '-', "
     "starting with a letter or digit"),
    ("services: [a]\n", "1:12: services[0]: expected a mapping, got a string"),
    ("onboot: [{name: a, image: b, readonly: 1}]\n",
     "1:40: onboot[0].readonly: expected true or false, got an integer"),
    ("onboot: [{name: a, image: b, oomScoreAdj: x}]\n",
     "1:43: onboot[0].oomScoreAdj: expected an integer, got a string"),
    ("onboot: [{name: a, image: b, sysctl: {a: 1}}]\n",
     "1:42: onboot[0].sysctl.a: expected a string, got an integer (quote it)"),
    ("onboot: [{name: a, image: b, uid: -1}]\n",
     "1:35: onboot[0].uid: -1 is out of range (0 to 4294967295)"),
    ("files: [{path: a, directory: yes please}]\n",
     "1:30: files[0].directory: expected true or false, got a string"),
    ("files: [{path: a, metadata: toml}]\n",
     "1:29: files[0].metadata: must be one of yaml, json; got 'toml'"),
    ("files: [{path: a, contents: x, uid: app}]\n",
     "1:37: files[0].uid: no container named 'app' to take the id of (containers: none)"),
    ("files: [{path: a, symlink: ''}]\n", "1:28: files[0].symlink: must not be empty"),
    ("volumes: [{name: v, format: oci}]\n",
     "1:29: volumes[0].format: format: oci needs an image (its index is written into the volume "
     "as an OCI image layout)"),
])
def test_wrong_types(text: str, expected: str) -> None:
    assert one_error(text) == f"s.yml:{expected}"


@pytest.mark.parametrize(("text", "expected"), [
    ("Busybox", "invalid reference 'Busybox': bad name component 'Busybox' (must be lowercase)"),
    ('"busybox:"', "invalid reference 'busybox:': bad tag ''"),
    ("busybox@sha256:abc", "invalid reference 'busybox@sha256:abc': bad digest 'sha256:abc'"),
    ("''", "must not be empty"),
])
def test_bad_image_refs(text: str, expected: str) -> None:
    assert one_error(f"kernel:\n  image: {text}\n") == f"s.yml:2:10: kernel.image: {expected}"
    assert one_error(f"services:\n  - name: a\n    image: {text}\n") == \
        f"s.yml:3:12: services[0].image: {expected}"


@pytest.mark.parametrize(("path", "expected"), [
    ("..", "'..' escapes the image root"),
    ("/../etc/passwd", "'/../etc/passwd' escapes the image root"),
    ("a/../../b", "'a/../../b' escapes the image root"),
    ("/", "'/' does not name anything below /"),
    ("./.", "'./.' does not name anything below /"),
    ("'a\\0b'", "must not contain a NUL character"),
])
def test_file_path_errors(path: str, expected: str) -> None:
    text = f'files:\n  - path: "{path}"\n    contents: x\n' if "\\0" in path else \
        f"files:\n  - path: {path}\n    contents: x\n"
    assert one_error(text) == f"s.yml:2:11: files[0].path: {expected}"


@pytest.mark.parametrize(("mode", "expected"), [
    ("644", 'ambiguous mode 644: YAML reads it as decimal; write an octal string such as "0644"'),
    ("0x1a4", 'expected an octal mode such as "0644", got 0x1a4'),
    ("999", 'expected an octal mode such as "0644", got 999'),
    ('"rw-r--r--"', "expected an octal mode such as \"0644\", got 'rw-r--r--'"),
    ('"0o644"', "expected an octal mode such as \"0644\", got '0o644'"),
    ('"010000"', "mode 010000 is larger than 07777"),
    ("true", 'expected an octal mode such as "0644", got a boolean'),
])
def test_file_mode_errors(mode: str, expected: str) -> None:
    assert one_error(f"files:\n  - {{path: a, contents: x, mode: {mode}}}\n") == \
        f"s.yml:2:34: files[0].mode: {expected}"


@pytest.mark.parametrize(("entry", "expected"), [
    ("{path: a}", "2:5: files[0]: a file needs one of contents, source, metadata, symlink or "
                  "directory: true"),
    ("{path: a, directory: false}", "2:5: files[0]: a file needs one of contents, source, "
                                    "metadata, symlink or directory: true"),
    ("{path: a, contents: x, source: y}", "2:28: files[0]: contents and source cannot be given "
                                          "together"),
    ("{path: a, metadata: yaml, source: y}", "2:31: files[0]: metadata and source cannot be "
                                             "given together"),
    ("{path: a, directory: true, contents: ''}", "2:32: files[0]: directory and contents "
                                                 "cannot be given together"),
    ("{path: a, symlink: b, contents: x}", "2:27: files[0]: symlink and contents cannot be "
                                           "given together"),
])
def test_file_kind_errors(entry: str, expected: str) -> None:
    assert one_error(f"files:\n  - {entry}\n") == f"s.yml:{expected}"


# ---- YAML-level errors ----------------------------------------------------------------------

def test_duplicate_keys_are_errors_everywhere() -> None:
    assert errors(write("s.yml", """\
kernel:
  image: a
  image: b
init: [x]
init: [y]
onboot:
  - {name: a, image: b, sysctl: {k: "1", k: "2"}}
""")) == [
        "s.yml:3:3: duplicate key 'image' (first at line 2 col 3)",
        "s.yml:5:1: duplicate key 'init' (first at line 4 col 1)",
        "s.yml:7:42: duplicate key 'k' (first at line 7 col 34)",
    ]


def test_duplicate_key_under_an_unknown_key_still_reported() -> None:
    assert errors(write("s.yml", "bogus: {a: 1, a: 2}\n")) == [
        "s.yml:1:1: unknown top-level key 'bogus'",
        "s.yml:1:15: duplicate key 'a' (first at line 1 col 9)",
    ]


def test_merge_keys_refused() -> None:
    # The merge key is dropped, so the image it would have brought is missing too.
    assert errors(write("s.yml", "kernel:\n  <<: {image: k}\n")) == [
        "s.yml:1:1: kernel: missing required key 'image'",
        "s.yml:2:3: YAML merge keys (<<) are not supported",
    ]


def test_non_string_keys_refused() -> None:
    assert one_error("? [a]\n: b\n") == "s.yml:1:3: mapping keys must be strings"


def test_alias_refused() -> None:
    text = "x: &img busybox\ninit:\n  - *img\n"
    assert one_error(text) == \
        "s.yml:3:5: YAML aliases are not supported (*img): write the value out"


def test_alias_bomb_refused_without_expanding() -> None:
    """A billion laughs: 9 levels of 9 aliases each; the first alias stops the load."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    assert one_error("\n".join(lines) + "\n") == \
        "s.yml:2:8: YAML aliases are not supported (*a): write the value out"


def test_anchor_without_alias_is_harmless() -> None:
    assert load_spec([write("s.yml", "init: &i [busybox]\n")]).init == (ImageRef("busybox"),)


@pytest.mark.parametrize(("text", "expected"), [
    ("kernel: !!python/object:os.system {}\n",
     "1:9: unsupported YAML tag !!python/object:os.system"),
    ("init: [!custom x]\n", "1:8: unsupported YAML tag !custom"),
    ("init: !!set {a: null}\n", "1:7: unsupported YAML tag !!set"),
])
def test_foreign_tags_refused(text: str, expected: str) -> None:
    assert one_error(text) == f"s.yml:{expected}"


@pytest.mark.parametrize(("text", "expected"), [
    ("kernel:\n  image: [a\n", "3:1: YAML syntax error: while parsing a flow sequence, "
                               "expected ',' or ']', but got '<stream end>'"),
    ("a: b: c\n", "1:5: YAML syntax error: mapping values are not allowed here"),
    ("init: [a]\n---\ninit: [b]\n", "2:1: YAML syntax error: expected a single document in the "
                                     "stream, but found another document"),
    ("\tkernel: {}\n", "1:1: YAML syntax error: while scanning for the next token, found "
                       "character '\\t' that cannot start any token"),
])
def test_yaml_syntax_errors(text: str, expected: str) -> None:
    assert one_error(text) == f"s.yml:{expected}"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    assert one_error(text) == "s.yml:1:1: empty spec file"


@pytest.mark.parametrize(("text", "what"), [("- a\n", "a list"), ("hello\n", "a string"),
                                            ("~\n", "null"), ("42\n", "an integer")])
def test_top_level_not_a_mapping(text: str, what: str) -> None:
    assert one_error(text) == \
        f"s.yml:1:1: the top level must be a mapping (kernel:, init:, ...), not {what}"


def test_binary_junk() -> None:
    assert one_error(b"kernel:\n  image: \x1f\x8b\x08\x00\xff\xfe") == \
        "s.yml:2:11: not a UTF-8 text file (byte 0x8b); is this a spec?"
    assert one_error(b"kernel:\n  image: k\x00\x01\n") == \
        "s.yml:2:11: not a text file: character U+0000 is not allowed in YAML; is this a spec?"


def test_utf8_bom_and_non_ascii_are_fine() -> None:
    spec = load_spec([write("s.yml", "\ufeffkernel: {image: k, cmdline: \"héllo\"}\n")])
    assert spec.kernel == Kernel(ImageRef("k"), cmdline="héllo")


def test_too_large() -> None:
    path = write("big.yml", b"#" * (MAX_BYTES + 1))
    assert errors(path) == [f"big.yml:1:1: too large for a spec file (over {MAX_BYTES} bytes)"]


def test_too_deep() -> None:
    assert one_error("a: " + "[" * 100 + "]" * 100 + "\n") == \
        "s.yml:1:67: nested more than 64 levels deep"
    # Deeper than PyYAML's composer could recurse: refused before it tries.
    assert one_error("a: " + "[" * 5000 + "]" * 5000 + "\n") == \
        "s.yml:1:67: nested more than 64 levels deep"


def test_directory_missing_and_unreadable() -> None:
    Path("dir.yml").mkdir()
    assert errors(Path("dir.yml")) == ["dir.yml:1:1: is a directory, not a spec file"]
    assert errors(Path("nope.yml")) == [
        "nope.yml:1:1: cannot read spec file: No such file or directory"]
    if os.geteuid() != 0:  # root reads anything
        locked = write("locked.yml", "init: [a]\n")
        locked.chmod(0)
        assert errors(locked) == ["locked.yml:1:1: cannot read spec file: Permission denied"]


def test_no_spec_files() -> None:
    with pytest.raises(SpecError) as info:
        load_spec([])
    assert info.value.lines() == ["error: no spec files given"]


def test_many_errors_across_files_at_once() -> None:
    a = write("a.yml", "kernel: {image: Bad}\ninit: [1]\nservices: [{name: s, image: x}]\n")
    b = write("b.yml", "\tbroken")
    c = write("c.yml", "services: [{name: s, image: y, env: [X]}]\n"
                       "files: [{path: .., contents: x}]\n")
    Path("d").mkdir()
    lines = errors(a, b, c, Path("d"))
    assert lines == [
        "a.yml:1:17: kernel.image: invalid reference 'Bad': bad name component 'Bad' "
        "(must be lowercase)",
        "a.yml:2:8: init[0]: expected a string, got an integer (quote it)",
        "b.yml:1:1: YAML syntax error: while scanning for the next token, found character "
        "'\\t' that cannot start any token",
        "c.yml:1:19: duplicate service name 's' (first at a.yml:3:19)",
        "c.yml:1:38: services[0].env[0]: expected NAME=VALUE, got 'X'",
        "c.yml:2:16: files[0].path: '..' escapes the image root",
        "d:1:1: is a directory, not a spec file",
    ]


# ---- @pkg: templates -------------------------------------------------------------------------

@pytest.fixture
def package_ref(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace composer.pkg.package.package_ref (maybe not written yet) with a recording fake."""
    calls: list[Path] = []

    def fake(directory: Path) -> str:
        calls.append(directory)
        if directory.name == "broken":
            raise ComposerError("no build.yml in package")
        return f"linuxkit/{directory.name}:0123abcd"

    import composer.pkg.package as pkg_module

    monkeypatch.setattr(pkg_module, "package_ref", fake, raising=False)
    return calls


def test_pkg_template_expanded(tmp_path: Path, package_ref: list[Path]) -> None:
    (tmp_path / "pkg" / "getty").mkdir(parents=True)
    (tmp_path / "pkg" / "init").mkdir(parents=True)
    spec = load_spec([write("specs/s.yml", """\
init: ["@pkg:../pkg/init"]
services:
  - name: getty
    image: "@pkg:../pkg/getty"
""")])
    assert spec.init[0] == ImageRef("linuxkit/init:0123abcd")
    assert spec.services[0].image.text == "linuxkit/getty:0123abcd"
    assert spec.services[0].image.pos == Position("specs/s.yml", 4, 12)
    # Relative to the spec's directory, not the cwd; passed as an absolute path.
    assert package_ref == [tmp_path / "pkg" / "init", tmp_path / "pkg" / "getty"]


def test_pkg_template_errors(tmp_path: Path, package_ref: list[Path]) -> None:
    (tmp_path / "broken").mkdir()
    assert errors(write("s.yml", """\
init:
  - "@pkg:missing"
  - "@pkg:"
  - "@pkg:broken"
""")) == [
        f"s.yml:2:5: init[0]: @pkg:missing: no such package directory {tmp_path / 'missing'}",
        "s.yml:3:5: init[1]: @pkg:: no such package directory (empty)",
        "s.yml:4:5: init[2]: @pkg:broken: no build.yml in package",
    ]
    assert package_ref == [tmp_path / "broken"]
