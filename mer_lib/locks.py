"""Inter-process locks: any number of workers may share one ``MER_HOME``.

One lock guards one unit of work (a model folder, an attack result, a synthetic corpus).
The lock is an OS file lock (``filelock``; ``flock`` on Linux and macOS), so the kernel
releases it the moment its holder dies: a ``kill -9`` never leaves a lock that blocks
anyone. Beside the lock file the holder writes who it is (host, pid, time); a worker that
finds such a note from a process that no longer runs says so once ("recovering a stale
lock") and carries on, and a worker that has to wait says whom it is waiting for.

Pattern (check, lock, check again, compute, write atomically)::

    with work_lock(folder / ".lock", what=f"model {key}"):
        if not (folder / "model.pt").is_file():
            train(...)

Example:
    >>> import tempfile, pathlib
    >>> lock = pathlib.Path(tempfile.mkdtemp()) / "unit.lock"
    >>> with work_lock(lock, what="an example"):
    ...     holder(lock)["pid"] == os.getpid()
    True
    >>> holder(lock) is None
    True
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .errors import MerError


class LockTimeoutError(MerError, TimeoutError):
    """Another process held a work lock for longer than the caller was willing to wait."""


def _owner_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


def holder(lock_path: str | Path) -> dict | None:
    """The note of the process that holds (or held and died with) ``lock_path``, if any."""
    try:
        return json.loads(_owner_path(Path(lock_path)).read_text())
    except (OSError, ValueError):
        return None


def _alive(note: dict) -> bool:
    if note.get("host") != socket.gethostname():
        return True  # cannot tell for another machine: assume it is alive
    try:
        os.kill(int(note["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def _describe(note: dict | None) -> str:
    if not note:
        return "another process"
    return f"process {note.get('pid')} on {note.get('host')} (since {note.get('since')})"


@contextmanager
def work_lock(lock_path: str | Path, *, what: str, timeout: float | None = None,
              log=None) -> Iterator[Path]:
    """Hold the lock ``lock_path`` for the duration of the block.

    Args:
        lock_path: the lock file (created with its folder when missing).
        what: what the lock guards, for messages ("model a2e seed 6", ...).
        timeout: seconds to wait for another holder (None: wait as long as it takes).
        log: where messages go (default: one line on stderr).

    Raises:
        LockTimeoutError: the lock was still held after ``timeout`` seconds; the message
            names the holder.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        note = holder(lock_path)
        log(f"waiting for {_describe(note)}, which is working on {what} ({lock_path})")
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise LockTimeoutError(
                f"{what} is still locked by {_describe(holder(lock_path))} after {timeout:g} s "
                f"({lock_path}); wait for it to finish, or stop that process") from None
    try:
        stale = holder(lock_path)
        if stale is not None and not _alive(stale):
            log(f"recovering a stale lock on {what}: {_describe(stale)} stopped without "
                f"releasing it (its finished files are kept; unfinished work is redone or resumed)")
        note = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        _owner_path(lock_path).write_text(json.dumps(note))
        yield lock_path
    finally:
        _owner_path(lock_path).unlink(missing_ok=True)
        lock.release()
