"""Model stacks: K models as one network, trained and attacked together, equal to K single runs.

The contract (issue 10): on the CPU in float64 a stack of K = 3 gives the weights, histories
and best epochs of three :func:`mer_lib.training.train` runs. Tolerance: weights agree to
``RTOL = 1e-10`` relative to each tensor's largest entry (measured: ~1e-14; the grouped
convolution and the batched heads sum in another order than the single model's layers, so
bit-equality is not promised); the early-stopping decisions and every history value except
``seconds`` must agree to the same tolerance (measured: equal).
"""
from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib.attacks import AttackConfig, attack
from mer_lib.data import MerTensors, split_indices
from mer_lib.errors import MerError, ParameterError
from mer_lib.models import VARIANTS, Variant, build_model, register_variant
from mer_lib.objectives import OBJECTIVES, Supervised, get_objective, register_objective
from mer_lib.stack import (ModelStack, StackError, check_stack_size, check_stack_state, stack_models,
                           stack_state, unstack)
from mer_lib.attacks.stacked import stacked_attack
from mer_lib import stack_training  # noqa: F401
from mer_lib.objectives import base as objectives_base
from mer_lib.stack_training import StackTrainingError, can_stack, check_stackable, get_trained_stack, train_stack
from mer_lib.training import TrainConfig, get_trained, load_trained, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@register_objective
class _Unstackable(Supervised):
    """The plain objective without a stacked step: what an objective that does not stack gets."""

    name = "test_unstackable"
    stackable = False


if "unstackable_a2e" not in VARIANTS:
    register_variant(Variant("unstackable_a2e", "direct", objective="test_unstackable", label="U-A2E",
                             description="test variant whose objective has no stacked step"))

RTOL = 1e-10
SEEDS = (6, 21, 42)
TINY = dict(width=0.0625, epochs=3, patience=5, lr=3e-3)
ADV = AttackConfig(mode="reference", epsilon=0.001, step_size=0.002, max_iterations=3).to_dict()


@pytest.fixture(scope="module")
def data() -> MerTensors:
    """40 clips of 32 frames x 40 bands whose ratings are linear in three band-range levels."""
    g = torch.Generator().manual_seed(0)
    n = 40
    z = torch.rand(n, 3, generator=g)
    x = torch.randn(n, 1, 32, 40, generator=g)
    for k, (lo, hi) in enumerate(((0, 13), (13, 26), (26, 40))):
        x[:, :, :, lo:hi] += 2 * z[:, k, None, None, None]
    return MerTensors(x, z @ torch.rand(3, 8, generator=g) / 3, z @ torch.rand(3, 7, generator=g) / 3,
                      split_indices(n), [f"{i:03d}" for i in range(n)], 0.0, 1.0, "tiny-stack-data")


def _configs(variant, **kw):
    return [TrainConfig(variant, s, **{**TINY, **kw}) for s in SEEDS]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-300))


def _assert_same_run(single, stacked):
    assert stacked.key == single.key and stacked.path.name == single.path.name
    sa, sb = single.model.state_dict(), stacked.model.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert _rel(sa[name], sb[name]) <= RTOL, name
    ha, hb = single.history.drop(columns="seconds"), stacked.history.drop(columns="seconds")
    assert list(ha.columns) == list(hb.columns)
    assert list(ha.improved) == list(hb.improved) and list(ha.epoch) == list(hb.epoch)
    for col in ha.columns:
        a, b = ha[col].astype(float).to_numpy(), hb[col].astype(float).to_numpy()
        both_nan = (a != a) & (b != b)
        assert ((abs(a - b) <= RTOL * abs(a).clip(1e-12)) | both_nan).all(), col
    best = lambda tm: torch.load(tm.path / "model.pt", weights_only=True)["best_epoch"]
    assert best(single) == best(stacked)


# ------------------------------------------------------------------ the stack itself

