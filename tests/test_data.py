"""The data pipeline: split, excerpts, standardisation, the spectrogram cache, load_dataset."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from mer_lib import data as D
from mer_lib.errors import DataLayoutError, ParameterError
from mer_lib.frontend import FPS, SAMPLE_RATE
from mer_lib.profiles import get_profile


def test_split_is_fixed_disjoint_and_80_10_10():
    s = D.split_indices(360)
    assert [len(s[k]) for k in D.SPLITS] == [288, 36, 36]
    allidx = np.concatenate([s[k] for k in D.SPLITS])
    assert sorted(allidx.tolist()) == list(range(360))
    again = D.split_indices(360)
    assert all(np.array_equal(s[k], again[k]) for k in D.SPLITS)
    other = D.split_indices(360, seed=7)
    assert not np.array_equal(s["test"], other["test"])


@pytest.mark.parametrize("bad", [2, 0, -5, 3.5, "360", True])
def test_split_rejects_bad_sizes(bad):
    with pytest.raises(ParameterError, match="split"):
        D.split_indices(bad)


def test_excerpts_are_seeded_windows_and_short_clips_repeat():
    spec = torch.arange(100.0).reshape(50, 2)           # frame i holds 2i, 2i+1
    a = D.take_excerpts([spec, spec], 10, seed=3)
    b = D.take_excerpts([spec, spec], 10, seed=3)
    assert torch.equal(a, b) and a.shape == (2, 10, 2)
    for ex in a:                                        # contiguous window of the clip
        start = int(ex[0, 0]) // 2
        assert torch.equal(ex, spec[start:start + 10])
    short = torch.arange(6.0).reshape(3, 2)
    out = D.take_excerpts([short], 7)[0]
    assert out[:, 0].tolist() == [0, 2, 4, 0, 2, 4, 0]
    with pytest.raises(ParameterError, match="excerpt length"):
        D.take_excerpts([spec], 0)


def test_standardisation_uses_one_scalar_pair():
    specs = [torch.full((4, 3), 1.0), torch.full((4, 3), 3.0)]
    mean, std = D.standardisation_stats(specs)
    assert mean == pytest.approx(2.0)
    assert std == pytest.approx(np.std([1.0] * 12 + [3.0] * 12, ddof=1))
    with pytest.raises(DataLayoutError, match="constant"):
        D.standardisation_stats([torch.zeros(3, 3)])


def _tone(path, freq=440.0, seconds=1.0):
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SAMPLE_RATE)
    return path


def test_spectrogram_cache_is_reused_and_never_half_written(tmp_path, monkeypatch):
    clips = [_tone(tmp_path / f"c{i}.wav", 220.0 * (i + 1)) for i in range(3)]
    home = tmp_path / "home"
    # an interruption while writing the second entry leaves only complete entries behind
    real_save, calls = np.save, []

    def flaky_save(file, arr):
        calls.append(file)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        real_save(file, arr)

    monkeypatch.setattr(D.np, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt):
        D.compute_spectrograms(clips, home=home, progress=False)
    cache = D.spectrogram_cache_dir(home)
    assert len(list(cache.glob("*.npy"))) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "temporary file left behind"
    monkeypatch.setattr(D.np, "save", real_save)

    first = D.compute_spectrograms(clips, home=home, progress=False)
    assert [s.shape[0] for s in first] == [int(np.ceil(SAMPLE_RATE / (SAMPLE_RATE / FPS)))] * 3
    # second run: nothing is computed (the front end must not even be built)
    monkeypatch.setattr(D, "LogFiltSpec", lambda: (_ for _ in ()).throw(AssertionError("recomputed")))
    second = D.compute_spectrograms(clips, home=home, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_compute_spectrograms_names_a_missing_file(tmp_path):
    with pytest.raises(DataLayoutError, match="nope.mp3"):
        D.compute_spectrograms([tmp_path / "nope.mp3"], home=tmp_path, progress=False)


def test_load_dataset_on_a_tiny_synthetic_corpus(tmp_path):
    ds = D.load_dataset("smoke", home=tmp_path, n_clips=12, clip_seconds=1.0, progress=False)
    prof = get_profile("smoke")
    assert ds.x.shape == (12, 1, prof.excerpt_frames, 149)
    assert ds.emotions.shape == (12, 8) and ds.midlevel.shape == (12, 7)
    assert float(ds.emotions.min()) >= 0.1 and float(ds.emotions.max()) <= 0.9   # ratings / 10
    x_train = ds.subset("train")[0]
    assert ds.x.dtype == torch.float32
    # standardised with the *training* statistics: the training excerpts are roughly centred
    assert abs(float(x_train.mean())) < 0.5
    again = D.load_dataset("smoke", home=tmp_path, n_clips=12, clip_seconds=1.0, progress=False)
    assert again.identity == ds.identity and torch.equal(again.x, ds.x)
    other = D.load_dataset("smoke", home=tmp_path, n_clips=12, clip_seconds=1.0, excerpt_seed=1,
                           progress=False)
    assert other.identity != ds.identity


def test_load_dataset_bad_inputs(tmp_path):
    with pytest.raises(DataLayoutError, match="does not exist"):
        D.load_dataset("smoke", tmp_path / "missing", home=tmp_path)
    with pytest.raises(ParameterError, match="spurious_cue"):
        D.load_dataset("smoke", tmp_path, home=tmp_path, spurious_cue="tension")
    with pytest.raises(ParameterError, match="profile"):
        D.load_dataset("huge", home=tmp_path)


def test_profiles_validate_overrides():
    assert get_profile("quick", epochs=3).epochs == 3
    assert get_profile("quick", epochs=None).epochs == get_profile("quick").epochs
    with pytest.raises(ParameterError, match="epochs"):
        get_profile("quick", epochs=0)
    with pytest.raises(ParameterError, match="width"):
        get_profile("quick", width=float("nan"))
    with pytest.raises(ParameterError, match="unknown profile field"):
        get_profile("quick", epoch=3)
