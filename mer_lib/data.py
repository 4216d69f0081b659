"""From a corpus to model-ready tensors: split, spectrogram cache, standardisation, excerpts.

The split is the one fixed 80/10/10 partition (generator seed 42) that every model and seed
shares. Spectrograms are cached on disk keyed by the front-end settings and each audio file's
identity; the standardisation uses one scalar mean and std taken over the training split.

Example:
    >>> from mer_lib.data import split_indices
    >>> s = split_indices(10)
    >>> [len(s[k]) for k in ("train", "valid", "test")]
    [8, 1, 1]
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import load_waveform
from .errors import DataLayoutError, ParameterError
from .frontend import LogFiltSpec, compute_batch
from .paths import atomic_path, mer_home
from .profiles import Profile, get_profile

SPLIT_SEED = 42
SPLITS = ("train", "valid", "test")


def split_indices(n: int, seed: int = SPLIT_SEED, fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """Fixed 80/10/10 train/valid/test partition of ``range(n)`` by a seeded permutation.

    Sizes are floor(0.8 n) and floor(0.1 n) for train and validation; the test split takes
    the rest. Every index appears in exactly one split; the result depends only on n and seed.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ParameterError(f"split needs an integer number of clips >= 3, got {n!r}")
    perm = torch.randperm(int(n), generator=torch.Generator().manual_seed(seed)).numpy()
    n_train = int(n * fractions[0])
    n_valid = max(1, int(n * fractions[1]))
    return {
        "train": np.sort(perm[:n_train]),
        "valid": np.sort(perm[n_train:n_train + n_valid]),
        "test": np.sort(perm[n_train + n_valid:]),
    }


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
        identity: a short hash naming the data (corpus, front end, excerpts) for cache keys.
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

#: Bump when the front end's output changes, so that old cache entries are not reused.
FRONTEND_VERSION = "logfilt-madmom0.16-v1"