def test_stack_forward_equals_members_and_splits_back_exactly(float64):
    torch.manual_seed(0)
    models = [build_model("a2m2e", width=0.0625) for _ in range(3)]
    stack = stack_models(models).eval()
    assert isinstance(stack, ModelStack) and stack.k == 3
    x = torch.randn(3, 5, 1, 16, 20)
    e, c = stack.forward_all(x)
    for k, m in enumerate(models):
        me, mc = m.eval().forward_all(x[k])
        assert _rel(me, e[k]) < 1e-13 and _rel(mc, c[k]) < 1e-13
    shared = stack(x[0])                                  # a (B, 1, T, F) input goes to every member
    assert _rel(models[2](x[0]), shared[2]) < 1e-13
    for m, back in zip(models, unstack(stack)):
        sa, sb = m.state_dict(), back.state_dict()
        assert all(torch.equal(sa[n], sb[n]) for n in sa)
    assert stack.member_state_dict(1).keys() == models[1].state_dict().keys()


def test_stack_dropout_draws_each_members_own_masks(float64):
    torch.manual_seed(0)
    models = [build_model("a2e", width=0.0625) for _ in range(2)]
    stack = stack_models(models).train()
    stack.generators = [torch.Generator().manual_seed(s) for s in (5, 9)]
    x = torch.randn(2, 4, 1, 16, 16)
    out = stack(x)
    for k, seed in enumerate((5, 9)):
        torch.manual_seed(seed)                          # a single model drawing from the global generator
        assert _rel(models[k].train()(x[k]), out[k]) < 1e-13


def test_bad_stacks():
    a, b, wide = build_model("a2e", 0.0625), build_model("a2b2e", 0.0625), build_model("a2e", 0.125)
    with pytest.raises(StackError, match=r"models\[1\].*shape"):
        stack_models([a, b])
    with pytest.raises(StackError, match=r"models\[1\].*width 0.125"):
        stack_models([a, wide])
    with pytest.raises(StackError, match="stack_size must be an integer >= 1, got 0"):
        stack_models([])
    with pytest.raises(StackError, match="stack_size"):
        check_stack_size(0)
    with pytest.raises(StackError, match=r"models\[0\] is a Linear"):
        stack_models([torch.nn.Linear(2, 2)])
    three = stack_models([a, build_model("a2e", 0.0625), build_model("a2e", 0.0625)])
    with pytest.raises(StackError, match="stack_size=3 models, this stack has 2"):
        check_stack_state(stack_models([a, a]), stack_state(three))
    with pytest.raises(ParameterError, match=r"\(3, batch, 1, frames, bands\)"):
        three(torch.zeros(2, 4, 1, 16, 16))
    assert issubclass(StackError, MerError)


def test_bad_stacked_configurations():
    with pytest.raises(StackError, match=r"configs\[1\] differs from configs\[0\] in \['lr'\]"):
        check_stackable([TrainConfig("a2e", 6), TrainConfig("a2e", 7, lr=1e-3)])
    with pytest.raises(StackError, match=r"configs\[1\] differs.*variant"):
        check_stackable([TrainConfig("a2e", 6), TrainConfig("a2b2e", 7)])
    with pytest.raises(StackError, match=r"seeds of a stack must differ, got \[6, 6\]"):
        check_stackable([TrainConfig("a2e", 6), TrainConfig("a2e", 6)])
    with pytest.raises(StackError, match=">= 1"):
        check_stackable([])
    with pytest.raises(StackError, match="test_unstackable.*no stacked step"):
        check_stackable([TrainConfig("unstackable_a2e", 6), TrainConfig("unstackable_a2e", 7)])


# ------------------------------------------------------------------ the equivalence contract

@pytest.mark.parametrize("variant", ["a2e", "a2b2e"])
def test_stack_equals_three_single_runs(variant, data, tmp_path, float64):
    configs = _configs(variant)
    singles = [train(c, data, tmp_path / "single", progress=False) for c in configs]
    stacked = train_stack(configs, data, tmp_path / "stack", progress=False)
    for s, t in zip(singles, stacked):
        _assert_same_run(s, t)
        assert {p.name for p in t.path.iterdir()} == {"config.json", "history.csv", "model.pt"}
        assert t.trained_now and not t.model.training
    # the stacked folders are ordinary model folders: loaded, never retrained
    again = get_trained(variant, SEEDS[1], data, "smoke", tmp_path / "stack", progress=False, **TINY)
    assert not again.trained_now and again.key == stacked[1].key
    assert _rel(again.model.to_emotions.weight, singles[1].model.to_emotions.weight) <= RTOL


