"""Cached attack tables: one CSV per (trained model, attack configuration, split).

:func:`run_attack` attacks a trained model on one split and stores the tidy table of
:meth:`~mer_lib.attacks.AttackResult.to_frame` (plus identifying columns) as
``<run_dir>/attacks/<trained.key>/<config.key()>_<split>.csv`` next to a JSON file with
the configuration. Asking again returns the stored table without recomputing, so a
chapter re-executed with new epsilons only attacks what is new. Files are written to a
temporary name first and moved into place with ``os.replace`` (atomic), so an
interrupted run never leaves a half-written table behind.

Example (``trained`` from :mod:`mer_lib.training`, ``data`` a :class:`~mer_lib.data.MerTensors`)::

    table = run_attack(trained, data, AttackConfig(epsilon=0.001), run_dir="runs")
    table.groupby("variant").mae_adv.mean()
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from ..data import MerTensors
from ..errors import CheckpointError, ParameterError
from ..paths import atomic_path
from ..runtime import resolve_device
from .config import AttackConfig
from .engine import attack


def attack_paths(trained_key: str, config: AttackConfig, split: str,
                 run_dir: str | Path) -> tuple[Path, Path]:
    """Where the table and its JSON live."""
    folder = Path(run_dir) / "attacks" / str(trained_key)
    stem = f"{config.key()}_{split}"
    return folder / f"{stem}.csv", folder / f"{stem}.json"


def _write_atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        write(fh)


#: pandas < 3 needs the round-trip float parser to read back exactly what it wrote.
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"example": str, "model_key": str}, **_EXACT_FLOATS)


def run_attack(trained, data: MerTensors, config: AttackConfig, *, split: str = "test",
               run_dir: str | Path, batch_size: int | None = None,
               device: str | torch.device | None = None, progress: bool = True) -> pd.DataFrame:
    """Attack ``trained.model`` on one split of ``data``; cached (see the module docstring).

    ``trained`` is a :class:`mer_lib.training.TrainedModel` (anything with ``.model``,
    ``.key`` and ``.config.variant`` / ``.config.seed``). The model is put in eval mode for
    the attack (its previous mode and device are restored afterwards). ``device`` defaults
    to CUDA when available. Returns the table of
    :meth:`~mer_lib.attacks.AttackResult.to_frame` plus the columns ``variant, seed,
    model_key, split, mode, epsilon, norm, step_size``.
    """
    if not isinstance(config, AttackConfig):
        raise ParameterError(f"config must be an AttackConfig, got {type(config).__name__}")
    if split not in data.split:
        raise ParameterError(f"split must be one of {list(data.split)}, got {split!r}")
    csv_path, json_path = attack_paths(trained.key, config, split, run_dir)
    meta = {"attack": config.to_dict(), "model_key": str(trained.key), "split": split,
            "data": data.identity}
    if csv_path.is_file():
        if json_path.is_file():
            stored = json.loads(json_path.read_text())
            if stored.get("data") != data.identity or stored.get("attack") != meta["attack"]:
                raise CheckpointError(
                    f"{json_path} was computed for data {stored.get('data')!r} and attack "
                    f"{stored.get('attack')}, not for data {data.identity!r} and {meta['attack']}; "
                    f"delete {csv_path.parent} to recompute")
        return _read_table(csv_path)

    x, y, _ = data.subset(split)
    ids = [data.ids[i] for i in data.split[split]]
    device = resolve_device(device)
    model = trained.model
    params = list(model.parameters())
    home = params[0].device if params else torch.device("cpu")
    was_training = model.training
    try:
        model.to(device).eval()
        result = attack(model, x.to(device), y.to(device), config,
                        batch_size=batch_size, progress=progress)
    finally:
        model.to(home).train(was_training)

    table = result.to_frame(ids, data.mean, data.std)
    extra = {"variant": trained.config.variant, "seed": int(trained.config.seed),
             "model_key": str(trained.key), "split": split, "mode": config.mode,
             "epsilon": config.epsilon, "norm": config.norm, "step_size": config.step_size}
    for i, (name, value) in enumerate(extra.items()):
        table.insert(1 + i, name, value)
    _write_atomic(csv_path, lambda fh: table.to_csv(fh, index=False))
    _write_atomic(json_path, lambda fh: json.dump(meta, fh, indent=2, sort_keys=True))
    return _read_table(csv_path)
