"""The run store: one folder (``MER_HOME``) that any number of workers share and that can be copied.

Layout (everything keyed by content hashes and component versions, never by paths or mtimes)::

    <home>/store.json                          layout version and the component versions
    <home>/data/...                            generated synthetic corpora
    <home>/cache/spectrograms/<front end>/     spectrograms by audio content hash
    <home>/models/<variant>/<model key>/       one trained model (mer_lib.training)
    <home>/attacks/<model key>/<result key>/   one attack result: table.csv + meta.json
    <home>/explanations/<model key>/<key>/     explanation metrics of one model (same format)

A model key hashes the training configuration, the variant, the trainer's format version and
the data identity (which covers the corpus content, the front-end and generator versions and
the model-ready tensors); a result key hashes the model key, the attack configuration, the
split, the data identity and the attack engine's version. So copying the folder to another
machine (new paths, new mtimes) finds every stored model and table, and a new component
version computes under new keys instead of reading stale results. Work units are guarded by
:func:`mer_lib.locks.work_lock` and written atomically.

Example:
    >>> import tempfile
    >>> home = open_store(tempfile.mkdtemp())
    >>> json.loads((home / "store.json").read_text())["layout"] == LAYOUT_VERSION
    True
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import CheckpointError
from .locks import work_lock
from .paths import atomic_path

#: Bumped when the folder layout below changes.
LAYOUT_VERSION = 2


def component_versions() -> dict:
    """The version of every component whose output the store keeps."""
    from .attacks.engine import ENGINE_VERSION
    from .data import FRONTEND_VERSION
    from .datasets.synthetic import GENERATOR_VERSION
    from .training import FORMAT_VERSION

    return {"frontend": FRONTEND_VERSION, "generator": GENERATOR_VERSION,
            "trainer": FORMAT_VERSION, "attack_engine": ENGINE_VERSION}


def open_store(home: str | Path) -> Path:
    """Check (or create) the store at ``home`` and return it as a Path.

    Raises:
        CheckpointError: ``home`` holds a store of another layout version (one line that
            says what to do).
    """
    home = Path(home)
    marker = home / "store.json"
    if marker.is_file():
        try:
            layout = json.loads(marker.read_text()).get("layout")
        except (OSError, ValueError, AttributeError):
            layout = "unreadable"
        if layout != LAYOUT_VERSION:
            raise CheckpointError(
                f"the run store {home} was written with layout version {layout}, this mer_lib uses "
                f"{LAYOUT_VERSION}; set MER_HOME (or --run-dir) to a new folder, or delete {home}")
        return home
    doc = {"layout": LAYOUT_VERSION, "components": component_versions(),
           "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    return home


# --------------------------------------------------------------------------------------
# Stored tables: one result = one folder with table.csv + meta.json, complete or absent
# --------------------------------------------------------------------------------------

TABLE, META = "table.csv", "meta.json"
#: pandas < 3 needs the round-trip float parser to read back exactly what it wrote.
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def identity_key(identity: dict) -> str:
    """Short sha256 (16 hex digits) of an identity dict (JSON with sorted keys)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def table_dir(run_dir: str | Path, kind: str, model_key: str, identity: dict) -> Path:
    """``<run_dir>/<kind>/<model key>/<key of identity>``: where one stored table lives."""
    return Path(run_dir) / kind / str(model_key) / identity_key(identity)


def is_stored(folder: str | Path) -> bool:
    """True when ``folder`` holds a complete stored table."""
    return (Path(folder) / META).is_file()


def load_table(folder: str | Path, expected: dict | None = None) -> pd.DataFrame:
    """The table stored in ``folder``; with ``expected`` (its identity) checked first."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
        table = pd.read_csv(folder / TABLE, dtype={"example": str, "model_key": str}, **_EXACT_FLOATS)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the stored result {folder} ({exc}); delete the folder "
                              f"to recompute it") from None
    if expected is not None and meta.get("identity") != expected:
        raise CheckpointError(f"the stored result {folder} was computed for {meta.get('identity')}, "
                              f"not for {expected}; delete the folder to recompute it")
    return table


def write_table(folder: Path, table: pd.DataFrame, meta: dict) -> None:
    """Write both files into a temporary sibling folder, then rename it into place (atomic)."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, text in ((TABLE, table.to_csv(index=False)), (META, json.dumps(meta, indent=2, sort_keys=True))):
            with open(tmp / name, "w", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        if folder.exists():              # an incomplete leftover (no meta.json); we hold the lock
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class StoredTable:
    """A stored table with where it lives and whether this call computed it."""

    table: pd.DataFrame
    path: Path
    computed_now: bool


def get_table(folder: Path, identity: dict, compute: Callable[[], pd.DataFrame], *, what: str,
              meta: dict | None = None) -> StoredTable:
    """The table stored in ``folder``, or ``compute()`` it under a work lock and store it.

    Check, lock, check again: any number of workers asking for the same table compute it
    once; a kill leaves either the complete table or nothing.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "demo" / "k"
        >>> get_table(folder, {"x": 1}, lambda: pd.DataFrame({"a": [1]}), what="demo").computed_now
        True
        >>> get_table(folder, {"x": 1}, lambda: 1 / 0, what="demo").table.a.tolist()
        [1]
    """
    if is_stored(folder):
        return StoredTable(load_table(folder, identity), folder, False)
    with work_lock(folder.with_name(folder.name + ".lock"), what=what):
        if is_stored(folder):             # another worker finished it while we waited
            return StoredTable(load_table(folder, identity), folder, False)
        table = compute()
        write_table(folder, table, {"identity": identity, "key": folder.name, "rows": len(table),
                                    **(meta or {})})
    return StoredTable(load_table(folder, identity), folder, True)
