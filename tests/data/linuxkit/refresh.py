"""Refresh the linuxkit test data from a copy of linuxkit's repository (run by hand, not in CI).

    python tests/data/linuxkit/refresh.py GITDIR

GITDIR is a git directory of github.com/linuxkit/linuxkit (bare is fine). It rewrites the
``linuxkit:`` section of packages.yml from every ``pkg/NAME``: the image config of the last stage
of ``pkg/NAME/Dockerfile`` (ENTRYPOINT, CMD, WORKDIR, ENV) and the ``config:`` of
``pkg/NAME/build.yml`` (the ``org.mobyproject.config`` label ``linuxkit pkg build`` sets), and
copies the specs listed in SPECS.txt (and the files they name) at the same paths. The ``other:``
section (images from elsewhere) is kept as it is. Prints the commit, for README.md.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


class _Loader(yaml.SafeLoader):
    """YAML as linuxkit's Go structs see a label: ``mode: 0666`` stays the string "0666"."""


def _int_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode):
    text = loader.construct_scalar(node)
    if isinstance(text, str) and len(text) > 1 and text[0] == "0" and text.isdigit():
        return text
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _int_or_text)


def git(gitdir: str, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={gitdir}", *args], check=True,
                          capture_output=True).stdout


def _instruction(line: str) -> tuple[str, str]:
    word, _, rest = line.strip().partition(" ")
    return word.upper(), rest.strip()


def _exec_form(text: str) -> list[str]:
    if text.startswith("["):
        return list(json.loads(text))
    return ["/bin/sh", "-c", text]


def dockerfile_config(text: str) -> dict:
    """ENTRYPOINT/CMD/WORKDIR/ENV of the last stage (continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", text)
    out: dict = {}
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, rest = _instruction(line)
        if word == "FROM":
            out = {}
        elif word == "ENTRYPOINT":
            out["entrypoint"] = _exec_form(rest)
            out.pop("cmd", None)  # Docker: a new ENTRYPOINT resets an inherited CMD
        elif word == "CMD":
            out["cmd"] = _exec_form(rest)
        elif word == "WORKDIR":
            out["workdir"] = rest
        elif word == "ENV":
            env = out.setdefault("env", [])
            parts = shlex.split(rest)
            if len(parts) >= 1 and "=" not in parts[0]:
                env.append(f"{parts[0]}={' '.join(parts[1:])}")
            else:
                env.extend(parts)
    return out


def packages(gitdir: str) -> dict:
    names = git(gitdir, "ls-tree", "--name-only", "HEAD", "pkg/").decode().split()
    out: dict = {"kernel": {}}  # built from kernel/, not pkg/: no config, no label
    for path in names:
        name = path.split("/", 1)[1]
        try:
            build = yaml.load(git(gitdir, "show", f"HEAD:{path}/build.yml"), _Loader) or {}
        except subprocess.CalledProcessError:
            continue
        try:
            entry = dockerfile_config(git(gitdir, "show", f"HEAD:{path}/Dockerfile").decode())
        except subprocess.CalledProcessError:
            entry = {}
        if build.get("config"):
            entry["config"] = build["config"]
        out[str(build.get("image", name))] = entry
    return out


def main(gitdir: str) -> None:
    commit = git(gitdir, "rev-parse", "HEAD").decode().strip()
    data_path = HERE / "packages.yml"
    text = data_path.read_text()
    head, _, rest = text.partition("\nlinuxkit:\n")
    _, _, other = rest.partition("\n# Images from elsewhere")
    body = yaml.safe_dump({"linuxkit": packages(gitdir)}, sort_keys=True,
                          default_flow_style=None, width=100)
    head = re.sub(r"at commit [0-9a-f]{40}", f"at commit {commit}", head)
    data_path.write_text(f"{head}\n{body}\n# Images from elsewhere{other}")
    for rel in (HERE / "SPECS.txt").read_text().split():
        dest = HERE / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(git(gitdir, "show", f"HEAD:{rel}"))
    print(commit)


if __name__ == "__main__":
    main(sys.argv[1])
