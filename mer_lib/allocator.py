"""Keep large CPU buffers in the process instead of returning them to the system after each use.

PyTorch's CPU tensors come straight from ``malloc``. With glibc's defaults, a buffer of more
than a few MB (one batch of frames or spectra of the waveform attacks: 16 clips x 126
frames x 2048 samples is 16.5 MB) is mapped afresh on every allocation and unmapped when it
is freed, so every use of it starts with tens of thousands of page faults. The waveform
attacks allocate a dozen such buffers per step and spent about a third of their time there
(`benchmarks/bench_waveform.py`, 2 CPU cores).

:func:`keep_large_buffers` sets two glibc malloc options: buffers up to 32 MB (glibc's
maximum) come from the heap, and up to 1 GB of freed heap stays in the process for the
next step. The numbers are the same with either path; only time and the process's resident
memory change (it stays near its peak). It acts on this process through ``mallopt`` and on
the processes it starts afterwards (Jupyter kernels, Ray workers) through glibc's
environment variables; settings a user already made in the environment are kept. Elsewhere
than on glibc (macOS, Windows, musl) it does nothing and says so.

The command line (``python -m mer_lib``), the book build and the benchmarks call it; a
user's own script can too::

    >>> from mer_lib.allocator import keep_large_buffers
    >>> keep_large_buffers() in (True, False)
    True
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "ENVIRONMENT", "keep_large_buffers"]

MMAP_THRESHOLD = 32 * 1024 * 1024   #: buffers up to this size come from the heap (glibc's maximum)
TRIM_THRESHOLD = 1024 * 1024 * 1024  #: freed heap kept in the process before it is given back

#: glibc's environment variables for the same settings (read when a process starts).
ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc's malloc.h


def _glibc():
    name = ctypes.util.find_library("c")
    if os.name != "posix" or name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def keep_large_buffers(children: bool = True) -> bool:
    """Apply the settings above to this process (and, with ``children``, to processes it starts).

    Returns True where glibc took them, False where this is not glibc (nothing changes).
    A user's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` win over ours.
    """
    libc = _glibc()
    if libc is None:
        return False
    mmap = int(os.environ.get("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD))
    trim = int(os.environ.get("MALLOC_TRIM_THRESHOLD_", TRIM_THRESHOLD))
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap))) and \
        bool(libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(trim)))
    if children:
        for key, value in ENVIRONMENT.items():
            os.environ.setdefault(key, value)
    return ok