def file_digest(path: str | Path) -> str:
    """Short sha256 of a file's bytes: the audio identity used by the spectrogram cache."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:20]


def spectrogram_cache_dir(home: str | Path | None = None) -> Path:
    """The folder of cached spectrograms for the current front-end settings."""
    return Path(home or mer_home()) / "cache" / "spectrograms" / FRONTEND_VERSION


def compute_spectrograms(audio_paths: Sequence[str | Path], *, home: str | Path | None = None,
                         device: str | torch.device = "cpu", chunk_size: int = 16,
                         progress: bool = True) -> list[torch.Tensor]:
    """Log-filtered spectrograms (frames, 149) of audio files, through the on-disk cache.

    Each entry is keyed by the front-end version and the file's content hash, and written
    atomically, so an interrupted run leaves no half-written entry and a second run only
    reads ``.npy`` files. Missing entries are computed in batches on ``device``.

    Example:
        >>> specs = compute_spectrograms(["clip.mp3"])          # doctest: +SKIP
        >>> specs[0].shape                                        # doctest: +SKIP
        torch.Size([313, 149])
    """
    cache = spectrogram_cache_dir(home)
    cache.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in audio_paths]
    for p in paths:
        if not p.is_file():
            raise DataLayoutError(f"audio file {p} does not exist")
    entries = [cache / f"{file_digest(p)}.npy" for p in paths]
    todo = [i for i, e in enumerate(entries) if not e.is_file()]
    if todo:
        front = LogFiltSpec().to(device)
        bar = tqdm(total=len(todo), desc="spectrograms", disable=not progress, leave=False)
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            waves = [load_waveform(paths[i], device=device) for i in chunk]
            with torch.no_grad():
                specs = compute_batch(waves, frontend=front, chunk_size=chunk_size)
            for i, spec in zip(chunk, specs):
                with atomic_path(entries[i], suffix=".npy") as tmp:
                    np.save(tmp, spec.cpu().numpy().astype(np.float32))
            bar.update(len(chunk))
        bar.close()
    return [torch.from_numpy(np.load(e)) for e in entries]


# --------------------------------------------------------------------------------------
# Excerpts and standardisation
# --------------------------------------------------------------------------------------

def take_excerpts(specs: Sequence[torch.Tensor], n_frames: int, seed: int = 0) -> torch.Tensor:
    """One random excerpt of ``n_frames`` frames per spectrogram, stacked to (N, n_frames, bands).

    The start of each excerpt is drawn uniformly by a generator seeded with ``seed``; a clip
    shorter than the excerpt is extended by repeating it (as the reference does) and the
    excerpt taken from its start.

    Example:
        >>> import torch
        >>> take_excerpts([torch.arange(6.).reshape(3, 2)], 5).squeeze(0)[:, 0].tolist()
        [0.0, 2.0, 4.0, 0.0, 2.0]
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ParameterError(f"excerpt length must be an integer number of frames >= 1, got {n_frames!r}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for spec in specs:
        if spec.shape[0] == 0:
            raise DataLayoutError("a spectrogram has no frames (empty audio clip)")
        if spec.shape[0] < n_frames:
            reps = -(-n_frames // spec.shape[0])
            out.append(spec.repeat(reps, 1)[:n_frames])
            continue
        start = int(torch.randint(0, spec.shape[0] - n_frames + 1, (1,), generator=gen))
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
                   clip_seconds: float | None = None) -> Path:
    """Folder of the synthetic corpus for these settings (generated on first use)."""
    from .datasets.synthetic import GENERATOR_VERSION, generate_corpus

    n = n_clips or profile.n_clips
    secs = clip_seconds or profile.clip_seconds
    name = f"synthetic_v{GENERATOR_VERSION}_n{n}_s{secs:g}_x{profile.n_extra_midlevel}_seed{seed}"
    if spurious_cue:
        name += f"_cue-{spurious_cue}"
    root = Path(home or mer_home()) / "data" / name
    return generate_corpus(root, n_clips=n, clip_seconds=secs, seed=seed,
                           n_extra_midlevel=profile.n_extra_midlevel, spurious_cue=spurious_cue)


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
        spurious_cue, n_clips, clip_seconds, synth_seed: synthetic corpus settings.
        excerpt_seconds: overrides the profile's excerpt length.
        excerpt_seed: the seed of the random excerpt positions.

    Example:
        >>> ds = load_dataset("smoke")                      # doctest: +SKIP
        >>> ds.x.shape                                      # doctest: +SKIP
        torch.Size([40, 1, 63, 149])
    """
    from .datasets.corpus import load_corpus

    if isinstance(profile, str):
        profile = get_profile(profile)
    if excerpt_seconds is not None:
        profile = get_profile(profile.name, excerpt_seconds=excerpt_seconds)
    if data is None or str(data) == "synthetic":
        root = synthetic_root(profile, home=home, seed=synth_seed, spurious_cue=spurious_cue,
                              n_clips=n_clips, clip_seconds=clip_seconds)
    else:
        root = Path(data).expanduser()
        if spurious_cue:
            raise ParameterError("spurious_cue only applies to the synthetic corpus (data='synthetic')")
        if not root.is_dir():
            raise DataLayoutError(
                f"data folder {root} does not exist; expected a folder holding soundtracks/ "
                "(Set1/*.mp3 and mean_ratings_set1.csv) and optionally midlevel/ "
                "(metadata.csv, annotations.csv), or data='synthetic'")
    corpus = load_corpus(root)
    specs = compute_spectrograms(corpus.audio_paths, home=home, device=device, progress=progress)
    split = split_indices(len(corpus.ids))
    mean, std = standardisation_stats([specs[i] for i in split["train"]])
    frames = profile.excerpt_frames
    x = ((take_excerpts(specs, frames, seed=excerpt_seed) - mean) / std).unsqueeze(1).float()
    identity = hashlib.sha256(json.dumps({
        "corpus": corpus.fingerprint(), "frontend": FRONTEND_VERSION, "frames": frames,
        "excerpt_seed": excerpt_seed, "split_seed": SPLIT_SEED}, sort_keys=True).encode()).hexdigest()[:16]
    midlevel = None if corpus.midlevel is None else torch.tensor(corpus.midlevel, dtype=torch.float32)
    return MerTensors(
        x=x, emotions=torch.tensor(corpus.emotions, dtype=torch.float32), midlevel=midlevel,
        split=split, ids=list(corpus.ids), mean=mean, std=std, identity=identity,
        info={"root": str(root), "corpus": corpus, "profile": profile.name,
              "excerpt_frames": frames, "spectrogram_frames": [int(s.shape[0]) for s in specs]},
    )
