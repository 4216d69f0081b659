"""The book's headline comparisons, computed in one place for every page that states them.

The Explanations and Attributions chapters decide their comparisons here, and the front page and
the Conclusions chapter read the same decisions, so a verdict reads the same wherever it appears
(the bootstrap is seeded: the same tables give the same intervals).

- :func:`book_tables` gathers the stored tables of a run: the paper systems, the ExpO and RAR
  systems, the projected attack at the experiment's ε, the explanation and attribution tables.
- :func:`claims` decides the paper's three claims on the published logs and on this run.
- :func:`quality_decisions`, :func:`attribution_decisions`, :func:`robustness_decisions` and
  :func:`accuracy_decisions` decide every system against A2E on a chapter's metrics, each as one
  corrected family (:func:`mer_lib.findings.decide`).
- :func:`headlines` answers the extension questions (ExpO, RAR) in one table for the Conclusions.

Example:
    >>> import pandas as pd
    >>> rows = [{"variant": v, "seed": s, "example": str(c), "emotion": "tender", "nf": base + 0.01 * c,
    ...          "stability": 1.0 + 0.1 * s} for v, base in (("a2e", 1.0), ("expof_a2e", 0.5))
    ...         for s in (1, 2, 3) for c in range(4)]
    >>> clips, decisions = quality_decisions(pd.DataFrame(rows))
    >>> decisions[["a", "b", "metric", "outcome", "m"]].values.tolist()
    [['ExpO-F-A2E', 'A2E', 'nf', 'lower', 2], ['ExpO-F-A2E', 'A2E', 'stability', 'unresolved', 2]]
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from . import findings as F
from .claims import paper_claims
from .comparison import attack_tables, attribution_tables, explanation_tables, per_model, system_label
from .attributions.report import attribution_config
from .extensions import extension_models, quality_config
from .published import published_logs

#: The reference every extension comparison is made against.
REFERENCE = "A2E"


@dataclass
class BookTables:
    """Everything the headline comparisons need, as stored by the run (see :func:`book_tables`)."""

    paper: dict            # {(variant, seed): TrainedModel} of the paper systems
    expo: dict             # ... of the ExpO systems
    rar: dict              # ... of the RAR systems
    attacks: pd.DataFrame  # the projected attack at the experiment's epsilon, every model
    explanations: pd.DataFrame   # explanation tables of the paper and ExpO systems
    attributions: pd.DataFrame   # attribution tables of every system

    @property
    def models(self) -> dict:
        return {**self.paper, **self.expo, **self.rar}


def book_tables(runner) -> BookTables:
    """The run's stored tables of every system (each is computed first if it is missing)."""
    exp, data, dev = runner.exp, runner.data, runner.device
    paper = runner.models()
    expo = extension_models(runner)
    rar = extension_models(runner, tuple(exp.rar_variants))
    attack = exp.attack_config("projected", exp.epsilon)
    where = dict(split=exp.split, run_dir=runner.run_dir, device=dev)
    attacks = pd.concat([runner.attack_table(attack),
                         attack_tables([*expo.values(), *rar.values()], data, attack, **where)], ignore_index=True)
    explanations = explanation_tables([*paper.values(), *expo.values()], data, quality_config(exp), **where)
    attributions = attribution_tables([*paper.values(), *expo.values(), *rar.values()], data,
                                      attribution_config(exp), **where)
    return BookTables(paper, expo, rar, attacks, explanations, attributions)


