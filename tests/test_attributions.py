"""Attribution maps, their comparison metrics and the top-k attribution attack.

Known answers: a linear model's IG is ``(x - b) * W_j`` for every quadrature and its
saliency is ``W_j``; IG is complete (sums to ``f(x) - f(b)``); hand-made maps give known
top-k intersections and Kendall taus; the softplus surrogate tends to the ReLU network.
"""
import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from mer_lib.attributions import (TopkAttackConfig, attribution_robustness,
                                  integrated_gradients, kendall_tau, make_baseline, output_change,
                                  path_integrated_gradients, saliency, silence_value,
                                  softplus_surrogate, topk_attack, topk_count, topk_intersection,
                                  topk_mask, topk_mass)
from mer_lib.errors import ParameterError
from mer_lib.models import build_model, frozen_normalisation

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHAPE = (3, 1, 16, 20)   # small inputs: examples, channel, frames, bins


def linear_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE[1:]), 8)).double()


def mer_model(seed=0, variant="a2e"):
    torch.manual_seed(seed)
    return build_model(variant, 0.0625).double().eval()


def inputs(seed=1, shape=SHAPE):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------- baselines

def test_baselines():
    x = inputs()
    assert torch.equal(make_baseline("zeros", x), torch.zeros_like(x))
    assert silence_value(2.0, 4.0) == -0.5          # (log10(1 + 0) - 2) / 4
    sil = make_baseline("silence", x, mean=2.0, std=4.0)
    assert sil.shape == x.shape and bool((sil == -0.5).all())
    one = torch.randn(SHAPE[1:], dtype=torch.float64)
    assert torch.equal(make_baseline(one, x)[2], one)
    assert torch.equal(make_baseline(one[None], x)[0], one)
    for bad in (torch.zeros(2, 1, 16, 20), torch.zeros(16, 20), torch.zeros(1, 1, 16, 21)):
        with pytest.raises(ParameterError, match="baseline"):
            make_baseline(bad, x)
    with pytest.raises(ParameterError, match="baseline must be one of"):
        make_baseline("noise", x)
    with pytest.raises(ParameterError, match="mean"):
        make_baseline("silence", x)
    with pytest.raises(ParameterError, match="std > 0"):
        make_baseline("silence", x, mean=1.0, std=0.0)
    with pytest.raises(ParameterError, match="baseline"):
        integrated_gradients(linear_model(), x, baseline=torch.zeros(4, 1, 16, 20))


# ---------------------------------------------------------------------------- IG

@pytest.mark.parametrize("method", ["riemann_right", "riemann_left", "riemann_middle", "gausslegendre"])
def test_ig_of_a_linear_model_is_input_times_weight(method):
    model, x = linear_model(), inputs()
    w = model[1].weight.detach().view(8, *SHAPE[1:])
    for baseline, b in (("zeros", 0.0), ("silence", silence_value(1.0, 2.0))):
        maps = integrated_gradients(model, x, baseline=baseline, mean=1.0, std=2.0, steps=5,
                                    method=method)
        assert maps.shape == (3, 8, 1, 16, 20)
        assert torch.allclose(maps, (x - b)[:, None] * w[None], atol=1e-12)
    one = integrated_gradients(model, x, emotion=5, steps=5, method=method)
    assert one.shape == SHAPE and torch.allclose(one, x * w[5], atol=1e-12)


def test_ig_is_complete_and_leaves_the_model_untouched():
    model = mer_model().train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    x = inputs()
    maps = integrated_gradients(model, x, steps=48, method="gausslegendre", internal_batch_size=40)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())   # BN stats too
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad(), frozen_normalisation(model):
        expected = model(x) - model(torch.zeros_like(x))
    gap = maps.flatten(2).sum(2) - expected
    assert gap.abs().max() < 1e-3 * expected.abs().max()
    # captum's internal batching does not change the numbers
    whole = integrated_gradients(model, x, steps=48, method="gausslegendre")
    assert torch.allclose(whole, maps, rtol=1e-9, atol=1e-12)


