"""The paper's three claims, answered with the decision rules of :mod:`mer_lib.findings`.

:func:`paper_claims` takes any attack table's per-clip ΔMAE (:func:`mer_lib.findings.attack_clips`:
this run's or the paper's published logs) and, optionally, the models' recorded epoch times
(:func:`mer_lib.findings.cost_rows`), and says of each claim in :data:`CLAIMS` whether the
corrected intervals support it, contradict it, leave it unresolved, or cannot decide it.

Example:
    >>> from mer_lib.findings import attack_clips
    >>> from mer_lib.published import published_logs
    >>> logs = published_logs()
    >>> claims = paper_claims(attack_clips(logs), n_boot=2000)
    >>> claims.verdict.tolist()
    ['supported', 'partly supported', 'not computable']
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .findings import decide, fmt, interval_text, sentence
from .stats import N_BOOT

#: The relative half-width of "comparable" (paper_claims): A2M2E within ±25 % of aA2E's ΔMAE.
EQUIVALENCE_MARGIN = 0.25
CLAIMS = (
    "A2M2E is more robust than the black boxes A2E and A2B2E",
    "A2M2E is comparably robust to the adversarially trained aA2E and aA2B2E",
    "A2M2E gets there at a lower training cost than adversarial training",
)


def paper_claims(clips: pd.DataFrame, costs: pd.DataFrame | None = None, *, level: float = 0.95,
                 margin: float = EQUIVALENCE_MARGIN, seed: int = 0, n_boot: int = N_BOOT) -> pd.DataFrame:
    """The paper's three claims (:data:`CLAIMS`), decided on ``clips`` (:func:`attack_clips`, ΔMAE)
    and ``costs`` (:func:`model_rows` with ``epoch_seconds``; None: the cost claim is not computable).

    One family of comparisons (Bonferroni over all of them): A2M2E against A2E and A2B2E (claim 1:
    supported when both are resolved lower, contradicted when one is resolved higher); against aA2E
    and aA2B2E (claim 2, an equivalence question: *comparable* when the corrected interval of the
    difference lies within ±``margin`` × the adversarial system's mean ΔMAE, *not comparable* when it
    excludes 0 and leaves that band); A2M2E's epoch time against aA2E's (claim 3). Returns one row
    per claim: ``claim``, ``verdict`` and ``text`` (the evidence as a sentence), and the decisions
    in ``attrs["decisions"]``.
    """
    robust = [("A2M2E", "A2E"), ("A2M2E", "A2B2E")]
    adversarial = [("A2M2E", "aA2E"), ("A2M2E", "aA2B2E")]
    family = len(robust) + len(adversarial) + (costs is not None)
    dm = decide(clips, "delta_mae", robust + adversarial, level=level, family=family, seed=seed, n_boot=n_boot)
    parts = [dm]
    rows = []
    first = dm.iloc[:2]
    if (first.outcome == "not computable").all():
        v1 = "not computable"
    elif (first.better == False).any():       # noqa: E712  (None is neither)
        v1 = "contradicted"
    elif (first.better == True).all():        # noqa: E712
        v1 = "supported"
    elif (first.better == True).any():        # noqa: E712
        v1 = "partly supported"
    else:
        v1 = "unresolved"
    rows.append({"claim": CLAIMS[0], "verdict": v1, "text": " ".join(sentence(r) for _, r in first.iterrows())})
    texts, kinds = [], []
    for _, r in dm.iloc[2:].iterrows():
        band = margin * abs(r.mean_b) if np.isfinite(r.mean_b) else np.nan
        if r.outcome == "not computable":
            kinds.append("not computable")
            texts.append(sentence(r))
            continue
        within = -band <= r.low and r.high <= band
        kinds.append("comparable" if within else "different" if r.resolved else "unresolved")
        texts.append(f"A2M2E − {r.b} on ΔMAE: {interval_text(r)}; the band of comparability is ±{fmt(band)} "
                     f"(±{100 * margin:.0f} % of {r.b}'s mean ΔMAE), so "
                     + ("the two are comparable." if within else
                        f"A2M2E is {r.outcome} and they are not comparable." if r.resolved else
                        "the run can neither show them comparable nor different."))
    v2 = ("supported" if all(k == "comparable" for k in kinds) else
          "contradicted" if "different" in kinds else
          "not computable" if all(k == "not computable" for k in kinds) else
          "partly supported" if "comparable" in kinds else "unresolved")
    rows.append({"claim": CLAIMS[1], "verdict": v2, "text": " ".join(texts)})
    if costs is None:
        rows.append({"claim": CLAIMS[2], "verdict": "not computable",
                     "text": "These attack logs record no training time, so the cost claim cannot be checked on them."})
    else:
        dc = decide(costs, "epoch_seconds", [("A2M2E", "aA2E")], level=level, family=family, seed=seed,
                    n_boot=n_boot)
        parts.append(dc)
        r = dc.iloc[0]
        v3 = {"not computable": "not computable", "unresolved": "unresolved"}.get(
            r.outcome, "supported" if r.better else "contradicted")
        rows.append({"claim": CLAIMS[2], "verdict": v3,
                     "text": sentence(r) + (f" (A2M2E's epoch takes {fmt(r.ratio)} × aA2E's.)"
                                            if np.isfinite(r.ratio) else "")})
    out = pd.DataFrame(rows)
    out.attrs["decisions"] = pd.concat(parts, ignore_index=True)
    return out
