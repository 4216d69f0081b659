"""Robust Attribution Regularization: the loss IG, the objectives' chunked backward, the inner max.

Known answers: the IG of the loss equals captum's; for a linear model (quadratic loss) the
right-Riemann completeness error is exactly ``d^T H d / (2m)``; the chunked backward gives
the textbook double-backprop gradient to rounding (float64).
"""
import copy
import math

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from mer_lib.attributions import (RarConfig, attack_objective_gradient, emotion_mse, ig_l1_norm,
                                  loss_integrated_gradients, rar_attack, rar_attack_objective,
                                  rar_backward, rar_loss)
from mer_lib.errors import ParameterError
from mer_lib.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHAPE = (3, 1, 16, 20)


def mer_model(seed=0, variant="a2e"):
    torch.manual_seed(seed)
    return build_model(variant, 0.0625).double().eval()


def batch(seed=1, radius=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*SHAPE, generator=g, dtype=torch.float64)
    x_adv = x + radius * (2 * torch.rand(*SHAPE, generator=g, dtype=torch.float64) - 1)
    return x, x_adv, torch.rand(SHAPE[0], 8, generator=g, dtype=torch.float64)


def grads(model):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


# ---------------------------------------------------------------------------- loss IG

def test_loss_ig_equals_captum():
    model = mer_model()
    x, x_adv, y = batch()
    ours = loss_integrated_gradients(model, x, x_adv, y, steps=8, chunk_size=3)
    captum_ig = IntegratedGradients(lambda z, yy: emotion_mse(model, z, yy))
    ref = captum_ig.attribute(x_adv, baselines=x, additional_forward_args=(y,), n_steps=8,
                              method="riemann_right")
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-14)
    graph = loss_integrated_gradients(model, x, x_adv, y, steps=8, create_graph=True)
    assert graph.requires_grad and torch.allclose(graph.detach(), ours, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_completeness_error_of_a_quadratic_loss_is_dHd_over_2m(steps):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE[1:]), 8)).double()
    x, x_adv, y = batch()
    ig = loss_integrated_gradients(model, x, x_adv, y, steps=steps)
    gap = ig.flatten(1).sum(1) - (emotion_mse(model, x_adv, y) - emotion_mse(model, x, y))
    w = model[1].weight.detach()
    d = (x_adv - x).flatten(1)
    d_h_d = (2 / 8) * ((d @ w.T) ** 2).sum(1)        # H = (2/8) W^T W for the mean over 8 outputs
    assert torch.allclose(gap.detach(), d_h_d / (2 * steps), rtol=1e-9, atol=1e-14)


