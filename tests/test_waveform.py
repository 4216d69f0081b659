"""Waveform attacks: the front end as the model's input path, exact budgets, gradients, realisability."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib.attacks.generic import OutputLoss, run_engine
from mer_lib.attacks.realisability import realise, realisability
from mer_lib.attacks.steps import LinfBall, SignStep
from mer_lib.attacks.stopping import RunAll
from mer_lib.attacks.wave_config import WaveAttackConfig
from mer_lib.attacks.wave_results import get_wave_attack
from mer_lib.attacks.waveform import WaveformInput, wave_attack, wave_snr_db
from mer_lib.cli import main
from mer_lib.data import load_dataset
from mer_lib.errors import DataLayoutError, MerError, ParameterError
from mer_lib.experiments import Experiment
from mer_lib.frontend import FRAME_SIZE, frame_signal, overlap_add
from mer_lib.models import build_model
from mer_lib.wave_excerpts import WaveExcerpts, excerpt_span, wave_excerpts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return load_dataset("smoke", home=tmp_path_factory.mktemp("home"), progress=False)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("a2e", width=0.125).eval()


class Trained:
    """The three attributes the stored tables need of a trained model."""

    def __init__(self, model):
        self.model, self.key = model, "testmodel"
        self.config = type("C", (), {"variant": "a2e", "seed": 6})()


def tone_excerpt(frames: int = 3, amplitude: float = 0.5) -> WaveExcerpts:
    first, stop, offsets = excerpt_span(2, frames)
    s = amplitude * torch.sin(2 * math.pi * 440 * torch.arange(stop - first) / 22050).unsqueeze(0)
    return WaveExcerpts(waves=s, frame_starts=torch.from_numpy(offsets)[None],
                        in_clip=torch.ones_like(s, dtype=torch.bool), peak_outside=torch.ones(1),
                        rows=np.zeros(1, dtype=np.int64), ids=["tone"])


def test_the_audio_path_reproduces_the_model_input(smoke):
    ex = wave_excerpts(smoke, "test")
    with torch.no_grad():
        x = WaveformInput(smoke.mean, smoke.std)(ex.waves, ex.frame_starts, ex.peak_outside, ex.in_clip)
    assert len(ex) == len(smoke.split["test"]) and not ex.notes
    assert torch.allclose(x, smoke.x[torch.as_tensor(ex.rows)], atol=1e-5)
    # framing the cut audio from its first sample instead would shift frames: the starts matter
    assert not torch.equal(ex.frame_starts[0], torch.from_numpy(excerpt_span(0, smoke.n_frames)[2]))


def test_waveform_gradient_equals_finite_differences_in_float64():
    # broadband audio: a pure tone leaves FFT bins near |X| = 0, where |.| has a kink that a
    # finite difference of step 1e-6 straddles
    ex = tone_excerpt(frames=2)
    ex.waves = 0.3 * torch.randn(ex.waves.shape, generator=torch.Generator().manual_seed(0))
    fi = WaveformInput(0.4, 0.3, dtype=torch.float64)
    weights = torch.randn(1, 1, 2, 149, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    peak = torch.tensor([0.3], dtype=torch.float64)       # below the excerpt's peak: the normalisation acts

    def f(w):
        return (fi(w, ex.frame_starts, peak, ex.in_clip) * weights).sum()

    w = ex.waves.double().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(w), w)
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        direction = torch.randn(w.shape, generator=gen, dtype=torch.float64)
        h = 1e-6
        numeric = (f(w.detach() + h * direction) - f(w.detach() - h * direction)) / (2 * h)
        assert float((grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)


def test_frame_signal_backward_is_overlap_add():
    x = torch.randn(2, 5000, dtype=torch.float64, requires_grad=True)
    starts = torch.tensor([[0, 704, 1409], [3, 707, 1412]])
    g = torch.randn(2, 3, FRAME_SIZE, dtype=torch.float64)
    (grad,) = torch.autograd.grad(frame_signal(x, starts), x, g)
    index = starts.unsqueeze(-1) + torch.arange(FRAME_SIZE)
    rows = torch.arange(2).view(-1, 1, 1)
    (expected,) = torch.autograd.grad(x[rows, index], x, g)       # advanced indexing's own backward
    assert torch.allclose(grad, expected) and torch.allclose(overlap_add(g, starts, 5000), expected)
    with pytest.raises(ParameterError, match="inside the 5000-sample"):
        frame_signal(x, torch.tensor([[4000]]).expand(2, 1))


@pytest.mark.parametrize("budget", [60.0, 40.0, 20.0])
def test_the_snr_budget_holds_exactly_in_the_stored_table(smoke, model, tmp_path, budget):
    config = WaveAttackConfig(snr_db=budget, step_fraction=1.0, max_iterations=4, early_stop=False, examples=3)
    table = get_wave_attack(Trained(model), smoke, config, run_dir=tmp_path).table
    assert (table.wave_snr_db >= budget - 1e-6).all()
    assert (table.final_wave_snr_db >= budget - 1e-6).all()
    assert table.wave_snr_db.min() < budget + 0.01            # full steps: the ball's surface is reached
    assert {"wave_snr_db", "wave_l2", "wave_linf", "snr_db", "mae_adv"} <= set(table.columns)
    assert get_wave_attack(Trained(model), smoke, config, run_dir=tmp_path).computed_now is False


def test_the_linf_bound_holds_and_the_attack_moves_the_prediction(smoke, model, tmp_path):
    config = WaveAttackConfig(threat="linf", epsilon=0.002, step_fraction=0.5, max_iterations=3,
                              early_stop=False, examples=3)
    table = get_wave_attack(Trained(model), smoke, config, run_dir=tmp_path).table
    assert (table.wave_linf <= float(np.float32(0.002))).all()
    assert (table.wave_linf > 0.0019).all()                    # sign steps saturate the bound
    assert (table.mae_final > table.mae_clean).mean() >= 2 / 3


def test_chunked_equals_whole_batch(smoke, model):
    ex = wave_excerpts(smoke, "test", limit=3)
    y = smoke.emotions[torch.as_tensor(ex.rows)]
    cfg = WaveAttackConfig(snr_db=30, max_iterations=3)
    whole = wave_attack(model, ex, y, cfg, mean=smoke.mean, std=smoke.std)
    single = wave_attack(model, ex, y, cfg, mean=smoke.mean, std=smoke.std, batch_size=1)
    # equal up to float32 rounding, which depends on the batch's shape (the matrix products
    # pick their kernels by size); the perturbations reach about 0.3
    torch.testing.assert_close(whole.wave_delta, single.wave_delta, rtol=0, atol=1e-5)
    again = wave_attack(model, ex, y, cfg, mean=smoke.mean, std=smoke.std)
    assert torch.equal(whole.wave_delta, again.wave_delta)              # deterministic
    assert torch.equal(whole.spec.iterations, single.spec.iterations)


def test_the_kept_model_inputs_are_those_of_the_kept_audio(smoke, model):
    """The engine keeps the model inputs the objective computed; they equal the front end run
    again on the returned audio, bit for bit, with and without early stopping."""
    ex = wave_excerpts(smoke, "test", limit=3)
    y = smoke.emotions[torch.as_tensor(ex.rows)]
    to_input = WaveformInput(smoke.mean, smoke.std)
    for early_stop in (True, False):
        res = wave_attack(model, ex, y, WaveAttackConfig(snr_db=30, max_iterations=4, early_stop=early_stop),
                          mean=smoke.mean, std=smoke.std)
        with torch.no_grad():
            again = [to_input(ex.waves + d, ex.frame_starts, ex.peak_outside, ex.in_clip)
                     for d in (torch.zeros_like(ex.waves), res.wave_delta, res.final_wave_delta)]
        assert torch.equal(res.spec.x, again[0])
        assert torch.equal(res.spec.x_adv, again[1])
        assert torch.equal(res.spec.x + res.spec.final_delta, again[2]) or \
            torch.allclose(res.spec.x + res.spec.final_delta, again[2], atol=1e-6)


def test_the_engine_context_follows_the_working_batch():
    seen = []

    class Spy(OutputLoss):
        def __call__(self, model, x, delta, y, *, grad, context):
            seen.append(context["tag"].tolist())
            return super().__call__(model, x, delta, y, grad=grad)

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8))
    x = torch.randn(3, 1, 2, 2)
    run_engine(model, x, torch.rand(3, 8), objective=Spy(), update=SignStep(0.1), projection=LinfBall(0.1),
               stop=RunAll(), start=torch.zeros_like(x), steps=1, batch_size=2,
               context={"tag": torch.tensor([10, 11, 12])})
    assert seen == [[10, 11], [10, 11], [12], [12]]


def test_realising_no_perturbation_and_a_uniform_gain():
    ex = tone_excerpt(frames=4)
    fi = WaveformInput(0.4, 0.3)
    x = fi(ex.waves, ex.frame_starts)
    assert torch.allclose(realise(ex, x, x, mean=0.4, std=0.3), ex.waves.double(), atol=1e-5)
    # twice every band's magnitude: the realised audio is the clean audio doubled where frames overlap
    b = torch.pow(10.0, x.double() * 0.3 + 0.4) - 1.0
    x2 = ((torch.log10(1.0 + 2.0 * b) - 0.4) / 0.3).float()
    audio = realise(ex, x, x2, mean=0.4, std=0.3)
    middle = slice(FRAME_SIZE // 2, ex.waves.shape[1] - FRAME_SIZE // 2)
    assert torch.allclose(audio[0, middle], 2.0 * ex.waves[0, middle].double(), atol=2e-3)


def test_realisability_of_a_spectrogram_attack(smoke, model):
    from mer_lib.attacks import AttackConfig, attack

    ex = wave_excerpts(smoke, "test", limit=3)
    rows = torch.as_tensor(ex.rows)
    res = attack(model, smoke.x[rows], smoke.emotions[rows], AttackConfig(epsilon=0.05, step_size=0.01,
                                                                            max_iterations=3, early_stop=False))
    t = realisability(model, ex, smoke.emotions[rows], res.x_adv, mean=smoke.mean, std=smoke.std)
    assert list(t.example) == ex.ids
    assert ((t.survival > -1) & (t.survival < 1.5)).all() and (t.residual >= 0).all()
    assert np.allclose(t.mae_adv, res.to_frame(ex.ids, smoke.mean, smoke.std).mae_adv, atol=1e-5)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "40", True, None])
def test_an_snr_budget_must_be_a_finite_number(value):
    with pytest.raises(ParameterError, match="snr_db must be a finite number"):
        WaveAttackConfig(snr_db=value)
    with pytest.raises(ParameterError, match=r"snr_budgets_db"):
        Experiment.from_parameters(profile="smoke", snr_budgets_db=[40.0, value])


def test_bad_waveform_input_is_named():
    ex = tone_excerpt()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 149, 8))
    with pytest.raises(ParameterError, match=r"y must be \(1, outputs\)"):
        wave_attack(model, ex, torch.rand(2, 8), WaveAttackConfig(), mean=0.0, std=1.0)
    with pytest.raises(ParameterError, match="config must be a WaveAttackConfig"):
        wave_attack(model, ex, torch.rand(1, 8), object(), mean=0.0, std=1.0)
    # an excerpt length that does not match the model's training excerpts
    long = tone_excerpt(frames=5)
    with pytest.raises(RuntimeError):
        wave_attack(model, long, torch.rand(1, 8), WaveAttackConfig(), mean=0.0, std=1.0)
    silent = WaveExcerpts(ex.waves * 0, ex.frame_starts, ex.in_clip, torch.ones(1), ex.rows, ["s"])
    assert torch.isinf(wave_snr_db(silent.waves, silent.waves)).all() or torch.isnan(wave_snr_db(silent.waves, silent.waves)).all()


def test_a_silent_or_tiled_clip_is_a_note_not_a_nan(smoke, monkeypatch):
    from mer_lib import audio

    info = dict(smoke.info)
    starts = list(info["excerpt_starts"])
    rows = [int(i) for i in smoke.split["test"]]
    starts[rows[0]] = -1
    info["excerpt_starts"] = starts
    tiled = type(smoke)(**{**smoke.__dict__, "info": info})
    real_load = audio.load_waveform
    silent_path = smoke.info["corpus"].audio_paths[rows[1]]

    def load(path, *args, **kwargs):
        wave = real_load(path, *args, **kwargs)
        return wave * 0 if str(path) == str(silent_path) else wave

    monkeypatch.setattr("mer_lib.wave_excerpts.load_waveform", load)
    ex = wave_excerpts(tiled, "test")
    assert ex.notes == {smoke.ids[rows[0]]: pytest.approx(ex.notes[smoke.ids[rows[0]]]),
                        smoke.ids[rows[1]]: "the excerpt is silent (its SNR is undefined)"}
    assert "tiled" in ex.notes[smoke.ids[rows[0]]]
    assert len(ex) == len(rows) - 2
    with pytest.raises(ParameterError, match="split must be one of"):
        wave_excerpts(smoke, "tset")
    with pytest.raises(DataLayoutError, match="excerpt_starts"):
        wave_excerpts(type(smoke)(**{**smoke.__dict__, "info": {}}), "test")


def test_cli_waveform_attack(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MER_HOME", str(tmp_path / "runs"))
    argv = ["attack", "--profile", "smoke", "--variant", "a2e", "--seed", "6", "--domain", "waveform", "--snr-db", "40"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "'domain': 'waveform'" in out and "computed now" in out
    table_path = out.split("table: ")[1].split(" (")[0]
    table = pd.read_csv(f"{table_path}/table.csv")
    assert (table.wave_snr_db >= 40 - 1e-6).all()
    assert main(argv) == 0 and "(stored)" in capsys.readouterr().out.splitlines()[2]
    assert main([*argv[:-2], "--threat", "linf", "--snr-db", "30"]) == 2
    assert "--snr-db is the budget" in capsys.readouterr().err
    assert main([*argv[:-2], "--snr-db", "nan"]) == 2
    assert "finite number" in capsys.readouterr().err