#: Settings a registered objective needs for a short stack test (the others use their defaults).
OBJECTIVE_SETTINGS = {
    "adversarial": dict(epochs=2, adv_every=2, adv_attack=ADV),
    # RAR at a small size: chunked double backprop (IG-NORM) and one graph (IG-SUM-NORM)
    "ig_norm": dict(epochs=2, objective_options={"riemann_steps": 4, "attack_steps": 2, "chunk_size": 2, "reg_batch": 3}),
    "ig_sum_norm": dict(epochs=2, objective_options={"riemann_steps": 3, "attack_steps": 2, "chunk_size": None,
                                                     "reg_batch": 3}),
}


def _variant_of(objective: str) -> str:
    """The first registered variant that trains with ``objective``."""
    return next(v.name for v in VARIANTS.values() if v.objective == objective)


@pytest.mark.parametrize("objective", sorted(o for o in OBJECTIVES if any(v.objective == o for v in VARIANTS.values())))
def test_every_objective_of_the_registry_stacks_exactly_or_is_refused(objective, data, tmp_path, float64):
    """The one trainer's contract over the objective registry: a stackable objective's K = 3
    stack equals three single runs (weights, histories, best epochs); any other is refused
    with an error that names it, and the runner trains it one model at a time."""
    variant = _variant_of(objective)
    configs = _configs(variant, **OBJECTIVE_SETTINGS.get(objective, {}))
    if not get_objective(objective).stackable:
        assert not can_stack(configs[0])
        with pytest.raises(StackError, match=rf"{objective!r}, which has no stacked step"):
            train_stack(configs, data, tmp_path / "stack", progress=False)
        return
    singles = [train(c, data, tmp_path / "single", progress=False) for c in configs]
    stacked = train_stack(configs, data, tmp_path / "stack", progress=False)
    for s, t in zip(singles, stacked):
        _assert_same_run(s, t)


@pytest.mark.parametrize("chunk_size", [1024, 16])
def test_expo_fidelity_stacks_with_one_graph_or_in_chunks(chunk_size, data, tmp_path, float64):
    """ExpO-Fidelity's two ways to the gradient (one graph of all neighbours when they fit in
    one chunk, else the chunked residual trick) give the single runs' models in a stack too."""
    options = {"c": 1.0, "bands": 2, "segments": 2, "reg_batch": 3, "chunk_size": chunk_size}
    configs = _configs("expof_a2e", epochs=2, objective_options=options)
    singles = [train(c, data, tmp_path / "single", progress=False) for c in configs]
    stacked = train_stack(configs, data, tmp_path / "stack", progress=False)
    for s, t in zip(singles, stacked):
        _assert_same_run(s, t)


def test_fine_tunes_of_different_base_models_stack_exactly(data, tmp_path, float64):
    """ExpO-Stability fine-tuning of each seed's own A2E (init_from differs per member) as one
    stack equals the single fine-tunes: each member starts from its own base model, keeps its
    own regulariser weight c * L(init) / R(init) and, as fine-tunes do, its last epoch."""
    home = tmp_path / "store"
    # base models that ran different numbers of epochs: their BatchNorm step counters differ
    bases = [train(dataclasses.replace(c, epochs=e), data, home, progress=False)
             for c, e in zip(_configs("a2e"), (1, 2, 1))]
    configs = [TrainConfig("expos_a2e", s, **{**TINY, "epochs": 2}, init_from=f"a2e/{b.key}", keep="last",
                           objective_options={"c": 2.0, "bands": 2, "segments": 2, "reg_batch": 4})
               for s, b in zip(SEEDS, bases)]
    singles = [train(c, data, home, progress=False) for c in configs]
    stacked = train_stack(configs, data, home, progress=False)     # the same folders, trained again
    for s, t in zip(singles, stacked):
        _assert_same_run(s, t)
    assert len({float(t.history.task_loss[0]) for t in stacked}) == 3      # three different starts


