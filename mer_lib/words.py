"""Numbers in words, for messages and pages alike (core: imports nothing of the package).

Example:
    >>> count(1, "clip"), count(12, "clip"), count(2, "is", "are")
    ('1 clip', '12 clips', '2 are')
"""
from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 seed"``, ``"3 seeds"``: a number with its noun in the right form (``plural``: an
    irregular plural)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
