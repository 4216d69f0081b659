"""The experiment grid through Ray vs. the in-process engine, on the same machine.

Usage::

    python benchmarks/bench_runner.py [--profile smoke|quick] [--variants a2e,a2m2e] [--seeds 6,21]
                                      [--epochs N] [--max-iterations K] [--cpus N]

Both engines run the same grid (:class:`mer_lib.experiments.Experiment` from the options)
from an empty store, on the same data (loaded once, before the clocks start):

- **in-process**: :meth:`mer_lib.runner.Runner.run` executes the jobs one after the other
  in this process (torch uses every core inside each job);
- **Ray**: a local Ray instance with ``--cpus`` CPUs (default: all cores) runs one task per
  job (one core each), attacks after their models (:mod:`mer_lib.ray_engine`).

Each engine runs ``--repeats`` times (alternating order, each from an empty store; the best
time counts, which drops one-time warm-up costs). Reported: both wall times, the overhead ratio ``ray / in-process`` (target <= 1.15 on 2
cores), once for the run alone (Ray already started, as on a cluster) and once including
``ray.init`` (what one ``python -m mer_lib run --engine ray`` pays on a fresh machine), and
the load average before and after, since other processes on a shared machine distort both.
Writes ``benchmarks/results/runner.json`` (``runner_<profile>.json`` for a non-default profile).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from mer_lib.experiments import Experiment
from mer_lib.params import parse_cli_list
from mer_lib.runner import Runner

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 1.15


def _experiment(args) -> Experiment:
    params = {"profile": args.profile, "device": "cpu"}
    for name in ("variants", "seeds", "modes", "epsilons"):
        value = getattr(args, name)
        if value:
            params[name] = parse_cli_list(value)
    for name in ("epochs", "max_iterations"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    return Experiment.from_parameters(**params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke", choices=["smoke", "quick"])
    parser.add_argument("--variants", default=None, help="comma-separated (default: all five)")
    parser.add_argument("--seeds", default=None, help="comma-separated (default: the profile's)")
    parser.add_argument("--modes", default=None, help="comma-separated (default: reference,projected)")
    parser.add_argument("--epsilons", default=None, help="comma-separated sweep (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="Ray's CPUs (default: all cores)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the in-process engine (default: torch's, i.e. all cores)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per engine, alternating (default 2)")
    args = parser.parse_args()
    import ray

    exp = _experiment(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet = dict(log=lambda message: None)
    with tempfile.TemporaryDirectory() as tmp:
        data = Runner(exp, Path(tmp) / "data", **quiet).data
        n_jobs = len(exp.models()) * (1 + len(exp.attack_grid()))
        print(f"{exp.describe()}\n{n_jobs} jobs, {os.cpu_count()} cores, torch threads "
              f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}", flush=True)
        load_before = os.getloadavg()

        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        startup = time.perf_counter() - t0
        times: dict[str, list[float]] = {"inprocess": [], "ray": []}
        try:
            for repeat in range(args.repeats):      # alternating order, each from an empty store
                order = ("inprocess", "ray") if repeat % 2 == 0 else ("ray", "inprocess")
                for engine in order:
                    t0 = time.perf_counter()
                    Runner(exp, Path(tmp) / f"{engine}{repeat}", data=data, **quiet).run(engine)
                    times[engine].append(time.perf_counter() - t0)
                    print(f"  repeat {repeat + 1}: {engine} {times[engine][-1]:.1f} s", flush=True)
        finally:
            ray.shutdown()
        inprocess, on_ray = min(times["inprocess"]), min(times["ray"])
        print(f"in-process: {inprocess:.1f} s, ray: {on_ray:.1f} s (best of {args.repeats}); "
              f"ray.init {startup:.1f} s", flush=True)
        load_after = os.getloadavg()

    ratio, ratio_init = on_ray / inprocess, (on_ray + startup) / inprocess
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"overhead ratio ray / in-process: {ratio:.2f}x ({ratio_init:.2f}x with ray.init); "
          f"{verdict} the {TARGET}x target")
    out = {
        "benchmark": "runner", "experiment": exp.to_dict(), "jobs": n_jobs,
        "inprocess_s": inprocess, "ray_s": on_ray, "ray_init_s": startup, "runs_s": times,
        "ratio": ratio, "ratio_with_init": ratio_init, "target": TARGET, "meets_target": ratio <= TARGET,
        "ray_cpus": args.cpus, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_before": load_before, "load_after": load_after,
        "machine": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "ray": ray.__version__,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "runner.json" if args.profile == "smoke" else f"runner_{args.profile}.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