def test_adversarial_stack_equals_three_single_runs(data, tmp_path, float64):
    configs = _configs("aa2e", epochs=2, adv_every=2, adv_attack=ADV)
    singles = [train(c, data, tmp_path / "single", progress=False) for c in configs]
    stacked = train_stack(configs, data, tmp_path / "stack", progress=False)
    for s, t in zip(singles, stacked):
        _assert_same_run(s, t)
        assert list(t.history.adversarial) == [False, True] and math.isfinite(t.history.adv_loss[1])


def test_per_model_early_stopping(data, tmp_path, float64):
    configs = _configs("a2e", epochs=6, patience=1)
    stacked = train_stack(configs, data, tmp_path / "stack", progress=False)
    lengths = [len(t.history) for t in stacked]
    assert len(set(lengths)) > 1 and min(lengths) < 6    # the seeds stop at different epochs
    for c, t in zip(configs, stacked):
        _assert_same_run(train(c, data, tmp_path / "single", progress=False), t)


def test_nan_in_one_model_stops_only_that_one(data, tmp_path, float64, monkeypatch):
    configs = _configs("a2e", epochs=2)
    singles = [train(c, data, tmp_path / "single", progress=False) for c in configs]
    real, calls = objectives_base.task_loss, []

    def poisoned(model, variant, x, y, m):   # members in order: call 3 * (batch - 1) + member + 1
        calls.append(1)
        loss = real(model, variant, x, y, m)
        return loss * math.nan if len(calls) == 3 * 1 + 1 + 1 else loss   # batch 2, member 1 (seed 21)

    monkeypatch.setattr(objectives_base, "task_loss", poisoned)
    with pytest.raises(StackTrainingError, match=r"1 of 3 models of the a2e stack failed \(seed 21: training a2e seed 21: train_loss "
                                                 r"became nan at epoch 1, batch 2 of 4") as info:
        train_stack(configs, data, tmp_path / "stack", progress=False)
    assert set(info.value.failed) == {21} and info.value.trained[1] is None
    _assert_same_run(singles[0], info.value.trained[0])
    _assert_same_run(singles[2], info.value.trained[2])
    assert not (tmp_path / "stack" / "models" / "a2e" / singles[1].key / "model.pt").exists()


def test_stack_resumes_and_its_states_are_single_run_states(data, tmp_path, float64):
    configs = _configs("a2b2e", epochs=3)
    full = train_stack(configs, data, tmp_path / "full", progress=False)
    seen = []

    def interrupt(config, epoch, row):
        seen.append((config.seed, epoch))
        if len(seen) == 3 * 2:               # all three members finished epoch 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_stack(configs, data, tmp_path / "cut", progress=False, on_epoch_end=interrupt)
    assert seen == [(s, e) for e in (1, 2) for s in SEEDS]
    # a single run resumes a member of the interrupted stack ...
    one = train(configs[0], data, tmp_path / "cut", progress=False)
    assert list(one.history.epoch) == [1, 2, 3]
    _assert_same_run(full[0], one)
    # ... and the stack resumes the other two
    rest = train_stack(configs[1:], data, tmp_path / "cut", progress=False)
    for f, r in zip(full[1:], rest):
        _assert_same_run(f, r)


def test_get_trained_stack_trains_only_the_missing_models(data, tmp_path, float64):
    one = get_trained("a2e", SEEDS[0], data, "smoke", tmp_path, progress=False, **TINY)
    models = get_trained_stack("a2e", SEEDS, data, "smoke", tmp_path, progress=False, **TINY)
    assert [m.trained_now for m in models] == [False, True, True] and models[0].key == one.key
    assert load_trained(models[2].path).key == models[2].key


# ------------------------------------------------------------------ attacks on stacks

