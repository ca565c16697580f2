"""Processes of the stack: started detached in their own session, stopped with every descendant.

Flow runs leave the worker's process group (Prefect puts them in their own session), so stopping
a worker walks its process tree (psutil) rather than signalling the group only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import psutil

from pipeline.masking import scrub
from pipeline.ops.state import Proc, StackError

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # kept so this process can reap what it started


def console_script(name: str) -> str:
    """A console script of this venv (weed, prefect, mlflow), which need not be on PATH."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise StackError(f"{name} not found next to {sys.executable}; install the dev requirements")
    return str(path)


def spawn(cmd: list[str], env: dict[str, str], log: Path, marker: str, cwd: Path, url: str | None = None) -> Proc:
    """Start a detached process in its own session (so its group can be signalled), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    _CHILDREN[proc.pid] = proc
    return Proc(pid=proc.pid, log=str(log), marker=marker, url=url)


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.poll()
        return
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def process_running(pid: int, marker: str = "") -> bool:
    """Running (not a zombie) and, if `marker` is given, still the process we started (pid reuse)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            _reap(pid)
            return False
        return not marker or marker in " ".join(proc.cmdline())
    except psutil.ZombieProcess:
        _reap(pid)
        return False
    except psutil.Error:
        return False


def descendants(pid: int) -> set[int]:
    """All processes below `pid`, including flow runs that the worker put in their own sessions."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def _signal(pid: int, sig: int) -> None:
    """Signal the process group `pid` leads: every process started here leads its own session."""
    with suppress(ProcessLookupError):
        os.killpg(pid, sig)


def stop_process(pid: int, *, hard: bool = False, timeout: float = 15.0, second_term_after: float | None = None) -> None:
    """Stop `pid`, its process group and every descendant; idempotent.

    SIGTERM (again after `second_term_after` s if still alive), SIGKILL at `timeout`; then
    descendants that left the group (flow runs get their own session) are killed too.
    `hard` skips straight to SIGKILL, like a crashed host.
    """
    if not process_running(pid):
        return
    tree = descendants(pid)
    now = time.monotonic()
    deadline = now + timeout
    second_term = None if second_term_after is None else now + second_term_after
    if not hard:
        _signal(pid, signal.SIGTERM)
        while process_running(pid) and time.monotonic() < deadline:
            if second_term is not None and time.monotonic() >= second_term:
                _signal(pid, signal.SIGTERM)
                second_term = None
            tree |= descendants(pid)
            time.sleep(0.1)
    _signal(pid, signal.SIGKILL)
    for child in tree:
        if process_running(child):
            with suppress(psutil.Error):
                psutil.Process(child).kill()
    for p in [pid, *tree]:
        while process_running(p) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    _reap(pid)


def log_tail(log: str | Path, secrets_: list[str], lines: int = 20) -> str:
    """The last lines of a service's log for an error message, with the stack's secrets scrubbed."""
    try:
        text = "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"
    return scrub(text, secrets_)


def process_env(extra: dict[str, str], drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment without `drop`, plus `extra`: what a started service inherits."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **extra}
