"""Errors that tell the user what to fix.

Every error raised on bad input is one of these classes, and its message names the file,
parameter or value at fault and what was expected, so nobody has to read a stack trace
from deep inside pandas or torch.

Example:
    >>> from mer_lib.errors import check_positive
    >>> check_positive("epsilon", 0.001)
    0.001
    >>> check_positive("epsilon", 0.0)
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: epsilon must be a finite number > 0, got 0.0
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable


class MerError(Exception):
    """Base class of every error mer_lib raises on purpose."""


class DataLayoutError(MerError, ValueError):
    """A dataset folder, file, column or value does not have the expected layout."""


class ParameterError(MerError, ValueError):
    """A parameter (function argument, profile value, papermill parameter) is out of range."""


class CheckpointError(MerError, RuntimeError):
    """A stored model or result does not match the configuration that asked for it."""


class TrainingError(MerError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` if it is a finite number > 0 (or >= 0), else raise ParameterError."""
    ok = _is_number(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise ParameterError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ParameterError listing them."""
    choices = list(choices)
    if value not in choices:
        raise ParameterError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_seeds(seeds: Any, name: str = "seeds") -> list[int]:
    """Return ``seeds`` as a list if it is a non-empty list of distinct integers in [0, 2**32).

    >>> check_seeds((6, 21))
    [6, 21]
    """
    ok = (not isinstance(seeds, (str, bytes)) and isinstance(seeds, (list, tuple)) and seeds
          and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and 0 <= s < 2**32
                  for s in seeds)
          and len(set(seeds)) == len(seeds))
    if not ok:
        raise ParameterError(f"{name} must be a non-empty list of distinct integers in [0, 2**32), got {seeds!r}")
    return [int(s) for s in seeds]


def check_number_list(name: str, value: Any, *, allow_zero: bool = False) -> list[float]:
    """Return ``value`` as a list of finite positive numbers (papermill passes lists as such)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ParameterError(f"{name} must be a non-empty list of numbers, got {value!r}")
    return [check_positive(f"{name}[{i}]", v, allow_zero=allow_zero) for i, v in enumerate(value)]
