"""The paper-profile projection benchmark runs and adds up (smoke profile, CPU)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_paper.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_paper", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_projection_prices_every_job_of_the_profile(bench, tmp_path):
    out = tmp_path / "p.json"
    result = bench.main(["--profile", "smoke", "--device", "cpu", "--sample", "16", "--out", str(out)])
    assert json.loads(out.read_text())["projected_total_seconds"] == result["projected_total_seconds"]
    parts = result["projected_seconds"]
    assert set(parts) == {"train paper systems", "train extension systems", "attacks",
                          "explanation metrics", "attribution metrics"}
    assert all(v > 0 and math.isfinite(v) for v in parts.values())
    assert math.isclose(sum(parts.values()), result["projected_total_seconds"])
    cost = result["seconds_per_batch_or_unit"]
    # smoke: 1 paper seed, 1 extension seed, c sweep at c = 0.1 and 10 (c = 1 is the profile's), c = 0 control
    assert len(result["extension_jobs"]) == 4 + 2 + 1
    # the paper systems' training: 3 plain + 2 adversarial variants, 2 smoke epochs each; smoke's
    # adv_every is 1, so both epochs of an adversarial system are adversarial
    smoke_batches = result["batches_per_epoch"]
    expected = 2 * smoke_batches * (3 * cost["plain"] + 2 * cost["adversarial"])
    assert math.isclose(parts["train paper systems"], expected, rel_tol=1e-9)


def test_stacked_prices_come_from_stacks(bench, tmp_path):
    result = bench.main(["--profile", "smoke", "--device", "cpu", "--sample", "16", "--stack-size", "2",
                         "--out", str(tmp_path / "p.json")])
    cost = result["seconds_per_batch_or_unit"]
    assert result["stack_size"] == 2 and cost["attack pass per clip, stacked"] > 0
    # one smoke seed: each paper system is one (partly filled) stack, priced at the stack's batch cost
    assert math.isclose(result["projected_seconds"]["train paper systems"],
                        2 * result["batches_per_epoch"] * (3 * cost["plain"] + 2 * cost["adversarial"]),
                        rel_tol=1e-9)
