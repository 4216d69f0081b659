"""Checksums of checkpoint payloads: a file that still unpickles but whose bytes changed is caught.

:func:`with_digest` adds the sha256 of a payload (tensors by dtype, shape and bytes; containers
and scalars by value) under ``"digest"`` before it is saved; :func:`digest_ok` checks it after
loading. A payload written before checksums existed (no ``"digest"``) passes.

Example:
    >>> import torch
    >>> saved = with_digest({"weights": torch.ones(2), "epoch": 3})
    >>> digest_ok(dict(saved))
    True
    >>> saved["weights"] = torch.tensor([1.0, 1.0000001])       # one changed value
    >>> digest_ok(dict(saved))
    False
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch


def payload_digest(obj: Any) -> str:
    """sha256 of a checkpoint payload: tensors by dtype, shape and bytes; containers and scalars by value.

    Stored inside ``model.pt`` and ``state.pt`` (key ``"digest"``, over everything else), so a
    file that still unpickles but whose bytes changed (a flipped bit in a tensor) is caught.
    """
    h = hashlib.sha256()

    def feed(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, dict):
            h.update(b"{")
            for k, v in o.items():
                feed(k)
                feed(v)
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                feed(v)
            h.update(b"]")
        elif isinstance(o, (bool, np.bool_)):
            h.update(b"b1" if o else b"b0")
        elif isinstance(o, (int, np.integer)):
            h.update(f"i{int(o)};".encode())
        elif isinstance(o, (float, np.floating)):
            h.update(f"f{float(o).hex()};".encode())
        elif isinstance(o, str):
            h.update(f"s{len(o)}:{o}".encode())
        elif o is None:
            h.update(b"N")
        else:
            h.update(f"r{o!r};".encode())

    feed(obj)
    return h.hexdigest()


def with_digest(payload: dict) -> dict:
    """``payload`` with its :func:`payload_digest` under the key ``"digest"``."""
    return {**payload, "digest": payload_digest(payload)}


def digest_ok(payload: dict) -> bool:
    """True unless ``payload`` carries a digest that its content does not match (pops it)."""
    digest = payload.pop("digest", None)
    return digest is None or payload_digest(payload) == digest
