"""Tests of the synthetic corpus: layout, determinism, caching, atomicity, and that each of the
seven mid-level controls has a measurable effect on the rendered audio."""
from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_lib.data import split_indices
from mer_lib.datasets import EMOTIONS, MIDLEVEL
from mer_lib.datasets import synthetic
from mer_lib.datasets.synthetic import (CUE_FREQ, EMOTION_BIAS, EMOTION_MAP, SR,
                                        emotions_from_midlevel, generate_corpus, render_clip)
from mer_lib.errors import ParameterError

SMALL = dict(n_clips=12, clip_seconds=2.0, seed=3, n_extra_midlevel=2, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("synth") / "corpus", **SMALL)


def _decode(path: Path) -> np.ndarray:
    audio, sr = sf.read(path, dtype="float32")
    assert sr == SR and audio.ndim == 1
    return audio


# ---------------------------------------------------------------------------- layout, formats

def test_layout_and_formats(corpus):
    set1 = corpus / "soundtracks" / "Set1"
    assert sorted(p.name for p in set1.iterdir()) == [f"{i:03d}.mp3" for i in range(1, 13)]
    assert sorted(p.name for p in (corpus / "midlevel" / "audio").iterdir()) == ["13.mp3", "14.mp3"]

    ratings = pd.read_csv(corpus / "soundtracks" / "mean_ratings_set1.csv")
    assert list(ratings.columns) == ["number", *EMOTIONS, "TARGET"]
    assert ratings["number"].tolist() == list(range(1, 13))
    values = ratings[list(EMOTIONS)].to_numpy()
    assert values.min() >= 1 and values.max() <= 9
    discrete = ["anger", "fear", "happy", "sad", "tender"]
    expected = ratings[discrete].idxmax(axis=1).str.upper()
    assert ratings["TARGET"].tolist() == expected.tolist()

    meta_path = corpus / "midlevel" / "metadata.csv"
    assert meta_path.read_text().splitlines()[0] == "song id;Source;ID at file source"
    meta = pd.read_csv(meta_path, sep=";")
    assert meta["song id"].tolist() == list(range(1, 15))
    assert meta["Source"].tolist() == ["soundtracks"] * 12 + ["synthetic-extra"] * 2
    assert meta["ID at file source"].tolist() == list(range(1, 13)) + [1, 2]

    ann_path = corpus / "midlevel" / "annotations.csv"
    assert ann_path.read_text().splitlines()[0] == "song_id," + ",".join(MIDLEVEL)
    ann = pd.read_csv(ann_path)
    assert ann["song_id"].tolist() == list(range(1, 15))
    mids = ann[list(MIDLEVEL)].to_numpy()
    assert mids.min() >= 1 and mids.max() <= 9

    truth = json.loads((corpus / "synthetic_truth.json").read_text())
    assert truth["parameters"]["n_clips"] == 12 and truth["parameters"]["seed"] == 3
    assert np.allclose(truth["emotion_map"], EMOTION_MAP)
    controls = np.array([[c["controls"][k] for k in MIDLEVEL] for c in truth["clips"]])
    assert controls.shape == (14, 7)
    assert np.abs((mids - 1) / 8 - controls).max() < 0.2  # annotations = controls + noise
    split = split_indices(12)
    assert [c["split"] for c in truth["clips"]][:12] == [
        next(k for k, v in split.items() if i in v) for i in range(12)]

    for path in [*set1.iterdir(), *(corpus / "midlevel" / "audio").iterdir()]:
        audio = _decode(path)
        assert abs(audio.size / SR - 2.0) <= 0.1
        assert audio[0] != 0 and audio[-1] != 0
        assert 0.5 < np.abs(audio).max() < 1.0


def test_render_clip_basics():
    audio, notes = render_clip(np.full(7, 0.5), seconds=1.5, rng=1)
    assert audio.dtype == np.float32 and audio.shape == (int(1.5 * SR),)
    assert np.isclose(np.abs(audio).max(), 0.9, atol=1e-3)
    assert audio[0] != 0 and audio[-1] != 0
    assert set(notes) >= {"tempo", "key", "pad", "bass", "lead", "hats"}
    named = dict(zip(MIDLEVEL, np.full(7, 0.5)))
    assert np.array_equal(render_clip(named, seconds=1.5, rng=1)[0], audio)
    with pytest.raises(ParameterError, match="controls"):
        render_clip(np.full(7, 1.5), seconds=1.0)
    with pytest.raises(ParameterError, match="controls"):
        render_clip({"melodiousness": 0.5}, seconds=1.0)


