"""The generic attack engine, RAR's inner maximisation through it, and the RAR training objectives.

Known answers: the engine reproduces a record of the hard-wired attack engine it replaced
(``tests/fixtures/attack_engine_v2.json``, recorded in float64 before the refactoring);
a linear model's MSE has a closed-form gradient, so PGD's path under the L2 ball is known.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mer_lib.attacks import AttackConfig, attack
from mer_lib.attacks.generic import Evaluation, OutputLoss, run_engine
from mer_lib.attacks.steps import AdamSignStep, L2Ball, L2Step, LinfBall, NoProjection, SignStep
from mer_lib.attacks.stopping import CorrelationStop, RunAll
from mer_lib.errors import ParameterError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RECORD = Path(__file__).parent / "fixtures" / "attack_engine_v2.json"


# ----------------------------------------------------------------------------- the record

class MeanTimesPattern(nn.Module):
    """f(x) = mean(x) * u: the correlation with u flips from +1 to -1 exactly with mean(x)."""

    def __init__(self, u):
        super().__init__()
        self.register_buffer("u", u)

    def forward(self, x):
        return x.flatten(1).mean(dim=1, keepdim=True) * self.u


U = torch.tensor([0.1, 0.5, 0.3, 0.9, 0.2, 0.7, 0.4, 0.6], dtype=torch.float64)


def recorded_model_and_data(name):
    """The two models and batches the record was made with (float64)."""
    if name == "conv":
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                              nn.Linear(3 * 4 * 5, 8), nn.Tanh()).double().eval()
        g = torch.Generator().manual_seed(1)
        x = torch.randn(5, 1, 4, 5, generator=g, dtype=torch.float64)
        return model, x, torch.rand(5, 8, generator=g, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    x = 0.1 * torch.randn(5, 1, 4, 5, generator=g, dtype=torch.float64) \
        + torch.linspace(0.02, 0.3, 5, dtype=torch.float64).view(5, 1, 1, 1)
    return MeanTimesPattern(U).eval(), x, U.expand(5, 8).clone()


RECORDED = json.loads(RECORD.read_text())


@pytest.mark.parametrize("case", RECORDED, ids=lambda c: f"{c['model']}-{c['config']['mode']}-"
                         f"{c['config'].get('norm', 'linf')}-{c['batch_size']}")
def test_engine_reproduces_the_recorded_attack(case):
    """Every output of today's attack equals the record of the engine before the refactoring.

    Discrete outputs must be equal; floats are compared to 1e-13 relative (the record was
    bit-identical on the machine that made it; the slack is for other BLAS builds).
    """
    model, x, y = recorded_model_and_data(case["model"])
    res = attack(model, x, y, AttackConfig(**case["config"]), batch_size=case["batch_size"])
    for name, expected in case["result"].items():
        got = getattr(res, name)
        want = torch.tensor(expected, dtype=got.dtype)
        if got.dtype.is_floating_point:
            assert torch.allclose(got, want, rtol=1e-13, atol=1e-15, equal_nan=True), name
        else:
            assert torch.equal(got, want), name


def test_the_record_exercises_every_path():
    """Stops, chunks, random starts, both modes, both norms, kept != final: the record is not trivial."""
    modes = {(c["config"]["mode"], c["config"].get("norm", "linf")) for c in RECORDED}
    assert modes == {("projected", "linf"), ("projected", "l2"), ("reference", "linf")}
    converged = [c for c in RECORDED if any(c["result"]["converged"])]
    assert {c["config"]["mode"] for c in converged} == {"projected", "reference"}
    assert any(len(set(c["result"]["iterations"])) > 1 and c["batch_size"] for c in RECORDED)
    assert any(c["config"].get("random_start") for c in RECORDED)
    assert any(c["result"]["delta"] != c["result"]["final_delta"] for c in RECORDED)


# ----------------------------------------------------------------------------- pieces

def linear_model(n_in=6, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 8)).double().eval()


def test_l2_projection_keeps_every_step_in_the_ball_and_follows_the_gradient():
    """PGD on the MSE of a linear model from zero under the L2 ball: the first step goes exactly
    along the normalised gradient 2/8 * W^T (W x + b - y); every iterate stays in the ball."""
    model = linear_model(seed=3)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(4, 1, 2, 3, generator=g, dtype=torch.float64), torch.rand(4, 8, generator=g,
                                                                               dtype=torch.float64)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    grad = (2 / 8) * (x.flatten(1) @ w.T + b - y) @ w
    first = run_engine(model, x, y, objective=OutputLoss(), update=L2Step(0.1), projection=L2Ball(0.25),
                       stop=RunAll(), start=torch.zeros_like(x), steps=1)
    expected = 0.1 * grad / grad.norm(dim=1, keepdim=True)
    assert torch.allclose(first.final_delta.flatten(1), expected, rtol=1e-12)
    for steps in (2, 3, 10):
        res = run_engine(model, x, y, objective=OutputLoss(), update=L2Step(0.1), projection=L2Ball(0.25),
                         stop=RunAll(), start=L2Ball(0.25).sample(tuple(x.shape), g, torch.float64), steps=steps)
        assert bool((res.final_delta.flatten(1).norm(dim=1) <= 0.25 * (1 + 1e-12)).all())
    # a linear MSE is convex in delta: ten steps of 0.1 reach the boundary of a 0.25 ball
    assert torch.allclose(res.final_delta.flatten(1).norm(dim=1), torch.full((4,), 0.25, dtype=torch.float64))
    start = torch.full_like(x, 10.0)                      # far outside: projected back onto the sphere
    proj = L2Ball(0.25)(start)
    assert torch.allclose(proj.flatten(1).norm(dim=1), torch.full((4,), 0.25, dtype=torch.float64))


def test_random_starts_fill_their_balls():
    g = torch.Generator().manual_seed(0)
    linf = LinfBall(0.3).sample((2000, 5), g, torch.float64)
    assert linf.abs().max() <= 0.3 and linf.abs().max() > 0.29 and abs(float(linf.mean())) < 0.01
    l2 = L2Ball(2.0).sample((2000, 5), g, torch.float64).norm(dim=1)
    assert l2.max() <= 2.0 + 1e-12
    # uniform in a 5-ball: P(|d| <= r) = (r / eps) ** 5, so the median radius is 2 * 0.5 ** 0.2
    assert float(l2.median()) == pytest.approx(2.0 * 0.5 ** 0.2, rel=0.03)


def test_run_all_takes_every_step_and_evaluate_last_false_skips_the_final_pass():
    calls = []

    def objective(model, x, delta, y, *, grad):
        calls.append((int(x.shape[0]), grad))
        return Evaluation(gradient=lambda: torch.ones_like(delta))   # no outputs, no values

    x = torch.zeros(3, 2)
    res = run_engine(None, x, None, objective=objective, update=SignStep(0.1), projection=LinfBall(0.25),
                     stop=RunAll(), start=torch.zeros_like(x), steps=4, evaluate_last=False)
    assert calls == [(3, True)] * 4                                   # k passes, all with gradients
    assert torch.allclose(res.final_delta, torch.full_like(x, 0.25))  # 0.1, 0.2, 0.25, 0.25
    assert res.iterations.tolist() == [4, 4, 4] and res.delta_iteration.tolist() == [4, 4, 4]
    assert res.final_output is None and res.kept_output is None and torch.equal(res.delta, res.final_delta)
    calls.clear()
    res = run_engine(None, x, None, objective=objective, update=SignStep(0.1), projection=None,
                     stop=RunAll(), start=torch.zeros_like(x), steps=4, batch_size=2)
    assert calls == [(2, True)] * 4 + [(2, False)] + [(1, True)] * 4 + [(1, False)]
    assert torch.allclose(res.final_delta, torch.full_like(x, 0.4))   # no projection
    with pytest.raises(ParameterError, match="no gradient"):
        Evaluation().gradient()


def test_correlation_stop_removes_converged_examples_from_the_working_batch():
    """A model whose correlation is -1 after one step: the ladder stops it there, at its kept point."""
    model = MeanTimesPattern(U).eval()
    x = torch.full((2, 1, 2, 2), 0.01, dtype=torch.float64)
    x[1] = 5.0                                            # far from the sign change: never converges
    seen = []

    def objective(m, xx, delta, y, *, grad):
        seen.append(int(xx.shape[0]))
        return OutputLoss()(m, xx, delta, y, grad=grad)

    res = run_engine(model, x, U.expand(2, 8), objective=objective, update=SignStep(0.05),
                     projection=LinfBall(1.0), stop=CorrelationStop(), start=torch.zeros_like(x), steps=3)
    assert seen == [2, 2, 1, 1] and res.iterations.tolist() == [1, 3]
    assert res.record["converged"].tolist() == [True, False]
    assert torch.allclose(res.delta[0], torch.full_like(x[0], -0.05))   # the step that converged
    assert res.delta_iteration.tolist() == [1, 3]


def test_adam_sign_step_is_torch_adam_on_the_negative_sign():
    delta = torch.tensor([[0.0, 0.5, -1.0]])
    param = delta.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=0.01)
    rule = AdamSignStep(0.01)
    rule.reset(delta)
    for grad in (torch.tensor([[1.0, -2.0, 0.0]]), torch.tensor([[3.0, 1.0, -1.0]])):
        delta = NoProjection()(rule(delta, grad))
        param.grad = -torch.sign(grad)
        opt.step()
        assert torch.allclose(delta, param.detach(), rtol=0, atol=1e-7)


def test_engine_bad_input_names_the_argument():
    x = torch.zeros(2, 3)
    common = dict(objective=OutputLoss(), update=SignStep(0.1), stop=RunAll())
    with pytest.raises(ParameterError, match="start must have x's shape"):
        run_engine(None, x, None, start=torch.zeros(3, 3), steps=1, **common)
    with pytest.raises(ParameterError, match="steps must be an integer >= 0"):
        run_engine(None, x, None, start=x, steps=-1, **common)
    with pytest.raises(ParameterError, match="y must be None or a tensor with x's 2 examples"):
        run_engine(None, x, torch.zeros(3, 8), start=x, steps=1, **common)
    with pytest.raises(ParameterError, match="step_size"):
        SignStep(0.0)
    with pytest.raises(ParameterError, match="epsilon"):
        L2Ball(-1.0)
