"""The one way we run an external program (apt-get, qemu, ...).

A fixed environment (C locale, UTC) so tool output never depends on the caller's settings, a
clear ``error:`` when the tool is missing or fails, and no shell.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    env.update({"LC_ALL": "C", "LANG": "C", "TZ": "UTC"})
    env.update(extra or {})
    return env


def find_tool(name: str, hint: str = "") -> str:
    path = shutil.which(name)
    if path is None:
        raise ComposerError(f"{name} not found{': ' + hint if hint else ''}")
    return path


def run(argv: Sequence[str | Path], *, capture: bool = False, check: bool = True,
        cwd: Path | None = None, timeout: float | None = None,
        env: dict[str, str] | None = None,
        input: bytes | None = None,
        feed: Callable[[BinaryIO], None] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``; ``feed(pipe)``, if given, streams the program's standard input (a tar of
    a whole rootfs, say) without holding it in memory or on disk."""
    argv = [str(a) for a in argv]
    argv[0] = find_tool(argv[0])
    if feed is not None:
        return _run_fed(argv, feed, capture=capture, check=check, cwd=cwd, env=env)
    try:
        proc = subprocess.run(argv, cwd=cwd, env=tool_env(env), timeout=timeout, input=input,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None, check=False)
    except subprocess.TimeoutExpired:
        raise ComposerError(f"{Path(argv[0]).name} timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        _failed(argv, proc)
    return proc


def _failed(argv: list[str], proc: subprocess.CompletedProcess[bytes]) -> None:
    detail = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
    last = f": {detail[-1]}" if detail else ""
    raise ComposerError(f"{Path(argv[0]).name} exited with status {proc.returncode}{last}")


def _run_fed(argv: list[str], feed: Callable[[BinaryIO], None], *, capture: bool, check: bool,
             cwd: Path | None, env: dict[str, str] | None) -> subprocess.CompletedProcess[bytes]:
    """Output goes to spool files, not pipes, so a chatty program cannot block our writes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=tool_env(env), stdin=subprocess.PIPE,
                                stdout=out if capture else None, stderr=err)
        try:
            try:
                feed(proc.stdin)
                proc.stdin.close()
            except BrokenPipeError:  # the program stopped reading: its status says why
                pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        returncode = proc.wait()
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(argv, returncode, out.read() if capture else None,
                                           err.read())
    if check and returncode != 0:
        _failed(argv, done)
    return done
