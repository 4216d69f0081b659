"""The reference mode reproduces the original attacker's ladder step for step.

Every expected value below is worked out by hand from the original's rule (see
``mer_lib/attacks/reference_ladder.py``): at each forward pass, an unset or exactly-0.0
threshold becomes ``ceil(10 r) / 10``; if ``r <= thr`` the current perturbation is kept and
``thr -= 0.1`` while ``thr >= -0.9``, else the example converged. Float64 thresholds after
repeated ``- 0.1`` (Python prints them exactly so):

    from 0.4: 0.4, 0.30000000000000004, 0.20000000000000004, 0.10000000000000003,
              2.7755575615628914e-17, -0.09999999999999998, -0.19999999999999998, -0.3,
              -0.4, -0.5, -0.6
    from 1.0: ..., 0.10000000000000014, 1.3877787807814457e-16, ..., -0.8999999999999998,
              -0.9999999999999998
    from -0.8: -0.9, -1.0

Iterations are step counts: the pass that evaluates the perturbation after t steps is t.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mer_lib.attacks import AttackConfig, attack
from mer_lib.attacks.ladder import RUNGS
from mer_lib.attacks.reference_ladder import ReferenceLadder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(seq):
    """Feed one example's correlations; return the ladder and the (reached, stop) flags."""
    ladder = ReferenceLadder(1)
    flags = []
    for t, r in enumerate(seq):
        reached, stop = ladder.update(torch.tensor([r], dtype=torch.float64), t)
        flags.append((bool(reached[0]), bool(stop[0])))
    return ladder, flags


def state(ladder):
    return (int(ladder.kept_iteration[0]), float(ladder.threshold[0]), bool(ladder.converged[0]))


def rungs_reached(ladder):
    return {RUNGS[j]: int(t) for j, t in enumerate(ladder.rung_iterations[0]) if t >= 0}


# ------------------------------------------------------------------ the ladder, r given

def test_no_new_rung_keeps_the_start():
    # start 0.4 (ceil(3.5) / 10) is reached at t=0; 0.30000000000000004 never is
    ladder, flags = run([0.35, 0.38, 0.36, 0.31])
    assert [f[0] for f in flags] == [True, False, False, False]
    assert state(ladder) == (0, 0.30000000000000004, False)


def test_start_rung_is_float_ceil_without_tolerance():
    # 10 * 0.30000000000000004 = 3.0000000000000004 -> ceil 4: start rung 0.4, not 0.3
    ladder, _ = run([0.30000000000000004])
    assert state(ladder) == (0, 0.30000000000000004, False)
    assert min(rungs_reached(ladder)) == pytest.approx(0.4)


def test_zero_threshold_counts_as_unset_from_start_rung_0_2():
    # t0: thr 0.2 reached -> 0.1; t1: 0.05 <= 0.1 -> 0.0 (unset);
    # t2: re-initialised to ceil(0.8)/10 = 0.1, reached -> 0.0; t3: ceil(1.2)/10 = 0.2 (climbed
    # back), reached -> 0.1; t4: 0.15 > 0.1
    ladder, flags = run([0.15, 0.05, 0.08, 0.12, 0.15])
    assert [f[0] for f in flags] == [True, True, True, True, False]
    assert state(ladder) == (3, 0.1, False)


def test_zero_threshold_replaces_the_kept_perturbation_at_every_pass():
    ladder, flags = run([0.15, 0.05, 0.05, 0.05, 0.05])
    assert all(f[0] for f in flags)
    assert state(ladder) == (4, 0.0, False)
    # the 0.0 threshold is never itself "reached": rung 0.0 is never recorded
    assert rungs_reached(ladder) == {**{k / 10: 0 for k in range(10, 1, -1)}, 0.1: 1}


