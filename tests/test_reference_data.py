"""The shipped published logs and the paper's statistics recomputed from them."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mer_lib import published
from mer_lib.datasets import EMOTIONS
from mer_lib.errors import DataLayoutError
from mer_lib.published import (experiments_map, paired_ttests, per_run, published_logs,
                               system_of_runs, table1)

# /work/shared/reference/README.md, recomputed by its authors from the raw CSVs:
# system: (avg r mean, std, MAE mean, std, ΔMAE median)
README_TABLE = {
    "a2e": (0.7324, 0.0154, 0.0957, 0.0051, 1.618),
    "a2b2e": (0.6958, 0.0159, 0.1068, 0.0107, 1.515),
    "a2m2e": (0.6805, 0.0246, 0.1105, 0.0059, 0.979),
    "aa2e": (0.6799, 0.0253, 0.1021, 0.0042, 0.974),
    "aa2b2e": (0.6672, 0.0264, 0.1051, 0.0044, 0.998),
}
README_TTESTS = {("a2e", "a2m2e"): (13.04, 4.6e-32), ("a2b2e", "a2m2e"): (12.10, 1.7e-28)}


@pytest.fixture(scope="module")
def logs() -> pd.DataFrame:
    return published_logs()


def test_package_data_is_complete_with_licence_and_source():
    folders = sorted(p for p in published.PUBLISHED_LOGS.iterdir() if p.is_dir())
    assert len(folders) == 50
    assert all((f / "log.csv").is_file() and (f / "hparams.yaml").is_file() for f in folders)
    licence = (published.REFERENCE_DATA / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Institute of Computational Perception" in licence
    readme = (published.REFERENCE_DATA / "README.md").read_text()
    assert "CPJKU/robustness_mer_bottleneck" in readme
    assert "785b93d45b17bc65db2a92ebaa16ae3c4af47f73" in readme


def test_every_run_belongs_to_exactly_one_system(logs):
    mapping = experiments_map()
    assert sorted(mapping) == sorted(README_TABLE)
    assert logs.groupby("variant").run.nunique().to_dict() == {v: 10 for v in README_TABLE}
    assert len(logs) == 1800 and logs.variant.notna().all()
    assert logs.groupby("run").size().eq(36).all()


def test_published_logs_ran_all_passes_and_never_converged(logs):
    # the float thresholds stop the original only near r = -1: nobody converged
    assert logs.forward_passes.eq(1000).all() and logs.iterations.eq(999).all()
    assert not logs.converged.any()


@pytest.mark.parametrize("system", list(README_TABLE))
def test_table1_and_figure3_medians_equal_the_readme(logs, system):
    row = table1(logs).loc[system]
    r_mean, r_std, mae_mean, mae_std, dmae = README_TABLE[system]
    got = (row.avg_r_mean, row.avg_r_std, row.mae_mean, row.mae_std, row.delta_mae_median)
    np.testing.assert_allclose(got, (r_mean, r_std, mae_mean, mae_std, dmae), rtol=0, atol=1e-3)
    assert row.n_seeds == 10


def test_paired_ttests_equal_the_readme(logs):
    tests = paired_ttests(logs).set_index(["a", "b"])
    for pair, (t, p) in README_TTESTS.items():
        assert tests.loc[pair, "pairs"] == 360
        assert tests.loc[pair, "t"] == pytest.approx(t, abs=5e-3)
        assert tests.loc[pair, "p"] == pytest.approx(p, rel=0.05)


def tiny_table():
    """Two systems x two seeds x three clips with hand-computable statistics."""
    rows = []
    true = np.array([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2], [0.2, 0.3, 0.1]])
    for variant, seed, offset, final_err in [("a2e", 6, 0.0, 1.0), ("a2e", 21, 0.1, 3.0),
                                             ("a2m2e", 6, 0.2, 0.5), ("a2m2e", 21, 0.0, 0.5)]:
        for k in range(3):
            row = {"variant": variant, "seed": seed, "example": f"{k:03d}",
                   "mae_final": final_err + 0.1 * k}
            for j, e in enumerate(EMOTIONS):
                t = true[k, j % 3] + j
                row[f"true_{e}"] = t
                row[f"clean_{e}"] = t + offset      # clean prediction off by `offset` everywhere
            rows.append(row)
    return pd.DataFrame(rows)


def test_per_run_and_table1_known_answers():
    runs = per_run(tiny_table()).set_index(["variant", "seed"])
    # a constant offset keeps every Pearson r at 1 and makes the MAE the offset
    np.testing.assert_allclose(runs.avg_r, 1.0)
    np.testing.assert_allclose(runs.mae.tolist(), [0.0, 0.1, 0.2, 0.0], atol=1e-12)
    np.testing.assert_allclose(runs.mae_final.tolist(), [1.1, 3.1, 0.6, 0.6])
    np.testing.assert_allclose(runs.delta_mae.tolist(), [1.1, 3.0, 0.4, 0.6], atol=1e-12)
    t1 = table1(tiny_table())
    assert list(t1.index) == ["a2e", "a2m2e"]
    assert t1.loc["a2e", "mae_mean"] == pytest.approx(0.05)
    assert t1.loc["a2e", "mae_std"] == pytest.approx(0.05)          # population std of {0, 0.1}
    assert t1.loc["a2e", "delta_mae_median"] == pytest.approx(2.05)
    assert t1.loc["a2m2e", "delta_mae_median"] == pytest.approx(0.5)


def test_paired_ttest_known_answer():
    # differences a2e - a2m2e per (seed, clip): seed 6: 1.0 - 0.5, seed 21: 3.0 - 0.5 (x3 clips)
    d = np.array([0.5, 0.5, 0.5, 2.5, 2.5, 2.5])
    t_expected = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    row = paired_ttests(tiny_table(), pairs=[("a2e", "a2m2e"), ("a2b2e", "a2m2e")])
    assert row.loc[0, "t"] == pytest.approx(t_expected)
    assert row.loc[0, "pairs"] == 6 and row.loc[0, "mean_difference"] == pytest.approx(d.mean())
    assert row.loc[1, "pairs"] == 0 and math.isnan(row.loc[1, "t"])   # a2b2e not in the table


def test_system_of_runs_rejects_ambiguous_or_missing_prefixes():
    runs = ["6_abc_2024", "6_abd_2024", "21_x_2024"]
    assert system_of_runs(runs, {"a2e": ["6_abc"]}) == {"21_x_2024": None, "6_abc_2024": "a2e",
                                                        "6_abd_2024": None}
    with pytest.raises(DataLayoutError, match="matches 2 run folders"):
        system_of_runs(runs, {"a2e": ["6_ab"]})
    with pytest.raises(DataLayoutError, match="matches 0 run folders"):
        system_of_runs(runs, {"a2e": ["7_"]})


def test_other_logs_with_and_without_a_map(tmp_path):
    src = published.PUBLISHED_LOGS
    logs_dir = tmp_path / "logs"
    for run in sorted(p.name for p in src.iterdir())[:2]:
        (logs_dir / run).mkdir(parents=True)
        (logs_dir / run / "log.csv").write_text((src / run / "log.csv").read_text())
    unmapped = published_logs(logs_dir)
    assert unmapped.variant.isna().all() and unmapped.run.nunique() == 2
    first, second = sorted(unmapped.run.unique())
    (tmp_path / "experiments_map.json").write_text(json.dumps({"a2e": [first[:8]]}))
    mapped = published_logs(logs_dir)
    assert set(mapped[mapped.run == first].variant) == {"a2e"}
    assert mapped[mapped.run == second].variant.isna().all()
    (tmp_path / "experiments_map.json").write_text("{not json")
    with pytest.raises(DataLayoutError, match="not a JSON file"):
        published_logs(logs_dir)


def test_tables_without_the_needed_columns_are_rejected(logs):
    with pytest.raises(DataLayoutError, match="mae_final"):
        per_run(logs.drop(columns="mae_final"))
