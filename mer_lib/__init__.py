"""mer_lib: the library behind the *mer-robustness* book.

Reproduces Hoedt, Flexer & Widmer (SMC 2025), "Are Inherently Interpretable Models More
Robust? A Study in Music Emotion Recognition": a madmom-exact log-filtered spectrogram
front end, loaders for the Soundtracks and Mid-level Perceptual Features datasets plus a
synthetic corpus in the same layout, the A2E / A2B2E / A2M2E models, cached training, and
batched adversarial attacks (a correct projected BIM/PGD and a mode that reproduces the
original attacker step for step); and extends it with ExpO explanation regularisation
(Plumb et al. 2020) and Robust Attribution Regularization (Chen et al. 2019).

Modules, one job each:

- ``profiles``       execution profiles ``smoke`` / ``quick`` / ``paper``: one ``Size`` row per setting
- ``errors``         the error classes and parameter checks; ``words`` numbers in words
- ``paths``, ``locks``, ``store``  where runs live, inter-process locks, the run store
- ``checksums``      checksums of checkpoint payloads (a changed bit is caught)
- ``audio``          reading audio files, resampling, peak normalisation
- ``frontend``       the log-filtered spectrogram (torch, batched, differentiable)
- ``datasets``       one module per dataset, plus the synthetic corpus (``synthesis``: the sound; ``synthetic``: the corpus)
- ``split``          the fixed, seeded train/valid/test split
- ``data``           split, standardisation, excerpts -> tensors (``spectrogram_cache``: the on-disk cache)
- ``models``         the VGG-style backbone, heads and the variant registry
- ``objectives``     what one training step does: plain, adversarial, ExpO, RAR (IG-NORM, IG-SUM-NORM)
- ``metrics``        Pearson r, MAE, RMSE, R^2
- ``training``       the cached, resumable trainer
- ``stack``, ``stack_training``  K seeds of a variant trained and attacked as one grouped network
- ``attacks``        the generic batched attack engine (objective, step, projection, stop rule),
                     the paper's attack as one instance, SNR, stored results, reference-log reader
- ``published``      the paper's own numbers from its shipped attack logs
- ``explain``        patch-space local explanations and ExpO's NF / stability metrics
- ``attributions``   Integrated Gradients, RAR losses, attribution-robustness metrics
- ``experiments``, ``extensions``, ``runner``  the one experiment spec, its jobs and engines
- ``summaries``      per-system mean and spread over seeds (one ddof)
- ``comparison``     per-model and per-system tables across chapters (the grand comparison)
- ``step_costs``     each system's training step timed beside A2E's (stored; planned as jobs)
- ``stats``          the paired hierarchical bootstrap (seeds, then clips), t-tests, power
- ``findings``, ``claims``  the book's decision rules and words; the paper's three claims
- ``verdicts``       the headline comparisons every page that states them reads (front page, Conclusions)
- ``model_tables``   what the trained models are: trained from, epochs run, objective options
- ``layout``         figures and tables for the page: page width, >= 9 pt text, captions, number formats
- ``reproducibility`` the statement at the end of every page; the project's citation
- ``bookbuild``, ``cli``  the book driver and ``python -m mer_lib``
"""
from .versions import __version__  # noqa: E402,F401

from . import objectives as _objectives  # noqa: E402,F401  (registers every training objective)
