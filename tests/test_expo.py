"""ExpO regularisers and frozen normalisation (known answers on scripted and toy models)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mer_lib.errors import ParameterError
from mer_lib.explain import PatchGrid, gaussian_offsets, uniform_box
from mer_lib.models import build_model, frozen_normalisation
from mer_lib.objectives import (SIGMA_REG, fidelity_regulariser, fidelity_regulariser_backward,
                                regulariser_weight, stability_regulariser)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class PatchPolynomial(nn.Module):
    """f_o(x) = p . w_o + (p^2) . a_o with p the patch means (a = 0: linear in patch space)."""

    def __init__(self, grid: PatchGrid, w: torch.Tensor, a: torch.Tensor):
        super().__init__()
        self.grid, self.w, self.a = grid, w, a

    def forward(self, x):
        p = self.grid.reduce(x)
        return p @ self.w.to(x.dtype).T + p.pow(2) @ self.a.to(x.dtype).T


def toy_net(seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


# --------------------------------------------------------------------------------------
# frozen_normalisation
# --------------------------------------------------------------------------------------

def bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_frozen_normalisation_freezes_bn_and_dropout_only():
    model = build_model("a2b2e", 0.0625).train()
    before = bn_state(model)
    x = torch.randn(4, 1, 16, 16, generator=gen())
    with frozen_normalisation(model) as inside:
        assert inside is model and model.training
        for m in model.modules():
            frozen = isinstance(m, (nn.BatchNorm2d, nn.Dropout2d))
            assert m.training is not frozen, type(m).__name__
        y1, y2 = model(x), model(x)                       # no dropout: deterministic
        assert torch.equal(y1, y2)
        y1.sum().backward()                               # gradients still flow
    assert all(m.training for m in model.modules())
    after = bn_state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model(x)                                              # outside: train mode updates the stats again
    assert not torch.equal(bn_state(model)["features.1.running_mean"], before["features.1.running_mean"])


def test_frozen_normalisation_restores_mixed_modes_even_on_error():
    model = build_model("a2e", 0.0625).train()
    model.features[4].eval()                              # one BatchNorm already in eval mode
    model.to_emotions.eval()                              # and a Linear
    modes = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        with frozen_normalisation(model):
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == modes
    model.eval()
    with frozen_normalisation(model):
        assert not any(m.training for m in model.modules())
    assert not any(m.training for m in model.modules())


# --------------------------------------------------------------------------------------
# ExpO-Fidelity
# --------------------------------------------------------------------------------------

def test_fidelity_regulariser_known_value():
    """Residual of sum a (p + z)^2 on [1, z] is the residual of sum a z^2 (numpy lstsq)."""
    grid = PatchGrid(2, 3)
    g = gen(3)
    w, a = torch.randn(2, 6, generator=g, dtype=F64), torch.rand(2, 6, generator=g, dtype=F64)
    x = torch.randn(3, 1, 12, 9, generator=gen(1), dtype=F64)
    n = 20
    reg = fidelity_regulariser(PatchPolynomial(grid, w, a), x, grid, sigma=0.5, n_neighbours=n, generator=gen(9))
    z = gaussian_offsets(3, n, grid, 0.5, gen(9), dtype=F64).numpy()   # the same draws
    expected = []
    for b in range(3):
        design = np.hstack([np.ones((n, 1)), z[b]])
        target = (z[b] ** 2) @ a.numpy().T                              # (n, 2)
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        expected.append((target - design @ coef) ** 2)
    assert reg.dtype == F64 and reg.shape == ()
    np.testing.assert_allclose(float(reg), np.mean(expected), rtol=1e-10)
    assert float(reg) > 1e-4
    linear = fidelity_regulariser(PatchPolynomial(grid, w, 0 * a), x, grid, n_neighbours=n, generator=gen(9))
    assert float(linear) < 1e-25


def test_fidelity_gradient_is_nonzero_and_steps_lower_it():
    grid = PatchGrid(2, 2)
    model = toy_net(0)
    with torch.no_grad():
        model[1].weight.mul_(4)                           # saturating tanh: clearly non-linear
    x = torch.randn(8, 1, 8, 8, generator=gen(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    values = []
    for _ in range(6):
        optimizer.zero_grad()
        reg = fidelity_regulariser(model, x, grid, sigma=SIGMA_REG, generator=gen(2))   # same neighbours
        reg.backward()
        values.append(float(reg.detach()))
        assert all(p.grad.abs().sum() > 0 for p in model.parameters())
        optimizer.step()
    assert values[0] > 1e-3
    assert all(b < a for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.5 * values[0]


def test_chunked_backward_gives_the_same_gradient():
    grid = PatchGrid(2, 2)
    x = torch.randn(3, 1, 8, 8, generator=gen(1), dtype=F64)
    ref_model, model = toy_net(4, F64), toy_net(4, F64)
    reg = fidelity_regulariser(ref_model, x, grid, n_neighbours=12, generator=gen(5))
    (2.5 * reg).backward()
    value = fidelity_regulariser_backward(model, x, grid, weight=2.5, n_neighbours=12, generator=gen(5),
                                          chunk_size=5)
    assert not value.requires_grad
    torch.testing.assert_close(value, reg.detach())
    for p_ref, p in zip(ref_model.parameters(), model.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-10, atol=1e-14)


def test_fidelity_regulariser_on_a_network_leaves_batchnorm_statistics_alone():
    model = build_model("a2m2e", 0.0625).train()
    before = bn_state(model)
    x = torch.randn(2, 1, 16, 16, generator=gen())
    reg = fidelity_regulariser(model, x, PatchGrid(2, 2), generator=gen(1), target="concepts")
    reg.backward()
    assert float(reg.detach()) > 0
    assert all(torch.equal(v, bn_state(model)[k]) for k, v in before.items())
    assert all(m.training for m in model.modules())
    assert model.to_concepts.weight.grad.abs().sum() > 0
    fidelity_regulariser_backward(model, x, PatchGrid(2, 2), generator=gen(1), chunk_size=4)
    assert all(torch.equal(v, bn_state(model)[k]) for k, v in before.items())


# --------------------------------------------------------------------------------------
# ExpO-Stability
# --------------------------------------------------------------------------------------

def test_stability_regulariser_known_value_per_patch_and_per_element():
    grid = PatchGrid(2, 2)
    w = torch.randn(3, 4, generator=gen(1), dtype=F64)
    model = PatchPolynomial(grid, w, torch.zeros(3, 4, dtype=F64))
    x = torch.randn(5, 1, 8, 8, generator=gen(2), dtype=F64)
    reg = stability_regulariser(model, x, radius=0.2, generator=gen(3), grid=grid)
    u = uniform_box((5, 4), 0.2, gen(3), dtype=F64)                         # the same draws
    torch.testing.assert_close(reg, (u @ w.T).pow(2).sum(1).mean())
    # per element: f = x[0, 0, 0] (one input element) -> E = mean of u_b(0,0)^2
    corner = lambda x: x[:, 0, :1, 0]
    reg = stability_regulariser(corner, x, radius=0.2, generator=gen(3))
    u = uniform_box(tuple(x.shape), 0.2, gen(3), dtype=F64)
    torch.testing.assert_close(reg, u[:, 0, 0, 0].pow(2).mean())


def test_stability_regulariser_gradient_and_modes():
    model = build_model("a2e", 0.0625).train()
    before = bn_state(model)
    reg = stability_regulariser(model, torch.randn(3, 1, 16, 16, generator=gen()), 0.1, gen(1))
    reg.backward()
    assert float(reg.detach()) > 0 and model.to_emotions.weight.grad.abs().sum() > 0
    assert all(torch.equal(v, bn_state(model)[k]) for k, v in before.items())
    assert all(m.training for m in model.modules())


# --------------------------------------------------------------------------------------
# Weight and bad inputs
# --------------------------------------------------------------------------------------

def test_regulariser_weight():
    assert regulariser_weight(0.5, 2.0, 0.25) == 4.0
    assert regulariser_weight(0.0, 2.0, 0.25) == 0.0
    assert regulariser_weight(1.0, torch.tensor(3.0), torch.tensor(1.5)) == 2.0
    with pytest.raises(ParameterError, match="c must be"):
        regulariser_weight(-0.1, 1.0, 1.0)
    with pytest.raises(ParameterError, match=r"reg_init R\(init\)"):
        regulariser_weight(1.0, 1.0, 0.0)
    with pytest.raises(ParameterError, match=r"loss_init L\(init\)"):
        regulariser_weight(1.0, float("nan"), 1.0)


@pytest.mark.parametrize("kwargs,field", [
    ({"sigma": 0.0}, "sigma"), ({"sigma": -0.5}, "sigma"),
    ({"n_neighbours": 4}, "n_neighbours"), ({"n_neighbours": 5}, r"> K\+1 = 5"),
])
def test_fidelity_bad_inputs(kwargs, field):
    model, x, grid = toy_net(), torch.zeros(2, 1, 8, 8), PatchGrid(2, 2)
    with pytest.raises(ParameterError, match=field):
        fidelity_regulariser(model, x, grid, **kwargs)
    with pytest.raises(ParameterError, match=field):
        fidelity_regulariser_backward(model, x, grid, **kwargs)


def test_other_bad_inputs():
    model, x = toy_net(), torch.zeros(2, 1, 8, 8)
    with pytest.raises(ParameterError, match="PatchGrid.bands"):
        fidelity_regulariser(model, x, PatchGrid(bands=9, segments=2))
    with pytest.raises(ParameterError, match="weight"):
        fidelity_regulariser_backward(model, x, PatchGrid(2, 2), weight=-1.0)
    with pytest.raises(ParameterError, match="radius"):
        stability_regulariser(model, x, radius=0.0)
    with pytest.raises(ParameterError, match="PatchGrid.segments"):
        stability_regulariser(model, x, 0.1, grid=PatchGrid(2, 9))