def test_zero_threshold_can_keep_a_worse_perturbation():
    # t2: r = 0.15 re-initialises the threshold to 0.2 and is kept, although t1 had r = 0.05
    ladder, _ = run([0.15, 0.05, 0.15, 0.15])
    assert state(ladder) == (2, 0.1, False)


def test_start_rung_0_1_passes_through_zero_and_minus_zero():
    # t0: 0.1 -> 0.0; t1: ceil(0.3)/10 = 0.1 -> 0.0; t2: ceil(-0.2)/10 = -0.0, reached
    # (-0.02 <= -0.0) -> -0.1; t3: -0.05 > -0.1
    ladder, flags = run([0.05, 0.03, -0.02, -0.05])
    assert [f[0] for f in flags] == [True, True, True, False]
    assert state(ladder) == (2, -0.1, False)


def test_start_rung_0_0():
    # r0 = -0.05: ceil(-0.5)/10 = -0.0, reached -> -0.1; t1: -0.05 > -0.1; t2: -0.12 -> -0.2
    ladder, flags = run([-0.05, -0.05, -0.12])
    assert [f[0] for f in flags] == [True, False, True]
    assert state(ladder) == (2, -0.2, False)


def test_one_rung_per_pass():
    # r falls from 0.35 to -0.5 in one step; the threshold follows one rung per pass and
    # meets -0.5 (exactly, reached by r = -0.5) at t = 9
    ladder, flags = run([0.35] + [-0.5] * 11)
    assert [f[0] for f in flags] == [True] * 10 + [False] * 2
    assert state(ladder) == (9, -0.6, False)
    assert rungs_reached(ladder)[0.3] == 1 and rungs_reached(ladder)[-0.5] == 9


def test_minus_0_9_does_not_converge_minus_1_does():
    # start -0.8 -> -0.9; t1: r = -0.9 reaches -0.9 >= -0.9 -> -1.0; t2: -0.95 > -1.0;
    # t3: -1.0 <= -1.0 and -1.0 < -0.9: converged
    ladder, flags = run([-0.85, -0.9, -0.95, -1.0])
    assert flags == [(True, False), (True, False), (False, False), (True, True)]
    assert state(ladder) == (3, -1.0, True)


def test_from_start_rung_1_0_only_r_near_minus_1_converges():
    ladder, flags = run([0.95] + [-0.99] * 21)            # -0.99 > -0.9999999999999998
    assert state(ladder) == (19, -0.9999999999999998, False)
    assert not any(stop for _, stop in flags)
    ladder, flags = run([0.95] + [-0.9999999999999999] * 20)
    assert flags[-1] == (True, True) and [s for _, s in flags].count(True) == 1
    assert state(ladder) == (20, -0.9999999999999998, True)


def test_correlation_is_clipped_to_one():
    # scipy clips r to [-1, 1]: r0 = 1.0000000000000002 starts at rung 1.0, not ceil(10.000..02) = 1.1
    ladder, _ = run([1.0000000000000002])
    assert state(ladder) == (0, 0.9, False)
    ladder, flags = run([-0.85, -0.9, -1.0000000000000002])
    assert flags[-1] == (True, True) and state(ladder) == (2, -1.0, True)


def test_nan_correlation_reaches_nothing():
    ladder, flags = run([math.nan, 0.35, math.nan, 0.25])
    assert [f[0] for f in flags] == [False, True, False, True]
    assert state(ladder) == (3, 0.20000000000000004, False)


def test_updates_a_subset_by_index():
    ladder = ReferenceLadder(3)
    ladder.update(torch.tensor([0.15, 0.55, -0.85], dtype=torch.float64), 0)
    reached, stop = ladder.update(torch.tensor([-0.9, 0.05], dtype=torch.float64), 1,
                                  index=torch.tensor([2, 0]))
    assert reached.tolist() == [True, True] and stop.tolist() == [False, False]
    assert ladder.kept_iteration.tolist() == [1, 0, 1]
    assert ladder.threshold.tolist() == [0.0, 0.5, -1.0]


