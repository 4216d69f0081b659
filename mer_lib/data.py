"""From a corpus to model-ready tensors: split, spectrogram cache, standardisation, excerpts.

The split is the one fixed 80/10/10 partition (generator seed 42) that every model and seed
shares. Spectrograms are cached on disk keyed by the front-end version and the sha256 of each
audio file's bytes; the standardisation uses one scalar mean and std taken over the training
split.

**Reproducible bytes.** A cache entry is a function of the file's bytes alone: each clip is
computed on its own, on the CPU, with one torch intra-op thread (clips run in parallel
worker threads, never in one batch), so the entry does not depend on which other clips were
missing from the cache, on how a killed run partitioned the work, or on the thread count.
The data identity (:attr:`MerTensors.identity`, part of every model and attack key) hashes
the corpus fingerprint (file contents and labels, see
:meth:`~mer_lib.datasets.corpus.Corpus.fingerprint`), the settings, *and* the sha256 of the
model-ready tensors themselves, so different tensors can never hide under one key.

Example:
    >>> from mer_lib.data import split_indices
    >>> s = split_indices(10)
    >>> [len(s[k]) for k in ("train", "valid", "test")]
    [8, 1, 1]
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .audio import MIN_SECONDS
from .errors import DataLayoutError, ParameterError, check_int, check_positive
from .frontend import FPS
from .paths import mer_home
from .profiles import Profile, get_profile
from .split import SPLIT_SEED, SPLITS, split_indices  # noqa: F401  (re-exported: mer_lib.data.split_indices)
from .spectrogram_cache import compute_spectrograms, spectrogram_cache_dir  # noqa: F401 (re-exported)
from .versions import FRONTEND_VERSION, GENERATOR_VERSION  # noqa: F401 (FRONTEND_VERSION re-exported)
from .datasets.synthetic import generate_corpus
from .datasets.corpus import load_corpus

@dataclass
class MerTensors:
    """A whole dataset as tensors, ready for training and attacks.

    Attributes:
        x: standardised log-filtered spectrogram excerpts, float32, shape (N, 1, frames, 149).
        emotions: emotion ratings (already divided by 10), float32, shape (N, 8).
        midlevel: mid-level ratings (divided by 10), float32, shape (N, 7), or None.
        split: indices of each split, ``{"train": ..., "valid": ..., "test": ...}``.
        ids: clip identifiers (Soundtracks numbers as zero-padded strings), length N.
        mean, std: the scalars used to standardise (from the training split).
        identity: a short hash naming the data for cache keys: the corpus fingerprint,
            front-end version, excerpt settings and the sha256 of ``x``, ``emotions`` and
            ``midlevel`` (see :func:`tensor_digest`).
    """

    x: torch.Tensor
    emotions: torch.Tensor
    midlevel: torch.Tensor | None
    split: dict[str, np.ndarray]
    ids: list[str]
    mean: float
    std: float
    identity: str
    info: dict = field(default_factory=dict)

    def subset(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return ``(x, emotions, midlevel)`` of one split ("train", "valid" or "test")."""
        if name not in self.split:
            raise ParameterError(f"split must be one of {list(self.split)}, got {name!r}")
        idx = torch.as_tensor(self.split[name], dtype=torch.long)
        mid = None if self.midlevel is None else self.midlevel[idx]
        return self.x[idx], self.emotions[idx], mid

    @property
    def n_frames(self) -> int:
        return int(self.x.shape[2])


# --------------------------------------------------------------------------------------
# Spectrogram cache
# --------------------------------------------------------------------------------------

# FRONTEND_VERSION (mer_lib.versions) keys the cache: bumped when the front end's output changes.


def tensor_digest(*tensors: torch.Tensor | np.ndarray | None) -> str:
    """sha256 (hex) of tensors' dtypes, shapes and bytes (None counts as a tensor too).

    Example:
        >>> a = torch.zeros(2, 3)
        >>> tensor_digest(a) == tensor_digest(torch.zeros(2, 3)) != tensor_digest(torch.zeros(3, 2))
        True
        >>> tensor_digest(a) != tensor_digest(a, None)
        True
    """
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none;")
            continue
        arr = np.ascontiguousarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t)
        h.update(f"{arr.dtype.str}{arr.shape};".encode())
        h.update(memoryview(arr.reshape(-1)).cast("B"))
    return h.hexdigest()


class ShortClipWarning(UserWarning):
    """Some clips are far shorter than the rest of their corpus (truncated files?)."""


#: A clip shorter than this fraction of the corpus's median duration is reported.
SHORT_CLIP_RATIO = 0.5


