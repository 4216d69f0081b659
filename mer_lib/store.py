"""The run store: one folder (``MER_HOME``) that any number of workers share and that can be copied.

Layout (everything keyed by content hashes and component versions, never by paths or mtimes)::

    <home>/store.json                          layout version and the component versions
    <home>/data/...                            generated synthetic corpora
    <home>/cache/spectrograms/<front end>/     spectrograms by audio content hash
    <home>/models/<variant>/<model key>/       one trained model (mer_lib.training)
    <home>/attacks/<model key>/<result key>/   one attack result: table.csv + meta.json

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

import json
import time
from pathlib import Path

from .errors import CheckpointError
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