def test_native_ig_equals_captum_and_is_differentiable():
    model, x = mer_model(), inputs()
    # 8 steps: captum's alphas (float32 linspace) are exact for k/8
    ours = path_integrated_gradients(model, x, baseline="silence", mean=0.5, std=2.0, steps=8)
    ref = integrated_gradients(model, x, baseline="silence", mean=0.5, std=2.0, steps=8)
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-13)
    one = path_integrated_gradients(model, x, emotion=2, steps=8)
    assert torch.allclose(one, integrated_gradients(model, x, emotion=2, steps=8), atol=1e-13)
    xv = x.clone().requires_grad_(True)
    surrogate = softplus_surrogate(model, beta=5.0)
    maps = path_integrated_gradients(surrogate, xv, emotion=0, steps=4, create_graph=True)
    (g,) = torch.autograd.grad(maps.abs().sum(), xv)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_ig_bad_input():
    model, x = linear_model(), inputs()
    with pytest.raises(ParameterError, match="steps"):
        integrated_gradients(model, x, steps=1)
    with pytest.raises(ParameterError, match="steps"):
        path_integrated_gradients(model, x, steps=0)
    for method in ("simpson", "riemann_trapezoid"):   # captum's trapezoid weights sum to (n-1)/n
        with pytest.raises(ParameterError, match="method"):
            integrated_gradients(model, x, method=method)
    with pytest.raises(ParameterError, match="emotion"):
        integrated_gradients(model, x, emotion=8)
    with pytest.raises(ParameterError, match="internal_batch_size"):
        integrated_gradients(model, x, internal_batch_size=0)
    with pytest.raises(ParameterError, match="x must be"):
        integrated_gradients(model, torch.zeros(0, 1, 16, 20))


def test_saliency_is_the_input_gradient():
    model, x = linear_model(), inputs()
    w = model[1].weight.detach().view(8, *SHAPE[1:])
    s = saliency(model, x)
    assert s.shape == (3, 8, 1, 16, 20) and torch.allclose(s, w.expand(3, *w.shape))
    # f(x) = (v . x)^2 has gradient 2 (v . x) v
    v = torch.randn(math.prod(SHAPE[1:]), dtype=torch.float64)

    class Square(nn.Module):
        def forward(self, z):
            return ((z.flatten(1) @ v) ** 2)[:, None].expand(-1, 8)

    expected = 2 * (x.flatten(1) @ v)[:, None] * v
    got = saliency(Square(), x, emotion=3, absolute=True)
    assert got.shape == SHAPE and torch.allclose(got.flatten(1), expected.abs())


# ---------------------------------------------------------------------------- metrics

def test_identical_maps_score_one():
    a = torch.randn(2, 3, 1, 5, 6)
    assert torch.equal(topk_intersection(a, a), torch.ones(2, 3, dtype=torch.float64))
    assert torch.allclose(kendall_tau(a, a), torch.ones(2, 3, dtype=torch.float64))


def test_reversed_maps_score_zero_and_minus_one():
    a = torch.arange(1.0, 11.0).repeat(2, 1).view(2, 1, 10)
    assert torch.equal(topk_intersection(a, a.flip(-1), k=0.3), torch.zeros(2, 1, dtype=torch.float64))
    assert torch.allclose(kendall_tau(a, a.flip(-1)), -torch.ones(2, 1, dtype=torch.float64))


