"""The Listening chapter's analysis: SNR curves, the paper's question in audio, realisability.

Everything the chapter shows that a second chapter or a user would compute again:

- :func:`wave_clips` — the per-clip ΔMAE of every waveform attack, with the threat and budget;
- :func:`snr_curve` — per system and SNR budget, the mean ΔMAE over seeds and clips with its
  hierarchical bootstrap interval (:func:`mer_lib.findings.system_intervals`);
- :func:`wave_claims` — the paper's claims 1 and 2 (:func:`mer_lib.claims.paper_claims`)
  decided on the waveform attack at one budget;
- :func:`get_realisability` — the stored per-clip table of
  :func:`mer_lib.attacks.realisability.realisability` for one model and spectrogram attack
  (re-exported from :mod:`mer_lib.attacks.realisability_table`, a stored measurement);
  :func:`realisability_summary` — per system and attack, what fraction survives.

Example (``runner`` a :class:`mer_lib.runner.Runner` whose jobs are done)::

    clips = wave_clips(runner.wave_tables())
    snr_curve(clips).head()
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .attacks.realisability_table import REALISABILITY_VERSION, get_realisability, realisability_identity
from .claims import paper_claims
from .findings import attack_clips, label, system_intervals

__all__ = ["wave_clips", "snr_curve", "wave_claims", "get_realisability", "realisability_identity", "realisability_summary",
           "REALISABILITY_VERSION"]


def wave_clips(tables: dict) -> pd.DataFrame:
    """``{WaveAttackConfig: table}`` -> one tidy table of :func:`~mer_lib.findings.attack_clips`
    rows plus ``threat``, ``budget`` (dB, NaN for L-inf), ``wave_snr_db``."""
    parts = []
    for config, table in tables.items():
        clips = attack_clips(table)
        clips["threat"] = config.threat
        clips["budget"] = np.nan if config.snr_db is None else config.snr_db
        clips["wave_snr_db"] = table["wave_snr_db"].to_numpy()
        parts.append(clips)
    return pd.concat(parts, ignore_index=True)


def snr_curve(clips: pd.DataFrame, systems=None, *, level: float = 0.95) -> pd.DataFrame:
    """Per SNR budget and system: mean ΔMAE and its interval (columns of
    :func:`~mer_lib.findings.system_intervals` plus ``budget``), loudest budget last."""
    snr = clips[clips.threat == "snr"]
    parts = [system_intervals(part, "delta_mae", systems, level=level).assign(budget=budget)
             for budget, part in snr.groupby("budget", sort=False)]
    return pd.concat(parts, ignore_index=True).sort_values(["budget", "label"], ascending=[False, True])


def wave_claims(clips: pd.DataFrame, budget: float, *, level: float = 0.95) -> pd.DataFrame:
    """Claims 1 and 2 of the paper (:data:`mer_lib.claims.CLAIMS`) on the waveform attack at ``budget`` dB."""
    part = clips[(clips.threat == "snr") & (clips.budget == budget)]
    claims = paper_claims(part, None, level=level)
    out = claims.iloc[:2].reset_index(drop=True)
    out.attrs["decisions"] = claims.attrs["decisions"]
    return out


def realisability_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per attack mode and system: mean survival and residual over clips with a perturbation,
    the median SNR of the realised audio, and the fraction of the mean ΔMAE that survives
    (``(MAE realised − MAE clean) / (MAE perturbed − MAE clean)``, means over clips and seeds)."""
    t = table.assign(system=table.variant.map(label))
    rows = []
    for (mode, system), part in t.groupby(["mode", "system"], sort=False):
        moved = part.dropna(subset=["survival"])
        damage = (part.mae_adv - part.mae_clean).mean()
        rows.append({"mode": mode, "system": system, "clips": len(part), "perturbed": len(moved),
                     "survival": moved.survival.mean(), "residual": moved.residual.mean(),
                     "realised_snr_db": moved.realised_snr_db.median(),
                     "delta_mae_adv": damage, "delta_mae_realised": (part.mae_realised - part.mae_clean).mean(),
                     "delta_mae_kept": (part.mae_realised - part.mae_clean).mean() / damage if damage else np.nan})
    return pd.DataFrame(rows)