def test_completeness_error_shrinks_with_m():
    model = mer_model(2)
    x, x_adv, y = batch(3, radius=0.3)
    change = emotion_mse(model, x_adv, y) - emotion_mse(model, x, y)
    gaps = [(loss_integrated_gradients(model, x, x_adv, y, steps=m).flatten(1).sum(1) - change)
            .abs().max().item() for m in (2, 8, 32, 128)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < gaps[0] / 20
    assert gaps[-1] < 0.02 * change.abs().max().item()


# ---------------------------------------------------------------------------- objectives

@pytest.mark.parametrize("objective", ["ig_norm", "ig_sum_norm"])
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_chunked_backward_equals_full_double_backprop(objective, mode, chunk_size):
    base = mer_model(4)
    x, x_adv, y = batch(5)
    full_cfg = RarConfig(objective=objective, weight=0.7, riemann_steps=7, chunk_size=None,
                         normalisation="mean" if chunk_size == 3 else "sum")
    chunk_cfg = RarConfig(**{**full_cfg.to_dict(), "chunk_size": chunk_size})
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    getattr(a, mode)(), getattr(b, mode)()
    torch.manual_seed(9)                      # the same dropout masks for the task term
    full = rar_loss(a, x, x_adv, y, full_cfg)
    full.loss.backward()
    torch.manual_seed(9)
    terms = rar_backward(b, x, x_adv, y, chunk_cfg)
    assert terms.as_dict() == pytest.approx(full.as_dict(), rel=1e-12)
    assert torch.allclose(terms.ig_norm_per_example, full.ig_norm_per_example, rtol=1e-12)
    for ga, gb in zip(grads(a), grads(b)):
        assert torch.allclose(ga, gb, rtol=1e-9, atol=1e-15)
    assert [m.training for m in a.modules()] == [m.training for m in b.modules()]
    assert all(m.training == (mode == "train") for m in b.modules())


def test_regulariser_gradient_is_finite_nonzero_and_changes_the_task_gradient():
    torch.manual_seed(0)
    model = build_model("a2b2e", 0.0625).train()          # float32, bottleneck head
    x, x_adv, y = (t.float() for t in batch(6))
    cfg = RarConfig(weight=1.0, riemann_steps=6, chunk_size=2)
    torch.manual_seed(1)                                    # same dropout masks in each task term
    terms = rar_backward(model, x, x_adv, y, cfg)
    with_reg = grads(model)
    assert all(torch.isfinite(g).all() for g in with_reg)
    assert terms.ig_norm > 0 and terms.loss == pytest.approx(float(terms.task + terms.ig_norm), rel=1e-6)
    model.zero_grad()
    torch.manual_seed(1)
    rar_backward(model, x, x_adv, y, RarConfig(weight=0.0, riemann_steps=6, chunk_size=2))
    task_only = grads(model)
    model.zero_grad()
    torch.manual_seed(1)
    emotion_mse(model, x, y).mean().backward()    # weight 0 is the plain task gradient...
    assert all(torch.allclose(g, t, rtol=1e-5, atol=1e-8) for g, t in zip(grads(model), task_only))
    # ...and the regulariser adds a non-zero gradient to the parameters behind the input
    diff = sum(float((g - t).abs().sum()) for g, t in zip(with_reg, task_only))
    assert diff > 0 and float((with_reg[0] - task_only[0]).abs().sum()) > 0


def test_l1_normalisations():
    ig = torch.tensor([[[[1.0, -2.0], [0.5, 0.5]]], [[[0.0, 0.0], [0.0, -4.0]]]])
    assert ig_l1_norm(ig).tolist() == [4.0, 4.0]
    assert ig_l1_norm(ig, "mean").tolist() == [1.0, 1.0]
    with pytest.raises(ParameterError, match="normalisation"):
        ig_l1_norm(ig, "max")


# ---------------------------------------------------------------------------- inner max

@pytest.mark.parametrize("objective", ["ig_norm", "ig_sum_norm"])
def test_chunked_attack_gradient_equals_double_backprop(objective):
    model = mer_model(7)
    x, x_adv, y = batch(8)
    full = RarConfig(objective=objective, weight=0.3, riemann_steps=20, approx_factor=4, chunk_size=None)
    chunked = RarConfig(**{**full.to_dict(), "chunk_size": 2})
    g_full = attack_objective_gradient(model, x, x_adv, y, full)
    g_chunk = attack_objective_gradient(model, x, x_adv, y, chunked)
    assert g_full.abs().sum() > 0 and torch.allclose(g_full, g_chunk, rtol=1e-9, atol=1e-15)
    # and it is the gradient of the objective: a small step along it raises the objective
    h = 1e-4 * g_full.sign()
    up = rar_attack_objective(model, x, x_adv + h, y, full) - rar_attack_objective(model, x, x_adv, y, full)
    assert bool((up > 0).all())


@pytest.mark.parametrize("objective", ["ig_norm", "ig_sum_norm"])
def test_inner_max_stays_in_the_ball_raises_the_objective_and_leaves_the_model_alone(objective):
    model = mer_model(10, "a2b2e").train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, _, y = batch(11)
    cfg = RarConfig(objective=objective, weight=0.5, epsilon=0.2, riemann_steps=8, attack_steps=5,
                    approx_factor=2, chunk_size=2, seed=3)
    x_adv = rar_attack(model, x, y, cfg)
    assert (x_adv - x).abs().max() <= 0.2 + 1e-12
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(x_adv, rar_attack(model, x, y, cfg))                   # seeded
    other = rar_attack(model, x, y, RarConfig(**{**cfg.to_dict(), "seed": 4}))
    assert not torch.equal(x_adv, other)
    gen = torch.Generator().manual_seed(3)                                     # same as seed=3
    assert torch.equal(x_adv, rar_attack(model, x, y, cfg, generator=gen))
    start = x + (rar_attack(model, x, y, RarConfig(**{**cfg.to_dict(), "step_size": 1e-12,
                                                       "attack_steps": 1})) - x)
    reached = rar_attack_objective(model, x, x_adv, y, cfg)
    started = rar_attack_objective(model, x, start, y, cfg)
    assert bool((reached > started).all())


# ---------------------------------------------------------------------------- configuration

def test_config_bad_input_names_the_parameter():
    with pytest.raises(ParameterError, match=r"riemann_steps \(m\) must be an integer >= 1, got 0"):
        RarConfig(riemann_steps=0)
    with pytest.raises(ParameterError, match=r"^lambda \(the IG-NORM weight\) must be"):
        RarConfig(weight=-0.1)
    with pytest.raises(ParameterError, match=r"^beta \(the IG-SUM-NORM weight\) must be"):
        RarConfig(objective="ig_sum_norm", weight=-1.0)
    for eps in (0, 0.0, -0.1, float("inf")):
        with pytest.raises(ParameterError, match="^epsilon"):
            RarConfig(epsilon=eps)
    for field, value in (("attack_steps", 0), ("approx_factor", 0), ("chunk_size", 0),
                         ("objective", "ig"), ("normalisation", "l2"), ("step_size", -1.0)):
        with pytest.raises(ParameterError, match=f"^{field}"):
            RarConfig(**{field: value})
    with pytest.raises(ParameterError, match="unknown RAR configuration field"):
        RarConfig.from_dict({"lam": 1.0})
    cfg = RarConfig(epsilon=0.05, riemann_steps=20, attack_steps=4)
    assert cfg.step_size == pytest.approx(2.5 * 0.05 / 4) and cfg.attack_riemann_steps == 4
    assert RarConfig.from_dict(cfg.to_dict()) == cfg and cfg.key() == RarConfig.from_dict(cfg.to_dict()).key()
    assert cfg.key() != RarConfig(epsilon=0.05, riemann_steps=21, attack_steps=4).key()
    assert RarConfig(riemann_steps=3).attack_riemann_steps == 1 and hash(cfg)


def test_function_bad_input():
    model = mer_model()
    x, x_adv, y = batch()
    with pytest.raises(ParameterError, match=r"steps \(m\)"):
        loss_integrated_gradients(model, x, x_adv, y, steps=0)
    with pytest.raises(ParameterError, match="x_adv must have x's shape"):
        loss_integrated_gradients(model, x, x_adv[:2], y, steps=2)
    with pytest.raises(ParameterError, match="batch size"):
        rar_loss(model, x, x_adv, y[:2], RarConfig())
    with pytest.raises(ParameterError, match="RarConfig"):
        rar_backward(model, x, x_adv, y, {"weight": 1.0})
    with pytest.raises(ParameterError, match="does not match y"):
        rar_attack(model, x, y[:, :7], RarConfig(attack_steps=1, riemann_steps=2))
    frozen_model = copy.deepcopy(model).requires_grad_(False)
    with pytest.raises(ParameterError, match="no parameters"):
        rar_backward(frozen_model, x, x_adv, y, RarConfig(riemann_steps=2))
