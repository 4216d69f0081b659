"""The audio behind each spectrogram excerpt: what a waveform-domain attack perturbs.

A model sees a standardised excerpt of ``T`` spectrogram frames starting at frame ``s`` of
its clip (:func:`mer_lib.data.excerpt_starts`). Those frames read the clip's peak-normalised
samples ``floor(s * HOP)`` .. ``floor((s + T - 1) * HOP) + 2047``; :func:`wave_excerpts`
cuts exactly that stretch of audio out of each clip (zero past the clip's end, as madmom
pads) and records where every frame starts inside it. Framing an excerpt at those starts
reproduces the model's input to float rounding (tested), so a perturbation of these samples
is a perturbation of real audio that the model sees through its own front end.

``HOP`` is fractional (704.47 samples), so frame ``s + j`` starts
``floor((s + j) * HOP) - floor(s * HOP)`` samples into the excerpt: the pattern depends on
``s`` and is kept per clip (:attr:`WaveExcerpts.frame_starts`) instead of re-framing the cut
audio from its first sample, which would shift frames by up to one sample.

Clips that cannot be attacked in the waveform domain are left out with a note (clip id ->
reason in :attr:`WaveExcerpts.notes`), never silently: a clip shorter than the excerpt (its
spectrogram was *tiled*, which no audio signal produces) and a silent excerpt (its SNR is
undefined).

Example (``data`` from :func:`mer_lib.data.load_dataset`)::

    ex = wave_excerpts(data, "test", limit=8)
    ex.waves.shape        # (8, samples)
    ex.frame_starts[0, :3].tolist()   # e.g. [0, 704, 1409]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .audio import load_waveform
from .data import TILED, MerTensors
from .errors import DataLayoutError, ParameterError, check_int
from .frontend import FRAME_SIZE, HOP, SAMPLE_RATE, frame_starts

__all__ = ["WaveExcerpts", "wave_excerpts", "excerpt_span", "excerpt_seconds_of"]


@dataclass
class WaveExcerpts:
    """Peak-normalised audio excerpts of some clips of a split, aligned with the model's input.

    Attributes:
        waves: (N, L) float32 samples of each excerpt; zero past the clip's end.
        frame_starts: (N, T) long: first sample of each spectrogram frame inside ``waves``.
        in_clip: (N, L) bool: samples inside the clip (a perturbation is only added there).
        peak_outside: (N,) float32: the largest ``|sample|`` of the clip outside the excerpt
            (the clip's peak normalisation is re-applied to a perturbed clip, see
            :class:`mer_lib.attacks.waveform.WaveformInput`).
        rows: (N,) the clips' rows in the :class:`~mer_lib.data.MerTensors`.
        ids: the clip ids.
        notes: clip id -> why a clip of the split was left out.
    """

    waves: torch.Tensor
    frame_starts: torch.Tensor
    in_clip: torch.Tensor
    peak_outside: torch.Tensor
    rows: np.ndarray
    ids: list[str]
    notes: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.waves.shape[0])

    @property
    def norms(self) -> torch.Tensor:
        """(N,) float64 L2 norm of each excerpt's in-clip samples (the signal of its SNR)."""
        return (self.waves.double() * self.in_clip).norm(dim=1)

    def context(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The per-example tensors the waveform objective needs, on ``device``."""
        return {"frame_starts": self.frame_starts.to(device), "in_clip": self.in_clip.to(device),
                "peak_outside": self.peak_outside.to(device),
                "norms": self.norms.to(device=device, dtype=torch.float32)}


def excerpt_span(start: int, n_frames: int) -> tuple[int, int, np.ndarray]:
    """``(first, stop, frame_offsets)`` of the excerpt of ``n_frames`` frames from frame ``start``.

    ``first .. stop - 1`` are the samples its frames read; ``frame_offsets`` the frames' starts
    relative to ``first``.

    Example:
        >>> first, stop, offsets = excerpt_span(3, 2)
        >>> first, stop, offsets.tolist()
        (2113, 4865, [0, 704])
    """
    check_int("start", start, minimum=0)
    check_int("n_frames", n_frames, minimum=1)
    starts = frame_starts(start + n_frames)[start:]
    first = int(starts[0])
    return first, int(starts[-1]) + FRAME_SIZE, starts - first


def wave_excerpts(data: MerTensors, split: str = "test", limit: int | None = None) -> WaveExcerpts:
    """The audio excerpts behind ``data``'s spectrogram excerpts of ``split`` (first ``limit`` clips).

    Reads the clips' audio files again (the spectrogram cache keeps no audio). Raises
    ParameterError naming the value for an unknown split or ``limit``, DataLayoutError if
    ``data`` does not say where its audio and excerpts are, or if no clip can be used.
    """
    if split not in data.split:
        raise ParameterError(f"split must be one of {list(data.split)}, got {split!r}")
    if limit is not None:
        check_int("limit", limit, minimum=1)
    corpus = data.info.get("corpus")
    starts = data.info.get("excerpt_starts")
    if corpus is None or starts is None:
        raise DataLayoutError("these MerTensors do not record their audio files and excerpt starts "
                              "(info['corpus'], info['excerpt_starts']); load them with "
                              "mer_lib.data.load_dataset")
    n_frames = data.n_frames
    rows_all = [int(i) for i in data.split[split]][:limit]
    cut, rows, notes = [], [], {}
    for row in rows_all:
        clip_id, start = data.ids[row], starts[row]
        if start == TILED:
            notes[clip_id] = (f"the clip is shorter than the {n_frames}-frame excerpt (its spectrogram "
                              f"was tiled, which no audio signal produces)")
            continue
        wave = load_waveform(corpus.audio_paths[row])
        first, stop, offsets = excerpt_span(start, n_frames)
        piece = wave[first:stop]
        if not bool(piece.abs().max() > 0):
            notes[clip_id] = "the excerpt is silent (its SNR is undefined)"
            continue
        outside = torch.cat([wave[:first], wave[stop:]])
        peak = float(outside.abs().max()) if outside.numel() else 0.0
        cut.append((piece, torch.from_numpy(offsets), stop - first, peak))
        rows.append(row)
    if not cut:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(notes.items())[:3])
        raise DataLayoutError(f"no clip of the {split} split can be attacked in the waveform domain ({reasons})")
    length = max(span for _, _, span, _ in cut)
    waves = torch.zeros(len(cut), length)
    in_clip = torch.zeros(len(cut), length, dtype=torch.bool)
    for i, (piece, _, _, _) in enumerate(cut):
        waves[i, :piece.numel()] = piece
        in_clip[i, :piece.numel()] = True
    return WaveExcerpts(waves=waves, frame_starts=torch.stack([o for _, o, _, _ in cut]),
                        in_clip=in_clip, peak_outside=torch.tensor([p for *_, p in cut]),
                        rows=np.asarray(rows, dtype=np.int64), ids=[data.ids[r] for r in rows], notes=notes)


def excerpt_seconds_of(data: MerTensors) -> float:
    """Duration in seconds of the audio a ``data`` excerpt reads (for the Listening chapter).

    Example (``data`` of the quick profile, 126 frames)::

        round(excerpt_seconds_of(data), 2)   # 4.12
    """
    return (math.floor((data.n_frames - 1) * HOP) + FRAME_SIZE) / SAMPLE_RATE
