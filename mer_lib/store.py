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

Damaged files: ``meta.json`` records the sha256 of ``table.csv``; a stored table whose files
cannot be read, do not match that checksum or miss rows is not stored (:func:`is_stored`):
:func:`get_table` moves it aside to ``<folder>.corrupt`` and computes it again, saying so on
stderr. A ``meta.json`` of another identity raises :class:`CheckpointError` naming it.

Example:
    >>> import tempfile
    >>> home = open_store(tempfile.mkdtemp())
    >>> json.loads((home / "store.json").read_text())["layout"] == LAYOUT_VERSION
    True
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import CheckpointError
from .locks import work_lock
from .paths import EXACT_FLOATS, atomic_path
from .versions import ENGINE_VERSION, FORMAT_VERSION, FRONTEND_VERSION, GENERATOR_VERSION

#: Bumped when the folder layout below changes.
LAYOUT_VERSION = 2


def component_versions() -> dict:
    """The version of every component whose output the store keeps."""
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
#: The field of ``meta.json`` holding the sha256 of ``table.csv``'s bytes (absent in older stores).
CHECKSUM = "sha256"


def identity_key(identity: dict) -> str:
    """Short sha256 (16 hex digits) of an identity dict (JSON with sorted keys)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def table_dir(run_dir: str | Path, kind: str, model_key: str, identity: dict) -> Path:
    """``<run_dir>/<kind>/<model key>/<key of identity>``: where one stored table lives."""
    return Path(run_dir) / kind / str(model_key) / identity_key(identity)


class _Damaged(Exception):
    """A stored table that cannot be trusted: ``path`` names the file at fault, ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _read(folder: Path) -> tuple[dict, pd.DataFrame]:
    """``(meta, table)`` of a stored folder, both checked; raises :class:`_Damaged` naming the file.

    ``meta.json`` must be a JSON object with an ``identity``; ``table.csv`` must match the
    checksum ``meta.json`` records for it (tables stored before checksums: parse, with the
    recorded number of rows).
    """
    try:
        meta = json.loads((folder / META).read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise _Damaged(folder / META, f"it cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("identity"), dict):
        raise _Damaged(folder / META, "it is not a stored result's metadata (no identity)")
    try:
        raw = (folder / TABLE).read_bytes()
    except OSError as exc:
        raise _Damaged(folder / TABLE, f"it cannot be read: {exc.strerror or exc}") from None
    digest = meta.get(CHECKSUM)
    if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
        raise _Damaged(folder / TABLE, f"its content does not match the checksum recorded in {folder / META}")
    try:
        table = pd.read_csv(io.BytesIO(raw), dtype={"example": str, "model_key": str}, **EXACT_FLOATS)
    except Exception as exc:   # noqa: BLE001 - whatever pandas makes of a garbled file, it cannot be used
        raise _Damaged(folder / TABLE, f"it cannot be parsed: {type(exc).__name__}: {exc}") from None
    rows = meta.get("rows")
    if rows is not None and rows != len(table):
        raise _Damaged(folder / TABLE, f"it has {len(table)} rows, {folder / META} records {rows}")
    return meta, table


def is_stored(folder: str | Path) -> bool:
    """True when ``folder`` holds a complete stored table whose files are intact.

    A damaged one (unreadable, truncated, not matching its checksum) is not stored: asking
    for it (:func:`get_table`) moves it aside and computes it again.
    """
    folder = Path(folder)
    if not (folder / META).is_file():
        return False
    try:
        _read(folder)
    except _Damaged:
        return False
    return True


def _checked(folder: Path, meta: dict, expected: dict | None) -> None:
    if expected is not None and meta.get("identity") != expected:
        raise CheckpointError(f"{folder / META}: the stored result {folder} was computed for "
                              f"{meta.get('identity')}, not for {expected}; delete the folder to "
                              f"recompute it")


def load_table(folder: str | Path, expected: dict | None = None) -> pd.DataFrame:
    """The table stored in ``folder``; with ``expected`` (its identity) checked first.

    Raises:
        CheckpointError: a file is missing or damaged, or the folder holds another identity
            (the message names the file).
    """
    folder = Path(folder)
    try:
        meta, table = _read(folder)
    except _Damaged as damage:
        raise CheckpointError(f"the stored result {folder} is damaged: {damage.path}: {damage.reason}; "
                              f"delete the folder to recompute it") from None
    _checked(folder, meta, expected)
    return table


def _set_aside(folder: Path, damage: _Damaged) -> None:
    """Move a damaged stored folder to ``<folder>.corrupt`` (replacing an older one), saying so on stderr."""
    aside = folder.with_name(folder.name + ".corrupt")
    try:
        if aside.exists():
            shutil.rmtree(aside)
        os.rename(folder, aside)
        where = f"moved it to {aside}"
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        where = "removed it"
    print(f"mer_lib: the stored result {folder} is damaged ({damage.path}: {damage.reason}); "
          f"{where} and computing it again", file=sys.stderr, flush=True)


def write_table(folder: Path, table: pd.DataFrame, meta: dict) -> None:
    """Write both files into a temporary sibling folder, then rename it into place (atomic).

    ``meta.json`` gets the checksum of ``table.csv`` (:data:`CHECKSUM`). A damaged table
    already in ``folder`` is moved aside first (with a line on stderr).
    """
    data = table.to_csv(index=False).encode("utf-8")
    meta = {**meta, CHECKSUM: hashlib.sha256(data).hexdigest()}
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, payload in ((TABLE, data), (META, json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))):
            with open(tmp / name, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
        if (folder / META).is_file():    # we hold the lock: a damaged table, or one being replaced
            try:
                _read(folder)
            except _Damaged as damage:
                _set_aside(folder, damage)
        if folder.exists():              # an incomplete leftover (no meta.json), or replaced
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
    once; a kill leaves either the complete table or nothing. A damaged table (a file
    unreadable, truncated, garbled or not matching the checksum in ``meta.json``) is moved
    aside to ``<folder>.corrupt`` under the lock and computed again, with a line on stderr
    naming the file; a ``meta.json`` of another identity raises :class:`CheckpointError`.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "demo" / "k"
        >>> get_table(folder, {"x": 1}, lambda: pd.DataFrame({"a": [1]}), what="demo").computed_now
        True
        >>> get_table(folder, {"x": 1}, lambda: 1 / 0, what="demo").table.a.tolist()
        [1]
    """
    stored = _stored_table(folder, identity)
    if stored is not None:
        return StoredTable(stored, folder, False)
    with work_lock(folder.with_name(folder.name + ".lock"), what=what):
        stored = _stored_table(folder, identity, repair=True)   # another worker finished it meanwhile
        if stored is not None:
            return StoredTable(stored, folder, False)
        table = compute()
        write_table(folder, table, {"identity": identity, "key": folder.name, "rows": len(table),
                                    **(meta or {})})
    return StoredTable(load_table(folder, identity), folder, True)


def _stored_table(folder: Path, identity: dict, *, repair: bool = False) -> pd.DataFrame | None:
    """The intact table of ``identity`` in ``folder``; None when absent or damaged (see
    :func:`get_table`). With ``repair`` (the caller holds the work lock) a damaged folder is set aside."""
    if not (folder / META).is_file():
        return None
    try:
        meta, table = _read(folder)
    except _Damaged as damage:
        if repair:
            _set_aside(folder, damage)
        return None
    _checked(folder, meta, identity)
    return table
