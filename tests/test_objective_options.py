"""Every setting says which objective options it sets; the routes reach real options."""
import pytest

from mer_lib.experiments import Experiment
from mer_lib.extensions import objective_options
from mer_lib.objectives import get_objective
from mer_lib.parameters import PARAMETERS
from mer_lib.profiles import PROFILES, SIZES

ROUTES = [(p.name, t) for p in PARAMETERS for t in p.options] + [(s.name, t) for s in SIZES for t in s.options]


@pytest.mark.parametrize("setting, target", ROUTES, ids=[f"{s}->{t}" for s, t in ROUTES])
def test_every_route_names_a_registered_objective_and_one_of_its_options(setting, target):
    objective, option = target.split(".")
    assert option in get_objective(objective).defaults, f"{setting} goes to {target}, which is not an option"


def test_a_sized_parameter_takes_its_routes_from_its_size_row_and_declares_none_itself():
    sizes = {s.name: s for s in SIZES}
    for p in PARAMETERS:
        if p.profile in sizes and p.name != "extension_seeds":
            assert p.options == sizes[p.profile].options, p.name
    assert not [p.name for p in PARAMETERS if p.options and p.profile is None and p.name in sizes]


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


def test_every_size_row_gives_one_checked_value_per_profile_and_is_a_profile_field():
    fields = [f for f in PROFILES["paper"].as_dict() if f != "name"]
    assert fields == [s.name for s in SIZES]
    for s in SIZES:
        for name, profile in PROFILES.items():
            assert s.check(s.name, s.value(name)) == getattr(profile, s.name), (s.name, name)


def test_a_new_size_is_one_row_with_a_value_per_profile_and_its_check():
    from mer_lib.errors import ParameterError
    from mer_lib.profiles import Size, at_least, make_profiles

    toy = Size("toy_steps", 1, 2, 3, at_least(1), "an integer >= 1", "a toy size", ("ig_norm.attack_steps",))
    cls, profiles = make_profiles(SIZES + (toy,))
    assert [profiles[name].toy_steps for name in ("smoke", "quick", "paper")] == [1, 2, 3]
    assert profiles["quick"].as_dict() == {**PROFILES["quick"].as_dict(), "toy_steps": 2}
    with pytest.raises(ParameterError, match="profile field toy_steps must be an integer >= 1, got 0"):
        make_profiles(SIZES + (Size("toy_steps", 1, 2, 0, at_least(1), "an integer >= 1", "a toy size"),))