def claims(runner, mode: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The paper's three claims on its published logs and on this run's ``mode`` attack (default:
    projected when the run has it): ``(published, this run, mode)``."""
    exp = runner.exp
    mode = mode or ("projected" if "projected" in exp.modes else exp.modes[0])
    logs = published_logs(exp.reference_logs)
    logs["variant"] = logs.variant.fillna(logs.run)
    published = paper_claims(F.attack_clips(logs))
    run = paper_claims(F.attack_clips(runner.attack_table(exp.attack_config(mode, exp.epsilon))),
                       F.cost_rows(runner.models()))
    return published, run, mode


def _against_reference(clips: pd.DataFrame, metrics: tuple[str, ...], family_metrics: int | None = None,
                       systems=None) -> pd.DataFrame:
    systems = list(dict.fromkeys(clips.system)) if systems is None else list(systems)
    pairs = [(s, REFERENCE) for s in systems if s != REFERENCE]
    if not pairs:
        return pd.DataFrame(columns=["a", "b", "metric", "outcome", "better", "m"])
    family = (family_metrics or len(metrics)) * len(pairs)
    return pd.concat([F.decide(clips, m, pairs, family=family) for m in metrics], ignore_index=True)


def quality_decisions(explanations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every system against A2E on NF and S (per clip: the mean over emotions), one family:
    ``(per-clip table, decisions)``."""
    clips = F.quality_clips(explanations, ["nf", "stability"])
    return clips, _against_reference(clips, ("nf", "stability"))


def attribution_decisions(attributions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every system against A2E on top-k intersection and Kendall τ, one family."""
    clips = F.quality_clips(attributions, ["topk_intersection", "kendall_tau"])
    return clips, _against_reference(clips, ("topk_intersection", "kendall_tau"))


def robustness_decisions(attacks: pd.DataFrame, attributions: pd.DataFrame, systems=None) -> pd.DataFrame:
    """Every system against A2E on robust predictions (ΔMAE / MAE under the attack) and robust
    attributions (Kendall τ), one family of both: the Attributions chapter's grand comparison."""
    adv = F.attack_clips(attacks)
    attr = F.quality_clips(attributions, ["kendall_tau"])
    systems = list(dict.fromkeys(adv.system)) if systems is None else list(systems)
    return pd.concat([_against_reference(adv, ("rel_delta_mae",), 2, systems),
                      _against_reference(attr, ("kendall_tau",), 2, systems)], ignore_index=True)


def accuracy_decisions(models: dict, data, split: str = "test", systems=None) -> pd.DataFrame:
    """Every system against A2E on clean avg r, the seeds as the unit (one value per model)."""
    rows = F.model_rows(per_model(models, data, split=split), ["avg_r"])
    return _against_reference(rows, ("avg_r",), systems=systems)


def headlines(tables: BookTables, data, split: str = "test") -> pd.DataFrame:
    """The extension questions answered: one row per (question, system) with ``question``,
    ``system``, ``answer`` (the decision in words, with its corrected interval), ``outcome`` and
    ``better``. NF and S use the Explanations chapter's family, robustness of predictions and of
    attributions the Attributions chapter's grand comparison, avg r one family of its own."""
    _, quality = quality_decisions(tables.explanations)
    robust = robustness_decisions(tables.attacks, tables.attributions,
                                  [system_label(v) for v in dict.fromkeys(v for v, _ in tables.models)])
    accuracy = accuracy_decisions(tables.models, data, split)
    expo = [system_label(v) for v in dict.fromkeys(v for v, _ in tables.expo)]
    rar = [system_label(v) for v in dict.fromkeys(v for v, _ in tables.rar)]
    asks = [("Are the explanations more faithful (NF) than A2E's?", expo, quality, "nf"),
            ("Are the explanations more stable (S) than A2E's?", expo, quality, "stability"),
            ("Are the attributions more robust (Kendall τ) than A2E's?", rar + expo, robust, "kendall_tau"),
            ("Are the predictions more robust (ΔMAE / MAE) than A2E's?", expo + rar, robust, "rel_delta_mae"),
            ("Is the clean accuracy (avg r) different from A2E's?", expo + rar, accuracy, "avg_r")]
    rows = []
    for question, systems, decisions, metric in asks:
        for s in systems:
            row = F.pick(decisions, s, REFERENCE, metric)
            rows.append({"question": question, "system": s, "answer": F.word(row), "outcome": row["outcome"],
                         "better": row["better"]})
    return pd.DataFrame(rows)


def adversarial_training_decisions(attacks: pd.DataFrame) -> pd.DataFrame:
    """Did adversarial training work in this run? aA2E against A2E and aA2B2E against A2B2E on
    ΔMAE under the attack, one family (empty when the run lacks the systems)."""
    clips = F.attack_clips(attacks)
    pairs = [(a, b) for a, b in (("aA2E", "A2E"), ("aA2B2E", "A2B2E")) if {a, b} <= set(clips.system)]
    return F.decide(clips, "delta_mae", pairs) if pairs else pd.DataFrame(columns=["a", "b", "outcome", "better"])


def headline_summary(heads: pd.DataFrame) -> str:
    """:func:`headlines` in one paragraph: which systems are resolved on which side of A2E."""
    def listed(question, better):
        part = heads[(heads.question == question) & (heads.better == better)]
        return ", ".join(part.system) or "none"

    if not len(heads):
        return "This run has no ExpO or RAR systems, so it answers none of the extension questions."
    q_nf, q_s, q_tau, q_pred, q_r = list(dict.fromkeys(heads.question))
    return (f"Against A2E, with corrected intervals: more faithful explanations (NF) — {listed(q_nf, True)}; "
            f"more stable (S) — {listed(q_s, True)}; more robust attributions (Kendall τ) — {listed(q_tau, True)} "
            f"(less robust: {listed(q_tau, False)}); more robust predictions (ΔMAE / MAE) — {listed(q_pred, True)} "
            f"(less robust: {listed(q_pred, False)}); less accurate (avg r) — {listed(q_r, False)}. A system not "
            f"named on a side is not resolved there: not shown to be equal, only not shown to differ.")