@pytest.mark.parametrize("config", [
    AttackConfig(mode="reference", max_iterations=12),
    AttackConfig(mode="projected", epsilon=0.5, step_size=0.1, max_iterations=10),
    AttackConfig(mode="projected", epsilon=0.05, step_size=0.01, max_iterations=4, random_start=True, seed=3),
], ids=["reference", "projected", "random-start"])
def test_stacked_attack_equals_single_attacks(config, data, float64):
    torch.manual_seed(1)
    models = [build_model("a2e", width=0.0625).eval() for _ in range(3)]
    stack = stack_models(models).eval()
    x, y, _ = data.subset("test")
    x = x.double()
    # member k's first 2k examples have ratings anti-correlated with its clean prediction
    # (r = -1: the ladder stops them at once), so the members keep different numbers of rows
    ys = y.double().expand(3, *y.shape).clone()
    with torch.no_grad():
        for k, model in enumerate(models):
            ys[k, :2 * k] = -model(x[:2 * k])
    results = stacked_attack(stack, x, ys, config)
    for k, (model, res) in enumerate(zip(models, results)):
        single = attack(model, x, ys[k], config)
        assert torch.equal(res.iterations, single.iterations)
        assert torch.equal(res.delta_iteration, single.delta_iteration)
        assert torch.equal(res.converged, single.converged)
        assert torch.equal(res.rung_iterations, single.rung_iterations)
        for name in ("delta", "final_delta", "adv_pred", "final_pred", "clean_pred"):
            assert _rel(getattr(single, name), getattr(res, name)) <= RTOL, name
        if config.mode == "projected" and not config.random_start:
            assert res.iterations.tolist() == [0] * (2 * k) + [10] * (len(x) - 2 * k)


# ------------------------------------------------------------------ the runner

def test_runner_trains_stacks_when_asked_and_plans_them(data, tmp_path):
    from mer_lib.experiments import Experiment
    from mer_lib.runner import Runner

    exp = Experiment.from_parameters(profile="smoke", device="cpu", variants=["a2e", "a2m2e"], seeds=[6, 21, 42],
                                     epochs=1, modes=["projected"], epsilons=[0.01])
    quiet = dict(log=lambda m: None, progress=False)
    assert Runner(exp, tmp_path, data=data, **quiet).stack_size == 1          # smoke: no stacks
    quick = Runner(Experiment.from_parameters(profile="quick", device="cpu"), tmp_path, data=data, **quiet)
    assert (quick.stack_size, quick.attack_stack_size) == (3, 1)      # CPU: stacked training, single attacks
    assert Runner(exp, tmp_path, data=data, stack_size=2, **quiet).attack_stack_size == 2   # unless asked
    with pytest.raises(StackError, match="stack_size"):
        Runner(exp, tmp_path, data=data, stack_size=0, **quiet)
    runner = Runner(exp, tmp_path, data=data, stack_size=2, **quiet)
    plan = runner.plan(("train",))
    assert plan["stack"].tolist() == ["1 of 2 (2 models)", "1 of 2 (2 models)", "",
                                   "2 of 2 (2 models)", "2 of 2 (2 models)", ""]
    report = runner.run(kinds=("train",))
    assert len(report.trained) == 6 and not report.failed
    for (variant, seed), tm in runner.models().items():     # stored like single runs
        single = train(runner.exp.train_config(variant, seed), data, tmp_path / "single", progress=False)
        assert single.key == tm.key
        assert _rel(single.model.to_emotions.weight, tm.model.to_emotions.weight) < 1e-4   # float32