# ------------------------------------------------------------------- determinism and caching

def test_same_seed_same_corpus_other_seed_differs(corpus, tmp_path):
    again = generate_corpus(tmp_path / "again", **SMALL, workers=2)  # threads: same result
    for rel in ("soundtracks/mean_ratings_set1.csv", "midlevel/metadata.csv",
                "midlevel/annotations.csv"):
        assert (again / rel).read_bytes() == (corpus / rel).read_bytes()
    for rel in ("soundtracks/Set1/001.mp3", "soundtracks/Set1/012.mp3", "midlevel/audio/14.mp3"):
        assert np.array_equal(_decode(again / rel), _decode(corpus / rel))

    other = generate_corpus(tmp_path / "other", **dict(SMALL, seed=4))
    assert ((other / "soundtracks/mean_ratings_set1.csv").read_bytes()
            != (corpus / "soundtracks/mean_ratings_set1.csv").read_bytes())
    assert not np.array_equal(_decode(other / "soundtracks/Set1/001.mp3"),
                              _decode(corpus / "soundtracks/Set1/001.mp3"))


def test_render_clip_is_deterministic():
    a, _ = render_clip(np.full(7, 0.3), seconds=1.0, rng=np.random.default_rng(5))
    b, _ = render_clip(np.full(7, 0.3), seconds=1.0, rng=np.random.default_rng(5))
    c, _ = render_clip(np.full(7, 0.3), seconds=1.0, rng=np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_second_call_does_not_rewrite(corpus):
    files = [corpus / "synthetic_truth.json", corpus / "soundtracks/Set1/001.mp3"]
    before = [p.stat().st_mtime_ns for p in files]
    assert generate_corpus(corpus, **SMALL) == corpus
    assert [p.stat().st_mtime_ns for p in files] == before


def _contents(folder) -> list[str]:
    """Names in ``folder`` except the corpora's lock files (``.<name>.lock``: one fixed,
    empty file per corpus, which must stay for the inter-process lock to be safe)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_other_parameters_raise_unless_overwrite(tmp_path):
    root = generate_corpus(tmp_path / "c", n_clips=10, clip_seconds=0.5, progress=False)
    with pytest.raises(ParameterError, match="overwrite=True"):
        generate_corpus(root, n_clips=10, clip_seconds=0.5, seed=1, progress=False)
    generate_corpus(root, n_clips=10, clip_seconds=0.5, seed=1, overwrite=True, progress=False)
    assert json.loads((root / "synthetic_truth.json").read_text())["parameters"]["seed"] == 1
    assert _contents(tmp_path) == ["c"]  # no leftovers (the lock file stays, see _contents)


def test_refuses_a_folder_that_is_not_a_corpus(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="not a synthetic corpus"):
        generate_corpus(tmp_path / "data", n_clips=10, clip_seconds=0.5, overwrite=True,
                        progress=False)
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"


def _failing_writer(monkeypatch, after: int) -> None:
    calls = {"n": 0}
    real = synthetic._write_clip

    def writer(job):
        calls["n"] += 1
        if calls["n"] > after:
            raise RuntimeError("interrupted")
        return real(job)

    monkeypatch.setattr(synthetic, "_write_clip", writer)


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch, workers):
    _failing_writer(monkeypatch, after=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_corpus(tmp_path / "c", n_clips=10, clip_seconds=0.5, progress=False,
                        workers=workers)
    assert _contents(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_corpus(tmp_path, monkeypatch):
    root = generate_corpus(tmp_path / "c", n_clips=10, clip_seconds=0.5, progress=False)
    truth = (root / "synthetic_truth.json").read_bytes()
    _failing_writer(monkeypatch, after=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_corpus(root, n_clips=10, clip_seconds=0.5, seed=9, overwrite=True,
                        progress=False)
    assert (root / "synthetic_truth.json").read_bytes() == truth
    assert len(list((root / "soundtracks/Set1").iterdir())) == 10
    assert _contents(tmp_path) == ["c"]


@pytest.mark.parametrize("bad, match", [
    (dict(n_clips=5), "n_clips"),
    (dict(n_clips=12.0), "n_clips"),
    (dict(clip_seconds=0), "clip_seconds"),
    (dict(seed=-1), "seed"),
    (dict(n_extra_midlevel=-2), "n_extra_midlevel"),
    (dict(spurious_cue="joy"), "spurious_cue"),
    (dict(spurious_strength=float("nan")), "spurious_strength"),
    (dict(noise=-0.1), "noise"),
    (dict(workers=0), "workers"),
])
def test_bad_parameters(tmp_path, bad, match):
    kw = dict(n_clips=10, clip_seconds=0.5, progress=False) | bad
    with pytest.raises(ParameterError, match=match):
        generate_corpus(tmp_path / "c", **kw)
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------ emotion map

def test_emotion_map_is_plausible_and_in_range():
    assert EMOTION_MAP.shape == (7, 8) and EMOTION_BIAS.shape == (8,)
    assert np.all(np.abs(EMOTION_MAP).sum(axis=0) <= 0.9 + 1e-12)  # clean ratings in (1, 9)
    w = {(mid, emo): EMOTION_MAP[MIDLEVEL.index(mid), EMOTIONS.index(emo)]
         for mid in MIDLEVEL for emo in EMOTIONS}
    assert w["minorness", "sad"] > 0 and w["minorness", "happy"] < 0
    assert w["minorness", "valence"] < 0
    assert all(w["dissonance", e] > 0 for e in ("tension", "fear", "anger"))
    assert w["articulation", "energy"] > 0 and w["rhythm_complexity", "energy"] > 0
    assert w["melodiousness", "tender"] > 0 and w["tonal_stability", "valence"] > 0
    assert np.allclose(emotions_from_midlevel(np.full(7, 0.5), noise=0.0), 5.0)
    assert np.allclose(emotions_from_midlevel(np.zeros(7), noise=0.0),
                       1 + 8 * EMOTION_BIAS)


def test_emotions_are_mostly_explained_by_the_controls():
    m = np.random.default_rng(0).random((4000, 7))
    e = emotions_from_midlevel(m, rng=1)
    assert e.shape == (4000, 8) and e.min() >= 1 and e.max() <= 9
    x = np.c_[m, np.ones(len(m))]
    coef, *_ = np.linalg.lstsq(x, e, rcond=None)
    r2 = 1 - ((e - x @ coef) ** 2).sum(0) / ((e - e.mean(0)) ** 2).sum(0)
    assert np.all((r2 > 0.8) & (r2 < 0.95))
    assert np.allclose(coef[:7], 8 * EMOTION_MAP, atol=0.1)
    with pytest.raises(ParameterError):
        emotions_from_midlevel(np.full(6, 0.5))


# ------------------------------------------------- each control has a measurable effect

BASE = dict(melodiousness=0.5, articulation=0.5, rhythm_complexity=0.3, rhythm_stability=1.0,
            dissonance=0.0, tonal_stability=1.0, minorness=0.0)
SEEDS = (0, 1)


def _render(seed: int, seconds: float = 5.0, **controls) -> tuple[np.ndarray, dict]:
    return render_clip(dict(BASE, **controls), seconds, SR, np.random.default_rng(seed),
                       tempo=120.0, key=0)


def _chroma(audio: np.ndarray) -> np.ndarray:
    """Power per pitch class (C = 0, the key) and frame, from 60 Hz to 2 kHz."""
    power = np.abs(librosa.stft(audio.astype(float), n_fft=8192, hop_length=2048)) ** 2
    f = librosa.fft_frequencies(sr=SR, n_fft=8192)
    sel = (f >= 60) & (f <= 2000)
    pcs = np.round(69 + 12 * np.log2(f[sel] / 440.0)).astype(int) % 12
    chroma = np.zeros((12, power.shape[1]))
    np.add.at(chroma, pcs, power[sel])
    return chroma


def _onsets(audio: np.ndarray) -> np.ndarray:
    return librosa.onset.onset_detect(y=audio.astype(float), sr=SR, units="time", hop_length=256)


@pytest.mark.parametrize("seed", SEEDS)
def test_minorness_moves_energy_from_major_to_minor_third(seed):
    def minor_share(value):
        c = _chroma(_render(seed, minorness=value)[0]).sum(axis=1)
        return c[3] / (c[3] + c[4])  # E flat vs E above the key C
    shares = [minor_share(v) for v in (0.0, 0.5, 1.0)]
    assert shares[0] < 0.2 < shares[1] < 0.8 < shares[2]


@pytest.mark.parametrize("seed", SEEDS)
def test_dissonance_adds_semitone_clashes(seed):
    def clash(value):
        c = _chroma(_render(seed, dissonance=value)[0])
        c = c / c.sum(axis=0, keepdims=True)
        return (c * np.roll(c, -1, axis=0)).sum() / (c ** 2).sum()
    low, mid, high = (clash(v) for v in (0.0, 0.5, 1.0))
    assert low < mid < high and high > 1.8 * low


@pytest.mark.parametrize("seed", SEEDS)
def test_tonal_stability_removes_out_of_key_energy(seed):
    def out_of_key(value):
        c = _chroma(_render(seed, tonal_stability=value)[0]).sum(axis=1)
        return c[[1, 3, 6, 8, 10]].sum() / c.sum()  # outside C major
    assert out_of_key(1.0) < 0.1 and out_of_key(0.0) > 0.2


@pytest.mark.parametrize("seed", SEEDS)
def test_articulation_shortens_notes(seed):
    def sounding(value):
        rms = librosa.feature.rms(y=_render(seed, articulation=value)[0], frame_length=1024,
                                  hop_length=256)[0]
        return np.mean(rms > 0.1 * rms.max())  # share of frames above -20 dB
    legato, middle, staccato = (sounding(v) for v in (0.0, 0.5, 1.0))
    assert legato > 0.95 and legato >= middle > staccato and staccato < 0.6


@pytest.mark.parametrize("seed", SEEDS)
def test_rhythm_stability_regularises_onsets(seed):
    def ioi_std(value):
        audio, _ = _render(seed, rhythm_stability=value, rhythm_complexity=0.0,
                           articulation=1.0)
        return np.diff(_onsets(audio)).std()
    steady, loose = ioi_std(1.0), ioi_std(0.0)
    assert steady < 0.03 and loose > 3 * steady + 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_rhythm_complexity_adds_onsets(seed):
    def rate(value):
        return _onsets(_render(seed, rhythm_complexity=value, articulation=1.0)[0]).size / 5.0
    simple, middle, complex_ = (rate(v) for v in (0.0, 0.5, 1.0))
    assert simple < middle < complex_ and complex_ > 2.5 * simple
    assert 1.5 <= simple <= 2.5  # beats only at 120 BPM


@pytest.mark.parametrize("seed", SEEDS)
def test_melodiousness_makes_a_stepwise_lead(seed):
    def mean_step(value):
        pitches = _render(seed, melodiousness=value)[1]["lead"]["pitches"]
        return np.abs(np.diff(pitches)).mean()
    assert mean_step(1.0) < 3.0 < 6.0 < mean_step(0.0)


# ------------------------------------------------------------------------------ spurious cue

def _cue_amplitude(audio: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    f = np.fft.rfftfreq(audio.size, 1 / SR)
    return float(spec[np.abs(f - CUE_FREQ) < 30].max() / (np.hanning(audio.size).sum() / 2))


def test_spurious_cue_follows_tension_in_train_and_valid_only(tmp_path):
    kw = dict(n_clips=200, clip_seconds=0.5, seed=11, progress=False)
    root = generate_corpus(tmp_path / "cue", spurious_cue="tension", **kw)
    ratings = pd.read_csv(root / "soundtracks/mean_ratings_set1.csv")
    tension = ratings["tension"].to_numpy()
    level = np.array([_cue_amplitude(_decode(root / f"soundtracks/Set1/{i:03d}.mp3"))
                      for i in range(1, 201)])
    truth = json.loads((root / "synthetic_truth.json").read_text())
    stored = np.array([c["cue_level"] for c in truth["clips"]])
    assert np.corrcoef(level, stored)[0, 1] > 0.99  # the audio carries the recorded level

    split = split_indices(200)
    seen = np.concatenate([split["train"], split["valid"]])
    assert np.corrcoef(level[seen], tension[seen])[0, 1] > 0.8
    assert abs(np.corrcoef(level[split["test"]], tension[split["test"]])[0, 1]) < 0.5

    plain = generate_corpus(tmp_path / "plain", **kw)  # the cue never changes the ratings
    assert ((plain / "soundtracks/mean_ratings_set1.csv").read_bytes()
            == (root / "soundtracks/mean_ratings_set1.csv").read_bytes())
    assert _cue_amplitude(_decode(plain / "soundtracks/Set1/001.mp3")) < 0.1 * level.max()
