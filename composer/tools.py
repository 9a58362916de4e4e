"""THE way we run an external program (qemu, credential helpers, the rebuild of ``verify``,
and the disk tools to come); nothing else calls :mod:`subprocess`.

- **The child's environment is built, not inherited**: an allowlist (``PATH``, ``HOME``,
  ``TMPDIR``, ``TERM``, ``USER``, ``LOGNAME``) plus ``LC_ALL=C``, ``LANG=C`` and ``TZ=UTC``,
  then the caller's ``env``. Variables that silently change what a tool writes (``GZIP``,
  ``TAR_OPTIONS``, ``MTOOLSRC``, ``SOURCE_DATE_EPOCH``, ``E2FSPROGS_FAKE_TIME``, ``LD_PRELOAD``,
  ...) never reach it. A tool that must see the user's own environment (a credential helper
  talking to a keyring; it shapes no output bytes) asks with ``inherit=True``.
- **No shell, stdin from /dev/null** unless ``input`` is given, so a tool never waits on the
  terminal.
- ``--debug`` (:func:`set_debug`) logs ``+ COMMAND`` to stderr before each run.
- **A failure names the whole command** and says whether the tool was not found, was killed by
  a signal, timed out or exited with a status (with the last line of its stderr).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from composer.errors import ComposerError

ALLOWED_ENV = ("PATH", "HOME", "TMPDIR", "TERM", "USER", "LOGNAME")
FIXED_ENV = {"LC_ALL": "C", "LANG": "C", "TZ": "UTC"}

_debug = False


def set_debug(on: bool) -> None:
    """Log each command before it runs (the CLI's ``--debug``)."""
    global _debug
    _debug = on


def tool_env(extra: Mapping[str, str] | None = None, *, inherit: bool = False,
             base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the allowlist of ``base`` (default ``os.environ``) and the
    fixed locale and timezone, then ``extra``. With ``inherit``, all of ``base`` but ``LC_*``."""
    source = os.environ if base is None else base
    if inherit:
        env = {k: v for k, v in source.items() if not k.startswith("LC_")}
    else:
        env = {k: source[k] for k in ALLOWED_ENV if k in source}
    env.update(FIXED_ENV)
    env.update(extra or {})
    return env


def find_tool(name: str, hint: str = "") -> str:
    path = shutil.which(name)
    if path is None:
        raise ComposerError(f"{name} not found{': ' + hint if hint else ''}")
    return path


def command_line(argv: Sequence[str | Path]) -> str:
    return shlex.join(str(a) for a in argv)


def describe_failure(argv: Sequence[str | Path], returncode: int, stderr: bytes | None) -> str:
    """One line: the command, and how it ended."""
    if returncode < 0:
        try:
            how = f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    elif returncode == 127:
        how = "exited with status 127 (a program it runs was not found)"
    else:
        how = f"exited with status {returncode}"
    detail = (stderr or b"").decode(errors="replace").strip().splitlines()
    last = f": {detail[-1]}" if detail else ""
    return f"{Path(str(argv[0])).name} {how}{last} (command: {command_line(argv)})"


def spawn(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
          inherit: bool = False, stdout=None) -> subprocess.Popen[bytes]:
    """Start ``argv`` and return at once, for a program the caller supervises (``run qemu``):
    the same lookup, environment, /dev/null stdin and ``--debug`` line as :func:`run`."""
    words = [str(a) for a in argv]
    words[0] = find_tool(words[0])
    if _debug:
        print(f"+ {command_line(words)}", file=sys.stderr, flush=True)
    try:
        return subprocess.Popen(words, env=tool_env(env, inherit=inherit),
                                stdin=subprocess.DEVNULL, stdout=stdout)
    except OSError as exc:
        raise ComposerError(f"{Path(words[0]).name} could not be started: {exc.strerror} "
                            f"(command: {command_line(words)})") from None


def run(argv: Sequence[str | Path], *, capture: bool = False, check: bool = True,
        cwd: Path | None = None, timeout: float | None = None,
        env: Mapping[str, str] | None = None, inherit: bool = False,
        base_env: Mapping[str, str] | None = None,
        input: bytes | None = None, umask: int | None = None,
        stdout=None, feed: Callable[[BinaryIO], None] | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (its first word looked up on ``PATH``) and wait for it.

    ``capture``: collect stdout and stderr (else they go to ours, or stdout to ``stdout``).
    ``check``: a non-zero exit is a :class:`ComposerError` naming the command. ``umask``: the
    child's (``verify`` perturbs it). ``input``: bytes for its stdin (else /dev/null).
    ``base_env``: what the allowlist (or ``inherit``) draws from, instead of ``os.environ``.
    ``feed(pipe)``, if given, streams the program's standard input (a tar of a whole rootfs,
    say) without holding it in memory or on disk.
    """
    words = [str(a) for a in argv]
    words[0] = find_tool(words[0])
    if _debug:
        print(f"+ {command_line(words)}", file=sys.stderr, flush=True)
    if feed is not None:
        return _run_fed(words, feed, capture=capture, check=check, cwd=cwd,
                        env=tool_env(env, inherit=inherit, base=base_env))
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    try:
        proc = subprocess.run(
            words, cwd=cwd, env=tool_env(env, inherit=inherit, base=base_env), timeout=timeout,
            input=input, stdin=subprocess.DEVNULL if input is None else None,
            stdout=subprocess.PIPE if capture else stdout,
            stderr=subprocess.PIPE if capture else None, check=False,
            preexec_fn=preexec)
    except subprocess.TimeoutExpired:
        raise ComposerError(f"{Path(words[0]).name} timed out after {timeout}s "
                            f"(command: {command_line(words)})") from None
    except OSError as exc:
        raise ComposerError(f"{Path(words[0]).name} could not be started: {exc.strerror} "
                            f"(command: {command_line(words)})") from None
    if check and proc.returncode != 0:
        raise ComposerError(describe_failure(words, proc.returncode, proc.stderr))
    return proc


def _run_fed(argv: list[str], feed: Callable[[BinaryIO], None], *, capture: bool, check: bool,
             cwd: Path | None, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """Output goes to spool files, not pipes, so a chatty program cannot block our writes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                stdout=out if capture else None, stderr=err)
        stdin = proc.stdin
        assert stdin is not None  # stdin=PIPE
        try:
            try:
                feed(cast(BinaryIO, stdin))
                stdin.close()
            except BrokenPipeError:  # the program stopped reading: its status says why
                pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
        returncode = proc.wait()
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(argv, returncode, out.read() if capture else None,
                                           err.read())
    if check and returncode != 0:
        raise ComposerError(describe_failure(argv, returncode, done.stderr))
    return done
