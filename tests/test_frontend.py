"""The torch front end against madmom's golden outputs and known answers."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mer_lib import frontend as F
from mer_lib.errors import ParameterError

FIX = Path(__file__).parent / "fixtures" / "madmom_logfilt"
SIGNALS = ["chirp", "tones", "noise"]


@pytest.fixture(scope="module")
def fe() -> F.LogFiltSpec:
    return F.LogFiltSpec()


def _signal(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(FIX / f"{name}_signal.npy"))


def test_constants_match_fixture_index():
    index = json.loads((FIX / "index.json").read_text())
    for name, meta in index.items():
        assert meta["hop"] == pytest.approx(F.HOP, abs=1e-12)
        assert meta["bands"] == F.N_BANDS
        assert F.n_frames(meta["samples"]) == meta["frames"], name


def test_filterbank_matches_madmom():
    fb = F.log_filterbank()
    ref = np.load(FIX / "filterbank.npy")
    assert fb.shape == (1024, 149) and fb.dtype == np.float32
    np.testing.assert_allclose(fb, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, atol=1e-5)  # unit area


def test_band_centres_match_madmom():
    c = F.band_centres_hz()
    np.testing.assert_allclose(c, np.load(FIX / "band_centres_hz.npy"), rtol=0, atol=1e-9)
    assert 32 < c[0] < 33 and 10800 < c[-1] < 10900


@pytest.mark.parametrize("name", SIGNALS)
def test_spectrogram_matches_madmom(fe, name):
    ref = np.load(FIX / f"{name}_spec.npy")
    out = fe(_signal(name))
    assert out.dtype == torch.float32 and tuple(out.shape) == ref.shape
    assert float(np.abs(out.numpy() - ref).max()) <= 1e-4


def test_float64_option_matches_madmom():
    fe64 = F.LogFiltSpec(dtype=torch.float64)
    out = fe64(_signal("chirp").double())
    assert out.dtype == torch.float64
    assert float(np.abs(out.numpy() - np.load(FIX / "chirp_spec.npy")).max()) <= 1e-5


@pytest.mark.parametrize("n", [1, 2, 704, 705, 1408, 1409, 2048, 22050, 220500, 220501])
def test_frame_count(fe, n):
    expected = math.ceil(n * 313 / 220500)  # exact rational ceil(n / (22050 / 31.3))
    assert F.n_frames(n) == expected
    assert fe(torch.zeros(n)).shape == (expected, F.N_BANDS)


def test_frame_starts_and_times():
    starts = F.frame_starts(1000)
    i = np.arange(1000)
    np.testing.assert_array_equal(starts, (i * 220500) // 313)   # floor(i * hop), exact
    assert starts[313] == 220500                                  # 10 s exactly
    np.testing.assert_allclose(F.frame_times(1000), starts / F.SAMPLE_RATE, atol=1 / F.SAMPLE_RATE)


def test_frame_start_is_floor_not_round(fe):
    # 2 * hop = 1408.95: floor -> frame 2 starts at 1408, round would give 1409. The
    # symmetric Hann window is exactly 0 at offset 0 and > 0 at offset 1, so an impulse
    # at sample 1409 is visible in frame 2 only if the frame starts at 1408.
    x = torch.zeros(6000)
    x[1409] = 1.0
    assert float(fe(x)[2].sum()) > 0
    x = torch.zeros(6000)
    x[1408] = 1.0
    assert float(fe(x)[2].abs().sum()) == 0.0


@pytest.mark.parametrize("freq", [55.0, 440.0, 1000.0, 3520.0, 10000.0])
def test_tone_peaks_in_nearest_band(fe, freq):
    t = torch.arange(F.SAMPLE_RATE, dtype=torch.float64) / F.SAMPLE_RATE
    spec = fe(torch.cos(2 * math.pi * freq * t).float())
    band = int(spec[5:-5].mean(dim=0).argmax())
    centres = F.band_centres_hz()
    nearest = int(np.abs(np.log2(centres / freq)).argmin())
    assert band == nearest, (band, nearest, centres[band], centres[nearest])


@pytest.mark.parametrize("cpu_chunk", [None, 2])
def test_batch_equals_single(fe, cpu_chunk):
    x = torch.stack([_signal(n)[:20000] for n in SIGNALS])
    batched = F.LogFiltSpec(cpu_chunk=cpu_chunk)(x)
    assert batched.shape == (3, F.n_frames(20000), F.N_BANDS)
    for b, name in enumerate(SIGNALS):
        torch.testing.assert_close(batched[b], fe(x[b]), rtol=0, atol=1e-6)


def test_compute_batch_different_lengths(fe):
    waves = [_signal("chirp")[:30000], _signal("noise"), _signal("tones")[:1], _signal("tones")[:9000]]
    outs = F.compute_batch(waves, chunk_size=3)
    assert len(outs) == len(waves)
    for w, out in zip(waves, outs):
        assert out.shape == (F.n_frames(w.numel()), F.N_BANDS)
        torch.testing.assert_close(out, fe(w), rtol=0, atol=1e-6)
    ref = np.load(FIX / "noise_spec.npy")
    assert float(np.abs(outs[1].numpy() - ref).max()) <= 1e-4


def test_gradient_wrt_waveform(fe):
    x = _signal("tones")[:8000].clone().requires_grad_(True)
    x2 = torch.zeros(8000)
    x2[100] = 1.0                      # mostly-silent signal: zero-magnitude bins must not NaN
    loss = fe(x).sum() + fe(torch.stack([x, x2])).pow(2).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # the autograd path (gather) and the no-grad path (strided view) give the same values
    with torch.no_grad():
        fast = fe(x)
    torch.testing.assert_close(fe(x).detach(), fast, rtol=0, atol=0)


def test_gradient_matches_finite_difference():
    fe64 = F.LogFiltSpec(dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3000, dtype=torch.float64, generator=gen)
    v = torch.randn(2, 3000, dtype=torch.float64, generator=gen)
    x.requires_grad_(True)
    fe64(x).sum().backward()
    h = 1e-6
    with torch.no_grad():
        numeric = (fe64(x + h * v).sum() - fe64(x - h * v).sum()) / (2 * h)
    assert float((x.grad * v).sum()) == pytest.approx(float(numeric), rel=1e-6)


def test_buffers_follow_module_and_bad_input(fe):
    names = {n for n, _ in fe.named_buffers()}
    assert {"window", "filterbank", "starts"} <= names
    np.testing.assert_array_equal(fe.window.numpy(), np.hanning(2048).astype(np.float32))
    with pytest.raises(ParameterError, match="wave must have shape"):
        fe(torch.zeros(2, 3, 4))
    with pytest.raises(ParameterError, match="waves\\[1\\]"):
        F.compute_batch([torch.zeros(10), torch.zeros(0)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(fe):
    x = _signal("chirp")
    out = F.LogFiltSpec().to("cuda")(x.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), fe(x), rtol=0, atol=1e-4)
