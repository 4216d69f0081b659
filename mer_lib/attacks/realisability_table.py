"""The stored realisability table: how much of a spectrogram attack survives as sound.

:func:`get_realisability` runs a spectrogram attack again on the first clips of a split,
realises each perturbation as audio (:func:`mer_lib.attacks.realisability.realisability`) and
stores the per-clip table in the run store (``<run_dir>/realisability/<model key>/<key>/``);
:data:`mer_lib.products.PRODUCTS` registers it as the ``realisability`` product.

Example:
    >>> from mer_lib.attacks import AttackConfig
    >>> identity = realisability_identity("m1", AttackConfig(epsilon=0.001), "test", "d1", 16)
    >>> identity["realisability"], identity["examples"]
    (2, 16)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..runtime import evaluating, resolve_device
from ..store import StoredTable, get_table, table_dir
from ..wave_excerpts import wave_excerpts
from .engine import attack
from .realisability import realisability

#: Bumped when :func:`get_realisability`'s table changes for the same inputs. 2: the overlap-add
#: and the waveform path's filterbank product round differently (:mod:`mer_lib.spectral_ops`).
REALISABILITY_VERSION = 2


def realisability_identity(model_key: str, config, split: str, data_identity: str, examples: int | None) -> dict:
    """What a stored realisability table is keyed by (``config``: the spectrogram attack)."""
    return {"realisability": REALISABILITY_VERSION, "model": str(model_key), "attack": config.to_dict(),
            "split": split, "data": str(data_identity), "examples": examples}


def get_realisability(trained, data, config, *, split: str = "test", examples: int | None = None,
                      run_dir: str | Path, device=None) -> StoredTable:
    """The stored realisability table of ``trained`` under the spectrogram attack ``config``
    (an :class:`~mer_lib.attacks.AttackConfig`) on the first ``examples`` clips of ``split``.

    The attack is run again on those clips (per-example and deterministic in eval mode, so its
    perturbations are those of the stored attack table), each perturbation is realised as
    audio and measured (:func:`mer_lib.attacks.realisability.realisability`). Columns: that
    function's plus ``variant, seed, model_key, mode, epsilon``.
    """
    identity = realisability_identity(trained.key, config, split, data.identity, examples)
    folder = table_dir(run_dir, "realisability", trained.key, identity)

    def compute() -> pd.DataFrame:
        excerpts = wave_excerpts(data, split, limit=examples)
        rows = torch.as_tensor(excerpts.rows)
        dev = resolve_device(device)
        with evaluating(trained.model, dev) as model:
            result = attack(model, data.x[rows].to(dev), data.emotions[rows].to(dev), config)
            table = realisability(model, excerpts, data.emotions[rows], result.x_adv, mean=data.mean, std=data.std)
        extra = {"variant": trained.config.variant, "seed": int(trained.config.seed),
                 "model_key": str(trained.key), "mode": config.mode, "epsilon": config.epsilon}
        for i, (name, value) in enumerate(extra.items()):
            table.insert(1 + i, name, value)
        return table

    what = f"realisability {trained.config.variant} seed {trained.config.seed} {config.mode} ({folder.name})"
    return get_table(folder, identity, compute, what=what,
                     meta={"variant": trained.config.variant, "seed": int(trained.config.seed)})
