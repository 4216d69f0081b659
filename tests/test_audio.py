"""Audio reading, resampling, trimming, normalisation and error messages."""
from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
import torch

from mer_lib.audio import load_audio, load_waveform, prepare_waveform
from mer_lib.errors import DataLayoutError, ParameterError


def _tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    # cosine + phase so the first sample is not exactly zero (it would be trimmed)
    return (amp * np.cos(2 * np.pi * freq * t + 0.3)).astype(np.float32)


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def test_mp3_round_trip(tmp_path):
    path = tmp_path / "tone.mp3"
    sf.write(path, _tone(1000.0, 22050, 1.0), 22050)
    signal, sr = load_audio(path)
    assert sr == 22050 and signal.dtype == np.float32 and signal.ndim == 1
    assert abs(len(signal) - 22050) < 3000          # codec padding only
    assert _dominant_hz(signal, sr) == pytest.approx(1000.0, abs=3.0)


def test_stereo_is_mixed_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    left = _tone(440.0, 8000, 0.25)
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 8000)
    signal, sr = load_audio(path)
    assert sr == 8000 and signal.shape == left.shape
    np.testing.assert_allclose(signal, left / 2, atol=1e-4)


def test_resample_44100_keeps_frequency_and_halves_length():
    x = _tone(1000.0, 44100, 1.0)
    w = prepare_waveform(x, 44100)
    assert w.dtype == torch.float32
    assert w.numel() == 22050
    assert _dominant_hz(w.numpy(), 22050) == pytest.approx(1000.0, abs=1.0)
    assert float(w.abs().max()) == pytest.approx(1.0)


def test_trims_exact_zeros_and_peak_normalises():
    x = np.array([0, 0, 0, 0.25, 0, -0.5, 0.1, 0, 0], dtype=np.float32)
    w = prepare_waveform(x, 22050)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.0, -1.0, 0.2]))
    # tiny non-zero values are kept (only *exact* zeros are dropped)
    w = prepare_waveform(np.array([1e-9, 0.5, 0.0], dtype=np.float32), 22050)
    assert w.numel() == 2 and float(w[1]) == 1.0


def test_prepare_accepts_tensors_and_device():
    x = torch.tensor([0.0, 2.0, -4.0], dtype=torch.float64)
    w = prepare_waveform(x, 22050, device="cpu")
    assert w.dtype == torch.float32 and w.device.type == "cpu"
    torch.testing.assert_close(w, torch.tensor([0.5, -1.0]))


@pytest.mark.parametrize("sr", [0, -22050, 22050.0, True])
def test_bad_sample_rate(sr):
    with pytest.raises(ParameterError, match="sr must be a positive integer"):
        prepare_waveform(np.ones(10, dtype=np.float32), sr)


@pytest.mark.parametrize("signal", [np.zeros(0, np.float32), np.zeros(100, np.float32)])
def test_empty_or_silent_signal(signal):
    with pytest.raises(DataLayoutError, match="empty|silent"):
        prepare_waveform(signal, 22050)


def test_load_waveform(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, np.concatenate([np.zeros(50, np.float32), _tone(500.0, 44100, 1.5, 0.3)]), 44100)
    w = load_waveform(path)
    assert w.numel() == pytest.approx(33075, abs=30)
    assert float(w.abs().max()) == pytest.approx(1.0) and float(w[0]) != 0.0


@pytest.mark.parametrize("n", [1, 100, 2047, 22049])
@pytest.mark.parametrize("fmt", ["WAV", "MP3"])
def test_clips_shorter_than_one_second_are_rejected(tmp_path, n, fmt):
    path = tmp_path / f"short.{fmt.lower()}"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32), 22050,
             format=fmt)
    with pytest.raises(DataLayoutError) as info:
        load_waveform(path)
    assert str(info.value) == (f"audio file {path} is too short: {n} samples at 22050 Hz "
                               f"({n / 22050:.3g} s); clips must last at least 1 s")
    if n >= 2048:                                             # the limit is the only reason
        assert load_waveform(path, min_seconds=0).numel() == pytest.approx(n, abs=2)


def test_one_second_is_enough_but_a_click_in_silence_is_not(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, 0.5 + _tone(440.0, 22050, 1.0, 0.25), 22050)   # 22050 non-zero samples
    assert load_waveform(path).numel() == 22050
    click = np.zeros(22050, np.float32)
    click[1000:1100] = 0.5
    sf.write(path, click, 22050)
    with pytest.raises(DataLayoutError, match=re.escape(
            f"audio file {path} holds only 100 samples (at 22050 Hz) between its first and last "
            f"non-zero sample, less than one 2048-sample frame")):
        load_waveform(path)


def _missing(tmp_path):
    return tmp_path / "nope" / "001.mp3"


def _text_as_mp3(tmp_path):
    path = tmp_path / "text.mp3"
    path.write_text("this is not audio\n" * 20)
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    return path


def _silent(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(1000, np.float32), 22050)
    return path


@pytest.mark.parametrize("make, words", [
    (_missing, "does not exist"),
    (_text_as_mp3, "corrupt"),
    (_empty, "empty"),
    (_silent, "silent"),
])
@pytest.mark.parametrize("loader", [load_audio, load_waveform])
def test_error_cases_name_the_path(tmp_path, make, words, loader):
    path = make(tmp_path)
    with pytest.raises(DataLayoutError) as info:
        loader(path)
    assert str(path) in str(info.value)
    assert words in str(info.value)
