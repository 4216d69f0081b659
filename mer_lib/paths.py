"""Where runs, caches and generated data live, and how files get there safely.

Everything the book computes (synthetic corpora, spectrogram cache, trained models, attack
tables) goes below one folder, the *home*: ``$MER_HOME`` if set, otherwise ``runs/`` in the
project root (the nearest folder above the current one holding ``_toc.yml``), otherwise
``./runs``. Chapters executed from ``book/`` and the CLI run from the root share it.

Files are written through :func:`atomic_path` (a temporary beside the target, renamed onto
it only when complete). Every temporary names its writer, host and process id::

    .<target name>.<kind>-<host tag>-<pid>-<random><suffix>      kind: tmp, partial or old

so that a later writer in the same folder can tell the leftovers of a killed process from the
work in progress of a live one: :func:`remove_dead_temporaries` deletes the former (only those
written on this host, whose process no longer runs) and never touches the latter.

Example:
    >>> import os; os.environ["MER_HOME"] = "/tmp/mer-doc"
    >>> str(mer_home())
    '/tmp/mer-doc'
    >>> temporary_prefix("model.pt", "tmp").startswith(".model.pt.tmp-")
    True
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import MerError

#: ``pandas.read_csv`` options that read back exactly the floats ``to_csv`` wrote (pandas < 3
#: needs the round-trip parser); the stored tables and histories are read with them.
EXACT_FLOATS = ({} if int(importlib.metadata.version("pandas").split(".")[0]) >= 3
                else {"float_precision": "round_trip"})

__all__ = ["StorageError", "mer_home", "atomic_path", "temporary_prefix",
           "remove_dead_temporaries"]

#: The kinds of temporaries this project writes (file, corpus being generated, corpus replaced).
TEMPORARY_KINDS = ("tmp", "partial", "old")
_TEMPORARY = re.compile(r"^\..+\.(?:tmp|partial|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-")
_SWEPT: set[str] = set()


class StorageError(MerError, OSError):
    """A file or folder cannot be read or written (permission denied, disk full, ...)."""


def mer_home() -> Path:
    """The folder below which every run, cache and generated corpus is stored."""
    env = os.environ.get("MER_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "mer_lib").is_dir():
            return folder / "runs"
    return here / "runs"


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_prefix(name: str, kind: str) -> str:
    """``.<name>.<kind>-<host tag>-<pid>-``: the start of a temporary's name (see above).

    >>> temporary_prefix("corpus", "partial").split("-")[-1]
    ''
    """
    if kind not in TEMPORARY_KINDS:
        raise ValueError(f"kind must be one of {TEMPORARY_KINDS}, got {kind!r}")
    return f".{name}.{kind}-{_host_tag()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but belongs to someone else, or cannot be asked: keep its files
    return True


def remove_dead_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries in ``folder`` whose writer (on this host) no longer runs.

    Temporaries of live processes, of other hosts (which cannot be asked) and files not
    named like a temporary are left alone. Returns what was removed.

    Example:
        >>> import subprocess, sys, tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
        ...                       capture_output=True, text=True).stdout.strip()
        >>> mine = d / (temporary_prefix("a.csv", "tmp") + "x.tmp")
        >>> gone = d / (temporary_prefix("a.csv", "tmp").replace(f"-{os.getpid()}-", f"-{dead}-") + "x.tmp")
        >>> _ = mine.write_text(""); _ = gone.write_text("")
        >>> [p.name == gone.name for p in remove_dead_temporaries(d)], mine.exists()
        ([True], True)
    """
    host = _host_tag()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or match["host"] != host or _pid_alive(int(match["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue  # another process cleaned it up first
        except OSError:
            continue  # not ours to delete (permissions): leave it
        removed.append(Path(entry.path))
    return removed


def _sweep_once(folder: Path) -> None:
    """:func:`remove_dead_temporaries` of ``folder``, at most once per process."""
    key = str(folder.absolute())
    if key not in _SWEPT:
        _SWEPT.add(key)
        remove_dead_temporaries(folder)


def _storage_error(action: str, path: Path, err: OSError) -> StorageError:
    return StorageError(f"cannot {action} {path}: {err.strerror or err}")


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only on success.

    A crash or kill inside the ``with`` block leaves ``target`` untouched (no half-written
    file is ever visible under the final name). The temporary is named after its writer
    (see the module docstring); the first atomic write of a process into a folder removes
    the temporaries that killed writers left there. A folder or file that cannot be
    created or written raises :class:`StorageError` naming the target.

    Example:
        >>> with atomic_path("/tmp/mer-doc-example.txt") as tmp:
        ...     _ = tmp.write_text("done")
        >>> Path("/tmp/mer-doc-example.txt").read_text()
        'done'
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_once(target.parent)
        fd, name = tempfile.mkstemp(prefix=temporary_prefix(target.name, "tmp"),
                                    suffix=suffix or ".tmp", dir=target.parent)
    except OSError as err:
        raise _storage_error("write", target, err) from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
        except OSError as err:
            if isinstance(err, MerError) or err.filename not in (None, str(tmp), tmp):
                raise
            raise _storage_error("write", target, err) from err
        try:
            os.replace(tmp, target)
        except OSError as err:
            raise _storage_error("write", target, err) from None
    finally:
        if tmp.exists():
            tmp.unlink()
