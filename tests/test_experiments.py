"""The experiment spec: one parameter block for every chapter, parsed and validated up front."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from mer_lib.attacks import AttackConfig
from mer_lib.errors import DataLayoutError, ParameterError
from mer_lib.experiments import PARAMETER_NAMES, PARAMETERS, Experiment, parameter_cell, parse_parameters
from mer_lib.params import parse_cli_list, parse_value
from mer_lib.profiles import PROFILES, Profile, get_profile

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- parsing strings

@pytest.mark.parametrize("text, expected", [
    ("[0.0005, 0.002]", [0.0005, 0.002]),
    ("[6, 21]", [6, 21]),
    ("['a2e', 'a2m2e']", ["a2e", "a2m2e"]),
    (" None ", None),
    ("3", 3),
])
def test_strings_from_papermill_cli_are_python_literals(text, expected):
    assert parse_value("x", text, "a list of numbers") == expected


@pytest.mark.parametrize("text", ["[6, 21", "__import__('os').system('true')", "a2e, a2m2e", "[x]", ""])
def test_anything_but_a_literal_is_one_line_parameter_error(text):
    with pytest.raises(ParameterError) as info:
        parse_value("seeds", text, "a list of integers")
    message = str(info.value)
    assert "\n" not in message and message.startswith("seeds=") and "a list of integers" in message


def test_non_strings_pass_through_untouched():
    value = [0.1, 0.2]
    assert parse_value("epsilons", value, "a list") is value


def test_cli_lists_take_commas_or_literals():
    assert parse_cli_list("a2e,a2m2e") == ["a2e", "a2m2e"]
    assert parse_cli_list("6, 21") == [6, 21]
    assert parse_cli_list("[0.001, 0.01]") == [0.001, 0.01]
    with pytest.raises(ParameterError, match="not a list"):
        parse_cli_list("[0.1,")


# ----------------------------------------------------------------------------- the spec

def test_profile_values_fill_every_none():
    exp = Experiment.from_parameters(profile="quick")
    prof = get_profile("quick")
    assert exp.seeds == prof.seeds and exp.epochs == prof.epochs and exp.width == prof.width
    assert exp.max_iterations == prof.attack_iterations and exp.epsilons == tuple(sorted(prof.epsilons))
    assert exp.variants == ("a2e", "a2b2e", "a2m2e", "aa2e", "aa2b2e")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_per_profile_default_is_declared_once_in_the_parameter_table(profile):
    """A parameter whose None means "the profile's" names its Profile field in PARAMETERS, and
    the experiment then holds exactly that field's value (checked by the parameter's own check)."""
    fields = {f.name for f in dataclasses.fields(Profile)}
    prof = get_profile(profile)
    exp = Experiment.from_parameters(profile=profile)
    for p in PARAMETERS:
        if "(None: the profile's" in p.comment:
            assert p.default is None and p.profile in fields, p.name
        if p.profile is None or p.deferred:
            continue
        assert p.profile in fields, p.name
        expected = getattr(prof, p.profile)
        got = getattr(exp, p.name)
        if p.name == "extension_seeds":
            expected = exp.seeds[:expected]
        elif isinstance(got, tuple):
            expected = tuple(sorted(expected, reverse=p.name == "snr_budgets_db"))
        assert got == expected, (p.name, got, expected)


def test_extension_seeds_are_the_profiles_first_seeds_unless_given():
    quick = Experiment.from_parameters(profile="quick")
    assert quick.seeds == (6, 21, 42) and quick.extension_seeds == (6, 21)     # quick: the first 2
    assert Experiment.from_parameters(profile="paper").extension_seeds == get_profile("paper").seeds
    assert Experiment.from_parameters(profile="quick", seeds=[42]).extension_seeds == (42,)
    chosen = Experiment.from_parameters(profile="quick", extension_seeds="[42, 6]")
    assert chosen.extension_seeds == (42, 6) and chosen.key() != quick.key()
    with pytest.raises(ParameterError, match=r"extension_seeds must be some of seeds \[6, 21, 42\].*\[7\]"):
        Experiment.from_parameters(profile="quick", extension_seeds=[6, 7])


def test_quick_trains_channels_last_and_the_other_profiles_do_not():
    assert Experiment.from_parameters(profile="quick").train_config("a2e", 6).channels_last is True
    for name in ("smoke", "paper"):
        assert Experiment.from_parameters(profile=name).train_config("aa2e", 6).channels_last is False
    with pytest.raises(ParameterError, match="channels_last"):
        get_profile("quick", channels_last="yes")
    with pytest.raises(ParameterError, match="extension_seeds"):
        get_profile("quick", extension_seeds=0)


def test_strings_and_objects_give_the_same_spec():
    as_strings = Experiment.from_parameters(profile="smoke", epsilons="[0.002, 0.0005]", seeds="[6, 21]",
                                            epochs="3", variants="['a2e']")
    as_objects = Experiment.from_parameters(profile="smoke", epsilons=[0.0005, 0.002], seeds=[6, 21],
                                            epochs=3, variants=["a2e"])
    assert as_strings == as_objects and hash(as_strings) == hash(as_objects)
    assert as_strings.key() == as_objects.key()


def test_attack_grid_is_each_mode_at_epsilon_then_the_projected_sweep_once_each():
    exp = Experiment.from_parameters(profile="smoke", epsilon=0.001, epsilons=[0.01, 0.001],
                                     step_size=0.002, alpha_fraction=0.1, max_iterations=7)
    assert exp.attack_grid() == [
        AttackConfig(mode="reference", epsilon=0.001, step_size=0.002, max_iterations=7),
        AttackConfig(mode="projected", epsilon=0.001, step_size=0.0001, max_iterations=7),
        AttackConfig(mode="projected", epsilon=0.01, step_size=0.001, max_iterations=7),
    ]
    only_projected = Experiment.from_parameters(profile="smoke", modes=["projected"], epsilons=[0.001])
    assert [c.mode for c in only_projected.attack_grid()] == ["projected"]


def test_train_config_uses_the_overrides():
    exp = Experiment.from_parameters(profile="smoke", epochs=4, width=0.25, lr=0.01, batch_size=4, patience=3)
    cfg = exp.train_config("a2m2e", 21)
    assert (cfg.variant, cfg.seed, cfg.epochs, cfg.width, cfg.lr, cfg.batch_size, cfg.patience) == \
        ("a2m2e", 21, 4, 0.25, 0.01, 4, 3)


def test_key_ignores_device_and_reference_logs_but_not_what_is_computed(tmp_path):
    a = Experiment.from_parameters(profile="smoke", device="cpu")
    assert a.key() == Experiment.from_parameters(profile="smoke", device="auto",
                                                 reference_logs=str(tmp_path)).key()
    assert a.key() != Experiment.from_parameters(profile="smoke", epochs=3).key()
    assert Experiment.from_parameters(**a.parameters()) == a
    json.dumps(a.to_dict())


@pytest.mark.parametrize("params, name", [
    ({"seeds": [6, -1]}, "seeds"), ({"seeds": [6, 6]}, "seeds"), ({"seeds": "6"}, "seeds"),
    ({"seeds": [2**32]}, "seeds"), ({"seeds": [6.0]}, "seeds"), ({"seeds": "[6, 21"}, "seeds"),
    ({"variants": ["a2x"]}, "a2x"), ({"variants": "a2e"}, "variants"),
    ({"epsilons": [-0.001]}, "epsilons"), ({"epsilons": "0.01"}, "epsilons"),
    ({"epsilons": [math.nan]}, "epsilons"), ({"epsilon": 0}, "epsilon"),
    ({"modes": ["fgsm"]}, "modes"), ({"step_size": 0}, "step_size"),
    ({"max_iterations": 0}, "max_iterations"), ({"epochs": 0}, "epochs"), ({"width": 0}, "width"),
    ({"lr": 2.0}, "lr"), ({"split": "dev"}, "split"), ({"profile": "huge"}, "profile"),
    ({"device": "tpu"}, "device"), ({"n_clips": 5}, "n_clips"), ({"corpus_seed": -1}, "corpus_seed"),
    ({"spurious_cue": "joy"}, "spurious_cue"), ({"excerpt_seconds": 0}, "excerpt_seconds"),
    ({"reference_logs": "/no/such/folder"}, "reference_logs"),
    ({"epsilon_s": [0.1]}, "epsilon_s"),
    ({"extension_seeds": [6, 21]}, "extension_seeds"), ({"extension_seeds": [-1]}, "extension_seeds"),
])
def test_every_bad_parameter_is_a_one_line_error_naming_it(params, name):
    with pytest.raises(ParameterError) as info:
        Experiment.from_parameters(**{"profile": "smoke", **params})
    assert name in str(info.value) and "\n" not in str(info.value)


def test_real_data_folder_is_checked_and_synthetic_settings_refused(tmp_path):
    with pytest.raises(DataLayoutError, match="does not exist"):
        Experiment.from_parameters(data=str(tmp_path / "missing"))
    with pytest.raises(ParameterError, match="n_clips"):
        Experiment.from_parameters(data=str(tmp_path), n_clips=20)
    assert not Experiment.from_parameters(data=str(tmp_path)).synthetic


def test_parse_parameters_keeps_text_and_reads_none():
    assert parse_parameters({"data": "/x", "spurious_cue": "None", "epochs": "5"}) == \
        {"data": "/x", "spurious_cue": None, "epochs": 5}


def test_from_namespace_takes_the_notebook_names_and_reports_unknown_ones():
    import numpy as np

    def helper():
        return 1

    ns = {"profile": "smoke", "seeds": "[6, 21]", "np": np, "helper": helper, "Experiment": Experiment,
          "_": 3, "_i1": "x", "In": [], "Out": {}}
    assert Experiment.from_namespace(ns).seeds == (6, 21)
    with pytest.raises(ParameterError, match=r"\['epsilon_s'\]"):
        Experiment.from_namespace({**ns, "epsilon_s": [0.1]})


# ----------------------------------------------------------------------------- the chapters

def _chapters():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


@pytest.mark.parametrize("chapter", _chapters())
def test_every_chapter_declares_exactly_the_common_parameter_block(chapter):
    nb = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1
    assert "".join(cells[0]["source"]) == parameter_cell()
    code = [("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]
    first = code[code.index(parameter_cell()) + 1]
    assert "Experiment.from_namespace(globals())" in first.split("import numpy")[0], \
        "the spec must be built before anything else happens"


def test_parameter_cell_defines_every_parameter_with_its_default():
    ns: dict = {}
    exec(parameter_cell(), ns)
    ns.pop("__builtins__")
    assert tuple(ns) == PARAMETER_NAMES
    assert Experiment.from_namespace(ns) == Experiment.from_parameters()


def test_the_experiment_holds_exactly_the_parameter_table_in_its_order_and_no_defaults_of_its_own():
    import dataclasses

    fields = dataclasses.fields(Experiment)
    assert tuple(f.name for f in fields) == PARAMETER_NAMES
    assert all(f.default is dataclasses.MISSING for f in fields)    # every value comes from the table
