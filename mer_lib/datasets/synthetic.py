"""A procedurally generated, music-like corpus in the layout of the real datasets.

No real data can be fetched by the project's machines, so the default runs use this corpus.
It is written in the *same layout and file formats* as Soundtracks Set 1 plus the Mid-level
Perceptual Features dataset, so one loader serves both::

    <root>/soundtracks/Set1/001.mp3 ... NNN.mp3     mono, 22 050 Hz
    <root>/soundtracks/mean_ratings_set1.csv        number, 8 emotions (1-9), TARGET
    <root>/midlevel/metadata.csv                    ';'-separated: song id;Source;ID at file source
    <root>/midlevel/annotations.csv                 song_id + 7 mid-level ratings (1-9)
    <root>/midlevel/audio/<song id>.mp3             only the extra mid-level-only clips
    <root>/synthetic_truth.json                     every generating parameter

**Mid-level controls.** Each clip draws seven controls ``m ~ U(0, 1)`` (independently), one per
mid-level feature, and every one of them drives the synthesis (:func:`render_clip`):

====================  ==========================================================================
control               effect on the audio
====================  ==========================================================================
melodiousness         lead line: stepwise, direction-keeping motion with probability m, else a
                      random leap over two octaves; the lead also gets louder with m
articulation          note envelopes of all pitched parts: the note sounds for (1 - 0.85 m) of
                      its inter-onset interval and decays with tau = 0.06 + 2 (1 - m)^2 s
                      (legato pad at 0, dry staccato at 1)
rhythm_complexity     onset grid of 16th notes: beats only at 0; off-beat 8ths and then 16ths
                      fill in and downbeats get skipped (syncopation) as m grows
rhythm_stability      timing: slow tempo drift of +-40 % (1 - m) and per-onset jitter with std
                      0.1 (1 - m) s, independent per instrument (loose ensemble at 0)
dissonance            a minor second and a tritone above each chord root (level ~ m) and
                      upper partials stretched by 6 m % (inharmonic)
tonal_stability       chromatic chords (roots outside the key) with probability 0.7 (1 - m)
                      and chromatic lead notes with probability 0.6 (1 - m)
minorness             chord thirds cross-fade from major (m = 0) through open fifths to minor
                      (m = 1); lead notes take the lowered 3rd/6th/7th with probability m
====================  ==========================================================================

Tempo (70-160 BPM) and key (12 roots) are drawn independently of the controls. A clip is a
chord pad + bass + lead (additive synthesis, a few harmonics) + band-limited noise clicks
(hi-hats), peak-normalised to 0.9 with a -60 dB noise floor so there is no digital silence.

**Annotations** are the controls plus rating noise: ``clip(1 + 8 (m + N(0, 0.03)), 1, 9)``.

**Emotions** follow from the controls by the fixed linear map :data:`EMOTION_MAP` (7 x 8) and
:data:`EMOTION_BIAS` (8,) plus noise (see :func:`emotions_from_midlevel`)::

    rating = clip(1 + 8 (m @ EMOTION_MAP + EMOTION_BIAS + N(0, noise)), 1, 9)

=================  =======  =======  =======  =======  =======  =======  =======  =======
control            valence  energy   tension  anger    fear     happy    sad      tender
=================  =======  =======  =======  =======  =======  =======  =======  =======
melodiousness      +0.25    -0.10             -0.15             +0.10             +0.30
articulation                +0.40             +0.25             +0.15    -0.30    -0.25
rhythm_complexity           +0.35             +0.15                      -0.15
rhythm_stability                     -0.20             -0.15
dissonance         -0.15             +0.35    +0.30    +0.25    -0.15             -0.20
tonal_stability    +0.20             -0.25             -0.25                      +0.10
minorness          -0.30                               +0.20    -0.35    +0.35
=================  =======  =======  =======  =======  =======  =======  =======  =======

The bias centres every emotion at 0.5 (rating 5) for ``m = 0.5``; as each column's absolute
weights sum to <= 0.9, the noise-free ratings stay within [1.4, 8.6]. With the default
``noise=0.05`` (0.4 rating points) a linear fit from the controls explains about 88 % of each
emotion's variance (R^2 0.87-0.91 on the default 360-clip corpus). ``TARGET`` is the
upper-case name of the highest of the five discrete emotions (anger, fear, happy, sad,
tender), e.g. ``"HAPPY"``.

**Spurious cue.** With ``spurious_cue="tension"`` (any emotion name), a steady sine hum at
:data:`CUE_FREQ` (9 kHz; no other part of the synthesis reaches it: the highest partials stay below
8.5 kHz and the hi-hat noise is centred at 4.5 kHz) is added with amplitude
``CUE_AMP * spurious_strength * level``. In the training and validation splits (and in the
extra mid-level clips, which are training data) ``level = (rating - 1) / 8`` of that emotion,
so the hum predicts the rating perfectly; in the test split ``level ~ U(0, 1)`` independently
of everything else. Levels are recorded per clip in ``synthetic_truth.json``; the ratings do
not depend on whether a cue is planted.

**Writing.** Clips are rendered by :func:`render_clip` with a generator seeded from
``(seed, clip index)`` (so the result does not depend on the number of worker threads), into a
hidden sibling folder ``.<root name>.partial-<host>-<pid>-*`` that is renamed to ``root`` when
complete. A process killed outright (SIGKILL) can leave that folder behind; the next generation
in the same parent folder removes it (and only those of processes that no longer run, see
:func:`mer_lib.paths.remove_dead_temporaries`). Processes that ask for the same corpus at the
same time take turns through a lock file ``.<root name>.lock`` beside it
(:func:`mer_lib.locks.work_lock`): the first generates, the others wait and then find it.

Example:
    >>> import tempfile
    >>> from mer_lib.datasets.synthetic import generate_corpus
    >>> root = generate_corpus(tempfile.mkdtemp() + "/synth", n_clips=10, clip_seconds=1.0,
    ...                        progress=False)
    >>> sorted(p.name for p in root.iterdir())
    ['midlevel', 'soundtracks', 'synthetic_truth.json']
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from ..errors import MerError, ParameterError, check_int, check_positive
from ..locks import work_lock
from ..paths import StorageError, remove_dead_temporaries, temporary_prefix
from . import EMOTIONS, MIDLEVEL
from .synthesis import (CUE_AMP, CUE_FREQ, EMOTION_BIAS, EMOTION_MAP, GENERATOR_VERSION, MIDLEVEL_NOISE, SR, emotions_from_midlevel, render_clip, _DISCRETE)  # noqa: F401  (re-exported)

# --------------------------------------------------------------------------------------------
# the corpus


def _clip_rng(seed: int, index: int) -> np.random.Generator:
    """Independent generator of clip ``index`` (0-based over all clips, extras included)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 1, index]))


