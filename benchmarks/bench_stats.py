"""Cost of the paired hierarchical bootstrap for every comparison a full book makes.

Synthetic tidy tables (columns ``system``, ``seed``, ``clip`` and one column per metric, one
row per system, seed and clip) the size of a full quick book, and of the published-logs
chapter:

- **quick book**: 9 systems x 3 seeds x ``--clips`` test clips (default 110), the per-clip
  metrics ``delta_mae``, ``mae_final``, ``snr_db``, ``topk_intersection``, ``kendall_tau``,
  ``nf``, ``stability`` and ``clean_mae``; 8 comparisons per metric (each system but the
  reference against the reference, A2E): 64 comparisons;
- **published logs**: 5 systems x 10 seeds x 36 clips, 2 comparisons x 2 metrics (``delta_mae``,
  ``mae_final``): 4 comparisons.

Each comparison is timed two ways in the same run, the two alternating ``--repeats`` times
(the fastest repeat is reported, as ``timeit`` does; the median too):

- ``paired_difference``: :func:`mer_lib.stats.paired_difference` at ``--n-boot`` resamples
  (default :data:`mer_lib.stats.N_BOOT`, what the book uses);
- ``baseline``: what the book did before, on the same table: the two systems' rows aligned
  on (seed, clip), their plain means and :func:`scipy.stats.ttest_rel` over the pairs.

Reported: total seconds of each, the ratio paired / baseline, the seconds per comparison,
and whether the target (``paired_difference`` for all comparisons in under 30 s on 2 cores)
is met. Results go to ``benchmarks/results/stats.json``.

Examples::

    python benchmarks/bench_stats.py                     # default n_boot, 1 repeat
    python benchmarks/bench_stats.py --repeats 3 --n-boot 2000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
from scipy import stats

from mer_lib.stats import N_BOOT, paired_difference

RESULTS = Path(__file__).resolve().parent / "results" / "stats.json"
TARGET_SECONDS = 30.0
QUICK_SYSTEMS = ["a2e", "a2m2e", "aa2e", "aa2m2e", "expof_a2e", "expos_a2e", "rar_a2e", "rar_sum_a2e", "a2e_tuned"]
#: metric: (mean, seed sd, clip sd, noise sd, higher is better, clipped to)
METRICS = {
    "delta_mae": (0.15, 0.03, 0.05, 0.02, False, (0.0, None)),
    "mae_final": (0.30, 0.03, 0.08, 0.02, False, (0.0, None)),
    "snr_db": (35.0, 1.0, 4.0, 1.0, True, (None, None)),
    "topk_intersection": (0.6, 0.05, 0.15, 0.05, True, (0.0, 1.0)),
    "kendall_tau": (0.4, 0.05, 0.2, 0.05, True, (-1.0, 1.0)),
    "nf": (0.5, 0.1, 0.2, 0.05, False, (0.0, None)),
    "stability": (2.0, 0.3, 0.8, 0.2, False, (0.0, None)),
    "clean_mae": (0.15, 0.01, 0.05, 0.01, False, (0.0, None)),
}
PUBLISHED_SYSTEMS = ["a2e", "a2m2e", "aa2e", "aa2m2e", "a2e_small"]
PUBLISHED_METRICS = ["delta_mae", "mae_final"]
PUBLISHED_COMPARISONS = [("aa2e", "a2e"), ("aa2m2e", "a2m2e")]


def synthetic_table(systems: list[str], n_seeds: int, n_clips: int, metrics: list[str], rng) -> pd.DataFrame:
    """Hierarchical values: metric mean + system shift + seed effect + clip effect (shared) + noise."""
    seeds = np.arange(1, n_seeds + 1)
    s, c = np.repeat(seeds, n_clips), np.tile(np.arange(n_clips), n_seeds)
    frames = []
    clip_effects = {m: rng.normal(0, METRICS[m][2], n_clips) for m in metrics}
    for system in systems:
        cols = {"system": system, "seed": s, "clip": c}
        for m in metrics:
            mean, sd_seed, _, sd_noise, _, (lo, hi) = METRICS[m]
            shift = rng.normal(0, 2 * sd_seed)
            v = (mean + shift + np.repeat(rng.normal(0, sd_seed, n_seeds), n_clips) + np.tile(clip_effects[m], n_seeds)
                 + rng.normal(0, sd_noise, s.size))
            cols[m] = np.clip(v, lo, hi)
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def baseline(table: pd.DataFrame, metric: str, a: str, b: str) -> tuple[float, float, float, float]:
    """The book before: rows aligned on (seed, clip), plain means and a paired t-test over the pairs."""
    pa = table.loc[table.system == a, ["seed", "clip", metric]].set_index(["seed", "clip"])[metric].sort_index()
    pb = table.loc[table.system == b, ["seed", "clip", metric]].set_index(["seed", "clip"])[metric]
    pb = pb.loc[pa.index]
    res = stats.ttest_rel(pa.to_numpy(), pb.to_numpy())
    return float(pa.mean()), float(pb.mean()), float(res.statistic), float(res.pvalue)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples per comparison")
    parser.add_argument("--clips", type=int, default=110, help="test clips per seed in the quick-book tables")
    parser.add_argument("--seeds", type=int, default=3, help="seeds in the quick-book tables")
    parser.add_argument("--repeats", type=int, default=1, help="alternating timed repeats of all comparisons")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    quick = synthetic_table(QUICK_SYSTEMS, args.seeds, args.clips, list(METRICS), rng)
    published = synthetic_table(PUBLISHED_SYSTEMS, 10, 36, PUBLISHED_METRICS, rng)
    ref = QUICK_SYSTEMS[0]
    jobs = [("quick", quick, m, s, ref) for m in METRICS for s in QUICK_SYSTEMS[1:]]
    jobs += [("published", published, m, a, b) for m in PUBLISHED_METRICS for a, b in PUBLISHED_COMPARISONS]

    def run_paired() -> dict[str, float]:
        spent = {"quick": 0.0, "published": 0.0}
        for case, table, metric, a, b in jobs:
            t0 = time.perf_counter()
            d = paired_difference(table, metric, a, b, n_boot=args.n_boot, higher_is_better=METRICS[metric][4])
            spent[case] += time.perf_counter() - t0
            assert d.computable, d.reason
        return spent

    def run_baseline() -> dict[str, float]:
        spent = {"quick": 0.0, "published": 0.0}
        for case, table, metric, a, b in jobs:
            t0 = time.perf_counter()
            baseline(table, metric, a, b)
            spent[case] += time.perf_counter() - t0
        return spent

    run_baseline()                                              # warm-up (imports, caches)
    paired_difference(quick, "delta_mae", QUICK_SYSTEMS[1], ref, n_boot=100)
    paired_runs, base_runs = [], []
    for _ in range(args.repeats):
        paired_runs.append(run_paired())
        base_runs.append(run_baseline())

    def best(runs):
        i = min(range(len(runs)), key=lambda k: sum(runs[k].values()))
        return runs[i]

    paired, base = best(paired_runs), best(base_runs)
    total_p, total_b = sum(paired.values()), sum(base.values())
    counts = {case: sum(j[0] == case for j in jobs) for case in ("quick", "published")}
    result = {
        "benchmark": "paired hierarchical bootstrap (paired_difference) for a full book's comparisons vs "
                     "plain means + ttest_rel",
        "device": f"cpu ({platform.processor() or platform.machine()})", "cpu_count": os.cpu_count(),
        "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
        "n_boot": args.n_boot, "repeats": args.repeats,
        "tables": {"quick": {"systems": len(QUICK_SYSTEMS), "seeds": args.seeds, "clips": args.clips,
                             "metrics": list(METRICS), "rows": len(quick)},
                   "published": {"systems": len(PUBLISHED_SYSTEMS), "seeds": 10, "clips": 36,
                                 "metrics": PUBLISHED_METRICS, "rows": len(published)}},
        "comparisons": counts,
        "paired_seconds": paired, "paired_seconds_total": total_p,
        "paired_seconds_total_median": statistics.median(sum(r.values()) for r in paired_runs),
        "paired_seconds_per_comparison": {k: paired[k] / counts[k] for k in counts},
        "baseline_seconds": base, "baseline_seconds_total": total_b,
        "ratio_vs_baseline": total_p / total_b,
        "target": f"paired_difference for all comparisons: total < {TARGET_SECONDS:g} s on 2 cores",
        "target_met": total_p < TARGET_SECONDS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['device']}, {os.cpu_count()} cores, n_boot {args.n_boot}, {len(jobs)} comparisons "
          f"({counts['quick']} quick book: {len(QUICK_SYSTEMS)} systems x {args.seeds} seeds x {args.clips} clips; "
          f"{counts['published']} published logs: 5 x 10 x 36)")
    for case in counts:
        print(f"  {case:<10} paired_difference {paired[case]:8.2f} s ({paired[case] / counts[case] * 1e3:7.1f} ms each)"
              f"   baseline {base[case] * 1e3:8.1f} ms")
    print(f"  total      paired_difference {total_p:8.2f} s   baseline {total_b:8.3f} s   "
          f"ratio {result['ratio_vs_baseline']:.0f}x")
    print(f"  target: {result['target']}: {'met' if result['target_met'] else 'NOT met'}")
    print(f"  -> {args.out}")
    return result


if __name__ == "__main__":
    main()
