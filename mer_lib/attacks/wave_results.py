"""Stored waveform-attack tables, keyed and written like the spectrogram attacks' (:mod:`.results`).

:func:`get_wave_attack` attacks a trained model's audio excerpts
(:func:`mer_lib.wave_excerpts.wave_excerpts`) with a
:class:`~.wave_config.WaveAttackConfig` and stores the per-clip table of
:meth:`~.waveform.WaveAttackResult.to_frame` (``wave_snr_db`` is the true SNR of each
kept perturbation) under ``<run_dir>/attacks/<model key>/<result key>/``, the key hashing
the model, the configuration (with ``domain: waveform``), the split, the data and
:data:`~.wave_config.WAVE_ENGINE_VERSION`. Clips that cannot be attacked in audio are
left out; the stored meta lists them with the reason (``meta["notes"]``).

Example (``trained`` from :mod:`mer_lib.training`, ``data`` a :class:`~mer_lib.data.MerTensors`)::

    table = get_wave_attack(trained, data, WaveAttackConfig(snr_db=40), run_dir="runs").table
    bool((table.wave_snr_db >= 40 - 1e-6).all())        # True
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..data import MerTensors, TILED
from ..errors import ParameterError
from ..runtime import evaluating
from ..store import StoredTable, get_table, identity_key, table_dir
from ..wave_excerpts import wave_excerpts
from .results import describe
from .wave_config import WAVE_ENGINE_VERSION, WaveAttackConfig
from .waveform import wave_attack

__all__ = ["wave_result_identity", "wave_result_dir", "get_wave_attack", "compute_wave_attack"]


def wave_result_identity(model_key: str, config: WaveAttackConfig, split: str, data_identity: str) -> dict:
    """What a stored waveform result is keyed by.

    >>> wave_result_identity("m", WaveAttackConfig(), "test", "d")["attack"]["domain"]
    'waveform'
    """
    return {"wave_engine": WAVE_ENGINE_VERSION, "model": str(model_key), "attack": config.to_dict(),
            "split": split, "data": str(data_identity)}


def wave_result_dir(run_dir: str | Path, model_key: str, config: WaveAttackConfig, split: str,
                    data_identity: str) -> Path:
    """The folder of one waveform result (it exists only once the result is complete)."""
    return table_dir(run_dir, "attacks", model_key, wave_result_identity(model_key, config, split, data_identity))


def wave_result_key(identity: dict) -> str:
    """Short sha256 of a :func:`wave_result_identity` (the folder name)."""
    return identity_key(identity)


def compute_wave_attack(trained, data: MerTensors, config: WaveAttackConfig, split: str = "test", *,
                        device: str | torch.device | None = None, progress: bool = False):
    """``(table, result, excerpts)`` of a waveform attack, not stored (the chapters' audio players
    need the perturbations themselves). The model's mode and device are restored afterwards."""
    excerpts = wave_excerpts(data, split, limit=config.examples)
    y = data.emotions[torch.as_tensor(excerpts.rows)]
    with evaluating(trained.model, device) as model:
        result = wave_attack(model, excerpts, y, config, mean=data.mean, std=data.std, progress=progress)
    table = result.to_frame(excerpts.ids, data.mean, data.std)
    extra = {"variant": trained.config.variant, "seed": int(trained.config.seed),
             "model_key": str(trained.key), "split": split, "mode": config.mode,
             "snr_budget_db": config.snr_db, "epsilon": config.epsilon, "step_size": config.step_size}
    for i, (name, value) in enumerate(extra.items()):
        table.insert(1 + i, name, value)
    return table, result, excerpts


def get_wave_attack(trained, data: MerTensors, config: WaveAttackConfig, *, split: str = "test",
                    run_dir: str | Path, device: str | torch.device | None = None,
                    progress: bool = False) -> StoredTable:
    """The stored table of a waveform attack on ``trained``, computed when missing."""
    if not isinstance(config, WaveAttackConfig):
        raise ParameterError(f"config must be a WaveAttackConfig, got {type(config).__name__}")
    if split not in data.split:
        raise ParameterError(f"split must be one of {list(data.split)}, got {split!r}")
    identity = wave_result_identity(trained.key, config, split, data.identity)
    folder = wave_result_dir(run_dir, trained.key, config, split, data.identity)
    notes = wave_excerpts_notes(data, split, config)

    def compute() -> pd.DataFrame:
        return compute_wave_attack(trained, data, config, split, device=device, progress=progress)[0]

    what = f"attack {trained.config.variant} seed {trained.config.seed} {describe(config)} ({folder.name})"
    return get_table(folder, identity, compute, what=what,
                     meta={"variant": trained.config.variant, "seed": int(trained.config.seed), "notes": notes})


def wave_excerpts_notes(data: MerTensors, split: str, config: WaveAttackConfig) -> dict[str, str]:
    """Clip id -> why it is not attacked in audio (the clips :func:`wave_excerpts` leaves out),
    without reading any audio file."""
    starts = data.info.get("excerpt_starts") or []
    rows = [int(i) for i in data.split[split]][:config.examples]
    return {data.ids[r]: "the clip is shorter than the excerpt (its spectrogram was tiled)"
            for r in rows if r < len(starts) and starts[r] == TILED}