# ------------------------------------------------------------------ the engine, scripted models

Y = torch.arange(1, 9, dtype=torch.float64) / 8          # dyadic: r = -1 is computed exactly


def designed_prediction(r: float) -> torch.Tensor:
    """8 predictions with Pearson r against Y equal to r, and mean(pred) = mean(Y) + 1."""
    if r == -1.0:
        return 2 * Y.mean() + 1 - Y                       # exact in float64
    yc = Y - Y.mean()
    u = yc / yc.norm()
    v = torch.tensor([1, -1, 1, -1, 1, -1, 1, -1], dtype=torch.float64)
    v = v - (v @ u) * u
    v = v / v.norm()
    return Y.mean() + 1 + (r * u + math.sqrt(1 - r * r) * v) * yc.norm()


class Scripted(nn.Module):
    """Example ``i`` (all of its inputs equal ``i``) follows ``scripts[i]`` pass by pass.

    The forward value is the designed prediction; the gradient is that of ``mean(x)`` on
    every output (straight-through), so the MSE gradient sign is +1 everywhere (the
    predictions sit 1 above the ratings) and reference Adam moves every bin by ``lr`` per step.
    """

    def __init__(self, scripts):
        super().__init__()
        self.scripts = scripts
        self.calls = [0] * len(scripts)

    def forward(self, x):
        ids = torch.round(x[:, 0, 0, 0]).long().tolist()
        rows = []
        for i in ids:
            script = self.scripts[i]
            rows.append(designed_prediction(script[min(self.calls[i], len(script) - 1)]))
            self.calls[i] += 1
        g = x.flatten(1).mean(dim=1, keepdim=True).expand(-1, 8)
        return torch.stack(rows).to(x.dtype) + (g - g.detach())


SCRIPTS = {
    "no_rung": [0.35, 0.38, 0.36],
    "zero_quirk": [0.15, 0.05, 0.15],
    "one_rung_per_pass": [0.35, -0.55],
    "to_minus_one": [-0.85, -0.92, -0.95, -1.0],
    "from_one": [0.95, -1.0],
}
NAMES = list(SCRIPTS)
LR = 0.01


def run_engine(mode, names=NAMES, passes=30, early_stop=True):
    scripts = [SCRIPTS[n] for n in names]
    x = torch.arange(len(names), dtype=torch.float64).view(-1, 1, 1, 1).expand(-1, 1, 2, 3).clone()
    y = Y.expand(len(names), -1).clone()
    if mode == "reference":     # max_iterations counts forward passes
        cfg = AttackConfig(mode="reference", step_size=LR, max_iterations=passes,
                           early_stop=early_stop)
    else:                       # max_iterations counts steps: passes - 1 steps = passes passes
        cfg = AttackConfig(mode="projected", epsilon=1.0, step_size=LR, max_iterations=passes - 1,
                           early_stop=early_stop)
    return attack(Scripted(scripts), x, y, cfg)


def r_of(pred):
    return float(torch.corrcoef(torch.stack([pred, Y]))[0, 1])


# name: (iterations, kept iteration, threshold, converged) -- by hand, see the ladder tests
REFERENCE = {
    "no_rung": (29, 0, 0.30000000000000004, False),
    "zero_quirk": (29, 2, 0.1, False),
    "one_rung_per_pass": (29, 9, -0.6, False),
    "to_minus_one": (3, 3, -1.0, True),
    "from_one": (20, 20, -0.9999999999999998, True),
}
# the clean ladder on the same scripts: several rungs per step, converged at r <= -0.9,
# the final perturbation when no rung below the start was reached
PROJECTED = {
    "no_rung": (29, 29, 0.3, False),
    "zero_quirk": (29, 1, 0.0, False),
    "one_rung_per_pass": (29, 1, -0.6, False),
    "to_minus_one": (1, 1, -0.9, True),
    "from_one": (1, 1, -0.9, True),
}


