"""One run of a notebook and profile at a time: a lock on its outputs, taken when the run starts.

Two runs of the same notebook and profile would write the same checkpoints, prediction
files, results file and report; the second one is refused at start with a message
naming the run that holds the lock. The lock is an advisory `flock` on a file under
`runs/locks/`, held by the process for as long as it lives: a killed run (even
`kill -9`) releases it with its process. `python -m minbert run` takes it before the
kernel starts and hands it to the kernel; a notebook run some other way (papermill,
JupyterLab) takes it itself when it starts, and keeps it while its kernel lives.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from minbert import paths

ENV = "MINBERT_RUN_CLAIMED"  # "<notebook>.<profile>" a parent process holds for this one
_held: dict[str, IO] = {}


class RunLockedError(RuntimeError):
    """Another run of the same notebook and profile is in progress."""


def lock_path(notebook: str, profile: str) -> Path:
    return paths.runs_dir() / "locks" / f"{notebook}.{profile}.lock"


def claim(notebook: str, profile: str) -> None:
    """Take the outputs of `notebook` on `profile` for this process, or raise RunLockedError."""
    key = f"{notebook}.{profile}"
    if key in _held or os.environ.get(ENV) == key:
        return
    path = lock_path(notebook, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunLockedError(f"{notebook} on profile {profile} is already running ({holder}); its "
                             f"checkpoints, predictions and report would be overwritten. Wait for it or "
                             f"stop it; the lock is {path}") from None
    handle.seek(0)
    handle.truncate()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {' '.join(sys.argv)}\n")
    handle.flush()
    _held[key] = handle


def release(notebook: str, profile: str) -> None:
    handle = _held.pop(f"{notebook}.{profile}", None)
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextmanager
def holding(notebook: str, profile: str) -> Iterator[dict[str, str]]:
    """Hold the lock for a block; yields the environment that tells a child process it holds it too."""
    claim(notebook, profile)
    try:
        yield {ENV: f"{notebook}.{profile}"}
    finally:
        release(notebook, profile)
