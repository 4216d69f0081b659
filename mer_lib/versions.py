"""The version of every component whose output the run store keeps: one place for all of them.

Each number is part of the keys of what its component writes, so bumping it makes every
stored result of that component a miss (recomputed, never mixed with new ones). The
components import their version from here; :func:`mer_lib.store.component_versions` reports
them all. This module imports nothing, so any layer may use it.

Example:
    >>> FORMAT_VERSION, ENGINE_VERSION, WAVE_ENGINE_VERSION
    (2, 2, 3)
"""
from __future__ import annotations

__all__ = ["__version__", "FRONTEND_VERSION", "GENERATOR_VERSION", "FORMAT_VERSION", "ENGINE_VERSION", "WAVE_ENGINE_VERSION"]

#: The package's own version (``mer_lib.__version__``, written into every checkpoint).
__version__ = "0.1.0"

#: The spectrogram cache (:mod:`mer_lib.data`): bump when the front end's output changes.
#: v2: every entry computed per clip on the CPU with one thread (bit-reproducible).
FRONTEND_VERSION = "logfilt-madmom0.16-v2"

#: The synthetic corpus (:mod:`mer_lib.datasets.synthesis`): bump whenever the synthesis changes.
GENERATOR_VERSION = 2

#: Trained models (:mod:`mer_lib.train_config`): bump when the meaning of stored files changes.
#: 2: objectives with options in the key; history columns per component.
FORMAT_VERSION = 2

#: Spectrogram-domain attacks (:mod:`mer_lib.attacks.engine`): bump whenever the engine's
#: results change for the same inputs and configuration. 2: the reference mode emulates the
#: original step for step.
ENGINE_VERSION = 2

#: Waveform attacks (:mod:`mer_lib.attacks.wave_config`): bump whenever their results change
#: for the same inputs and configuration. 2: the peak normalisation's hand-written backward
#: (:func:`mer_lib.spectral_ops.peak_normalise`) rounds the gradient differently. 3: the
#: waveform path's filterbank product runs on the filterbank's blocks and the overlap-add is
#: a per-row scatter (both round differently).
WAVE_ENGINE_VERSION = 3