def _write_clip(job: dict) -> str:
    """Render one clip and write it as MP3 (runs in a worker thread)."""
    rng = _clip_rng(job["seed"], job["index"])
    audio, _ = render_clip(job["controls"], job["seconds"], SR, rng, tempo=job["tempo"],
                           key=job["key"], cue_level=job["cue_level"])
    sf.write(job["path"], audio, SR, format="MP3")
    return job["path"]


def _parameters(**kw: Any) -> dict:
    """The parameter record that identifies a corpus (JSON-normalised)."""
    record = dict(kw, sample_rate=SR, generator_version=GENERATOR_VERSION)
    if record["spurious_cue"] is None:
        record["spurious_strength"] = None
    return json.loads(json.dumps(record))


def _validate(n_clips: Any, clip_seconds: Any, seed: Any, n_extra_midlevel: Any,
              spurious_cue: Any, spurious_strength: Any, noise: Any) -> None:
    check_int("n_clips", n_clips, minimum=10)
    check_positive("clip_seconds", clip_seconds)
    check_int("seed", seed, minimum=0)
    check_int("n_extra_midlevel", n_extra_midlevel, minimum=0)
    if spurious_cue is not None and spurious_cue not in EMOTIONS:
        raise ParameterError(f"spurious_cue must be None or one of {list(EMOTIONS)}, "
                             f"got {spurious_cue!r}")
    check_positive("spurious_strength", spurious_strength, allow_zero=True)
    check_positive("noise", noise, allow_zero=True)
    if noise > 1:
        raise ParameterError(f"noise is a standard deviation on the 0..1 scale; got {noise!r}")


def _existing(root: Path, params: dict, overwrite: bool) -> bool:
    """True if ``root`` already holds this corpus; raise if it holds something else."""
    if not root.exists():
        return False
    if root.is_dir() and not any(root.iterdir()):
        return False
    truth = root / "synthetic_truth.json"
    if not truth.is_file():
        raise ParameterError(f"{root} exists and is not a synthetic corpus (no "
                             f"synthetic_truth.json); choose an empty or new folder")
    try:
        stored = json.loads(truth.read_text())["parameters"]
    except (ValueError, KeyError) as err:
        raise ParameterError(f"{truth} is unreadable ({err}); delete {root} or pass "
                             f"overwrite=True") from None
    n_files = len(list((root / "soundtracks" / "Set1").glob("*.mp3")))
    if stored == params and n_files == params["n_clips"]:
        return True
    if overwrite:
        return False
    if stored == params:
        raise ParameterError(f"{root} holds an incomplete synthetic corpus ({n_files} of "
                             f"{params['n_clips']} clips in soundtracks/Set1); pass "
                             f"overwrite=True to regenerate it")
    diff = {k: (stored.get(k), v) for k, v in params.items() if stored.get(k) != v}
    raise ParameterError(f"{root} holds a synthetic corpus generated with other parameters "
                         f"(stored vs requested: {diff}); pass overwrite=True to replace it "
                         f"or choose another folder")


