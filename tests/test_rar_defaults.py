"""One source of truth for the RAR defaults: ``RarConfig``'s field defaults.

The training objectives' options (``RAR_DEFAULTS``) are derived from them and are part of every
stored RAR model's cache key, so they are also pinned here to the values those models were
trained with; the experiment's parameters and the paper profile must agree with them too.
"""
from __future__ import annotations

import dataclasses

import pytest

from mer_lib.attributions import RarConfig
from mer_lib.experiments import Experiment
from mer_lib.extensions import rar_options
from mer_lib.objectives import make_objective, resolve_options
from mer_lib.objectives.rar_training import RAR_CONFIG_OPTIONS, RAR_DEFAULTS

FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RarConfig)}
RAR_VARIANTS = ("ignorm_a2e", "ignorm_a2b2e", "igsumnorm_a2e", "igsumnorm_a2b2e")

#: What the stored RAR models were trained with (their cache keys hold the resolved options).
STORED = {"weight": 1.0, "epsilon": 0.03, "riemann_steps": 50, "attack_steps": 10, "step_size": None,
          "approx_factor": 5, "chunk_size": 10, "normalisation": "sum", "reg_batch": None}


def test_objective_defaults_are_the_config_defaults_for_every_shared_name():
    shared = sorted(set(FIELD_DEFAULTS) & set(RAR_DEFAULTS))
    assert shared == sorted(RAR_CONFIG_OPTIONS)
    for name in shared:
        assert (RAR_DEFAULTS[name], type(RAR_DEFAULTS[name])) == (FIELD_DEFAULTS[name], type(FIELD_DEFAULTS[name])), name
    # the names only one side has: the objective (the class's name), the seed (the step's
    # generator), the regularisation batch (not part of the attack or the loss)
    assert set(FIELD_DEFAULTS) - set(RAR_DEFAULTS) == {"objective", "seed"}
    assert set(RAR_DEFAULTS) - set(FIELD_DEFAULTS) == {"reg_batch"}


def test_the_defaults_are_the_ones_the_stored_models_were_trained_with():
    assert list(RAR_DEFAULTS.items()) == list(STORED.items())          # values, types and order
    assert all(type(RAR_DEFAULTS[k]) is type(v) for k, v in STORED.items())


@pytest.mark.parametrize("objective", ["ig_norm", "ig_sum_norm"])
def test_default_objective_builds_the_default_config(objective):
    assert make_objective(objective).rar_config == RarConfig(objective=objective)
    assert RarConfig(objective=objective, **{k: RAR_DEFAULTS[k] for k in RAR_CONFIG_OPTIONS}) \
        == RarConfig(objective=objective)


@pytest.mark.parametrize("variant", RAR_VARIANTS)
def test_variants_and_the_paper_experiment_train_with_the_defaults(variant):
    assert resolve_options(variant) == RAR_DEFAULTS
    paper = Experiment.from_parameters(profile="paper")
    assert resolve_options(variant, rar_options(paper, variant)) == RAR_DEFAULTS
    quick = Experiment.from_parameters(profile="quick")       # the radius and weight of every profile
    opts = resolve_options(variant, rar_options(quick, variant))
    assert (opts["epsilon"], opts["weight"]) == (RarConfig().epsilon, RarConfig().weight)
