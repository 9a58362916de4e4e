"""composer.tools.run: the one way a subprocess is started, and what it promises."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from composer import tools
from composer.errors import ComposerError

ROOT = Path(__file__).resolve().parents[2]


def _child_env(monkeypatch, **kwargs) -> dict[str, str]:
    proc = tools.run(["env"], capture=True, **kwargs)
    return dict(line.split("=", 1) for line in proc.stdout.decode().splitlines() if "=" in line)


def test_variables_that_change_tool_output_never_reach_the_tool(monkeypatch) -> None:
    for name in ("GZIP", "TAR_OPTIONS", "MTOOLSRC", "SOURCE_DATE_EPOCH", "E2FSPROGS_FAKE_TIME",
                 "LD_PRELOAD_NOT_REALLY", "LC_TIME", "XZ_DEFAULTS"):
        monkeypatch.setenv(name, "surprise")
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    monkeypatch.setenv("HOME", "/nonexistent-home")
    env = _child_env(monkeypatch)
    assert not {"GZIP", "TAR_OPTIONS", "MTOOLSRC", "SOURCE_DATE_EPOCH", "E2FSPROGS_FAKE_TIME",
                "LD_PRELOAD_NOT_REALLY", "LC_TIME", "XZ_DEFAULTS"} & set(env)
    assert env["LC_ALL"] == "C" and env["LANG"] == "C" and env["TZ"] == "UTC"
    assert env["HOME"] == "/nonexistent-home" and "PATH" in env


def test_extras_win_and_inherit_passes_the_users_environment(monkeypatch) -> None:
    monkeypatch.setenv("KEYRING_THING", "k")
    monkeypatch.setenv("LC_TIME", "de_DE.UTF-8")
    assert _child_env(monkeypatch, env={"TZ": "Pacific/Chatham"})["TZ"] == "Pacific/Chatham"
    inherited = _child_env(monkeypatch, inherit=True)
    assert inherited["KEYRING_THING"] == "k" and "LC_TIME" not in inherited
    only = _child_env(monkeypatch, env={"A": "1"}, inherit=True, base_env={})
    assert set(only) == {"A", "LC_ALL", "LANG", "TZ"}


def test_stdin_is_dev_null_unless_input_is_given() -> None:
    assert tools.run(["cat"], capture=True, timeout=30).stdout == b""
    assert tools.run(["cat"], capture=True, input=b"hi").stdout == b"hi"


def test_a_failure_names_the_command_and_how_it_ended() -> None:
    with pytest.raises(ComposerError) as status:
        tools.run(["sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 3", "arg two"],
                  capture=True)
    sh = tools.find_tool("sh")
    assert str(status.value) == (
        "sh exited with status 3: the reason (command: " + sh + " -c 'echo first >&2; echo "
        "'\"'\"'the reason'\"'\"' >&2; exit 3' 'arg two')")
    with pytest.raises(ComposerError, match="sh was killed by signal SIGKILL"):
        tools.run(["sh", "-c", "kill -9 $$"], capture=True)
    with pytest.raises(ComposerError, match=r"status 127 \(a program it runs was not found\)"):
        tools.run(["sh", "-c", "no-such-program-here"], capture=True)
    with pytest.raises(ComposerError, match="no-such-tool-xyz not found"):
        tools.run(["no-such-tool-xyz"])
    assert tools.run(["false"], check=False).returncode == 1


def test_umask_is_the_childs_own(tmp_path: Path) -> None:
    out = tools.run(["sh", "-c", "umask"], capture=True, umask=0o027).stdout.decode().strip()
    assert int(out, 8) == 0o027


def test_debug_logs_each_command(capsys) -> None:
    tools.set_debug(True)
    try:
        tools.run(["true", "a b"])
    finally:
        tools.set_debug(False)
    assert f"+ {tools.find_tool('true')} 'a b'" in capsys.readouterr().err
    tools.run(["true"])
    assert capsys.readouterr().err == ""


_SPAWNERS = {("subprocess", name) for name in ("run", "Popen", "call", "check_call",
                                                "check_output", "getoutput", "getstatusoutput")}
_SPAWNERS |= {("os", name) for name in ("system", "popen", "execv", "execve", "execvp",
                                        "execvpe", "execl", "execlp", "spawnv", "spawnvp",
                                        "posix_spawn", "posix_spawnp", "fork")}


def test_no_subprocess_bypasses_tools_run() -> None:
    offenders = []
    for path in sorted([*ROOT.glob("composer/**/*.py"), *ROOT.glob("outputs/**/*.py")]):
        if path == ROOT / "composer" / "tools.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            func = node.func if isinstance(node, ast.Call) else None
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and (func.value.id, func.attr) in _SPAWNERS):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                 f"{func.value.id}.{func.attr}")
            if isinstance(node, ast.ImportFrom) and node.module in ("subprocess", "os") and \
                    any((node.module, a.name) in _SPAWNERS for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module}")
    assert offenders == []
