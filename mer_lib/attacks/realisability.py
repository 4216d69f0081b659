"""Is a spectrogram perturbation a sound? Turn it into audio, recompute, see what survives.

The paper's attacks change the standardised log-filtered spectrogram directly; nothing
guarantees that any audio signal has the perturbed spectrogram. :func:`realise` makes the
most direct audio version of a perturbation and :func:`realisability` measures how much of
the perturbation — and of the damage it does — survives the round trip.

**Method** (per clip, on the audio excerpt the spectrogram came from):

1. undo the standardisation and ``log10(1 + .)`` of the clean and the perturbed
   spectrogram: filterbank magnitudes ``B`` and ``B' = max(0, 10 ** (x' std + mean) - 1)``;
2. a gain per frame and band ``g = B' / B`` (1 where ``B < 1e-9``, capped at 1000), spread
   onto the STFT bins through the filterbank: bin ``k`` gets ``sum_b F[k, b] g_b / sum_b
   F[k, b]`` (1 for the Nyquist bin and bins no filter covers);
3. multiply the clean excerpt's STFT (same frames, symmetric Hann window) by those gains,
   keeping the clean **phase**;
4. inverse FFT and weighted overlap-add (divide by the summed squared window; samples where
   that sum is below 1e-3 — the first and last few samples, which only a window's tail
   covers — keep the clean value);
5. the realised audio goes through the model's front end again (:class:`~.waveform.WaveformInput`).

With no perturbation, steps 1-5 give back the clean audio and input to float rounding
(tested). The measures: ``survival`` — the fraction of the perturbation's direction that is
left, ``<x_rt - x, delta> / ||delta||^2``; ``residual`` — ``||x_rt - x'|| / ||delta||``,
the part of the perturbation no audio realises this way; the true SNR of the realised audio
change; and the MAE at the clean, the perturbed and the realised input.

Example (a 2-frame excerpt, no perturbation: the round trip is exact):
    >>> import torch
    >>> from mer_lib.wave_excerpts import WaveExcerpts, excerpt_span
    >>> _, stop, offs = excerpt_span(0, 2)
    >>> s = torch.sin(torch.arange(stop) * 0.05).unsqueeze(0)
    >>> ex = WaveExcerpts(s, torch.from_numpy(offs)[None], torch.ones_like(s, dtype=torch.bool), torch.zeros(1), None, ["a"])
    >>> from mer_lib.attacks.waveform import WaveformInput
    >>> x = WaveformInput(0.5, 0.3)(s, ex.frame_starts, ex.peak_outside, ex.in_clip)
    >>> audio = realise(ex, x, x, mean=0.5, std=0.3)
    >>> bool((audio - s).abs().max() < 1e-4)
    True
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..errors import ParameterError
from ..frontend import N_BINS, frame_signal, log_filterbank, overlap_add
from .snr import filterbank_magnitudes
from .waveform import WaveformInput, wave_snr_db

__all__ = ["realise", "realisability", "GAIN_CAP"]

#: Largest gain a band may get (a band of near-zero energy cannot be raised arbitrarily).
GAIN_CAP = 1000.0
#: Samples whose summed squared window is below this keep their clean value.
MIN_WINDOW_POWER = 1e-3


def _bin_gains(band_gain: torch.Tensor) -> torch.Tensor:
    """(B, T, 149) band gains -> (B, T, 1025) rfft-bin gains (filterbank-weighted; Nyquist 1)."""
    fb = torch.from_numpy(log_filterbank()).to(band_gain.device, torch.float64)   # (1024, 149)
    weight = fb.sum(dim=1)
    spread = band_gain @ fb.T                                                        # (B, T, 1024)
    gains = torch.where(weight > 0, spread / weight.clamp_min(1e-30), torch.ones_like(spread))
    return torch.cat([gains, torch.ones_like(gains[..., :1])], dim=-1)


def realise(excerpts, x: torch.Tensor, x_adv: torch.Tensor, *, mean: float, std: float) -> torch.Tensor:
    """Audio (N, L) whose STFT is the clean excerpt's with the perturbation's band gains (float64).

    ``x``/``x_adv`` are the clean and perturbed model inputs (N, 1, T, 149) of
    ``excerpts`` (a :class:`~mer_lib.wave_excerpts.WaveExcerpts`). See the module docstring.
    """
    if x.shape != x_adv.shape or x.shape[0] != len(excerpts) or x.shape[2] != excerpts.frame_starts.shape[1]:
        raise ParameterError(f"x and x_adv must both be ({len(excerpts)}, 1, {excerpts.frame_starts.shape[1]}, 149), "
                             f"got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    dev = x.device
    b = filterbank_magnitudes(x[:, 0], mean, std)
    b_adv = filterbank_magnitudes(x_adv[:, 0].to(dev), mean, std).clamp_min(0.0)
    gain = torch.where(b > 1e-9, b_adv / b.clamp_min(1e-9), torch.ones_like(b)).clamp(0.0, GAIN_CAP)
    waves = excerpts.waves.to(dev, torch.float64)
    starts = excerpts.frame_starts.to(dev)
    window = torch.from_numpy(np.hanning(2048)).to(dev)
    spectrum = torch.fft.rfft(frame_signal(waves, starts) * window, dim=-1)          # (N, T, 1025)
    frames = torch.fft.irfft(spectrum * _bin_gains(gain), n=2048, dim=-1) * window
    power = overlap_add(window.expand_as(frames) ** 2, starts, waves.shape[1])
    audio = overlap_add(frames, starts, waves.shape[1]) / power.clamp_min(MIN_WINDOW_POWER)
    keep = (power < MIN_WINDOW_POWER) | ~excerpts.in_clip.to(dev)
    return torch.where(keep, waves, audio)


def realisability(model: torch.nn.Module, excerpts, y: torch.Tensor, x_adv: torch.Tensor, *,
                  mean: float, std: float) -> pd.DataFrame:
    """One row per clip: how much of the spectrogram perturbation ``x_adv - x`` survives as audio.

    ``x`` is recomputed from ``excerpts`` (equal to the data's input to float rounding);
    ``x_adv`` (N, 1, T, 149) are the attack's perturbed inputs, ``y`` (N, 8) the ratings.
    ``survival`` and ``residual`` are NaN for a clip whose perturbation is zero (the reference
    attack keeps zero when only its first pass reached a rung). Columns: ``example, survival, residual, realised_snr_db`` (true SNR of the realised audio
    change), ``mae_clean, mae_adv`` (at ``x_adv``), ``mae_realised`` (at the realised audio).
    The model is used as it is (the caller sets eval mode).
    """
    params = list(model.parameters())
    dev = params[0].device if params else torch.device("cpu")
    to_input = WaveformInput(mean, std).to(dev)
    ctx = excerpts.context(dev)
    with torch.no_grad():
        x = to_input(excerpts.waves.to(dev), ctx["frame_starts"], ctx["peak_outside"], ctx["in_clip"])
        audio = realise(excerpts, x, x_adv.to(dev), mean=mean, std=std)
        x_rt = to_input(audio.float(), ctx["frame_starts"], ctx["peak_outside"], ctx["in_clip"])
        preds = [model(v).double().cpu() for v in (x, x_adv.to(dev), x_rt)]
    delta = (x_adv.to(dev) - x).double().flatten(1)
    moved = (x_rt - x).double().flatten(1)
    power = (delta * delta).sum(dim=1)
    power = torch.where(power > 0, power, torch.full_like(power, float("nan")))   # no perturbation: undefined
    y = y.double().cpu()
    mae = [(p - y).abs().mean(dim=1).numpy() for p in preds]
    return pd.DataFrame({
        "example": list(excerpts.ids),
        "survival": ((moved * delta).sum(dim=1) / power).cpu().numpy(),
        "residual": ((x_rt - x_adv.to(dev)).double().flatten(1).norm(dim=1) / power.sqrt()).cpu().numpy(),
        "realised_snr_db": wave_snr_db(excerpts.waves, audio.cpu() - excerpts.waves.double(), excerpts.in_clip).numpy(),
        "mae_clean": mae[0], "mae_adv": mae[1], "mae_realised": mae[2]})
