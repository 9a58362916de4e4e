"""The one way we run an external program (apt-get, qemu, ...).

A fixed environment (C locale, UTC) so tool output never depends on the caller's settings, a
clear ``error:`` when the tool is missing or fails, and no shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

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
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    argv = [str(a) for a in argv]
    argv[0] = find_tool(argv[0])
    try:
        proc = subprocess.run(argv, cwd=cwd, env=tool_env(env), timeout=timeout, input=input,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None, check=False)
    except subprocess.TimeoutExpired:
        raise ComposerError(f"{Path(argv[0]).name} timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        last = f": {detail[-1]}" if detail else ""
        raise ComposerError(f"{Path(argv[0]).name} exited with status {proc.returncode}{last}")
    return proc
