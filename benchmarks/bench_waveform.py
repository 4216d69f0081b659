"""Waveform attack vs. spectrogram attack of the same iterations on the same clips.

Usage::

    python benchmarks/bench_waveform.py [--device cpu|cuda] [--examples N] [--frames T]
                                        [--width W] [--iterations K] [--repeats R] [--threads P]

Both attacks run on the same model (``build_model("a2e", width)`` in eval mode) and the same
random broadband "audio" excerpts of ``--frames`` frames, early stopping off, so each makes
exactly ``K + 1`` forward and ``K`` backward passes per clip:

- **spectrogram**: :func:`mer_lib.attacks.attack` (projected L-inf) on the model inputs the
  excerpts give;
- **waveform**: :func:`mer_lib.attacks.waveform.wave_attack` (SNR budget 40 dB) on the audio
  itself, the front end's forward and backward passes included.

The ratio waveform / spectrogram is the target (<= 3x; the front end's FFTs are a fixed cost
per clip, so the ratio is largest for the narrowest model). Times are the minimum (and the
median) of ``--repeats`` interleaved runs. The run keeps large buffers in the process, as the
project's runs do (:mod:`mer_lib.allocator`); ``--default-allocator`` measures glibc's defaults.
Measured on 2 CPU cores (2026-12-03, afternoon), ratio of the minima: 2.63x and 2.73x at width
0.125 in two runs (2.46x and 2.71x of the medians), 3.40x and 3.70x with glibc's defaults;
1.07-1.09x at width 1. Before the blocked filterbank product, the per-row overlap-add and the
allocator setting the same machine measured 3.6-4.2x at width 0.125. Defaults: the CPU at
the ``quick`` size (width 0.125, 126 frames, 16 clips, 8 iterations) and the paper's width 1.0
as a second row; on CUDA the paper size (313 frames). Writes ``benchmarks/results/waveform.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from mer_lib.allocator import keep_large_buffers
from mer_lib.attacks import AttackConfig, attack
from mer_lib.attacks.wave_config import WaveAttackConfig
from mer_lib.attacks.waveform import WaveformInput, wave_attack
from mer_lib.models import build_model
from mer_lib.wave_excerpts import WaveExcerpts, excerpt_span

RESULTS = Path(__file__).resolve().parent / "results"


def excerpts(n: int, frames: int, device: torch.device) -> WaveExcerpts:
    """``n`` random broadband excerpts of ``frames`` frames (peak about 1)."""
    first, stop, offsets = excerpt_span(3, frames)
    waves = 0.25 * torch.randn(n, stop - first, generator=torch.Generator().manual_seed(0))
    return WaveExcerpts(waves=waves.to(device), frame_starts=torch.from_numpy(offsets).repeat(n, 1).to(device),
                        in_clip=torch.ones_like(waves, dtype=torch.bool, device=device),
                        peak_outside=torch.ones(n, device=device), rows=None, ids=[str(i) for i in range(n)])


def measure(width: float, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = build_model("a2e", width=width).to(device).eval()
    ex = excerpts(args.examples, args.frames, device)
    y = torch.rand(args.examples, 8, device=device)
    with torch.no_grad():
        x = WaveformInput(0.5, 0.3).to(device)(ex.waves, ex.frame_starts)
    spec_cfg = AttackConfig(epsilon=0.01, step_size=0.002, max_iterations=args.iterations, early_stop=False)
    wave_cfg = WaveAttackConfig(snr_db=40.0, max_iterations=args.iterations, early_stop=False)

    def run_spec():
        attack(model, x, y, spec_cfg)

    def run_wave():
        wave_attack(model, ex, y, wave_cfg, mean=0.5, std=0.3)

    times = {"spectrogram": [], "waveform": []}
    run_spec(), run_wave()                                   # warm-up
    for _ in range(args.repeats):
        for name, fn in (("spectrogram", run_spec), ("waveform", run_wave)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"width": width, "spectrogram_s": best["spectrogram"], "waveform_s": best["waveform"],
            "ratio": best["waveform"] / best["spectrogram"],
            "median_ratio": median["waveform"] / median["spectrogram"], "target": 3.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--width", type=float, action="append", default=None)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--default-allocator", action="store_true",
                        help="keep glibc's malloc defaults (the project's runs keep large buffers)")
    args = parser.parse_args()
    tuned = False if args.default_allocator else keep_large_buffers()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.frames is None:
        args.frames = 313 if device.type == "cuda" else 126
    widths = args.width or ([1.0] if device.type == "cuda" else [0.125, 1.0])
    rows = [measure(w, args, device) for w in widths]
    for r in rows:
        print(f"width {r['width']:g}: spectrogram {r['spectrogram_s']:.3f} s, waveform {r['waveform_s']:.3f} s, "
              f"ratio {r['ratio']:.2f}x of the minima, {r['median_ratio']:.2f}x of the medians "
              f"(target <= {r['target']:g}x)")
    RESULTS.mkdir(exist_ok=True)
    print(f"allocator: {'kept large buffers (mer_lib.allocator)' if tuned else 'glibc defaults'}")
    out = {"device": str(device), "machine": platform.machine(), "threads": torch.get_num_threads(),
           "large_buffers_kept": tuned,
           "examples": args.examples, "frames": args.frames, "iterations": args.iterations, "rows": rows}
    (RESULTS / "waveform.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
