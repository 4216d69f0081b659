"""Stored attack results: one folder per (trained model, attack, split, data, engine version).

:func:`get_attack` attacks a trained model on one split and stores the tidy table of
:meth:`~mer_lib.attacks.AttackResult.to_frame` (plus identifying columns) as one unit::

    <run_dir>/attacks/<model key>/<result key>/table.csv   the table
    <run_dir>/attacks/<model key>/<result key>/meta.json   what it was computed for

The result key hashes the model key, the attack configuration, the split, the data identity
and :data:`~mer_lib.attacks.engine.ENGINE_VERSION` (:func:`result_identity`), so a copied
store finds its results and a new engine version never reads an old table. Both files are
written into a temporary sibling folder that is renamed into place at the end: a result is
either complete or absent, whatever is killed when. Asking again returns the stored table
without recomputing; a lock (:func:`mer_lib.locks.work_lock`) makes concurrent workers
compute each result once. :func:`run_attack` returns just the table.

Example (``trained`` from :mod:`mer_lib.training`, ``data`` a :class:`~mer_lib.data.MerTensors`)::

    table = run_attack(trained, data, AttackConfig(epsilon=0.001), run_dir="runs")
    table.groupby("variant").mae_adv.mean()
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..data import MerTensors
from ..errors import ParameterError
from ..runtime import evaluating, resolve_device
from ..stack import stack_models
from ..store import StoredTable, get_table, identity_key, is_stored, load_table, table_dir
from .config import AttackConfig
from .engine import ENGINE_VERSION, attack
from .stacked import stacked_attack



def result_identity(model_key: str, config: AttackConfig, split: str, data_identity: str) -> dict:
    """What a stored result is keyed by.

    Example:
        >>> result_identity("m1", AttackConfig(epsilon=0.01), "test", "d1")["engine"] == ENGINE_VERSION
        True
    """
    return {"engine": ENGINE_VERSION, "model": str(model_key), "attack": config.to_dict(),
            "split": split, "data": str(data_identity)}


def result_key(identity: dict) -> str:
    """Short sha256 (16 hex digits) of a :func:`result_identity`."""
    return identity_key(identity)


def result_dir(run_dir: str | Path, model_key: str, config: AttackConfig, split: str,
               data_identity: str) -> Path:
    """The folder of one result (it exists only once the result is complete)."""
    return table_dir(run_dir, "attacks", model_key, result_identity(model_key, config, split, data_identity))


#: Reading a stored result (:func:`mer_lib.store.load_table`).
load_result = load_table


def describe(config: AttackConfig) -> str:
    """Short description for logs: ``projected eps=0.001`` (a waveform attack describes itself).

    >>> describe(AttackConfig(epsilon=0.001))
    'projected eps=0.001'
    """
    if hasattr(config, "describe"):
        return config.describe()
    return f"{config.mode} eps={config.epsilon:g}"


def get_attack(trained, data: MerTensors, config: AttackConfig, *, split: str = "test",
               run_dir: str | Path, batch_size: int | None = None,
               device: str | torch.device | None = None, progress: bool = True) -> StoredTable:
    """The stored result of attacking ``trained`` on ``split``, computed when missing.

    ``trained`` is a :class:`mer_lib.training.TrainedModel` (anything with ``.model``,
    ``.key`` and ``.config.variant`` / ``.config.seed``). The model is put in eval mode for
    the attack (its previous mode and device are restored afterwards). ``device`` defaults
    to CUDA when available. The table is that of
    :meth:`~mer_lib.attacks.AttackResult.to_frame` plus the columns ``variant, seed,
    model_key, split, mode, epsilon, norm, step_size``.
    """
    _check(config, data, split)
    return _stored(trained, data, config, split, run_dir,
                   lambda: _compute(trained, data, config, split, batch_size, device, progress))


def _check(config, data: MerTensors, split: str) -> None:
    if not isinstance(config, AttackConfig):
        raise ParameterError(f"config must be an AttackConfig, got {type(config).__name__}")
    if split not in data.split:
        raise ParameterError(f"split must be one of {list(data.split)}, got {split!r}")


def _stored(trained, data: MerTensors, config: AttackConfig, split: str, run_dir, compute,
            **meta) -> StoredTable:
    """The stored result of ``trained`` (``compute()`` it when missing): its folder, identity and meta."""
    identity = result_identity(trained.key, config, split, data.identity)
    folder = result_dir(run_dir, trained.key, config, split, data.identity)
    what = f"attack {trained.config.variant} seed {trained.config.seed} {describe(config)} ({folder.name})"
    return get_table(folder, identity, compute, what=what,
                     meta={"variant": trained.config.variant, "seed": int(trained.config.seed), **meta})


def _compute(trained, data, config, split, batch_size, device, progress) -> pd.DataFrame:
    x, y, _ = data.subset(split)
    device = resolve_device(device)
    with evaluating(trained.model, device) as model:
        result = attack(model, x.to(device), y.to(device), config, batch_size=batch_size, progress=progress)
    return _frame(trained, result, data, config, split)


def _frame(trained, result, data: MerTensors, config: AttackConfig, split: str) -> pd.DataFrame:
    """The stored table of one model's :class:`~mer_lib.attacks.AttackResult` on ``split``."""
    ids = [data.ids[i] for i in data.split[split]]
    table = result.to_frame(ids, data.mean, data.std)
    extra = {"variant": trained.config.variant, "seed": int(trained.config.seed),
             "model_key": str(trained.key), "split": split, "mode": config.mode,
             "epsilon": config.epsilon, "norm": config.norm, "step_size": config.step_size}
    for i, (name, value) in enumerate(extra.items()):
        table.insert(1 + i, name, value)
    return table