def generate_corpus(root: str | os.PathLike, n_clips: int = 360, clip_seconds: float = 10.0,
                    seed: int = 0, n_extra_midlevel: int = 0, spurious_cue: str | None = None,
                    spurious_strength: float = 1.0, noise: float = 0.05,
                    overwrite: bool = False, progress: bool = True,
                    workers: int | None = None) -> Path:
    """Generate the synthetic corpus at ``root`` (see the module docstring for the layout).

    Everything is written into a temporary sibling folder that is renamed into place at the
    end, so an interrupted run leaves no partial corpus at ``root`` (and the next run removes
    the temporary folder a killed one left). If ``root`` already holds a corpus generated
    with the same parameters it is returned untouched; one with other parameters raises
    ParameterError unless ``overwrite=True``. Concurrent calls for the same ``root`` are
    serialised by a lock (check, lock, check again). Results depend only on the parameters
    (clip ``i`` uses its own generator seeded from ``(seed, i)``). A folder that cannot be
    written raises :class:`~mer_lib.paths.StorageError`.

    Args:
        root: output folder.
        n_clips: number of Soundtracks-like clips (>= 10) with emotion and mid-level ratings.
        clip_seconds: length of every clip.
        seed: master seed.
        n_extra_midlevel: extra clips with mid-level ratings only (``midlevel/audio/``).
        spurious_cue: None or an emotion name whose rating the 9 kHz hum follows in
            train/valid (random in test).
        spurious_strength: amplitude factor of the hum.
        noise: std of the emotion noise on the 0..1 scale (a rating point is 1/8).
        overwrite: replace a corpus generated with other parameters.
        progress: show a tqdm progress bar.
        workers: threads rendering clips (default: up to 2 for 40+ clips, else 1).

    Returns:
        ``root`` as a Path.

    Example:
        >>> import tempfile
        >>> root = generate_corpus(tempfile.mkdtemp() + "/c", n_clips=10, clip_seconds=0.5,
        ...                        progress=False)
        >>> (root / "soundtracks" / "Set1" / "010.mp3").is_file()
        True
    """
    _validate(n_clips, clip_seconds, seed, n_extra_midlevel, spurious_cue, spurious_strength,
              noise)
    if workers is not None:
        check_int("workers", workers, minimum=1)
    root = Path(root).expanduser().absolute()
    params = _parameters(n_clips=n_clips, clip_seconds=float(clip_seconds), seed=seed,
                         n_extra_midlevel=n_extra_midlevel, spurious_cue=spurious_cue,
                         spurious_strength=float(spurious_strength), noise=float(noise))
    try:
        if _existing(root, params, overwrite):
            return root
        with work_lock(root.parent / f".{root.name}.lock", what=f"synthetic corpus {root}"):
            if _existing(root, params, overwrite):  # another process generated it meanwhile
                return root
            remove_dead_temporaries(root.parent)
            _generate(root, params, workers, progress)
    except MerError:
        raise
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise StorageError(f"cannot read or write the synthetic corpus {root}: "
                           f"{err.strerror or err}{where}") from None
    return root


