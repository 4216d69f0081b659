"""Stored explanation-quality tables, their summary, and the patch maps the chapters draw."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mer_lib.data import MerTensors, split_indices
from mer_lib.errors import ParameterError
from mer_lib.explain import PatchGrid
from mer_lib.explain.report import (QualityConfig, explanation_table, patch_explanation, quality_summary,
                                    two_level_explanation)
from mer_lib.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class PatchLinear(torch.nn.Module):
    """Emotions = A @ patch means: linear in patch space, so NF = S = 0 and the fit is exact."""

    def __init__(self, grid: PatchGrid, a: torch.Tensor):
        super().__init__()
        self.grid, self.a = grid, torch.nn.Parameter(a)

    def forward(self, x):
        return self.grid.reduce(x) @ self.a.T


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    n = 20
    return MerTensors(x=torch.randn(n, 1, 16, 12, generator=g, dtype=torch.float64),
                      emotions=torch.rand(n, 8, generator=g), midlevel=None, split=split_indices(n),
                      ids=[f"{i:03d}" for i in range(n)], mean=0.0, std=1.0, identity="report-test")


def test_linear_model_has_zero_nf_and_s_and_the_table_is_stored(data, tmp_path, monkeypatch):
    grid = PatchGrid(2, 2)
    a = torch.randn(8, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    trained = SimpleNamespace(model=PatchLinear(grid, a), key="lin-0", config=SimpleNamespace(variant="lin", seed=0))
    cfg = QualityConfig(bands=2, segments=2, n_examples=2)
    table = explanation_table(trained, data, cfg, run_dir=tmp_path, device="cpu")
    assert len(table) == 2 * 8 and set(table.emotion) == {"valence", "energy", "tension", "anger", "fear",
                                                            "happy", "sad", "tender"}
    assert table.nf.max() < 1e-20 and table.stability.max() < 1e-20
    import mer_lib.explain.report as report

    monkeypatch.setattr(report, "explanation_quality", lambda *a, **k: 1 / 0)    # stored: not recomputed
    again = explanation_table(trained, data, cfg, run_dir=tmp_path, device="cpu")
    assert again.equals(table)


def test_summary_means_over_clips_then_mean_and_std_over_seeds():
    rows = []
    for seed, nf in ((1, [1.0, 3.0]), (2, [5.0, 7.0])):
        for v in nf:
            rows.append({"variant": "a2e", "seed": seed, "nf": v, "stability": 2 * v})
    s = quality_summary(__import__("pandas").DataFrame(rows))
    assert s.loc["a2e", "nf_mean"] == 4.0 and s.loc["a2e", "nf_std"] == pytest.approx(np.sqrt(8.0))
    assert s.loc["a2e", "stability_mean"] == 8.0 and s.loc["a2e", "seeds"] == 2


def test_patch_explanation_recovers_the_weights_and_paints_them(data):
    grid = PatchGrid(2, 2)
    a = torch.tensor([[1.0, -2.0, 0.5, 3.0]] * 8, dtype=torch.float64)
    exp = patch_explanation(PatchLinear(grid, a), data.x[:1], grid)
    np.testing.assert_allclose(exp.weights, a.numpy(), atol=1e-9)
    assert exp.maps.shape == (8, 16, 12)
    # the patch of frames 0-7 and bins 0-5 carries the weight of patch 0 (band 0, segment 0)
    ids = grid.patch_ids(16, 12)
    np.testing.assert_allclose(exp.maps[0][ids.numpy() == 0], a[0, 0].item(), atol=1e-9)


def test_two_level_explanation_needs_a_bottleneck_and_returns_the_head():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 16)
    concepts, head = two_level_explanation(build_model("a2m2e", 0.0625).eval(), x, PatchGrid(2, 2))
    assert concepts.weights.shape == (7, 4) and head.shape == (8, 7)
    with pytest.raises(ParameterError, match="bottleneck"):
        two_level_explanation(build_model("a2e", 0.0625).eval(), x, PatchGrid(2, 2))


@pytest.mark.parametrize("field,value", [("bands", 0), ("sigma", 0.0), ("n_neighbours", 0), ("n_examples", 0)])
def test_bad_quality_config(field, value):
    with pytest.raises(ParameterError, match=field):
        QualityConfig(**{field: value})


def test_summary_refuses_two_models_of_one_variant_and_seed():
    import pandas as pd

    from mer_lib.errors import ParameterError

    rows = pd.DataFrame({"variant": ["expof_a2e"] * 2, "seed": [6, 6], "model_key": ["c0.1", "c10"],
                         "nf": [1.0, 9.0], "stability": [1.0, 1.0]})
    with pytest.raises(ParameterError, match="more than one model of expof_a2e seed 6"):
        quality_summary(rows)
    assert float(quality_summary(rows.iloc[:1]).loc["expof_a2e", "nf_mean"]) == 1.0
