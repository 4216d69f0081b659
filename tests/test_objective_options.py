"""Every setting says which objective options it sets; the routes reach real options."""
import pytest

from mer_lib.experiments import Experiment
from mer_lib.extensions import objective_options
from mer_lib.objectives import get_objective
from mer_lib.parameters import PARAMETERS
from mer_lib.profiles import PROFILE_OPTIONS, PROFILES

ROUTES = [(p.name, t) for p in PARAMETERS for t in p.options] + \
    [(name, t) for name, targets in PROFILE_OPTIONS.items() for t in targets]


@pytest.mark.parametrize("setting, target", ROUTES, ids=[f"{s}->{t}" for s, t in ROUTES])
def test_every_route_names_a_registered_objective_and_one_of_its_options(setting, target):
    objective, option = target.split(".")
    assert option in get_objective(objective).defaults, f"{setting} goes to {target}, which is not an option"


def test_profile_only_routes_name_profile_fields():
    fields = set(PROFILES["paper"].as_dict())
    assert set(PROFILE_OPTIONS) <= fields


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_routes_give_each_objective_the_experiments_settings(profile):
    exp = Experiment.from_parameters(profile=profile, rar_lambda=0.5, rar_beta=2.0, expo_c=3.0)
    spec = exp.profile_spec
    expo = {"reg_batch": spec.expo_reg_batch, "bands": exp.patch_bands, "segments": exp.patch_segments, "c": 3.0}
    rar = {"epsilon": exp.rar_epsilon, "riemann_steps": exp.rar_steps, "attack_steps": spec.rar_attack_steps,
           "reg_batch": spec.rar_reg_batch}
    assert objective_options(exp, "expo_fidelity") == expo
    assert objective_options(exp, "expo_stability") == expo
    assert objective_options(exp, "ig_norm") == {**rar, "weight": 0.5}
    assert objective_options(exp, "ig_sum_norm", epsilon=0.1) == {**rar, "weight": 2.0, "epsilon": 0.1}
    assert objective_options(exp, "mse") == {}