def _generate(root: Path, params: dict, workers: int | None, progress: bool) -> None:
    """Render the corpus of ``params`` into a temporary sibling folder, then rename it to root."""
    from ..split import SPLIT_SEED, split_indices  # imports torch, so only when needed

    n_clips, clip_seconds, seed = params["n_clips"], params["clip_seconds"], params["seed"]
    n_extra_midlevel, noise = params["n_extra_midlevel"], params["noise"]
    spurious_cue, spurious_strength = params["spurious_cue"], params["spurious_strength"]
    if spurious_strength is None:  # stored as None without a cue; no hum is planted then
        spurious_strength = 0.0

    n_total = n_clips + n_extra_midlevel
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    controls = rng.random((n_total, len(MIDLEVEL)))
    tempi = rng.uniform(70, 160, n_total)
    keys = rng.integers(0, 12, n_total)
    annotations = np.clip(1 + 8 * (controls + rng.normal(0, MIDLEVEL_NOISE, controls.shape)), 1, 9)
    emotions = emotions_from_midlevel(controls, rng, noise)
    random_levels = rng.random(n_total)  # drawn whatever the cue, so the ratings never change
    split = np.full(n_total, "extra", dtype=object)
    for name, idx in split_indices(n_clips).items():
        split[idx] = name
    cue_levels = np.zeros(n_total)
    if spurious_cue is not None:
        follow = (emotions[:, EMOTIONS.index(spurious_cue)] - 1) / 8
        cue_levels = np.where(split == "test", random_levels, follow)

    width = max(3, len(str(n_clips)))
    files = [f"soundtracks/Set1/{i + 1:0{width}d}.mp3" if i < n_clips
             else f"midlevel/audio/{i + 1}.mp3" for i in range(n_total)]
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(root.name, "partial"), dir=root.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the corpus is not
        for sub in ("soundtracks/Set1", "midlevel/audio"):
            (tmp / sub).mkdir(parents=True)
        jobs = [{"path": str(tmp / files[i]), "controls": controls[i],
                 "seconds": float(clip_seconds), "seed": seed, "index": i,
                 "tempo": float(tempi[i]), "key": int(keys[i]),
                 "cue_level": float(cue_levels[i] * spurious_strength)} for i in range(n_total)]
        _render_all(jobs, workers, progress)
        _write_tables(tmp, n_clips, annotations, emotions)
        truth = {
            "parameters": params, "emotions": list(EMOTIONS), "midlevel": list(MIDLEVEL),
            "emotion_map": EMOTION_MAP.tolist(), "emotion_bias": EMOTION_BIAS.tolist(),
            "emotion_noise": float(noise), "midlevel_noise": MIDLEVEL_NOISE,
            "cue": {"emotion": spurious_cue, "strength": params["spurious_strength"],
                    "frequency_hz": CUE_FREQ, "amplitude_at_level_1": CUE_AMP,
                    "rule": "level = (rating - 1) / 8 in train/valid/extra, U(0, 1) in test"},
            "split_seed": SPLIT_SEED,
            "clips": [{"song_id": i + 1, "number": i + 1 if i < n_clips else None,
                       "file": files[i], "split": split[i],
                       "controls": dict(zip(MIDLEVEL, controls[i].round(6).tolist())),
                       "tempo": round(float(tempi[i]), 4), "key": int(keys[i]),
                       "cue_level": round(float(cue_levels[i]), 6),
                       "emotions": dict(zip(EMOTIONS, emotions[i].round(6).tolist()))}
                      for i in range(n_total)],
        }
        (tmp / "synthetic_truth.json").write_text(json.dumps(truth, indent=1))
        if root.exists():  # an empty folder, or a corpus to overwrite
            old = Path(tempfile.mkdtemp(prefix=temporary_prefix(root.name, "old"), dir=root.parent))
            root.rename(old / "corpus")
            try:
                tmp.rename(root)
            except OSError:
                (old / "corpus").rename(root)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _render_all(jobs: list[dict], workers: int | None, progress: bool) -> None:
    """Render and write every clip, in threads when that pays off.

    numpy's array loops and libsndfile's MP3 encoder release the GIL, so threads give most of
    the speed-up of processes without their start-up cost or ``__main__`` restrictions.
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(jobs) >= 40 else 1
    with tqdm(total=len(jobs), desc="synthetic corpus", unit="clip", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                _write_clip(job)
                bar.update()
            return
        pool = ThreadPoolExecutor(workers)
        try:
            for _ in pool.map(_write_clip, jobs):
                bar.update()
        finally:  # on an error or Ctrl-C, drop the clips not yet started
            pool.shutdown(wait=True, cancel_futures=True)


def _write_tables(tmp: Path, n_clips: int, annotations: np.ndarray, emotions: np.ndarray) -> None:
    """The three CSV files, in the real datasets' formats."""
    numbers = np.arange(1, n_clips + 1)
    ratings = pd.DataFrame(emotions[:n_clips], columns=list(EMOTIONS))
    ratings.insert(0, "number", numbers)
    discrete = ratings[list(_DISCRETE)].to_numpy()
    ratings["TARGET"] = [_DISCRETE[j].upper() for j in discrete.argmax(axis=1)]
    ratings.to_csv(tmp / "soundtracks" / "mean_ratings_set1.csv", index=False,
                   float_format="%.4f")
    n_total = annotations.shape[0]
    song_ids = np.arange(1, n_total + 1)
    meta = pd.DataFrame({
        "song id": song_ids,
        "Source": ["soundtracks"] * n_clips + ["synthetic-extra"] * (n_total - n_clips),
        "ID at file source": np.concatenate([numbers, np.arange(1, n_total - n_clips + 1)]),
    })
    meta.to_csv(tmp / "midlevel" / "metadata.csv", sep=";", index=False)
    ann = pd.DataFrame(annotations, columns=list(MIDLEVEL))
    ann.insert(0, "song_id", song_ids)
    ann.to_csv(tmp / "midlevel" / "annotations.csv", index=False, float_format="%.4f")
