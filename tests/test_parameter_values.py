"""Bad values of the ExpO, RAR, attribution and stack parameters: a one-line ParameterError that
names the parameter and the value, raised before any data is loaded or model trained; the CLI
exits with status 2 and prints one line."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mer_lib.data
import mer_lib.stack_training
import mer_lib.training
from mer_lib.cli import main
from mer_lib.errors import ParameterError
from mer_lib.experiments import PARAMETER_NAMES, Experiment
from mer_lib.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = math.nan, math.inf

# Wrong types shared by every numeric parameter: a string that is no literal, a list, a dict.
_NOT_A_NUMBER = ["abc", [1.0], {"a": 1}]
_NUMBER_GT0 = [*_NOT_A_NUMBER, True, False, NAN, INF, -INF, 0, 0.0, -1, -0.5]          # > 0
_NUMBER_GE0 = [*_NOT_A_NUMBER, True, NAN, INF, -INF, -1, -1e-9]                        # >= 0
_INT_GE1 = [*_NOT_A_NUMBER, True, False, NAN, INF, 0, -1, 2.5, 3.0]                    # integer >= 1
_VARIANT_LIST = ["expof_a2e", 5, [], [5], [None], [["expof_a2e"]], ["no_such_variant"], {"a": 1}]

#: name -> bad values (smoke profile: seeds (6,)).
BAD: dict[str, list] = {
    "extension_seeds": ["abc", 6, [], [6, 6], [7], [6, 7], [True], [6.0], [-1], [NAN], [None], [[6]],
                        {"a": 1}, [2**32]],
    "expo_variants": [*_VARIANT_LIST, ["a2e"], ["ignorm_a2e"], ["expof_a2e", "a2e"],
                      ["expof_a2e", "expof_a2e"], ["expof_a2e", "EXPOF_A2E"], None],
    "expo_c": _NUMBER_GE0,
    "c_values": ["abc", 1.0, [], [0.0], [-1.0], [NAN], [INF], [True], ["a"], [None], [[1.0]],
                 [1.0, 1.0], [0.1, 1, 1.0], None],
    "patch_bands": _INT_GE1,
    "patch_segments": _INT_GE1,
    "sigma_eval": [*_NUMBER_GT0, None],
    "n_neighbours_eval": [*_INT_GE1, None],
    "explain_examples": _INT_GE1,
    "ig_steps": [*_INT_GE1, 1],
    "ig_baseline": ["ones", "", "Zeros", "silence ", 0, True, ["zeros"], {"a": 1}, None],
    "attr_epsilon": [*_NUMBER_GT0, None],
    "attr_steps": _INT_GE1,
    "attr_tolerance": [*_NUMBER_GE0, None],
    "topk_fraction": [*_NUMBER_GT0, 1.5, 1.0000001, 2, None],
    "attr_examples": _INT_GE1,
    "rar_variants": [*(["ignorm_a2e" if v == "expof_a2e" else v for v in _VARIANT_LIST]), ["a2e"],
                     ["expof_a2e"], ["ignorm_a2e", "expos_a2e"], ["ignorm_a2e", "ignorm_a2e"], None],
    "rar_lambda": [*_NUMBER_GE0, None],
    "rar_beta": [*_NUMBER_GE0, None],
    "rar_epsilon": [*_NUMBER_GT0, None],
    "rar_steps": _INT_GE1,
}
CASES = [(name, value) for name, values in BAD.items() for value in values]


def _id(value) -> str:
    return re.sub(r"\W", "_", repr(value))[:30]


def _names_value(message: str, name: str, value) -> bool:
    """The message names ``name`` and shows ``value`` as the value it got (``got <repr>`` or
    ``name=<repr>``), not just somewhere by chance."""
    shown = repr(value)
    return name in message and (f"got {shown}" in message or f"{name}={shown}" in message)


@pytest.fixture()
def no_work(monkeypatch):
    """Loading data or training a model fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("data were loaded or a model trained before the parameters were checked")

    for module, attr in ((mer_lib.data, "load_dataset"), (mer_lib.training, "get_trained"),
                         (mer_lib.stack_training, "get_trained_stack")):
        monkeypatch.setattr(module, attr, forbidden)


def test_every_extension_parameter_is_covered():
    names = [n for n in PARAMETER_NAMES
             if n.startswith(("expo_", "rar_", "attr_", "ig_", "patch_", "extension_"))
             or n in ("c_values", "sigma_eval", "n_neighbours_eval", "explain_examples", "topk_fraction")]
    assert sorted(names) == sorted(BAD)


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}-{_id(v)}" for n, v in CASES])
def test_bad_value_is_a_parameter_error_naming_parameter_and_value(no_work, name, value):
    with pytest.raises(ParameterError) as info:
        Experiment.from_parameters(profile="smoke", **{name: value})
    message = str(info.value)
    assert "\n" not in message
    assert _names_value(message, name, value), message


#: (name, the string papermill's ``-p`` passes, the value it spells or None when it is no literal)
STRINGS = [
    ("extension_seeds", "[6, 7]", [6, 7]), ("extension_seeds", "6", 6), ("extension_seeds", "[]", []),
    ("expo_variants", "['a2e']", ["a2e"]), ("expo_variants", "expof_a2e", None),
    ("expo_c", "-1", -1), ("expo_c", "nan", None), ("c_values", "[0.1, 0]", [0.1, 0]),
    ("patch_bands", "0", 0), ("patch_segments", "True", True), ("sigma_eval", "0", 0),
    ("n_neighbours_eval", "2.5", 2.5), ("explain_examples", "-3", -3), ("ig_steps", "1", 1),
    ("ig_baseline", "ones", "ones"), ("attr_epsilon", "[0.03]", [0.03]), ("attr_steps", "0", 0),
    ("attr_tolerance", "-0.1", -0.1), ("topk_fraction", "1.5", 1.5), ("topk_fraction", "0", 0),
    ("attr_examples", "False", False), ("rar_variants", "['expos_a2e']", ["expos_a2e"]),
    ("rar_variants", "[]", []), ("rar_lambda", "-1", -1), ("rar_beta", "1e999", INF),
    ("rar_epsilon", "0.0", 0.0), ("rar_steps", "None]", None),
]


