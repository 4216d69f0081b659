"""The objective API: the trainer runs objectives, records their components, keys their options."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mer_lib.attacks import AttackConfig, attack
from mer_lib.data import MerTensors, split_indices
from mer_lib.errors import ParameterError
from mer_lib.models import Variant, build_model, get_variant, register_variant
from mer_lib.objectives import (OBJECTIVES, Objective, check_finite_option, make_objective, register_objective,
                                task_loss)
from mer_lib.runtime import seed_everything
from mer_lib.training import TrainConfig, run_identity, run_key, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> MerTensors:
    g = torch.Generator().manual_seed(1)
    n = 24
    x = torch.randn(n, 1, 32, 24, generator=g)
    emotions = torch.rand(n, 8, generator=g)
    return MerTensors(x=x, emotions=emotions, midlevel=torch.rand(n, 7, generator=g),
                      split=split_indices(n), ids=[str(i) for i in range(n)], mean=0.0, std=1.0,
                      identity="objectives-test")


@register_objective
class ScaledMse(Objective):
    """A toy objective: ``scale * MSE``, reporting the unscaled MSE as a second component."""

    name = "test_scaled_mse"
    components = ("train_loss", "raw_mse")
    defaults = {"scale": 1.0}

    @classmethod
    def validate(cls, options):
        check_finite_option(cls.name, "scale", options["scale"], strict=True)

    def step(self, ctx, x, emotions, midlevel):
        raw = task_loss(ctx.model, ctx.variant, x, emotions, midlevel)
        return {"train_loss": self.descend(ctx, self.options["scale"] * raw), "raw_mse": raw.detach()}


register_variant(Variant("test_scaled", "direct", objective="test_scaled_mse", options={"scale": 2.0}),
                 replace=True)


def test_options_resolve_validate_and_enter_the_key(data):
    default = TrainConfig("test_scaled", seed=0)
    assert default.objective_options == {"scale": 2.0}                 # the variant's default
    three = TrainConfig("test_scaled", seed=0, objective_options={"scale": 3.0})
    assert three.objective_options == {"scale": 3.0}
    assert run_key(run_identity(default, data)) != run_key(run_identity(three, data))
    same = TrainConfig("test_scaled", seed=0, objective_options={"scale": 2.0})
    assert run_key(run_identity(default, data)) == run_key(run_identity(same, data))
    with pytest.raises(ParameterError, match=r"objective 'test_scaled_mse' has no option\(s\) \['c'\]"):
        TrainConfig("test_scaled", seed=0, objective_options={"c": 1})
    with pytest.raises(ParameterError, match="option scale must be a finite number > 0, got -1"):
        TrainConfig("test_scaled", seed=0, objective_options={"scale": -1})
    with pytest.raises(ParameterError, match="objective 'mse' has no option"):
        TrainConfig("a2e", seed=0, objective_options={"scale": 1.0})


def test_unknown_objective_is_a_clear_error():
    with pytest.raises(ParameterError, match="unknown training objective 'nope'"):
        make_objective(Variant("test_nope", "direct", objective="nope"))


def test_history_has_one_column_per_component(data, tmp_path):
    tm = train(TrainConfig("test_scaled", seed=0, width=0.0625, epochs=2, objective_options={"scale": 4.0}),
               data, tmp_path, progress=False)
    h = tm.history
    assert list(h.columns[:3]) == ["epoch", "train_loss", "raw_mse"]
    assert h.train_loss.tolist() == pytest.approx((4.0 * h.raw_mse).tolist(), rel=1e-6)
    assert "adv_loss" not in h.columns


def test_builtin_variants_name_their_objectives():
    assert get_variant("a2e").objective == "mse" and get_variant("aa2b2e").objective == "adversarial"
    assert {"mse", "adversarial"} <= set(OBJECTIVES)


def test_adversarial_objective_equals_the_reference_recipe_by_hand(data, tmp_path):
    """One adversarial epoch through the trainer == clean step, attack in eval mode, step on x_adv."""
    adv = AttackConfig(mode="reference", epsilon=0.001, step_size=0.002, max_iterations=3)
    cfg = TrainConfig("aa2e", seed=3, width=0.0625, epochs=1, batch_size=8, lr=1e-3, adv_every=1,
                      adv_attack=adv.to_dict())
    trained = train(cfg, data, tmp_path, progress=False)

    gen = seed_everything(cfg.seed)
    model = build_model("aa2e", cfg.width)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x, y, _ = data.subset("train")
    perm = torch.randperm(x.shape[0], generator=gen)
    spec = get_variant("aa2e")
    for b in range(0, x.shape[0], cfg.batch_size):
        idx = perm[b:b + cfg.batch_size]
        model.train()
        opt.zero_grad()
        task_loss(model, spec, x[idx], y[idx], None).backward()
        opt.step()
        model.eval()
        x_adv = attack(model, x[idx], y[idx], adv).x_adv
        model.train()
        opt.zero_grad()
        task_loss(model, spec, x_adv, y[idx], None).backward()
        opt.step()
    got, want = trained.model.state_dict(), model.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got), "the adversarial objective changed the recipe"


def test_stored_model_of_a_test_objective_keeps_its_options(data, tmp_path):
    tm = train(TrainConfig("test_scaled", seed=0, width=0.0625, epochs=1, objective_options={"scale": 3.0}),
               data, tmp_path, progress=False)
    from mer_lib.training import load_trained

    again = load_trained(tm.path)
    assert again.config.objective_options == {"scale": 3.0}
    assert dataclasses.asdict(again.config) == dataclasses.asdict(tm.config)


# ------------------------------------------------------------------ ExpO objectives

EXPO_SMALL = {"bands": 2, "segments": 2, "reg_batch": 2, "c": 1.0}


@pytest.mark.parametrize("variant,component", [("expof_a2e", "expo_fidelity"), ("expos_a2b2e", "expo_stability")])
def test_expo_objectives_train_record_their_regulariser_and_resume_exactly(data, tmp_path, variant, component):
    from test_training import _interrupt_after   # the shared kill-after-epoch hook

    cfg = TrainConfig(variant, seed=2, width=0.0625, epochs=2, objective_options=EXPO_SMALL)
    full = train(cfg, data, tmp_path / "full", progress=False)
    h = full.history
    assert list(h.columns[:4]) == ["epoch", "train_loss", "task_loss", component]
    assert (h[component] > 0).all() and h.train_loss.gt(h.task_loss).all()
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "cut", progress=False, on_epoch_end=_interrupt_after(1))
    again = train(cfg, data, tmp_path / "cut", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(),
                                                  again.model.state_dict().values()))


def test_expo_weight_makes_c_the_relative_weight_at_initialisation(data):
    """weight = c * L(init) / R(init): at the first step, weight * R == c * the task loss."""
    from mer_lib.objectives import ExpoFidelity, StepContext

    class Quadratic(ExpoFidelity):       # a deterministic stand-in for R, same weighting code
        def regulariser(self, model, x):
            return model(x).pow(2).mean()

        def add_regulariser_gradient(self, model, x, weight):
            return _ExpoBase.add_regulariser_gradient(self, model, x, weight)

    from mer_lib.objectives.expo_training import _ExpoObjective as _ExpoBase

    torch.manual_seed(0)
    model = build_model("expof_a2e", 0.0625).eval()     # eval: no dropout, fixed BN
    objective = Quadratic({**EXPO_SMALL, "c": 0.25})
    ctx = StepContext(model, get_variant("expof_a2e"), torch.optim.SGD(model.parameters(), lr=0.1))
    x, y, _ = data.subset("train")
    parts = objective.step(ctx, x[:8], y[:8], None)
    assert ctx.state["weight"] * float(parts["expo_fidelity"]) == pytest.approx(0.25 * float(parts["task_loss"]),
                                                                                rel=1e-5)
    first = ctx.state["weight"]
    objective.step(ctx, x[8:16], y[8:16], None)
    assert ctx.state["weight"] == first                  # fixed after initialisation


@pytest.mark.parametrize("options,message", [
    ({"c": -1}, "option c must be a finite number >= 0"),
    ({"sigma": 0}, "option sigma must be a finite number > 0"),
    ({"bands": 2, "segments": 2, "n_neighbours": 5}, "option n_neighbours must be an integer >= 6"),
    ({"reg_batch": 0}, "option reg_batch must be an integer >= 1"),
])
def test_expo_bad_options(options, message):
    with pytest.raises(ParameterError, match=message):
        TrainConfig("expof_a2e", seed=0, objective_options=options)


def test_model_of_a_package_objective_reloads_in_a_fresh_process(data, tmp_path):
    import subprocess
    import sys

    tm = train(TrainConfig("expof_a2e", seed=1, width=0.0625, epochs=1, objective_options=EXPO_SMALL),
               data, tmp_path, progress=False)
    x = data.x[:3]
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        want = tm.model(x)
    code = ("import sys, torch; from mer_lib.training import load_trained; "
            "tm = load_trained(sys.argv[1], device='cpu'); x = torch.load(sys.argv[2]); "
            "torch.save(tm.model(x).detach(), sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(tm.path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                   check=True, capture_output=True, timeout=300)
    assert torch.equal(torch.load(tmp_path / "y.pt"), want)


# ------------------------------------------------------------------ fine-tuning (init_from)

def test_fine_tuning_starts_from_the_stored_weights_and_is_keyed(data, tmp_path):
    from mer_lib.errors import CheckpointError
    from mer_lib.training import model_ref

    base = train(TrainConfig("a2e", seed=1, width=0.0625, epochs=1), data, tmp_path, progress=False)
    ref = model_ref(base)
    cfg = TrainConfig("expof_a2e", seed=1, width=0.0625, epochs=1, lr=1e-12, init_from=ref,
                      objective_options=EXPO_SMALL)
    tuned = train(cfg, data, tmp_path, progress=False)
    # lr ~ 0: the fine-tuned weights are the parent's (BatchNorm statistics move, weights do not)
    for name, value in base.model.state_dict().items():
        if "running" not in name and "num_batches" not in name:
            assert torch.allclose(tuned.model.state_dict()[name], value, atol=1e-8), name
    scratch = dataclasses.replace(cfg, init_from=None)
    assert run_key(run_identity(cfg, data)) != run_key(run_identity(scratch, data))
    with pytest.raises(CheckpointError, match="needs a bottleneck model"):
        train(TrainConfig("expof_a2b2e", seed=1, width=0.0625, epochs=1, init_from=ref,
                          objective_options=EXPO_SMALL), data, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="no finished model"):
        train(dataclasses.replace(cfg, init_from="a2e/0123456789abcdef"), data, tmp_path, progress=False)
    with pytest.raises(ParameterError, match="init_from must be"):
        TrainConfig("a2e", seed=1, init_from="runs/models/a2e")
