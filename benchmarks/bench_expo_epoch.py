"""ExpO epoch cost: one training epoch of ExpO-Fidelity / ExpO-Stability vs a plain epoch, same run.

Trains one epoch of ``a2e``, ``expof_a2e`` and ``expos_a2e`` with the trainer, at the quick
profile's size (width 0.125, 4-s excerpts = 126 x 149, batch 8, 576 training clips of random
data: the cost does not depend on the values; the profile's memory layout) and its ExpO settings
(:func:`mer_lib.extensions.expo_options`), and reports seconds per epoch and the ratios.
Target: ExpO-Fidelity <= 3x a plain epoch at quick size on CPU.

    python benchmarks/bench_expo_epoch.py [--profile quick] [--clips 720] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from mer_lib.data import MerTensors, split_indices
from mer_lib.experiments import Experiment
from mer_lib.extensions import expo_options
from mer_lib.training import TrainConfig, train


def random_data(n: int, frames: int) -> MerTensors:
    g = torch.Generator().manual_seed(0)
    return MerTensors(x=torch.randn(n, 1, frames, 149, generator=g), emotions=torch.rand(n, 8, generator=g),
                      midlevel=torch.rand(n, 7, generator=g), split=split_indices(n),
                      ids=[str(i) for i in range(n)], mean=0.0, std=1.0, identity="bench-expo")


def epoch_seconds(config: TrainConfig, data: MerTensors) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        tm = train(config, data, run_dir, progress=False, device="cpu")
        total = time.perf_counter() - t0
    return float(tm.history.seconds.iloc[0]) if len(tm.history) else total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--clips", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    exp = Experiment.from_parameters(profile=args.profile, device="cpu")
    data = random_data(args.clips, exp.profile_spec.excerpt_frames)
    base = dict(seed=6, width=exp.width, epochs=1, batch_size=exp.batch_size, lr=exp.lr,
                channels_last=exp.profile_spec.channels_last)      # as the profile trains
    configs = {"plain": TrainConfig("a2e", **base),
               "expo_fidelity": TrainConfig("expof_a2e", **base, objective_options=expo_options(exp)),
               "expo_stability": TrainConfig("expos_a2e", **base, objective_options=expo_options(exp))}
    epoch_seconds(configs["plain"], data)                           # warm-up (oneDNN primitives)
    runs: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):                                   # interleaved: drift hits all alike
        for name, cfg in configs.items():
            runs[name].append(epoch_seconds(cfg, data))
    seconds = {name: min(v) for name, v in runs.items()}
    result = {"benchmark": "ExpO epoch cost vs a plain epoch (same run)", "device": "cpu",
              "machine": platform.machine(), "threads": torch.get_num_threads(), "profile": args.profile,
              "train_clips": len(data.split["train"]), "expo_options": expo_options(exp),
              "channels_last": exp.profile_spec.channels_last, "seconds_per_epoch": seconds, "runs": runs,
              "ratio": {k: v / seconds["plain"] for k, v in seconds.items() if k != "plain"},
              "target_fidelity_ratio": 3.0}
    out = Path(__file__).parent / "results" / "expo_epoch.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for name, secs in seconds.items():
        print(f"{name:16s} {secs:6.2f} s/epoch  {secs / seconds['plain']:5.2f}x")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