@pytest.mark.parametrize("name, text, value", STRINGS, ids=[f"{n}-{_id(t)}" for n, t, _ in STRINGS])
def test_papermill_strings_are_checked_too(no_work, name, text, value):
    with pytest.raises(ParameterError) as info:
        Experiment.from_parameters(profile="smoke", **{name: text})
    message = str(info.value)
    assert "\n" not in message
    assert _names_value(message, name, text) or (value is not None and _names_value(message, name, value)), \
        message


# ----------------------------------------------------------------------------- stack sizes

STACK_SIZES = [0, -1, 1.5, 2.0, True, False, "2", NAN, INF, [2], {"a": 1}]


@pytest.mark.parametrize("value", STACK_SIZES, ids=_id)
def test_bad_stack_size_override_of_a_profile(value):
    with pytest.raises(ParameterError) as info:
        get_profile("smoke", stack_size=value)
    message = str(info.value)
    assert "\n" not in message and "stack_size" in message and f"got {value!r}" in message


@pytest.mark.parametrize("value", STACK_SIZES, ids=_id)
def test_bad_stack_size_of_the_runner_fails_before_the_store_is_opened(tmp_path, no_work, value):
    from mer_lib.runner import Runner

    exp = Experiment.from_parameters(profile="smoke", device="cpu")
    with pytest.raises(ParameterError) as info:
        Runner(exp, tmp_path / "runs", stack_size=value)
    message = str(info.value)
    assert "\n" not in message and "stack_size" in message and f"got {value!r}" in message
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- the command line

def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


#: (parameter, the text given to its option)
CLI_CASES = [
    ("extension_seeds", "6,7"), ("extension_seeds", "[]"), ("extension_seeds", "6,6"),
    ("expo_variants", "a2e"), ("expo_variants", "expof_a2e,ignorm_a2e"), ("expo_variants", "nope"),
    ("expo_c", "-1"), ("expo_c", "nan"), ("expo_c", "abc"),
    ("c_values", "0.1,0"), ("c_values", "[]"), ("c_values", "1,1"),
    ("patch_bands", "0"), ("patch_segments", "1.5"), ("sigma_eval", "0"), ("sigma_eval", "inf"),
    ("n_neighbours_eval", "True"), ("explain_examples", "-1"), ("ig_steps", "1"),
    ("ig_baseline", "ones"), ("attr_epsilon", "-0.03"), ("attr_steps", "0"), ("attr_tolerance", "-1"),
    ("topk_fraction", "0"), ("topk_fraction", "1.5"), ("attr_examples", "0"),
    ("rar_variants", "a2e"), ("rar_variants", "ignorm_a2e,expos_a2e"), ("rar_variants", "ignorm_a2e,ignorm_a2e"),
    ("rar_lambda", "-inf"), ("rar_beta", "[1]"), ("rar_epsilon", "0"), ("rar_steps", "2.5"),
]


@pytest.mark.parametrize("name, text", CLI_CASES, ids=[f"{n}-{_id(t)}" for n, t in CLI_CASES])
def test_cli_option_with_a_bad_value_is_one_line_with_status_2(tmp_path, monkeypatch, capsys, no_work,
                                                               name, text):
    monkeypatch.setenv("MER_HOME", str(tmp_path / "runs"))
    assert main(["plan", "--profile", "smoke", f"{_option(name)}={text}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0], err
    assert not (tmp_path / "runs").exists()


def test_cli_takes_the_extension_lists_like_the_other_lists(tmp_path, monkeypatch, capsys, no_work):
    from mer_lib.cli import _experiment, _parser

    args = _parser().parse_args(["plan", "--profile", "smoke", "--seeds", "6,21", "--extension-seeds", "21",
                                 "--expo-variants", "expos_a2e", "--rar-variants", "igsumnorm_a2e,ignorm_a2e",
                                 "--c-values", "1,0.5"])
    exp = _experiment(args)
    assert exp.extension_seeds == (21,) and exp.expo_variants == ("expos_a2e",)
    assert exp.rar_variants == ("igsumnorm_a2e", "ignorm_a2e") and exp.c_values == (0.5, 1.0)


#: A few of the above through a real process, ``python -m mer_lib plan ...`` (each costs a Python
#: and torch start-up; the in-process test above covers every parameter): one per kind of value,
#: a list, a number, a text choice and a boolean given for an integer.
PROCESS_CASES = [("extension_seeds", "6,7"), ("expo_c", "nan"), ("ig_baseline", "ones"), ("rar_steps", "True")]


@pytest.mark.parametrize("name, text", PROCESS_CASES, ids=[f"{n}-{_id(t)}" for n, t in PROCESS_CASES])
def test_python_m_mer_lib_exits_2_with_one_line(tmp_path, name, text):
    env = {**os.environ, "MER_HOME": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-m", "mer_lib", "plan", "--profile", "smoke", f"{_option(name)}={text}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists()
