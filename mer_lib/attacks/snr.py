"""Signal-to-noise ratio of a spectrogram perturbation, in the filterbank magnitude domain.

The models see standardised log-filtered spectrograms ``x = (log10(1 + S) - mean) / std``,
where ``S`` are the magnitudes of the logarithmic filterbank. To say how loud a perturbation
is, undo both steps — ``S = 10 ** (x * std + mean) - 1`` — and compare energies::

    SNR = 10 * log10( ||S||^2 / ||S_adv - S||^2 )   per example, in dB

(``inf`` when ``x_adv == x``). The reference implementation instead fed its (standardised,
log-filtered) input through ``librosa.feature.inverse.mel_to_stft`` as if it were a
mel power spectrogram and averaged dB differences; that inversion does not match its own
features (wrong filterbank, no undoing of the log and the standardisation), so its "db"
values are not comparable with this SNR.

Example:
    >>> import torch
    >>> x = torch.randn(2, 1, 5, 7)
    >>> spectrogram_snr_db(x, x, mean=0.5, std=0.2).tolist()
    [inf, inf]
"""
from __future__ import annotations

import torch


def filterbank_magnitudes(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Undo standardisation and ``log10(1 + .)``: standardised input -> magnitudes (float64)."""
    return torch.pow(10.0, x.double() * float(std) + float(mean)) - 1.0


def spectrogram_snr_db(x: torch.Tensor, x_adv: torch.Tensor, mean: float,
                       std: float) -> torch.Tensor:
    """SNR in dB of ``x_adv`` against ``x`` per example (first dimension), shape (B,)."""
    s = filterbank_magnitudes(x, mean, std).flatten(1)
    s_adv = filterbank_magnitudes(x_adv.to(x.device), mean, std).flatten(1)
    signal = (s * s).sum(dim=1)
    noise = ((s_adv - s) ** 2).sum(dim=1)
    return 10.0 * torch.log10(signal / noise)