def short_clips(paths: Sequence[str | Path], n_frames: Sequence[int],
                ratio: float = SHORT_CLIP_RATIO) -> list[tuple[Path, float]]:
    """The clips (path, seconds) whose spectrogram is shorter than ``ratio`` x the median.

    Example:
        >>> short_clips(["a.mp3", "b.mp3", "c.mp3"], [313, 320, 40])
        [(PosixPath('c.mp3'), 1.28)]
    """
    if not len(n_frames):
        return []
    median = float(np.median(np.asarray(n_frames, dtype=float)))
    return [(Path(p), round(n / FPS, 2)) for p, n in zip(paths, n_frames) if n < ratio * median]


def _warn_short_clips(paths: Sequence[Path], n_frames: Sequence[int]) -> list[tuple[Path, float]]:
    short = short_clips(paths, n_frames)
    if short:
        median = float(np.median(np.asarray(n_frames, dtype=float))) / FPS
        listed = ", ".join(f"{p} ({secs:g} s)" for p, secs in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        warnings.warn(ShortClipWarning(
            f"{len(short)} clip(s) last less than {SHORT_CLIP_RATIO:.0%} of the median duration "
            f"({median:.1f} s), truncated or damaged files? {listed}{more}"), stacklevel=3)
    return short


# --------------------------------------------------------------------------------------
# Excerpts and standardisation
# --------------------------------------------------------------------------------------

#: :func:`excerpt_starts` of a clip shorter than the excerpt (it is tiled, not cut).
TILED = -1


def excerpt_starts(lengths: Sequence[int], n_frames: int, seed: int = 0) -> list[int]:
    """The first frame of each clip's random excerpt, as :func:`take_excerpts` draws it.

    ``lengths`` are the clips' spectrogram lengths in frames. One start per clip, drawn
    uniformly by a generator seeded with ``seed`` (in clip order, one draw per clip long
    enough); a clip shorter than the excerpt gets :data:`TILED` (it is repeated, not cut).

    Example:
        >>> excerpt_starts([10, 3, 10], 5, seed=0)
        [2, -1, 3]
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ParameterError(f"excerpt length must be an integer number of frames >= 1, got {n_frames!r}")
    gen = torch.Generator().manual_seed(seed)
    starts = []
    for length in lengths:
        if length == 0:
            raise DataLayoutError("a spectrogram has no frames (empty audio clip)")
        if length < n_frames:
            starts.append(TILED)
            continue
        starts.append(int(torch.randint(0, length - n_frames + 1, (1,), generator=gen)))
    return starts


def take_excerpts(specs: Sequence[torch.Tensor], n_frames: int, seed: int = 0) -> torch.Tensor:
    """One random excerpt of ``n_frames`` frames per spectrogram, stacked to (N, n_frames, bands).

    The starts are :func:`excerpt_starts`; a clip shorter than the excerpt is extended by
    repeating it (as the reference does) and the excerpt taken from its start.

    Example:
        >>> import torch
        >>> take_excerpts([torch.arange(6.).reshape(3, 2)], 5).squeeze(0)[:, 0].tolist()
        [0.0, 2.0, 4.0, 0.0, 2.0]
    """
    starts = excerpt_starts([int(s.shape[0]) for s in specs], n_frames, seed)
    out = []
    for spec, start in zip(specs, starts):
        if start == TILED:
            reps = -(-n_frames // spec.shape[0])
            out.append(spec.repeat(reps, 1)[:n_frames])
        else:
            out.append(spec[start:start + n_frames])
    return torch.stack(out)


def standardisation_stats(specs: Sequence[torch.Tensor]) -> tuple[float, float]:
    """One scalar mean and std over every bin of every frame of ``specs`` (the training clips)."""
    flat = torch.cat([s.reshape(-1).double() for s in specs])
    mean, std = float(flat.mean()), float(flat.std())
    if not std > 0:
        raise DataLayoutError("the training spectrograms are constant (std 0): is the audio silent?")
    return mean, std


# --------------------------------------------------------------------------------------
# The one entry point of the chapters
# --------------------------------------------------------------------------------------

def synthetic_root(profile: Profile, *, home: str | Path | None = None, seed: int = 0,
                   spurious_cue: str | None = None, n_clips: int | None = None,
                   clip_seconds: float | None = None, progress: bool = True) -> Path:
    """Folder of the synthetic corpus for these settings (generated on first use).

    ``n_clips`` and ``clip_seconds`` default to the profile's values only when None; any
    other value is validated (at least 10 clips of at least ``audio.MIN_SECONDS`` s).
    """
    n = profile.n_clips if n_clips is None else check_int("n_clips", n_clips, minimum=10)
    secs = profile.clip_seconds if clip_seconds is None else check_positive("clip_seconds",
                                                                             clip_seconds)
    if secs < MIN_SECONDS:
        raise ParameterError(f"clip_seconds must be >= {MIN_SECONDS:g} (the shortest clip the "
                             f"data pipeline accepts), got {clip_seconds!r}")
    name = f"synthetic_v{GENERATOR_VERSION}_n{n}_s{secs:g}_x{profile.n_extra_midlevel}_seed{seed}"
    if spurious_cue:
        name += f"_cue-{spurious_cue}"
    root = Path(home or mer_home()) / "data" / name
    return generate_corpus(root, n_clips=n, clip_seconds=secs, seed=seed,
                           n_extra_midlevel=profile.n_extra_midlevel, spurious_cue=spurious_cue,
                           progress=progress)


def load_dataset(profile: Profile | str = "quick", data: str | Path | None = None, *,
                 home: str | Path | None = None, spurious_cue: str | None = None,
                 n_clips: int | None = None, clip_seconds: float | None = None,
                 excerpt_seconds: float | None = None, synth_seed: int = 0, excerpt_seed: int = 0,
                 device: str | torch.device = "cpu", progress: bool = True) -> MerTensors:
    """Load (or generate) a corpus and turn it into :class:`MerTensors`.

    Args:
        profile: a profile name or :class:`~mer_lib.profiles.Profile` (sizes come from it).
        data: ``None`` or ``"synthetic"`` for the embedded synthetic corpus, or a folder
            holding ``soundtracks/`` (Set1/ + mean_ratings_set1.csv) and optionally
            ``midlevel/`` (metadata.csv, annotations.csv) in the real datasets' layouts.
        spurious_cue, n_clips, clip_seconds, synth_seed: synthetic corpus settings
            (None: the profile's; 0 is an error, not "the default").
        excerpt_seconds: overrides the profile's excerpt length.
        excerpt_seed: the seed of the random excerpt positions.
        device: accepted for compatibility; spectrograms are computed on the CPU (see
            :func:`compute_spectrograms`).
        progress: progress bars for corpus generation and spectrogram computation.

    Clips far shorter than the corpus's median (less than half) are reported with a
    :class:`ShortClipWarning` naming them, and listed in ``info["short_clips"]``.

    Example:
        >>> ds = load_dataset("smoke")                      # doctest: +SKIP
        >>> ds.x.shape                                      # doctest: +SKIP
        torch.Size([40, 1, 63, 149])
    """
    if isinstance(profile, str):
        profile = get_profile(profile)
    if excerpt_seconds is not None:
        profile = get_profile(profile.name, excerpt_seconds=excerpt_seconds)
    if data is None or str(data) == "synthetic":
        root = synthetic_root(profile, home=home, seed=synth_seed, spurious_cue=spurious_cue,
                              n_clips=n_clips, clip_seconds=clip_seconds, progress=progress)
    else:
        root = Path(data).expanduser()
        for name, value in (("spurious_cue", spurious_cue), ("n_clips", n_clips),
                            ("clip_seconds", clip_seconds)):
            if value is not None:
                raise ParameterError(f"{name} only applies to the synthetic corpus "
                                     f"(data='synthetic'), got {name}={value!r} with data={str(data)!r}")
        if not root.is_dir():
            raise DataLayoutError(
                f"data folder {root} does not exist; expected a folder holding soundtracks/ "
                "(Set1/*.mp3 and mean_ratings_set1.csv) and optionally midlevel/ "
                "(metadata.csv, annotations.csv), or data='synthetic'")
    corpus = load_corpus(root)
    specs = compute_spectrograms(corpus.audio_paths, home=home, progress=progress,
                                 digests=corpus.audio_digests())
    n_frames = [int(s.shape[0]) for s in specs]
    short = _warn_short_clips(corpus.audio_paths, n_frames)
    split = split_indices(len(corpus.ids))
    mean, std = standardisation_stats([specs[i] for i in split["train"]])
    frames = profile.excerpt_frames
    x = ((take_excerpts(specs, frames, seed=excerpt_seed) - mean) / std).unsqueeze(1).float()
    emotions = torch.tensor(corpus.emotions, dtype=torch.float32)
    midlevel = None if corpus.midlevel is None else torch.tensor(corpus.midlevel, dtype=torch.float32)
    identity = hashlib.sha256(json.dumps({
        "corpus": corpus.fingerprint(), "frontend": FRONTEND_VERSION, "frames": frames,
        "excerpt_seed": excerpt_seed, "split_seed": SPLIT_SEED,
        "tensors": tensor_digest(x, emotions, midlevel)},
        sort_keys=True).encode()).hexdigest()[:16]
    return MerTensors(
        x=x, emotions=emotions, midlevel=midlevel,
        split=split, ids=list(corpus.ids), mean=mean, std=std, identity=identity,
        info={"root": str(root), "corpus": corpus, "profile": profile.name,
              "excerpt_frames": frames, "spectrogram_frames": n_frames, "excerpt_seed": excerpt_seed,
              "excerpt_starts": excerpt_starts(n_frames, frames, seed=excerpt_seed),
              "short_clips": [(str(p), secs) for p, secs in short]},
    )