def test_runner_stacks_the_extension_models_whose_objective_stacks(data, tmp_path):
    """The ExpO and RAR fine-tunes of two seeds (each from its own A2E) train as stacks in the
    runner and are stored as the single fine-tunes; a sweep point of one seed (c = 0.1) has no
    partner and trains on its own."""
    from mer_lib.experiments import Experiment
    from mer_lib.extensions import extension_config, extension_models
    from mer_lib.runner import Runner

    exp = Experiment.from_parameters(profile="smoke", device="cpu", variants=["a2e"], seeds=[6, 21],
                                     extension_seeds=[6, 21], expo_variants=["expos_a2e", "expof_a2e"],
                                     rar_variants=["ignorm_a2e"], epochs=1, modes=["projected"], epsilons=[0.01])
    lines = []
    runner = Runner(exp, tmp_path, data=data, stack_size=2, log=lines.append, progress=False)
    jobs = [j for j in runner.missing(("train", "extension"))]
    groups = sorted([(j.kind, j.variant, j.seed) for j in g] for g in runner.stacks(jobs))
    assert groups == [[("extension", v, 6), ("extension", v, 21)] for v in ("expof_a2e", "expos_a2e", "ignorm_a2e")] \
        + [[("train", "a2e", 6), ("train", "a2e", 21)]]
    report = runner.run(kinds=("train", "extension"))
    assert not report.failed and any("extension expos_a2e seeds 6, 21: done" in line for line in lines)
    assert {"expos_a2e seed 6", "expos_a2e seed 21", "ignorm_a2e seed 21"} <= set(report.trained)
    single_store = tmp_path / "single"
    shutil.copytree(tmp_path / "models" / "a2e", single_store / "models" / "a2e")   # the same base models
    for seed in (6, 21):       # stored as the single fine-tune of its seed, from its own base model
        config = extension_config(exp, "expos_a2e", seed, data)
        stacked = runner.extension(next(j for j in jobs if (j.kind, j.variant, j.seed) == ("extension", "expos_a2e", seed)))
        single = train(config, data, single_store, progress=False)
        assert stacked.key == single.key and stacked.config.init_from == config.init_from
        assert _rel(single.model.to_emotions.weight, stacked.model.to_emotions.weight) < 1e-4   # float32
    # what a chapter calls: extension_models trains a variant's missing seeds as one stack too
    lines.clear()
    fresh = Runner(exp, tmp_path / "fresh", data=data, stack_size=2, log=lines.append, progress=False)
    models = extension_models(fresh, ["expos_a2e"])
    assert any("extension expos_a2e seeds 6, 21: done" in line for line in lines)
    assert all(m.key == runner.extension(j).key for (v, s), m in models.items()
               for j in jobs if j.kind == "extension" and (j.variant, j.seed, j.options) == (v, s, ()))


def test_get_trained_stack_trains_a_model_resumed_at_another_epoch_on_its_own(data, tmp_path, float64):
    configs = _configs("a2e", epochs=2)

    def stop(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):                   # seed 21 killed after its epoch 1
        train(configs[1], data, tmp_path, progress=False, on_epoch_end=stop)
    with pytest.raises(StackError, match="different epochs"):
        train_stack(configs, data, tmp_path, progress=False)
    models = get_trained_stack("a2e", SEEDS, data, "smoke", tmp_path, progress=False, **{**TINY, "epochs": 2})
    for c, m in zip(configs, models):
        _assert_same_run(train(c, data, tmp_path / "single", progress=False), m)


def test_runner_attacks_stacks_in_one_pass_stored_like_single_attacks(data, tmp_path, float64):
    import dataclasses

    from mer_lib.attacks.results import get_attack
    from mer_lib.experiments import Experiment
    from mer_lib.runner import Runner

    data = dataclasses.replace(data, x=data.x.double(), emotions=data.emotions.double(),
                               midlevel=data.midlevel.double(), identity="tiny-stack-data-64")

    exp = Experiment.from_parameters(profile="smoke", device="cpu", variants=["a2e"], seeds=list(SEEDS),
                                     epochs=1, modes=["reference", "projected"], epsilons=[0.01],
                                     max_iterations=6)
    logs = []
    runner = Runner(exp, tmp_path / "stacked", data=data, log=logs.append, progress=False, stack_size=3)
    plan = runner.plan(("attack",))
    grid_stacks = set(plan[plan.chapter == "robustness"]["stack"])       # one per attack configuration
    assert len(grid_stacks) == 3 and all(s.endswith("(3 models)") for s in grid_stacks)
    report = runner.run(grid_only=True)
    assert len(report.attacked) == 9 and not report.failed
    assert sum("[attack stack" in line and "done" in line for line in logs) == 3
    models = runner.models()
    for config in exp.attack_grid():
        stacked = runner.attack_table(config)
        single = pd.concat([get_attack(models[("a2e", s)], data, config, split="test",
                                       run_dir=tmp_path / "single", progress=False).table for s in SEEDS],
                           ignore_index=True)
        assert list(stacked.columns) == list(single.columns) and len(stacked) == len(single)
        for col in single.columns:
            if pd.api.types.is_float_dtype(single[col]):
                assert np.allclose(stacked[col], single[col], rtol=1e-8, atol=1e-12, equal_nan=True), col
            else:
                assert stacked[col].tolist() == single[col].tolist(), col
    folders = {p.parent.parent.name for p in (tmp_path / "stacked" / "attacks").glob("*/*/meta.json")}
    assert folders == {tm.key for tm in models.values()}        # stored under each model, as single results