def test_hand_worked_partial_overlap_and_taus():
    # top 3 of a: bins 0, 1, 2; of b: bins 0 (10), 1 (9), 4 (8) -> 2 of 3 shared
    a = torch.tensor([10.0, 9, 8, 7, 6, 5, 4, 3, 2, 1]).view(1, 1, 10)
    b = torch.tensor([10.0, 9, 1, 2, 8, 3, 4, 5, 6, 7]).view(1, 1, 10)
    assert topk_intersection(a, b, k=0.3).item() == pytest.approx(2 / 3)
    # one discordant pair of 6: tau = (5 - 1) / 6
    a4 = torch.tensor([1.0, 2, 3, 4]).view(1, 1, 4)
    assert kendall_tau(a4, torch.tensor([1.0, 2, 4, 3]).view(1, 1, 4)).item() == pytest.approx(2 / 3)
    # a tie in b: 5 concordant, 0 discordant, tau-b = 5 / sqrt(6 * 5)
    tied = torch.tensor([1.0, 1, 2, 3]).view(1, 1, 4)
    assert kendall_tau(a4, tied).item() == pytest.approx(5 / math.sqrt(30))
    # the rank is by |attribution| unless absolute=False
    s = torch.tensor([-5.0, 1, 2, 3]).view(1, 1, 4)
    assert topk_mask(s, 0.25).view(-1).tolist() == [True, False, False, False]
    assert topk_mask(s, 0.25, absolute=False).view(-1).tolist() == [False, False, False, True]
    assert topk_intersection(s, a4, k=0.25).item() == 0.0
    assert topk_intersection(s, a4, k=0.25, absolute=False).item() == 1.0
    # a constant map has no ranking
    assert math.isnan(kendall_tau(a4, torch.ones(1, 1, 4)).item())


def test_metrics_per_emotion_and_averaged():
    a = torch.arange(1.0, 11.0).view(1, 1, 10).repeat(2, 2, 1)      # 2 examples, 2 maps
    b = a.clone()
    b[:, 1] = a[:, 1].flip(-1)                                      # map 1 reversed
    b[1, 0] = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 10, 8, 9])       # example 1, map 0: top-3 same set
    inter = topk_intersection(a, b, k=0.3)
    assert inter.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    table = attribution_robustness(a, b, k=0.3, names=["valence", "energy"])
    assert list(table.index) == ["valence", "energy", "mean"]
    assert table.loc["valence", "topk_intersection"] == 1.0
    assert table.loc["energy", "kendall_tau"] == pytest.approx(-1.0)
    tau_swap = 1 - 2 * 2 / 45      # two discordant pairs of 45
    assert table.loc["valence", "kendall_tau"] == pytest.approx((1 + tau_swap) / 2)
    assert table.loc["mean"].tolist() == pytest.approx([0.5, ((1 + tau_swap) / 2 - 1) / 2])
    with pytest.raises(ParameterError, match="names"):
        attribution_robustness(a, b, names=["valence"])


def test_metric_bad_input():
    a = torch.randn(2, 1, 10)
    assert topk_count(18774) == 939 and topk_count(10, 0.3) == 3 and topk_count(10, 0.01) == 1
    assert topk_intersection(a, torch.randn(2, 1, 10), k=1).tolist() == [[1.0], [1.0]]
    for k in (0, 0.0, -0.1, 1.5, float("nan"), True, "5%"):
        with pytest.raises(ParameterError, match="k must be a fraction"):
            topk_intersection(a, a, k=k)
    with pytest.raises(ParameterError, match="same shape"):
        kendall_tau(a, torch.randn(2, 1, 11))
    with pytest.raises(ParameterError, match="examples, maps"):
        topk_intersection(torch.randn(10), torch.randn(10))


# ---------------------------------------------------------------------------- surrogate, attack

