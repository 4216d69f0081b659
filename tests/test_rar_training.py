"""The generic attack engine, RAR's inner maximisation through it, and the RAR training objectives.

Known answers: the engine reproduces a record of the hard-wired attack engine it replaced
(``tests/fixtures/attack_engine_v2.json``, recorded in float64 before the refactoring);
a linear model's MSE has a closed-form gradient, so PGD's path under the L2 ball is known;
an RAR step's gradient is autograd's of the objective written out as one double-backprop graph.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mer_lib.attacks import AttackConfig, attack
from mer_lib.attacks.generic import Evaluation, OutputLoss, run_engine
from mer_lib.attacks.steps import AdamSignStep, L2Ball, L2Step, LinfBall, NoProjection, SignStep
from mer_lib.attacks.stopping import CorrelationStop, RunAll
from mer_lib.attributions.rar import (RarConfig, emotion_mse, ig_l1_norm, loss_integrated_gradients,
                                      rar_attack)
from mer_lib.data import MerTensors, split_indices
from mer_lib.errors import ParameterError
from mer_lib.experiments import Experiment
from mer_lib.extensions import extension_config, rar_options
from mer_lib.models import build_model, get_variant
from mer_lib.objectives import StepContext, make_objective
from mer_lib.objectives.rar_training import batch_generator
from mer_lib.training import TrainConfig, load_trained, run_identity, run_key, train

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


# ----------------------------------------------------------------------------- RAR training

SMALL = {"riemann_steps": 4, "attack_steps": 2, "chunk_size": 2, "epsilon": 0.1}


def toy(variant="a2e", seed=0):
    torch.manual_seed(seed)
    return build_model(variant, 0.0625).double().eval()     # eval: no dropout, deterministic


def toy_batch(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 12, 16, generator=g, dtype=torch.float64),
            torch.rand(n, 8, generator=g, dtype=torch.float64))


def context(model, variant, lr=1e-2, optimizer=torch.optim.SGD):
    cfg = SimpleNamespace(seed=6)
    return StepContext(model, get_variant(variant), optimizer(model.parameters(), lr=lr), cfg, epoch=2, batch=3)


@pytest.mark.parametrize("variant,reg_batch", [("ignorm_a2e", None), ("igsumnorm_a2b2e", 2), ("ignorm_a2b2e", 1)])
def test_step_is_the_gradient_of_the_rar_objective_at_its_inner_maximiser(variant, reg_batch):
    """Known answer: the step's gradient equals autograd of
    ``mean_B l(x or x~) + w * mean_R |IG(x, x')|_1`` (one double-backprop graph) at the x' the
    inner max finds with the step's generator; the components are that objective's terms."""
    model = toy(get_variant(variant).name.split("_")[1])
    x, y = toy_batch()
    options = {**SMALL, "weight": 0.7, "reg_batch": reg_batch}
    objective = make_objective(variant, options)
    ctx = context(copy.deepcopy(model), variant)
    r = 4 if reg_batch is None else reg_batch
    cfg = objective.rar_config
    x_adv = rar_attack(model, x[:r], y[:r], cfg, generator=batch_generator(ctx))
    task_input = x if cfg.objective == "ig_norm" else torch.cat([x_adv, x[r:]])
    task = F.mse_loss(model(task_input).float(), y)          # as objectives.task_loss computes it
    ig = loss_integrated_gradients(model, x[:r], x_adv, y[:r], steps=4, create_graph=True)
    ig_norm = ig_l1_norm(ig).mean()
    (task + 0.7 * ig_norm).backward()
    task, ig_norm = task.detach(), ig_norm.detach()
    parts = objective.step(ctx, x, y, None)
    assert float(parts["rar_task_loss"]) == pytest.approx(float(task), rel=1e-12)
    assert float(parts["rar_ig_norm"]) == pytest.approx(float(ig_norm), rel=1e-10)
    assert float(parts["train_loss"]) == pytest.approx(float(task + 0.7 * ig_norm), rel=1e-10)
    for p_ref, p_step in zip(model.parameters(), ctx.model.parameters()):
        assert torch.isfinite(p_step.grad).all()
        assert torch.allclose(p_step.grad, p_ref.grad, rtol=1e-8, atol=1e-13)
    assert sum(float(p.grad.abs().sum()) for p in ctx.model.parameters()) > 0


@pytest.mark.parametrize("variant", ["ignorm_a2e", "igsumnorm_a2e"])
def test_step_lowers_the_regularised_loss_and_the_regulariser_changes_the_step(variant):
    model = toy()
    x, y = toy_batch()
    objective = make_objective(variant, {**SMALL, "weight": 1.0})
    ctx = context(copy.deepcopy(model), variant, lr=1e-3)
    x_adv = rar_attack(model, x, y, objective.rar_config, generator=batch_generator(ctx))
    cfg = RarConfig(objective=objective.name, weight=1.0, riemann_steps=4, epsilon=0.1)

    def regularised(m):
        task = emotion_mse(m, x if cfg.objective == "ig_norm" else x_adv, y).mean()
        return float((task + ig_l1_norm(loss_integrated_gradients(m, x, x_adv, y, steps=4)).mean()).detach())

    before = regularised(model)
    objective.step(ctx, x, y, None)
    assert regularised(ctx.model) < before
    plain = context(copy.deepcopy(model), variant, lr=1e-3)
    make_objective(variant, {**SMALL, "weight": 0.0}).step(plain, x, y, None)   # w = 0: no regulariser
    moved = [(a - b).abs().max() for a, b in zip(ctx.model.parameters(), plain.model.parameters())]
    assert max(moved) > 0


def test_step_leaves_the_model_in_train_mode_and_draws_seeded_starts():
    torch.manual_seed(0)
    model = build_model("a2e", 0.0625).train()
    x, y = (t.float() for t in toy_batch())
    objective = make_objective("igsumnorm_a2e", {**SMALL, "reg_batch": 2})
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    for m in (a, b):
        torch.manual_seed(5)                                  # the same dropout masks
        objective.step(context(m, "igsumnorm_a2e", optimizer=torch.optim.Adam), x, y, None)
    assert all(mod.training for mod in a.modules())
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    other = SimpleNamespace(config=SimpleNamespace(seed=6), epoch=2, batch=4)
    g1, g2 = batch_generator(context(model, "ignorm_a2e")), batch_generator(other)
    assert not torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))


def test_bad_options_name_the_option():
    cases = [({"weight": -0.1}, r"'ig_norm': option weight \(lambda\) must be a finite number >= 0"),
             ({"riemann_steps": 0}, "option riemann_steps must be an integer >= 1, got 0"),
             ({"attack_steps": 1.5}, "option attack_steps must be an integer >= 1"),
             ({"approx_factor": 0}, "option approx_factor must be"),
             ({"epsilon": 0.0}, "option epsilon must be a finite number > 0"),
             ({"step_size": -1.0}, "option step_size must be a finite number > 0"),
             ({"chunk_size": 0}, "option chunk_size must be an integer >= 1 or None"),
             ({"reg_batch": True}, "option reg_batch must be an integer >= 1 or None"),
             ({"normalisation": "max"}, "option normalisation must be one of"),
             ({"lambda": 1.0}, r"has no option\(s\) \['lambda'\]")]
    for options, message in cases:
        with pytest.raises(ParameterError, match=message):
            make_objective("ig_norm", options)
    with pytest.raises(ParameterError, match=r"'ig_sum_norm': option weight \(beta\)"):
        TrainConfig("igsumnorm_a2b2e", 0, objective_options={"weight": float("nan")})


def test_extension_config_fine_tunes_rar_variants_from_the_base_model():
    data = SimpleNamespace(identity="data-id", n_frames=63)
    smoke = Experiment.from_parameters(profile="smoke", rar_lambda=0.5, rar_epsilon=0.02)
    cfg = extension_config(smoke, "ignorm_a2e", 6, data)
    base = smoke.train_config("a2e", 6)
    assert cfg.init_from == f"a2e/{run_key(run_identity(base, data))}"
    assert cfg.epochs == smoke.profile_spec.finetune_epochs
    opts = cfg.objective_options
    assert (opts["weight"], opts["epsilon"], opts["riemann_steps"], opts["attack_steps"], opts["reg_batch"]) \
        == (0.5, 0.02, 2, 1, 1)
    bottleneck = extension_config(smoke, "igsumnorm_a2b2e", 6, data, chunk_size=1)
    assert bottleneck.init_from.startswith("a2b2e/") and bottleneck.objective_options["weight"] == smoke.rar_beta
    assert bottleneck.objective_options["chunk_size"] == 1
    paper = Experiment.from_parameters(profile="paper")
    cfg = extension_config(paper, "igsumnorm_a2e", 6, data)
    assert cfg.init_from is None
    assert (cfg.objective_options["riemann_steps"], cfg.objective_options["attack_steps"],
            cfg.objective_options["reg_batch"]) == (50, 10, None)
    assert Experiment.from_parameters(profile="quick", rar_steps=12).rar_steps == 12
    with pytest.raises(ParameterError, match="not a RAR variant"):
        rar_options(smoke, "expof_a2e")
    with pytest.raises(ParameterError, match="rar_variants must name RAR variants"):
        Experiment.from_parameters(profile="smoke", rar_variants=["expof_a2e"])
    with pytest.raises(ParameterError, match="rar_beta must be a finite number >= 0"):
        Experiment.from_parameters(profile="smoke", rar_beta=-1)


def test_a_model_trained_with_ig_norm_reloads_in_a_fresh_process(tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 20
    x = torch.randn(n, 1, 16, 20, generator=g)
    data = MerTensors(x, torch.rand(n, 8, generator=g), None, split_indices(n), [f"{i:03d}" for i in range(n)],
                      0.0, 1.0, "tiny-rar-data")
    cfg = TrainConfig("ignorm_a2e", 6, width=0.0625, epochs=1, patience=1, batch_size=4,
                      objective_options={"riemann_steps": 2, "attack_steps": 1, "reg_batch": 2})
    trained = train(cfg, data, tmp_path, device="cpu", progress=False)
    assert {"rar_task_loss", "rar_ig_norm", "train_loss"} <= set(trained.history.columns)
    assert float(trained.history.rar_ig_norm.iloc[0]) > 0
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = trained.model.eval()(x)
    code = ("import sys, torch\ntorch.set_num_threads(1)\nfrom mer_lib.training import load_trained\n"
            "t = load_trained(sys.argv[1], device='cpu')\n"
            "with torch.no_grad():\n    torch.save(t.model.eval()(torch.load(sys.argv[2])), sys.argv[3])\n"
            "print(t.config.objective_options['riemann_steps'], t.config.variant)")
    out = subprocess.run([sys.executable, "-c", code, str(trained.path), str(tmp_path / "x.pt"),
                          str(tmp_path / "pred.pt")], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "ignorm_a2e"]
    assert torch.equal(torch.load(tmp_path / "pred.pt"), expected)
    assert load_trained(trained.path, device="cpu").config == cfg
