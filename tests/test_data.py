"""The data pipeline: split, excerpts, standardisation, the spectrogram cache, load_dataset."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from mer_lib import data as D
from mer_lib import spectrogram_cache as SC
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
        D.compute_spectrograms(clips, home=home, progress=False, workers=1)
    cache = D.spectrogram_cache_dir(home)
    assert len(list(cache.glob("*.npy"))) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "temporary file left behind"
    monkeypatch.setattr(D.np, "save", real_save)

    first = D.compute_spectrograms(clips, home=home, progress=False, workers=2)
    assert [s.shape[0] for s in first] == [int(np.ceil(SAMPLE_RATE / (SAMPLE_RATE / FPS)))] * 3
    # second run: nothing is computed (the front end must not even be built)
    monkeypatch.setattr(SC, "LogFiltSpec", lambda: (_ for _ in ()).throw(AssertionError("recomputed")))
    second = D.compute_spectrograms(clips, home=home, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_compute_spectrograms_names_a_missing_file(tmp_path):
    with pytest.raises(DataLayoutError, match="nope.mp3"):
        D.compute_spectrograms([tmp_path / "nope.mp3"], home=tmp_path, progress=False)


def test_cache_entry_is_the_clip_alone_on_one_thread(tmp_path, one_torch_thread):
    """Known answer: each entry equals the front end applied to that clip alone."""
    clips = [_tone(tmp_path / f"c{i}.wav", 300.0 + 50 * i, seconds=1.0 + 0.37 * i) for i in range(4)]
    specs = D.compute_spectrograms(clips, home=tmp_path / "home", progress=False, workers=2)
    from mer_lib.audio import load_waveform
    for clip, spec in zip(clips, specs):
        with torch.no_grad():
            alone = SC.LogFiltSpec()(load_waveform(clip))
        assert torch.equal(spec, alone)
    assert [s.shape[0] for s in specs] == [int(np.ceil(len(sf.read(c)[0]) / (SAMPLE_RATE / FPS)))
                                           for c in clips]


def test_compute_spectrograms_reuses_given_digests(tmp_path, monkeypatch):
    clips = [_tone(tmp_path / f"c{i}.wav", 220.0 * (i + 1)) for i in range(2)]
    digests = [SC.file_digest(c) for c in clips]
    monkeypatch.setattr(SC, "file_digest", lambda p: (_ for _ in ()).throw(AssertionError("hashed")))
    D.compute_spectrograms(clips, home=tmp_path, progress=False, digests=digests)
    assert sorted(p.stem for p in D.spectrogram_cache_dir(tmp_path).glob("*.npy")) == sorted(digests)
    with pytest.raises(ParameterError, match="one entry per audio path"):
        D.compute_spectrograms(clips, home=tmp_path, progress=False, digests=digests[:1])


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
    with pytest.raises(ParameterError, match="n_clips only applies to the synthetic corpus"):
        D.load_dataset("smoke", tmp_path, home=tmp_path, n_clips=20)
    with pytest.raises(ParameterError, match="profile"):
        D.load_dataset("huge", home=tmp_path)


@pytest.mark.parametrize("kw, message", [
    (dict(clip_seconds=0), "clip_seconds must be a finite number > 0, got 0"),
    (dict(clip_seconds=0.0), "clip_seconds must be a finite number > 0, got 0.0"),
    (dict(n_clips=0), "n_clips must be an integer >= 10, got 0"),
    (dict(clip_seconds=0.5), "clip_seconds must be >= 1"),
])
def test_zero_is_an_error_not_the_profile_default(tmp_path, kw, message):
    with pytest.raises(ParameterError, match=message):
        D.load_dataset("smoke", home=tmp_path, progress=False, **kw)
    assert not (tmp_path / "data").exists()   # rejected before anything was generated


def test_no_progress_silences_corpus_generation_too(tmp_path, capfd):
    D.load_dataset("smoke", home=tmp_path / "quiet", n_clips=10, clip_seconds=1.0, progress=False)
    assert capfd.readouterr().err == ""
    D.load_dataset("smoke", home=tmp_path / "loud", n_clips=10, clip_seconds=1.0, progress=True)
    err = capfd.readouterr().err
    assert "synthetic corpus" in err and "spectrograms" in err


def test_profiles_validate_overrides():
    assert get_profile("quick", epochs=3).epochs == 3
    assert get_profile("quick", epochs=None).epochs == get_profile("quick").epochs
    with pytest.raises(ParameterError, match="epochs"):
        get_profile("quick", epochs=0)
    with pytest.raises(ParameterError, match="width"):
        get_profile("quick", width=float("nan"))
    with pytest.raises(ParameterError, match="unknown profile field"):
        get_profile("quick", epoch=3)
    with pytest.raises(ParameterError, match="finetune_lr must be None or a finite number > 0"):
        get_profile("quick", finetune_lr=-1e-3)
    assert get_profile("quick", finetune_lr=5e-4).finetune_lr == 5e-4