@pytest.mark.parametrize("mode, expected", [("reference", REFERENCE), ("projected", PROJECTED)])
def test_engine_follows_the_ladder_of_its_mode(mode, expected):
    res = run_engine(mode)
    for i, name in enumerate(NAMES):
        iterations, kept, threshold, converged = expected[name]
        got = (int(res.iterations[i]), int(res.delta_iteration[i]), float(res.threshold[i]),
               bool(res.converged[i]))
        assert got == (iterations, kept, pytest.approx(threshold, abs=1e-15), converged), name
        assert int(res.forward_passes[i]) == iterations + 1
        # reference Adam / projected sign steps of LR on every bin, from zero
        expected_delta = kept * LR
        assert torch.allclose(res.delta[i], torch.full_like(res.delta[i], expected_delta),
                              rtol=1e-6, atol=0), name
        script = SCRIPTS[name]
        assert r_of(res.adv_pred[i]) == pytest.approx(script[min(kept, len(script) - 1)], abs=1e-12)
        assert r_of(res.final_pred[i]) == pytest.approx(script[min(iterations, len(script) - 1)],
                                                        abs=1e-12)


def test_reference_exact_threshold_values():
    res = run_engine("reference")
    thresholds = dict(zip(NAMES, res.threshold.tolist()))
    assert thresholds["no_rung"] == 0.30000000000000004            # bit for bit
    assert thresholds["from_one"] == -0.9999999999999998
    assert thresholds["to_minus_one"] == -1.0


def test_reference_no_new_rung_keeps_zero_and_clean_prediction():
    res = run_engine("reference", names=["no_rung"])
    assert torch.equal(res.delta, torch.zeros_like(res.delta))
    assert torch.equal(res.x_adv, res.x)
    assert torch.equal(res.adv_pred, res.clean_pred)
    assert float(res.final_delta.abs().min()) == pytest.approx(29 * LR, rel=1e-6)
    assert not torch.equal(res.final_pred, res.clean_pred)


def test_reference_max_iterations_counts_forward_passes():
    model = Scripted([SCRIPTS["no_rung"]])
    x = torch.zeros(1, 1, 2, 3, dtype=torch.float64)
    res = attack(model, x, Y[None].clone(),
                 AttackConfig(mode="reference", step_size=LR, max_iterations=7))
    assert model.calls == [7]
    assert res.iterations.tolist() == [6] and res.forward_passes.tolist() == [7]
    model = Scripted([SCRIPTS["no_rung"]])
    attack(model, x, Y[None].clone(), AttackConfig(mode="projected", epsilon=1.0, step_size=LR,
                                                   max_iterations=7))
    assert model.calls == [8]


def test_reference_converged_example_stops_and_batch_equals_single():
    full = run_engine("reference")
    for i, name in enumerate(NAMES):
        single = run_engine("reference", names=[name])
        assert torch.equal(single.delta[0], full.delta[i])
        assert torch.equal(single.final_delta[0], full.final_delta[i])
        assert single.iterations.tolist() == [int(full.iterations[i])]
        assert torch.equal(single.rung_iterations[0], full.rung_iterations[i])
    # a longer attack does not move converged examples
    longer = run_engine("reference", passes=40)
    for i, name in enumerate(NAMES):
        if REFERENCE[name][3]:
            assert torch.equal(longer.delta[i], full.delta[i])
            assert int(longer.iterations[i]) == int(full.iterations[i])


def test_reference_without_early_stop_returns_the_final_perturbation():
    res = run_engine("reference", early_stop=False)
    assert res.iterations.tolist() == [29] * len(NAMES)
    assert torch.equal(res.delta, res.final_delta)
    assert res.delta_iteration.tolist() == [29] * len(NAMES)
    # the ladder is still followed (and recorded), but nobody stops
    assert res.converged.tolist() == [REFERENCE[n][3] for n in NAMES]
