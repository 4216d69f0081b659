"""Parameters as they arrive from papermill, the book driver and the command line.

Papermill's ``-p NAME VALUE`` converts only ``True``/``False``/``None``/ints/floats; a list
such as ``-p epsilons "[0.0005, 0.002]"`` reaches the chapter as the *string*
``"[0.0005, 0.002]"``, while ``-y "epsilons: [0.0005, 0.002]"`` (YAML) delivers a real list.
:func:`parse_value` accepts both: a string given for a parameter that is not itself a string
is read as a Python literal with :func:`ast.literal_eval` (safe: no names, calls or
attribute access are evaluated), and anything that is not a literal is a one-line
:class:`~mer_lib.errors.ParameterError` naming the parameter and the expected form.

The command line also takes comma-separated lists (``--seeds 6,21``): see :func:`parse_cli_list`.

Example:
    >>> parse_value("epsilons", "[0.0005, 0.002]", "a list of numbers")
    [0.0005, 0.002]
    >>> parse_value("epsilons", [0.0005], "a list of numbers")
    [0.0005]
    >>> parse_value("seeds", "[6, 21", "a list of integers")
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: seeds='[6, 21' is not a Python literal; expected a list of integers, e.g. -p seeds "[6, 21]" or -y "seeds: [6, 21]"
    >>> parse_cli_list("a2e,a2m2e"), parse_cli_list("6, 21"), parse_cli_list("[0.001]")
    (['a2e', 'a2m2e'], [6, 21], [0.001])
"""
from __future__ import annotations

import ast
from typing import Any

from .errors import ParameterError

#: Example values used in the error messages (what a well-formed value looks like).
EXAMPLES = {"list": "[6, 21]", "number": "0.001", "integer": "6"}


def literal(text: str) -> Any:
    """``ast.literal_eval`` of ``text``; raises ValueError for anything that is not a literal."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def parse_value(name: str, value: Any, expected: str) -> Any:
    """``value`` itself, or the Python literal a string ``value`` spells (see the module doc).

    Args:
        name: the parameter's name (for the error message).
        value: what papermill / the caller passed.
        expected: what the parameter should be, in words ("a list of integers").
    """
    if not isinstance(value, str):
        return value
    try:
        return literal(value)
    except ValueError:
        example = EXAMPLES["list"] if "list" in expected else (
            EXAMPLES["integer"] if "integer" in expected else EXAMPLES["number"])
        raise ParameterError(
            f"{name}={value!r} is not a Python literal; expected {expected}, "
            f'e.g. -p {name} "{example}" or -y "{name}: {example}"') from None


def parse_cli_list(text: str) -> list:
    """A command-line list: a Python literal list, or comma-separated items.

    Items that are Python literals (numbers, ``None``) are converted; the others (variant
    names, modes) stay strings.
    """
    stripped = text.strip()
    if stripped.startswith(("[", "(")):
        try:
            return list(literal(stripped))
        except (ValueError, TypeError):
            raise ParameterError(f"{text!r} is not a list; write it as [a, b] or a,b") from None
    items = []
    for item in (part.strip() for part in stripped.split(",")):
        if not item:
            continue
        try:
            items.append(literal(item))
        except ValueError:
            items.append(item)
    return items
