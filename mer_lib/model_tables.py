"""What the trained models are: the tables a chapter shows about its models, read from the models.

A chapter that trains extension systems says how each was trained (from scratch or fine-tuned
from a stored paper model, how many epochs it ran) and with which objective options. These
functions read it from the models themselves (their :class:`~mer_lib.training.TrainConfig` and
history), so the words cannot drift from what was computed:

- :func:`trained_from` — the system a model was fine-tuned from, or ``"scratch"``;
- :func:`system_rows` — per system: where its models came from, their seeds, the epochs run;
- :func:`options_table` — the objective options, one row per option and one column per system,
  with the options every system shares set apart (:func:`shared_options_text`).

Example:
    >>> from types import SimpleNamespace as NS
    >>> m = NS(config=NS(variant="expos_a2e", seed=6, init_from="a2e/0123abcd",
    ...                  objective_options={"c": 0.1, "reg_batch": None}), history=[{}] * 5)
    >>> trained_from(m)
    'A2E'
    >>> system_rows([m]).to_dict("records")
    [{'system': 'ExpO-S-A2E', 'from': 'A2E', 'seeds': '6', 'epochs': '5'}]
    >>> table, shared = options_table([m])         # one system: every option is in the table
    >>> table.to_dict("records"), shared
    ([{'option': 'ExpO weight c', 'ExpO-S-A2E': '0.1'}, {'option': 'regularised clips per batch', 'ExpO-S-A2E': 'the whole batch'}], {})
"""
from __future__ import annotations

import pandas as pd

from .layout import number
from .models import get_variant

#: Each objective option in words (the rows of :func:`options_table`).
OPTION_NAMES = {"c": "ExpO weight c", "sigma": "ExpO-F neighbourhood σ", "n_neighbours": "ExpO-F neighbours per clip",
                "radius": "ExpO-S box half-width", "bands": "patch grid: frequency bands",
                "segments": "patch grid: time segments", "reg_batch": "regularised clips per batch",
                "weight": "RAR weight (λ or β)", "epsilon": "RAR radius ε (standardised units)",
                "riemann_steps": "IG Riemann steps m", "attack_steps": "inner ascent steps",
                "step_size": "inner ascent step size", "approx_factor": "Riemann-step divisor of the inner ascent",
                "normalisation": "L1 norm of the IG", "chunk_size": "chunk size (memory only)"}
#: What an option's None stands for, where it is not "the objective's default".
NONE_MEANS = {"n_neighbours": "2(K + 1)", "reg_batch": "the whole batch", "step_size": "2.5 ε / steps"}
#: Option values in words.
VALUE_NAMES = {"sum": "sum over bins", "mean": "mean over bins"}


def trained_from(model) -> str:
    """The display name of the system ``model`` was fine-tuned from (its config's ``init_from``,
    ``"<variant>/<run key>"``), or ``"scratch"``."""
    init_from = model.config.init_from
    return get_variant(init_from.split("/")[0]).label if init_from else "scratch"


def _by_system(models) -> dict:
    out: dict = {}
    for m in models:
        out.setdefault(m.config.variant, []).append(m)
    return out


def _range(values) -> str:
    runs = sorted(set(values))
    return str(runs[0]) if len(runs) == 1 else f"{runs[0]}–{runs[-1]}"


def system_rows(models) -> pd.DataFrame:
    """One row per system (in first-seen order): ``system``, ``from`` (:func:`trained_from`, all
    its models'), ``seeds`` and ``epochs`` (the epochs its models ran, a range when they differ)."""
    rows = [{"system": get_variant(v).label, "from": ", ".join(sorted({trained_from(m) for m in ms})),
             "seeds": ", ".join(str(m.config.seed) for m in ms), "epochs": _range(len(m.history) for m in ms)}
            for v, ms in _by_system(models).items()]
    return pd.DataFrame(rows, columns=["system", "from", "seeds", "epochs"])


def option_text(name: str, value) -> str:
    """One option's value in words (:data:`NONE_MEANS`, :data:`VALUE_NAMES`, numbers by :func:`number`)."""
    if value is None:
        return NONE_MEANS.get(name, "default")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value)
    return VALUE_NAMES.get(value, str(value))


def options_table(models) -> tuple[pd.DataFrame, dict[str, str]]:
    """The objective options of each system's first model: a table with one row per option that
    differs between systems (``option`` in words, then one column per system; "–" where a
    system has no such option), and ``{option: value in words}`` of the options all share
    (none when there is one system: its options are all in the table)."""
    options = {get_variant(v).label: ms[0].config.objective_options for v, ms in _by_system(models).items()}
    names = list(dict.fromkeys(k for opts in options.values() for k in opts))
    shared = {k: option_text(k, next(iter(options.values()))[k]) for k in names if len(options) > 1
              and all(k in o for o in options.values()) and len({option_text(k, o[k]) for o in options.values()}) == 1}
    rows = [{"option": OPTION_NAMES.get(k, k), **{s: option_text(k, o[k]) if k in o else "–" for s, o in options.items()}}
            for k in names if k not in shared]
    return pd.DataFrame(rows, columns=["option", *options]), shared


def shared_options_text(shared: dict[str, str], n_systems: int) -> str:
    """The sentence that gives the options all ``n_systems`` systems share ("" for one system or none).

    >>> shared_options_text({"bands": "2"}, 3)
    'All 3 systems share patch grid: frequency bands = 2.'
    """
    if not shared or n_systems < 2:
        return ""
    return f"All {n_systems} systems share " + ", ".join(f"{OPTION_NAMES.get(k, k)} = {v}" for k, v in shared.items()) + "."
