"""Patch space, neighbours, local linear fits, LIME and the NF / stability metrics (known answers)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from mer_lib.errors import ParameterError
from mer_lib.explain import (LIME_BASELINE, LocalLinear, PatchGrid, apply_masks, design_matrix,
                             explain_local_linear, explanation_quality, explanation_stability,
                             fit_local_linear, gaussian_neighbours, gaussian_offsets, least_squares_residual,
                             lime_explanations, lime_masks, neighbourhood_fidelity, output_function,
                             outputs_at_offsets, split_sizes, uniform_box)
from mer_lib.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class PatchLinear(nn.Module):
    """f(x) = W . patch means(x) + b: exactly linear in the interpretable space."""

    def __init__(self, grid: PatchGrid, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.grid, self.weight, self.bias = grid, weight, bias

    def forward(self, x):
        return self.grid.reduce(x) @ self.weight.to(x.dtype).T + self.bias.to(x.dtype)


class PatchQuadratic(nn.Module):
    """f_o(x) = sum_k a_ok p_k^2 (p = patch means): local slope 2 a_o * p changes with x."""

    def __init__(self, grid: PatchGrid, a: torch.Tensor):
        super().__init__()
        self.grid, self.a = grid, a

    def forward(self, x):
        return self.grid.reduce(x).pow(2) @ self.a.to(x.dtype).T


# --------------------------------------------------------------------------------------
# PatchGrid
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,parts", [(10, 4), (126, 8), (149, 4), (7, 7), (5, 1), (9, 2)])
def test_split_sizes_follow_tensor_split(n, parts):
    expected = tuple(len(c) for c in torch.tensor_split(torch.arange(n), parts))
    assert split_sizes(n, parts) == expected
    assert max(expected) - min(expected) <= 1 and sum(expected) == n


def test_patch_ids_layout_worked_by_hand():
    grid = PatchGrid(bands=2, segments=3)
    ids = grid.patch_ids(7, 5)  # frames 3|2|2, bins 3|2, k = band * 3 + segment
    assert ids.dtype == torch.long and ids.shape == (7, 5)
    expected = torch.tensor([[0, 0, 0, 3, 3]] * 3 + [[1, 1, 1, 4, 4]] * 2 + [[2, 2, 2, 5, 5]] * 2)
    assert torch.equal(ids, expected)
    assert torch.equal(torch.bincount(ids.flatten()), torch.tensor([9, 6, 6, 6, 4, 4]))


def test_reduce_is_the_mean_of_each_tensor_split_block():
    grid = PatchGrid(bands=4, segments=8)
    x = torch.randn(3, 1, 126, 149, generator=gen(), dtype=F64)
    means = grid.reduce(x)
    assert means.shape == (3, 32)
    for s, rows in enumerate(torch.tensor_split(torch.arange(126), 8)):
        for b, cols in enumerate(torch.tensor_split(torch.arange(149), 4)):
            block = x[:, 0][:, rows][:, :, cols]
            torch.testing.assert_close(means[:, b * 8 + s], block.mean(dim=(1, 2)))


def test_expand_is_constant_per_patch_and_inverts_reduce():
    grid = PatchGrid(bands=3, segments=5)
    w = torch.randn(2, 15, generator=gen(1), dtype=F64, requires_grad=True)
    img = grid.expand(w, 23, 17)
    assert img.shape == (2, 1, 23, 17)
    ids = grid.patch_ids(23, 17)
    assert torch.equal(img[1, 0], w[1].detach()[ids])
    torch.testing.assert_close(grid.reduce(img), w.detach())
    img.sum().backward()  # d(sum)/dw_k = number of elements in patch k
    assert torch.equal(w.grad[0], torch.bincount(ids.flatten()).to(F64))


def test_feature_mask_for_captum():
    grid = PatchGrid(2, 4)
    mask = grid.feature_mask(torch.zeros(5, 1, 16, 10))
    assert mask.shape == (1, 1, 16, 10) and mask.dtype == torch.long
    assert set(mask.unique().tolist()) == set(range(8))


def test_grid_is_frozen_hashable_and_validated():
    assert len({PatchGrid(4, 8), PatchGrid(4, 8), PatchGrid(8, 4)}) == 2
    assert PatchGrid().n_patches == 32 and PatchGrid().to_dict() == {"bands": 4, "segments": 8}
    with pytest.raises(dataclasses.FrozenInstanceError):
        PatchGrid().bands = 2
    for kwargs, field in [({"bands": 0}, "PatchGrid.bands"), ({"segments": -1}, "PatchGrid.segments"),
                          ({"bands": 2.0}, "PatchGrid.bands"), ({"segments": True}, "PatchGrid.segments")]:
        with pytest.raises(ParameterError, match=field):
            PatchGrid(**kwargs)


def test_grid_that_does_not_fit_is_rejected():
    with pytest.raises(ParameterError, match=r"PatchGrid.bands = 6 .*5 frequency bins"):
        PatchGrid(bands=6, segments=2).patch_ids(20, 5)
    with pytest.raises(ParameterError, match=r"PatchGrid.segments = 9 .*8 frames"):
        PatchGrid(bands=2, segments=9).reduce(torch.zeros(1, 1, 8, 20))
    with pytest.raises(ParameterError, match="segments"):
        explanation_quality(lambda x: x.sum((1, 2, 3))[:, None], torch.zeros(1, 1, 8, 20), PatchGrid(2, 9))
    with pytest.raises(ParameterError, match=r"\(batch, 1, frames, bins\)"):
        PatchGrid().reduce(torch.zeros(1, 126, 149))
    with pytest.raises(ParameterError, match=r"\(batch, 32\)"):
        PatchGrid().expand(torch.zeros(2, 31), 126, 149)


# --------------------------------------------------------------------------------------
# Neighbours
# --------------------------------------------------------------------------------------

def test_gaussian_neighbours_are_per_patch_noise_seeded():
    grid = PatchGrid(2, 3)
    x = torch.randn(4, 1, 12, 9, generator=gen(), dtype=F64)
    xs, z = gaussian_neighbours(x, grid, sigma=0.3, n=6, generator=gen(5))
    assert xs.shape == (4, 6, 1, 12, 9) and z.shape == (4, 6, 6)
    noise = (xs - x[:, None]).reshape(24, 1, 12, 9)
    torch.testing.assert_close(noise, grid.expand(z.reshape(24, 6), 12, 9))   # constant per patch
    torch.testing.assert_close(grid.reduce(noise), z.reshape(24, 6))
    xs2, z2 = gaussian_neighbours(x, grid, sigma=0.3, n=6, generator=gen(5))
    assert torch.equal(xs, xs2) and torch.equal(z, z2)
    assert not torch.equal(z, gaussian_neighbours(x, grid, 0.3, 6, generator=gen(6))[1])
    big = gaussian_offsets(200, 50, grid, sigma=0.5, generator=gen(1))
    assert abs(float(big.std()) - 0.5) < 0.01 and abs(float(big.mean())) < 0.01


def test_lime_masks_and_baseline():
    grid = PatchGrid(2, 2)
    masks = lime_masks(3, 500, grid, generator=gen(2))
    assert masks.shape == (3, 500, 4) and set(masks.unique().tolist()) == {0.0, 1.0}
    assert abs(float(masks.mean()) - 0.5) < 0.03
    x = torch.randn(3, 1, 8, 6, generator=gen(), dtype=F64)
    for baseline in (LIME_BASELINE, 0.5):
        out = apply_masks(x, grid, masks[:, :7], baseline)
        keep = grid.expand(masks[:, :7].reshape(-1, 4).to(F64), 8, 6).view(3, 7, 1, 8, 6).bool()
        assert torch.equal(out[keep], x[:, None].expand_as(out)[keep])
        assert torch.all(out[~keep] == baseline)
    assert LIME_BASELINE == 0.0


def test_uniform_box_bounds():
    u = uniform_box((1000, 8), 0.2, gen())
    assert float(u.abs().max()) <= 0.2 and float(u.max()) > 0.19 and float(u.min()) < -0.19


@pytest.mark.parametrize("call,field", [
    (lambda: gaussian_offsets(1, 5, PatchGrid(), sigma=0.0), "sigma"),
    (lambda: gaussian_offsets(1, 5, PatchGrid(), sigma=-0.1), "sigma"),
    (lambda: gaussian_offsets(1, 0, PatchGrid(), sigma=0.1), "n_neighbours"),
    (lambda: lime_masks(1, 0, PatchGrid()), "n_samples"),
    (lambda: uniform_box((2,), 0.0), "radius"),
    (lambda: apply_masks(torch.zeros(2, 1, 8, 8), PatchGrid(2, 2), torch.ones(2, 3, 5)), "masks"),
])
def test_neighbour_bad_inputs(call, field):
    with pytest.raises(ParameterError, match=field):
        call()


# --------------------------------------------------------------------------------------
# Which output, chunked evaluation
# --------------------------------------------------------------------------------------

def test_output_function_targets_and_columns():
    a2m2e, a2e = build_model("a2m2e", 0.0625).eval(), build_model("a2e", 0.0625).eval()
    x = torch.randn(2, 1, 16, 16, generator=gen())
    with torch.no_grad():
        emotions, concepts = a2m2e.forward_all(x)
        assert torch.equal(output_function(a2m2e)(x), emotions)
        assert torch.equal(output_function(a2m2e, "concepts")(x), concepts)
        assert torch.equal(output_function(a2m2e, outputs=3)(x), emotions[:, 3:4])
        assert torch.equal(output_function(a2m2e, "concepts", [6, 0])(x), concepts[:, [6, 0]])
        with pytest.raises(ParameterError, match="no concept bottleneck"):
            output_function(a2e, "concepts")(x)
        with pytest.raises(ParameterError, match="out of range"):
            output_function(a2e, outputs=8)(x)
    with pytest.raises(ParameterError, match="target"):
        output_function(a2e, "mood")
    with pytest.raises(ParameterError, match="outputs"):
        output_function(a2e, outputs=-1)
    with pytest.raises(ParameterError, match="forward_all"):
        output_function(lambda x: x, "concepts")


def test_outputs_at_offsets_is_independent_of_chunking():
    grid = PatchGrid(2, 2)
    model = PatchQuadratic(grid, torch.rand(3, 4, generator=gen(), dtype=F64))
    x = torch.randn(3, 1, 8, 8, generator=gen(1), dtype=F64)
    z = torch.randn(3, 7, 4, generator=gen(2), dtype=F64)
    full = outputs_at_offsets(model, x, z, grid, batch_size=21)
    torch.testing.assert_close(outputs_at_offsets(model, x, z, grid, batch_size=4), full)
    direct = model((x[:, None] + grid.expand(z.reshape(21, 4), 8, 8).view(3, 7, 1, 8, 8)).reshape(21, 1, 8, 8))
    torch.testing.assert_close(full, direct.view(3, 7, 3))


# --------------------------------------------------------------------------------------
# Local linear fits
# --------------------------------------------------------------------------------------

def linear_model(grid: PatchGrid, outputs: int = 8, seed: int = 3) -> PatchLinear:
    g = gen(seed)
    return PatchLinear(grid, torch.randn(outputs, grid.n_patches, generator=g, dtype=F64),
                       torch.randn(outputs, generator=g, dtype=F64))


def test_fit_recovers_exact_coefficients_of_a_linear_model():
    grid = PatchGrid(4, 8)
    model = linear_model(grid)
    x = torch.randn(3, 1, 40, 30, generator=gen(), dtype=F64)
    fit = explain_local_linear(model, x, grid, seed=1)
    assert fit.coef.shape == (3, 8, 33) and fit.coef.dtype == F64
    torch.testing.assert_close(fit.weights, model.weight.expand(3, 8, 32), atol=1e-10, rtol=0)
    torch.testing.assert_close(fit.intercept, model(x), atol=1e-10, rtol=0)   # g(0) = f(x)
    one = explain_local_linear(model, x, grid, seed=1, outputs=5)            # one emotion
    assert one.coef.shape == (3, 1, 33)
    torch.testing.assert_close(one.coef[:, 0], fit.coef[:, 5])


def test_fit_with_exactly_k_plus_1_neighbours_interpolates_and_fewer_is_rejected():
    z = torch.randn(2, 5, 4, generator=gen(), dtype=F64)
    y = torch.randn(2, 5, 3, generator=gen(1), dtype=F64)
    fit = fit_local_linear(z, y)
    torch.testing.assert_close(fit.predict(z), y)
    assert float(least_squares_residual(z, y).abs().max()) < 1e-12
    with pytest.raises(ParameterError, match=r"K\+1 = 5"):
        fit_local_linear(z[:, :4], y[:, :4])
    with pytest.raises(ParameterError, match="n_fit"):
        explain_local_linear(linear_model(PatchGrid(2, 2)), torch.zeros(1, 1, 8, 8, dtype=F64),
                             PatchGrid(2, 2), n_fit=4)
    with pytest.raises(ParameterError, match="sigma"):
        explain_local_linear(linear_model(PatchGrid(2, 2)), torch.zeros(1, 1, 8, 8), PatchGrid(2, 2), sigma=0)
    with pytest.raises(ParameterError, match="outputs y"):
        fit_local_linear(z, y[:, :3])


def test_residual_is_the_projection_off_the_design():
    z = torch.randn(3, 20, 4, generator=gen(), dtype=F64)
    y = torch.randn(3, 20, 2, generator=gen(1), dtype=F64, requires_grad=True)
    r = least_squares_residual(z, y)
    fit = fit_local_linear(z, y)
    torch.testing.assert_close(r, y - fit.predict(z))
    a = design_matrix(z)
    assert float((a.transpose(1, 2) @ r.detach()).abs().max()) < 1e-12   # orthogonal to [1, z]
    hat = a @ torch.linalg.pinv(a)
    r.pow(2).sum().backward()                                        # d||(I-H)y||^2 = 2 (I-H) y
    torch.testing.assert_close(y.grad, 2 * (torch.eye(20, dtype=F64) - hat) @ y.detach())


def test_local_linear_predict():
    coef = torch.tensor([[[1.0, 2.0, -1.0]]])        # b = 1, w = (2, -1)
    fit = LocalLinear(coef)
    z = torch.tensor([[[1.0, 1.0], [0.0, 3.0]]])
    assert torch.equal(fit.predict(z), torch.tensor([[[2.0], [-2.0]]]))


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------

def test_metrics_are_zero_for_a_model_linear_in_patch_space():
    grid = PatchGrid(4, 8)
    x = torch.randn(2, 1, 32, 24, generator=gen(), dtype=F64)
    q = explanation_quality(linear_model(grid), x, grid, seed=4)
    assert q.nf.shape == q.stability.shape == (2, 8) and q.nf.dtype == F64
    assert float(q.nf.max()) < 1e-24 and float(q.stability.max()) < 1e-20
    assert q.offsets.shape == (2, 5, 32)
    assert q.summary()["nf"] < 1e-24


def test_stability_refits_at_each_neighbour_known_value():
    """f_o = sum_k a_ok p_k^2: the refit at x' moves the weights by exactly 2 a_o * z_j.

    Refitting at x (the original ExpO code's bug) would compare the explanation with itself
    and give S = 0; here S = mean_j sum_k (2 a_ok z_jk)^2 > 0, and 9x that for 3a.
    """
    grid = PatchGrid(2, 4)
    a = torch.rand(2, 8, generator=gen(1), dtype=F64) + 0.5
    x = torch.randn(3, 1, 16, 12, generator=gen(), dtype=F64)
    q = explanation_quality(PatchQuadratic(grid, a), x, grid, sigma=0.1, n_neighbours=5, seed=7)
    expected = (2 * a[None, None] * q.offsets[:, :, None, :]).pow(2).sum(-1).mean(1)    # (B, O)
    torch.testing.assert_close(q.stability, expected, rtol=1e-7, atol=1e-12)
    assert float(expected.min()) > 1e-3
    rough = explanation_quality(PatchQuadratic(grid, 3 * a), x, grid, sigma=0.1, n_neighbours=5, seed=7)
    torch.testing.assert_close(rough.stability, 9 * q.stability)
    # NF > 0 for the non-linear model (the curvature term is not fitted), scaling with a^2
    assert float(q.nf.min()) > 0
    torch.testing.assert_close(rough.nf, 9 * q.nf)


def test_metrics_seeded_batch_size_independent_and_consistent_with_the_explainer():
    grid = PatchGrid(2, 2)
    model = PatchQuadratic(grid, torch.rand(3, 4, generator=gen(), dtype=F64))
    x = torch.randn(4, 1, 8, 8, generator=gen(1), dtype=F64)
    q = explanation_quality(model, x, grid, seed=3, batch_size=1000)
    q_small = explanation_quality(model, x, grid, seed=3, batch_size=7)
    torch.testing.assert_close(q.nf, q_small.nf)
    torch.testing.assert_close(q.stability, q_small.stability)
    assert not torch.allclose(q.nf, explanation_quality(model, x, grid, seed=4).nf)
    torch.testing.assert_close(q.explanation.coef, explain_local_linear(model, x, grid, seed=3).coef)
    torch.testing.assert_close(neighbourhood_fidelity(model, x, grid, seed=3), q.nf)
    torch.testing.assert_close(explanation_stability(model, x, grid, seed=3), q.stability)
    assert explanation_quality(model, x, grid, seed=3, with_stability=False).stability is None


def test_metrics_on_a_network_leave_batchnorm_and_modes_alone():
    model = build_model("a2m2e", 0.0625).train()
    bn = model.features[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    x = torch.randn(2, 1, 16, 16, generator=gen())
    q = explanation_quality(model, x, PatchGrid(2, 2), seed=0, target="concepts")
    assert q.nf.shape == (2, 7) and torch.isfinite(q.nf).all() and torch.isfinite(q.stability).all()
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == stats[2]
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("kwargs,field", [
    ({"sigma": 0.0}, "sigma"), ({"sigma": -1.0}, "sigma"), ({"n_neighbours": 0}, "n_neighbours"),
    ({"n_fit": 4}, "n_fit"), ({"seed": -1}, "seed"), ({"sigma_fit": 0.0}, "sigma_fit"),
    ({"batch_size": 0}, "batch_size"),
])
def test_metric_bad_inputs(kwargs, field):
    grid = PatchGrid(2, 2)
    with pytest.raises(ParameterError, match=field):
        explanation_quality(linear_model(grid), torch.zeros(1, 1, 8, 8, dtype=F64), grid, **kwargs)


# --------------------------------------------------------------------------------------
# LIME (captum)
# --------------------------------------------------------------------------------------

def test_lime_recovers_a_linear_models_patch_weights():
    """Masked patch mean = m_k p_k + (1 - m_k) * baseline, so LIME's weight is w_k (p_k - baseline)."""
    grid = PatchGrid(2, 3)
    model = linear_model(grid, outputs=2, seed=5).float()
    model.weight, model.bias = model.weight.float(), model.bias.float()
    x = torch.rand(2, 1, 12, 9, generator=gen()) + 0.5           # every patch mean > 0.5
    w = lime_explanations(model, x, grid, seed=1)
    assert w.shape == (2, 2, 6)
    p = grid.reduce(x)
    torch.testing.assert_close(w, model.weight[None] * p[:, None], atol=1e-4, rtol=1e-4)
    assert torch.equal(torch.sign(w), torch.sign(model.weight).expand(2, 2, 6))
    shifted = lime_explanations(model, x, grid, seed=1, baseline=0.25, outputs=1)
    torch.testing.assert_close(shifted[:, 0], model.weight[1] * (p - 0.25), atol=1e-4, rtol=1e-4)
    assert torch.equal(lime_explanations(model, x, grid, seed=1), w)                # seeded


def test_lime_runs_on_a_tiny_network():
    model = build_model("a2e", 0.0625).train()
    w = lime_explanations(model, torch.randn(1, 1, 16, 16, generator=gen()), PatchGrid(2, 2), seed=0,
                          outputs=[0, 7], n_samples=12)
    assert w.shape == (1, 2, 4) and torch.isfinite(w).all()
    assert all(m.training for m in model.modules())
    with pytest.raises(ParameterError, match="n_samples"):
        lime_explanations(model, torch.zeros(1, 1, 16, 16), PatchGrid(2, 2), n_samples=4)
