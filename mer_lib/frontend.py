"""The log-filtered spectrogram of the reference, computed with torch.

Reproduces madmom 0.16's

    FramedSignalProcessor(frame_size=2048, fps=31.3, origin='future')
    LogarithmicFilteredSpectrogramProcessor(num_bands=24, fmin=20, fmax=16000)

on 22 050 Hz mono signals that are already peak-normalised, but batched, differentiable with
respect to the waveform and on whatever device the input lives on:

1. framing: frame ``i`` covers samples ``floor(i * HOP) .. floor(i * HOP) + 2047`` (zero-padded
   past the end of the signal), ``ceil(n_samples / HOP)`` frames, ``HOP = 22050 / 31.3``;
2. window: numpy's *symmetric* ``hanning(2048)``;
3. ``|rfft|`` with the Nyquist bin dropped (1024 bins);
4. a triangular filterbank with 24 bands per octave (20 Hz - 16 kHz, reference 440 Hz,
   unit-area filters, duplicate filters merged) -> 149 bands;
5. ``log10(1 + x)``.

Example:
    >>> import torch
    >>> spec = LogFiltSpec()(torch.randn(2, SAMPLE_RATE))   # two 1-s signals
    >>> tuple(spec.shape)
    (2, 32, 149)
    >>> n_frames(SAMPLE_RATE)
    32
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from mer_lib.errors import ParameterError, check_int
from mer_lib.spectral_ops import (FRAME_SIZE, N_BINS, blocked_matmul, column_blocks, frame_signal,
                                  magnitude_spectrum, overlap_add)

__all__ = [
    "SAMPLE_RATE", "FPS", "FRAME_SIZE", "HOP", "N_BANDS", "N_BINS",
    "n_frames", "frame_starts", "frame_times", "fft_bin_frequencies", "log_filterbank",
    "band_centres_hz", "LogFiltSpec", "compute_batch", "frame_signal", "overlap_add",
]

SAMPLE_RATE = 22050
FPS = 31.3
HOP = SAMPLE_RATE / FPS  # 704.4728... samples; madmom keeps it fractional
N_BANDS = 149

BANDS_PER_OCTAVE = 24
FMIN = 20.0
FMAX = 16000.0
FREF = 440.0


def n_frames(n_samples: int) -> int:
    """Number of frames madmom produces for ``n_samples`` samples: ``ceil(n_samples / HOP)``.

    >>> n_frames(1), n_frames(704), n_frames(705), n_frames(10 * SAMPLE_RATE)
    (1, 1, 2, 313)
    """
    check_int("n_samples", n_samples, minimum=0)
    return int(math.ceil(n_samples / HOP))


def frame_starts(n: int) -> np.ndarray:
    """First sample of each of ``n`` frames: ``floor(i * HOP)``, as madmom computes it.

    madmom takes ``int(i * hop)`` of the double product (truncation = floor for i >= 0),
    then, for ``origin='future'``, the frame extends ``FRAME_SIZE`` samples to the right.

    >>> frame_starts(4).tolist()
    [0, 704, 1408, 2113]
    """
    check_int("n", n, minimum=0)
    return np.floor(np.arange(n, dtype=np.float64) * HOP).astype(np.int64)


def frame_times(n: int) -> np.ndarray:
    """Time in seconds of each of ``n`` frames: ``i / FPS``.

    The time refers to the frame's **start** (madmom ``origin='future'``): frame ``i``
    covers samples ``floor(i * HOP)`` to ``floor(i * HOP) + FRAME_SIZE - 1``, i.e. it
    looks ~93 ms into the future of its time stamp.

    >>> frame_times(3).round(4).tolist()
    [0.0, 0.0319, 0.0639]
    """
    check_int("n", n, minimum=0)
    return np.arange(n, dtype=np.float64) / FPS


def fft_bin_frequencies() -> np.ndarray:
    """Centre frequency (Hz) of the 1024 kept rfft bins: ``k * SAMPLE_RATE / FRAME_SIZE``.

    >>> fft_bin_frequencies()[:3].round(2).tolist()
    [0.0, 10.77, 21.53]
    """
    return np.arange(N_BINS, dtype=np.float64) * SAMPLE_RATE / FRAME_SIZE


def _log_frequencies() -> np.ndarray:
    """Frequencies ``FREF * 2**(k / 24)`` that lie within ``[FMIN, FMAX]``."""
    lo = math.floor(math.log2(FMIN / FREF) * BANDS_PER_OCTAVE)
    hi = math.ceil(math.log2(FMAX / FREF) * BANDS_PER_OCTAVE)
    freqs = FREF * 2.0 ** (np.arange(lo, hi, dtype=np.float64) / BANDS_PER_OCTAVE)
    return freqs[(freqs >= FMIN) & (freqs <= FMAX)]


def _filter_bins() -> np.ndarray:
    """FFT bin nearest to each log frequency (ties go up, clipped to 1..1023), duplicates merged."""
    bins = fft_bin_frequencies()
    freqs = _log_frequencies()
    idx = np.clip(np.searchsorted(bins, freqs), 1, len(bins) - 1)
    left, right = bins[idx - 1], bins[idx]
    idx = idx - ((freqs - left) < (right - freqs)).astype(idx.dtype)
    return np.unique(idx)


def _filter_corners() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, centre, stop) bin of each triangular filter; stop is exclusive.

    Consecutive triples of the unique bins; a filter narrower than two bins becomes a
    single bin of weight 1 at its start.
    """
    b = _filter_bins()
    start, centre, stop = b[:-2].copy(), b[1:-1].copy(), b[2:].copy()
    narrow = (stop - start) < 2
    centre[narrow] = start[narrow]
    stop[narrow] = start[narrow] + 1
    return start, centre, stop


