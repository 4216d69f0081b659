"""Reader for the reference implementation's attack logs (the paper's are shipped: :mod:`mer_lib.published`).

The reference repository stores one folder per attacked model,
``runs/adversaries/<seed>_<hash>_<date>_..._test/log.csv``, with the columns
``file, epoch, db, norm, converged, true-label, orig-pred, new-pred, adv-target``.
``file`` is a printed Python list (``['146.mp3.spec']``); the three array columns are
numpy's printed form of a (1, 8) array (``[[0.26 0.48 ...]]``), wrapped over several lines
(and then quoted) when longer than 75 characters, sometimes in scientific notation;
``adv-target`` is the ladder threshold when the attack stopped (empty when it was 0.0).

:func:`read_reference_log` turns one log into the tidy table of
:meth:`mer_lib.attacks.AttackResult.to_frame`, with the same meaning per column, as far as
the log has the information:

- ``example`` (file name up to the first dot), ``file``;
- ``forward_passes`` = ``epoch`` (the original counted forward passes) and
  ``iterations = epoch - 1``, the step count of the last perturbation evaluated — the same
  two columns, with the same meaning, as in this library's tables (both modes);
- ``converged``, ``threshold`` (= ``adv-target``, NaN where empty: 0.0 or unset);
- ``snr_db`` (= ``db``, the reference's mel-inversion estimate, not comparable with
  :func:`~mer_lib.attacks.spectrogram_snr_db`), ``l2`` (= ``norm``), both of the *kept*
  perturbation as here; ``linf`` is not logged (NaN);
- ``final_<e>``, ``mae_final``, ``r_final`` from ``new-pred``: the prediction of the
  original's *last* perturbation (from which the paper computed its adversarial MAE);
- ``adv_<e>``, ``mae_adv``, ``r_adv``: the kept perturbation's prediction was not logged,
  so these are NaN;
- ``true_<e>``, ``clean_<e>``, ``mae_clean``, ``r_clean`` from ``true-label``/``orig-pred``.

Example:
    >>> from mer_lib.attacks.reference_logs import parse_array
    >>> parse_array("[[ 0.5  -1.2e-03\\n   7.  ]]").tolist()
    [0.5, -0.0012, 7.0]
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..datasets import EMOTIONS
from ..errors import DataLayoutError
from .ladder import pearson_rows

COLUMNS = ("file", "epoch", "db", "norm", "converged", "true-label", "orig-pred",
           "new-pred", "adv-target")
ARRAY_COLUMNS = {"true-label": "true", "orig-pred": "clean", "new-pred": "adv"}


def parse_array(text: str) -> np.ndarray:
    """Parse numpy's printed form of an array (brackets, any whitespace) into a flat array.

    Raises ValueError for summarised arrays (``...``), unbalanced brackets or non-numbers.
    """
    s = str(text).strip()
    if "..." in s:
        raise ValueError("the array was printed in summarised form ('...')")
    if not s.startswith("[") or not s.endswith("]") or s.count("[") != s.count("]"):
        raise ValueError("expected a bracketed array like '[[0.1 0.2 ...]]'")
    tokens = s.replace("[", " ").replace("]", " ").replace(",", " ").split()
    if not tokens:
        raise ValueError("the array is empty")
    try:
        return np.array([float(t) for t in tokens], dtype=float)
    except ValueError as err:
        raise ValueError(f"not a number in the array: {err}") from None


def _parse_file(text: str) -> str:
    s = str(text).strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1].strip()
    s = s.strip("'\"")
    if not s:
        raise ValueError("empty file name")
    return s


def _parse_bool(text: str) -> bool:
    s = str(text).strip().lower()
    if s not in ("true", "false"):
        raise ValueError("expected True or False")
    return s == "true"


def _parse_epoch(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("expected the number of forward passes, an integer >= 1")
    return value


def _parse_optional_float(text: str) -> float:
    s = str(text).strip()
    return float("nan") if s in ("", "None", "nan") else float(s)


def read_reference_log(path: str | Path) -> pd.DataFrame:
    """Read one reference ``log.csv`` into the tidy attack table (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataLayoutError(f"reference attack log not found: {path} (expected a log.csv "
                              f"with columns {', '.join(COLUMNS)})")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataLayoutError(f"{path}: not a readable CSV file ({err})") from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DataLayoutError(f"{path}: missing column(s) {missing}; expected the columns "
                              f"{', '.join(COLUMNS)}, found {list(raw.columns)}")
    if raw.empty:
        raise DataLayoutError(f"{path}: the log has a header but no rows")

    parsers = {"file": _parse_file, "epoch": _parse_epoch, "db": float, "norm": float,
               "converged": _parse_bool, "adv-target": _parse_optional_float}
    records = []
    for row_number, row in enumerate(raw.itertuples(index=False), start=1):
        cells = dict(zip(raw.columns, row))
        rec = {}
        for column in COLUMNS:
            try:
                if column in ARRAY_COLUMNS:
                    values = parse_array(cells[column])
                    if values.size != len(EMOTIONS):
                        raise ValueError(f"expected {len(EMOTIONS)} values, got {values.size}")
                    rec[column] = values
                else:
                    rec[column] = parsers[column](cells[column])
            except ValueError as err:
                raise DataLayoutError(
                    f"{path}: data row {row_number}, column {column!r}: cannot read "
                    f"{cells[column]!r} ({err})") from None
        records.append(rec)

    arrays = {c: np.stack([r[c] for r in records]) for c in ARRAY_COLUMNS}
    true, clean, final = (arrays[c] for c in ARRAY_COLUMNS)
    kept = np.full_like(final, np.nan)               # the kept perturbation's prediction: not logged
    files = [r["file"] for r in records]
    passes = np.array([r["epoch"] for r in records], dtype=np.int64)
    nan = np.full(len(records), np.nan)
    cols: dict[str, object] = {
        "example": [f.split(".")[0] for f in files],
        "file": files,
        "iterations": passes - 1,
        "forward_passes": passes,
        "converged": np.array([r["converged"] for r in records], dtype=bool),
        "threshold": np.array([r["adv-target"] for r in records]),
        "snr_db": np.array([r["db"] for r in records]),
        "l2": np.array([r["norm"] for r in records]),
        "linf": nan,
        "mae_clean": np.abs(clean - true).mean(axis=1),
        "mae_adv": nan.copy(),
        "mae_final": np.abs(final - true).mean(axis=1),
        "r_clean": pearson_rows(_t(clean), _t(true)).numpy(),
        "r_adv": nan.copy(),
        "r_final": pearson_rows(_t(final), _t(true)).numpy(),
    }
    for prefix, values in (("true", true), ("clean", clean), ("adv", kept), ("final", final)):
        for j, emotion in enumerate(EMOTIONS):
            cols[f"{prefix}_{emotion}"] = values[:, j]
    return pd.DataFrame(cols)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def read_reference_logs(folder: str | Path) -> pd.DataFrame:
    """Read every ``<folder>/<seed>_<hash>_.../log.csv``; adds columns ``run`` and ``seed``."""
    folder = Path(folder)
    logs = sorted(folder.glob("*/log.csv"))
    if not logs:
        raise DataLayoutError(
            f"no reference attack logs under {folder}: expected sub-folders named "
            f"'<seed>_<hash>_...' each holding a log.csv")
    frames = []
    for log in logs:
        run = log.parent.name
        match = re.match(r"(\d+)_", run)
        if not match:
            raise DataLayoutError(f"{log}: the folder name {run!r} does not start with "
                                  f"'<seed>_' (e.g. '6_7470d_...')")
        frame = read_reference_log(log)
        frame.insert(0, "seed", int(match.group(1)))
        frame.insert(0, "run", run)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
