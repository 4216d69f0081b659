"""Where runs, caches and generated data live.

Everything the book computes (synthetic corpora, spectrogram cache, trained models, attack
tables) goes below one folder, the *home*: ``$MER_HOME`` if set, otherwise ``runs/`` in the
project root (the nearest folder above the current one holding ``_toc.yml``), otherwise
``./runs``. Chapters executed from ``book/`` and the CLI run from the root share it.

Example:
    >>> import os; os.environ["MER_HOME"] = "/tmp/mer-doc"
    >>> str(mer_home())
    '/tmp/mer-doc'
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only on success.

    A crash or kill inside the ``with`` block leaves ``target`` untouched (no half-written
    file is ever visible under the final name).

    Example:
        >>> with atomic_path("/tmp/mer-doc-example.txt") as tmp:
        ...     _ = tmp.write_text("done")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