def log_filterbank() -> np.ndarray:
    """The (1024, 149) float32 filterbank: unit-area triangles on a 24-per-octave grid.

    Each filter rises linearly from 0 at its start bin to 1 at its centre bin (exclusive
    of the end point), falls linearly towards 0 at its stop bin (exclusive), and is then
    divided by its sum.

    >>> fb = log_filterbank()
    >>> fb.shape, bool(np.allclose(fb.sum(axis=0), 1.0))
    ((1024, 149), True)
    """
    start, centre, stop = _filter_corners()
    k = np.arange(N_BINS, dtype=np.float64)[:, None]
    s, c, e = (x[None, :].astype(np.float64) for x in (start, centre, stop))
    # rising edge: np.linspace(0, 1, c - s, endpoint=False); falling: linspace(1, 0, e - c, ...)
    rise = np.where((k >= s) & (k < c), (k - s) / np.maximum(c - s, 1), 0.0)
    fall = np.where((k >= c) & (k < e), 1.0 - (k - c) / np.maximum(e - c, 1), 0.0)
    fb = (rise + fall).astype(np.float32)
    fb /= fb.sum(axis=0, keepdims=True)
    return fb


def band_centres_hz() -> np.ndarray:
    """Centre frequency (Hz) of each of the 149 bands, defined as madmom defines it.

    With ``lo``/``hi`` the first/last non-zero bin of a band: if the weights at ``lo`` and
    ``hi`` are equal (a symmetric filter, or a single bin) the centre is bin
    ``lo + (hi - lo) // 2``; otherwise it is the peak bin searched in ``lo .. hi - 1``
    (``hi`` itself excluded -- so a two-bin filter weighted 1/3, 2/3 gets the *lower*
    bin, a madmom quirk kept for compatibility).

    >>> band_centres_hz()[[0, -1]].round(1).tolist()
    [32.3, 10852.7]
    """
    fb = log_filterbank()
    k = np.arange(fb.shape[0])[:, None]
    nonzero = fb > 0
    lo = nonzero.argmax(axis=0)
    hi = fb.shape[0] - 1 - nonzero[::-1].argmax(axis=0)
    band = np.arange(fb.shape[1])
    symmetric = fb[lo, band] == fb[hi, band]
    peak = np.where((k >= lo) & (k < hi), fb, -np.inf).argmax(axis=0)
    centre = np.where(symmetric, lo + (hi - lo) // 2, peak)
    return fft_bin_frequencies()[centre]


class LogFiltSpec(torch.nn.Module):
    """madmom's log-filtered spectrogram as a torch module.

    ``forward(wave)`` takes ``(S,)`` or ``(B, S)`` float signals at 22 050 Hz (equal length,
    already peak-normalised) and returns ``(frames, 149)`` or ``(B, frames, 149)`` with
    ``frames = n_frames(S)``, differentiable with respect to ``wave``. The buffers follow
    ``.to(device)``; inputs on another device are still handled (buffers are copied).

    Args:
        dtype: precision of the STFT and filterbank (``torch.float32`` default, or
            ``torch.float64``); the output has the input's floating dtype.
        cpu_chunk: on the CPU, process the batch this many signals at a time (keeps the
            ~2.5 MB-per-clip temporaries in cache: about 2x faster than one big batch);
            ``None`` = whole batch at once. Ignored on other devices.

    Example:
        >>> import torch
        >>> fe = LogFiltSpec()
        >>> fe(torch.zeros(1000)).shape
        torch.Size([2, 149])
    """

    window: torch.Tensor
    filterbank: torch.Tensor
    starts: torch.Tensor

    def __init__(self, dtype: torch.dtype = torch.float32, cpu_chunk: int | None = 8) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ParameterError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        if cpu_chunk is not None:
            check_int("cpu_chunk", cpu_chunk, minimum=1)
        self.compute_dtype = dtype
        self.cpu_chunk = cpu_chunk
        self.register_buffer("window", torch.from_numpy(np.hanning(FRAME_SIZE)).to(dtype))
        self.register_buffer("filterbank", torch.from_numpy(log_filterbank()).to(dtype))
        self.filter_blocks = column_blocks(self.filterbank)
        # frame start samples, grown on demand (enough for 60 s up front)
        self.register_buffer("starts", torch.from_numpy(frame_starts(n_frames(60 * SAMPLE_RATE))),
                             persistent=False)

    def _starts(self, n: int, device: torch.device) -> torch.Tensor:
        if n > self.starts.numel():
            self.starts = torch.from_numpy(frame_starts(n)).to(self.starts.device)
        return self.starts[:n].to(device)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not isinstance(wave, torch.Tensor):
            raise ParameterError(f"wave must be a torch.Tensor, got {type(wave).__name__}")
        if wave.dim() not in (1, 2) or wave.shape[-1] < 1:
            raise ParameterError(
                f"wave must have shape (samples,) or (batch, samples) with samples >= 1, "
                f"got {tuple(wave.shape)}")
        if not wave.is_floating_point():
            raise ParameterError(f"wave must be a floating-point tensor, got {wave.dtype}")
        squeeze = wave.dim() == 1
        x = wave.unsqueeze(0) if squeeze else wave
        n = x.shape[-1]
        nf = n_frames(n)
        starts = self._starts(nf, x.device)
        # samples the frames need (last start + frame size), computed on the host
        needed = max(int(math.floor((nf - 1) * HOP)) + FRAME_SIZE, n)
        chunk = self.cpu_chunk if x.device.type == "cpu" else None
        if chunk is None or x.shape[0] <= chunk:
            spec = self._spectrogram(x, starts, needed)
        else:
            spec = torch.cat([self._spectrogram(c, starts, needed) for c in x.split(chunk)])
        return spec[0] if squeeze else spec

    def _spectrogram(self, x: torch.Tensor, starts: torch.Tensor, needed: int) -> torch.Tensor:
        """(B, S) signals -> (B, frames, 149), frames starting at ``starts``."""
        out_dtype, dev, dt = x.dtype, x.device, self.compute_dtype
        x = torch.nn.functional.pad(x.to(dt), (0, needed - x.shape[-1]))  # last frame fits
        if torch.is_grad_enabled() and x.requires_grad:
            # a gathered copy whose backward is one overlap-add into (B, S)
            frames = frame_signal(x, starts.expand(x.shape[0], -1))
        else:
            # ~2x faster: rows of the strided view of all windows, but its backward would
            # allocate a (B, S, 2048) gradient, so it is only used without autograd
            frames = x.unfold(-1, FRAME_SIZE, 1)[:, starts]              # (B, frames, 2048)
            # the gathered frames are a fresh copy: window them in place
            return self._filtered(frames.mul_(self.window.to(dev, dt)), windowed=True).to(out_dtype)
        return self._filtered(frames).to(out_dtype)

    def from_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Steps 2-5 on already framed samples: ``(..., 2048)`` frames -> ``(..., 149)``.

        The frames are windowed, so a caller that frames a signal itself (e.g. the
        waveform attacks, whose excerpts start at a fractional frame position) gets exactly
        what :meth:`forward` computes, up to float rounding: the filterbank product runs on
        the filterbank's non-zero blocks (:func:`~mer_lib.spectral_ops.blocked_matmul`, about
        2x faster each way), while :meth:`forward` keeps the dense product, whose bytes the
        spectrogram cache stores. Works in :attr:`compute_dtype`; the output has it too.

        Example:
            >>> fe = LogFiltSpec()
            >>> x = torch.randn(1000)                  # 2 frames, starting at samples 0 and 704
            >>> frames = torch.nn.functional.pad(x, (0, 2048))[torch.tensor([0, 704])[:, None] + torch.arange(2048)]
            >>> bool(torch.allclose(fe.from_frames(frames), fe(x)))
            True
        """
        return self._filtered(frames.to(self.compute_dtype), blocked=True)

    def _filtered(self, frames: torch.Tensor, windowed: bool = False, blocked: bool = False) -> torch.Tensor:
        """Frames -> log10(1 + |rfft(frames * window)| @ filterbank) (``windowed``: already times the
        window; ``blocked``: the product from the filterbank's blocks)."""
        dev, dt = frames.device, self.compute_dtype
        mag = magnitude_spectrum(frames, None if windowed else self.window.to(dev, dt))   # (..., frames, 1024)
        fb = self.filterbank.to(dev, dt)
        bands = blocked_matmul(mag, fb, self.filter_blocks) if blocked else mag @ fb
        # log10(1 + x) as madmom writes it (torch.log1p is ~10x slower on the CPU)
        return torch.log10(bands.add_(1.0))


_DEFAULT: dict[tuple[str, torch.dtype], LogFiltSpec] = {}


def _default_module(device: torch.device, dtype: torch.dtype) -> LogFiltSpec:
    key = (str(device), dtype)
    if key not in _DEFAULT:
        _DEFAULT[key] = LogFiltSpec(dtype=dtype).to(device)
    return _DEFAULT[key]


def compute_batch(waves: Sequence[torch.Tensor], *, chunk_size: int = 16,
                  frontend: LogFiltSpec | None = None,
                  dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Spectrograms of 1-D signals of different lengths, computed in batches.

    Signals are sorted by length, grouped ``chunk_size`` at a time, zero-padded to the
    longest of their group (exact: madmom zero-pads frames past the end anyway), and each
    result is cropped to its own ``n_frames``. Results come back in input order, on each
    chunk's device.

    The values equal the per-signal ones up to float rounding, but the last bits of one
    signal's result may depend on what else is in its batch and on the thread count (the
    FFT and matrix-product kernels choose their blocking by shape). Where bytes must be
    reproducible, compute each signal on its own with a fixed thread count, as the
    spectrogram cache does (:func:`mer_lib.data.compute_spectrograms`).

    Example:
        >>> import torch
        >>> specs = compute_batch([torch.randn(5000), torch.randn(1000)])
        >>> [tuple(s.shape) for s in specs]
        [(8, 149), (2, 149)]
    """
    check_int("chunk_size", chunk_size, minimum=1)
    waves = list(waves)
    for i, w in enumerate(waves):
        if not isinstance(w, torch.Tensor) or w.dim() != 1 or w.numel() < 1:
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ParameterError(f"waves[{i}] must be a non-empty 1-D torch.Tensor, got {shape}")
    out: list[torch.Tensor | None] = [None] * len(waves)
    order = sorted(range(len(waves)), key=lambda i: waves[i].numel())
    for c in range(0, len(order), chunk_size):
        ids = order[c:c + chunk_size]
        longest = max(waves[i].numel() for i in ids)
        dev = waves[ids[0]].device
        batch = torch.stack([torch.nn.functional.pad(waves[i].to(dev), (0, longest - waves[i].numel()))
                             for i in ids])
        fe = frontend if frontend is not None else _default_module(dev, dtype)
        spec = fe(batch)
        for j, i in enumerate(ids):
            out[i] = spec[j, :n_frames(waves[i].numel())]
    return out  # type: ignore[return-value]
