"""mer_lib: the library behind the *mer-robustness* book.

Reproduces Hoedt, Flexer & Widmer (SMC 2025), "Are Inherently Interpretable Models More
Robust? A Study in Music Emotion Recognition": a madmom-exact log-filtered spectrogram
front end, loaders for the Soundtracks and Mid-level Perceptual Features datasets plus a
synthetic corpus in the same layout, the A2E / A2B2E / A2M2E models, cached training, and
batched adversarial attacks (a correct projected BIM/PGD and a reference-compatible mode).

Modules, one job each:

- ``profiles``       execution profiles ``smoke`` / ``quick`` / ``paper``
- ``errors``         the error classes and parameter checks
- ``audio``          reading audio files, resampling, peak normalisation
- ``frontend``       the log-filtered spectrogram (torch, batched, differentiable)
- ``datasets``       one module per dataset, plus the synthetic corpus generator
- ``data``           spectrogram cache, split, standardisation, excerpts -> tensors
- ``models``         the VGG-style backbone, heads and the variant registry
- ``metrics``        Pearson r, MAE, RMSE, R^2
- ``training``       the cached, resumable trainer
- ``attacks``        the batched attack engine, SNR, reference-log reader
"""
__version__ = "0.1.0"

from . import objectives as _objectives  # noqa: E402,F401  (registers every training objective)
