"""Throughput of the batched torch front end vs. a numpy / librosa baseline.

Usage::

    python benchmarks/bench_frontend.py [--clips 32] [--seconds 10] [--device cpu|cuda]
                                        [--repeats 5] [--threads N]

Measures the real-time factor (seconds of audio processed per second of wall time) of
``mer_lib.frontend.LogFiltSpec`` on a batch of ``--clips`` clips of ``--seconds`` seconds,
with torch using as many threads as there are cores, and of two CPU baselines computing
the same thing clip by clip:

* ``numpy``: the same madmom frames (fractional hop) gathered with numpy, symmetric Hann
  window, ``np.fft.rfft``, filterbank matmul, ``log10(1 + x)``;
* ``librosa``: ``librosa.stft`` (``center=False``, integer hop 704, the same window) plus the
  same filterbank matmul and log -- librosa cannot do the fractional hop, so its frames are
  slightly different.

One warm-up run, then the median of ``--repeats`` timed runs. Prints a table and writes it
as JSON to ``benchmarks/results/frontend.json``. Without ``--device`` it runs on the CPU and,
if ``torch.cuda.is_available()``, on CUDA as well.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mer_lib import frontend as F

RESULTS = Path(__file__).resolve().parent / "results" / "frontend.json"


def _median_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def numpy_logfilt(x: np.ndarray, fb: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Baseline: one clip with numpy framing (madmom frames) + ``np.fft.rfft``."""
    n = F.n_frames(len(x))
    starts = F.frame_starts(n)
    padded = np.zeros(int(starts[-1]) + F.FRAME_SIZE, dtype=np.float32)
    padded[:len(x)] = x
    frames = padded[starts[:, None] + np.arange(F.FRAME_SIZE)[None, :]] * window
    mag = np.abs(np.fft.rfft(frames, axis=-1)[:, :F.N_BINS]).astype(np.float32)
    return np.log10(1.0 + mag @ fb)


def librosa_logfilt(x: np.ndarray, fb: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Baseline: one clip with ``librosa.stft`` (integer hop 704, no centring)."""
    import librosa

    stft = librosa.stft(x, n_fft=F.FRAME_SIZE, hop_length=int(F.HOP), window=window,
                        center=False)
    mag = np.abs(stft[:F.N_BINS]).T
    return np.log10(1.0 + mag @ fb)


def run(clips: int, seconds: float, devices: list[str], repeats: int,
        threads: int | None = None) -> dict:
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    n = int(round(seconds * F.SAMPLE_RATE))
    audio_s = clips * n / F.SAMPLE_RATE
    rng = np.random.default_rng(0)
    waves = rng.standard_normal((clips, n)).astype(np.float32)
    waves /= np.abs(waves).max(axis=1, keepdims=True)
    fb = F.log_filterbank()
    window = np.hanning(F.FRAME_SIZE).astype(np.float32)

    rows = []
    base_np = _median_seconds(lambda: [numpy_logfilt(w, fb, window) for w in waves],
                              repeats, lambda: None)
    rows.append({"method": "numpy baseline (cpu, per clip)", "device": "cpu",
                 "seconds": base_np, "rtf": audio_s / base_np})
    try:
        base_lr = _median_seconds(lambda: [librosa_logfilt(w, fb, window) for w in waves],
                                  repeats, lambda: None)
        rows.append({"method": "librosa.stft baseline (cpu, per clip)", "device": "cpu",
                     "seconds": base_lr, "rtf": audio_s / base_lr})
    except ImportError:
        pass

    check = numpy_logfilt(waves[0], fb, window)
    for dev in devices:
        fe = F.LogFiltSpec().to(dev)
        x = torch.from_numpy(waves).to(dev)
        sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
        with torch.no_grad():
            secs = _median_seconds(lambda: fe(x), repeats, sync)
            diff = float(np.abs(fe(x[:1])[0].cpu().numpy() - check).max())
        rows.append({"method": f"mer_lib LogFiltSpec (batched, {dev})", "device": dev,
                     "seconds": secs, "rtf": audio_s / secs, "max_abs_diff_vs_numpy": diff})
    for row in rows:
        row["speedup_vs_numpy"] = row["rtf"] / rows[0]["rtf"]
    return {
        "clips": clips, "seconds_per_clip": seconds, "audio_seconds": audio_s,
        "repeats": repeats, "torch_threads": threads, "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "numpy": np.__version__, "machine": platform.platform(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="default: cpu, plus cuda when available")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: number of cores)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.clips < 1 or args.seconds <= 0 or args.repeats < 1:
        parser.error("--clips and --repeats must be >= 1 and --seconds > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but torch.cuda.is_available() is False")
    devices = [args.device] if args.device else (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    result = run(args.clips, args.seconds, devices, args.repeats, args.threads)
    print(f"{result['clips']} clips x {result['seconds_per_clip']:g} s, "
          f"torch threads = {result['torch_threads']}, median of {result['repeats']}")
    print(f"{'method':<42} {'time [s]':>9} {'x real time':>12} {'vs numpy':>9}")
    for row in result["rows"]:
        print(f"{row['method']:<42} {row['seconds']:>9.3f} {row['rtf']:>12.0f} "
              f"{row['speedup_vs_numpy']:>8.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return result


if __name__ == "__main__":
    main()