def test_softplus_surrogate_tends_to_the_network_and_leaves_it_untouched():
    model, x = mer_model(), inputs()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = model(x)
        errors = [(softplus_surrogate(model, beta)(x) - ref).abs().max().item()
                  for beta in (1.0, 10.0, 100.0, 1000.0)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-2 * ref.abs().max()
    surrogate = softplus_surrogate(model, 50.0)
    n_relu = sum(isinstance(m, nn.ReLU) for m in model.modules())
    assert n_relu == 9 and sum(isinstance(m, nn.Softplus) for m in surrogate.modules()) == n_relu
    assert not any(isinstance(m, nn.ReLU) for m in surrogate.modules())
    assert all(torch.equal(v, surrogate.state_dict()[k]) for k, v in state.items())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    with pytest.raises(ParameterError, match="no nn.ReLU"):
        softplus_surrogate(linear_model())
    with pytest.raises(ParameterError, match="beta"):
        softplus_surrogate(model, 0.0)


def test_topk_mass_and_output_change():
    maps = torch.tensor([[[4.0, -3.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]]])
    mask = torch.tensor([[[True, True, False, False], [True, False, False, False]]])
    assert topk_mass(maps, mask)[0].tolist() == pytest.approx([0.7, 0.0])
    assert topk_mass(maps, topk_mask(maps, 0.5))[0].tolist() == pytest.approx([0.7, 1.0])
    assert output_change(torch.zeros(2, 8), torch.tensor([[0.0] * 7 + [-0.2], [0.1] * 8])).tolist() \
        == pytest.approx([0.2, 0.1])
    with pytest.raises(ParameterError, match="mask"):
        topk_mass(maps, mask[:, :1])


def test_topk_attack_keeps_the_prediction_within_tolerance():
    model = mer_model(3).train()
    x = inputs(4, (4, 1, 16, 20))
    cfg = TopkAttackConfig(epsilon=0.03, iterations=4, k=0.1, tolerance=0.02, beta=10.0,
                           ig_steps=6, attack_ig_steps=4)
    res = topk_attack(model, x, cfg)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert bool((res.delta.abs() <= 0.03 + 1e-12).all())
    assert torch.equal(res.x_adv, x + res.delta)
    with torch.no_grad(), frozen_normalisation(model):
        change = output_change(model(x), model(res.x_adv))
    assert torch.allclose(change, res.output_change) and bool((change <= 0.02).all())
    # the kept maps are the model's own maps at x_adv, and the attack did lower tau
    assert torch.allclose(res.adv_maps, integrated_gradients(model, res.x_adv, steps=6))
    assert torch.allclose(res.kendall_tau, kendall_tau(res.clean_maps, res.adv_maps))
    kept = res.step > 0
    assert 0 < int(kept.sum()) and bool((res.kendall_tau[kept].mean(1) < 0.9).all())
    # without a tolerance some example keeps a step whose output moved by more than 0.02
    free = topk_attack(model, x, dataclasses.replace(cfg, tolerance=1e9))
    assert bool((free.output_change > 0.02).any())
    assert bool((free.kendall_tau.mean(1) <= res.kendall_tau.mean(1) + 1e-12).all())
    chunked = topk_attack(model, x, cfg, batch_size=3)        # 3 + 1 examples: same results
    assert torch.equal(chunked.delta, res.delta) and torch.equal(chunked.step, res.step)
    assert torch.allclose(chunked.kendall_tau, res.kendall_tau, rtol=0, atol=1e-15)
    table = res.table()
    assert list(table.columns) == ["topk_intersection", "kendall_tau"] and len(table) == 9
    # no step can meet a zero tolerance on a changed input: the start is kept
    strict = topk_attack(model, x, TopkAttackConfig(epsilon=0.5, iterations=2, tolerance=0.0,
                                                    ig_steps=4, attack_ig_steps=2, emotion=1))
    assert torch.equal(strict.delta, torch.zeros_like(x)) and strict.step.tolist() == [0] * 4
    assert strict.adv_maps.shape == (4, 1, 1, 16, 20)
    assert torch.allclose(strict.kendall_tau, torch.ones(4, 1, dtype=torch.float64))


def test_topk_attack_config_bad_input():
    with pytest.raises(ParameterError, match="epsilon"):
        TopkAttackConfig(epsilon=0.0)
    with pytest.raises(ParameterError, match="k must be"):
        TopkAttackConfig(epsilon=0.1, k=1.2)
    with pytest.raises(ParameterError, match="tolerance"):
        TopkAttackConfig(epsilon=0.1, tolerance=-0.1)
    with pytest.raises(ParameterError, match="ig_steps"):
        TopkAttackConfig(epsilon=0.1, ig_steps=1)
    with pytest.raises(ParameterError, match="batch_size"):
        topk_attack(mer_model(), inputs(), TopkAttackConfig(epsilon=0.1), batch_size=0)
    cfg = TopkAttackConfig(epsilon=0.2, iterations=5)
    assert cfg.step_size == pytest.approx(0.1) and cfg == copy.deepcopy(cfg) and hash(cfg)