def get_stacked_attacks(models, data: MerTensors, config: AttackConfig, *, split: str = "test",
                        run_dir: str | Path, device: str | torch.device | None = None) -> list[StoredTable]:
    """:func:`get_attack` of several trained models of one architecture, the missing ones in one pass.

    The models whose result is not stored yet are attacked together as one model stack
    (:func:`mer_lib.attacks.stacked.stacked_attack`: per-model, per-example early stopping, each model
    its own copy of the split) and each result is stored exactly where and as
    :func:`get_attack` stores it — the same key, because a stacked attack equals the single
    attacks up to float rounding (tested in float64), as a run on another device does. With
    fewer than two missing models this is :func:`get_attack` per model.

    Raises:
        StackError: the missing models do not share an architecture and width.
    """
    _check(config, data, split)
    models = list(models)
    missing = [i for i, tm in enumerate(models)
               if not is_stored(result_dir(run_dir, tm.key, config, split, data.identity))]
    computed: dict[int, pd.DataFrame] = {}
    if len(missing) >= 2:

        device = resolve_device(device)
        stack = stack_models([models[i].model for i in missing]).to(device).eval()
        x, y, _ = data.subset(split)
        results = stacked_attack(stack, x.to(device), y.to(device), config)
        computed = {i: _frame(models[i], res, data, config, split) for i, res in zip(missing, results)}
    return [_stored(tm, data, config, split, run_dir, lambda table=computed[i]: table, stacked=True)
            if i in computed else
            get_attack(tm, data, config, split=split, run_dir=run_dir, device=device, progress=False)
            for i, tm in enumerate(models)]


def run_attack(trained, data: MerTensors, config: AttackConfig, *, split: str = "test",
               run_dir: str | Path, batch_size: int | None = None,
               device: str | torch.device | None = None, progress: bool = True) -> pd.DataFrame:
    """The table of :func:`get_attack` (computed when missing, else read from the store)."""
    return get_attack(trained, data, config, split=split, run_dir=run_dir, batch_size=batch_size,
                      device=device, progress=progress).table


def perturbation_sizes(table: pd.DataFrame) -> pd.DataFrame:
    """Per model variant (in first-seen order) of an attack table: the kept perturbations' size
    over all attacked clips of all its seeds. Columns: ``snr`` (median SNR in dB over the clips
    with a perturbation: a zero perturbation has no SNR), ``linf`` (largest L-inf), ``l2`` (median
    L2), ``iterations`` (median), ``converged`` and ``zero`` (% of clips that converged / kept
    no perturbation).

    Example:
        >>> t = pd.DataFrame({"variant": ["a2e", "a2e"], "snr_db": [40.0, float("inf")], "linf": [1e-3, 0.0],
        ...                   "l2": [0.5, 0.0], "iterations": [3, 0], "converged": [True, True]})
        >>> perturbation_sizes(t).loc["a2e"].tolist()
        [40.0, 0.001, 0.25, 1.5, 100.0, 50.0]
    """
    missing = [c for c in ("variant", "snr_db", "linf", "l2", "iterations", "converged") if c not in table.columns]
    if missing:
        raise ParameterError(f"table lacks column(s) {missing}; expected an attack table (run_attack)")
    rows = {}
    for variant, part in table.groupby("variant", sort=False):
        finite = part.snr_db[part.snr_db.abs() != float("inf")].dropna()
        rows[variant] = {"snr": finite.median() if len(finite) else float("nan"), "linf": part.linf.max(),
                         "l2": part.l2.median(), "iterations": part.iterations.median(),
                         "converged": 100 * part.converged.mean(), "zero": 100 * (part.l2 == 0).mean()}
    return pd.DataFrame.from_dict(rows, orient="index")
