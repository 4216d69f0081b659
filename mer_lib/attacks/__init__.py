"""Adversarial attacks on the emotion models: a generic engine, SNR, cached tables, reference logs.

- :mod:`.generic`        the generic engine :func:`~.generic.run_engine`: an objective to ascend
                         (:class:`~.generic.OutputLoss`, ...), an update rule, a projection and a
                         stop rule, batched with per-example masks
- :mod:`.steps`          update rules (sign step, L2 step, Adam on the sign) and projections
                         (L-infinity ball, L2 ball, none) with their random starts
- :mod:`.stopping`       stop rules: run all steps, the correlation ladder, the original's rule
- :mod:`.config`         :class:`AttackConfig` (projected BIM/PGD or the original step for step;
                         the table of differences between the two modes)
- :mod:`.ladder`         the clean correlation ladder (projected mode's early stopping)
- :mod:`.reference_ladder` the original's ladder, float quirks included (reference mode)
- :mod:`.engine`         :func:`attack` (the MSE + ladder instance of the engine) and :class:`AttackResult`
- :mod:`.precision`      :func:`~.precision.full_float32` (no TF32 on CUDA)
- :mod:`.snr`            :func:`spectrogram_snr_db`
- :mod:`.results`        :func:`run_attack`, the cached per-model attack table
- :mod:`.reference_logs` :func:`read_reference_log(s) <read_reference_log>` for the original's logs
- :mod:`.wave_config`    :class:`~.wave_config.WaveAttackConfig` (SNR-budget and L-inf threat models on audio)
- :mod:`.waveform`       :func:`~.waveform.wave_attack`: the attack on the excerpt's audio through the front end
- :mod:`.wave_results`   the stored per-clip waveform-attack table (true SNR per clip)
- :mod:`.realisability`  spectrogram perturbations made into audio and measured again

Example:
    >>> import torch
    >>> from mer_lib.attacks import AttackConfig, attack
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8))
    >>> res = attack(model, torch.randn(2, 1, 2, 3), torch.rand(2, 8),
    ...              AttackConfig(epsilon=0.1, step_size=0.05, max_iterations=3))
    >>> bool(res.delta.abs().max() <= 0.1 + 1e-7)
    True
"""
from .config import AttackConfig
from .engine import AttackResult, attack
from .reference_logs import read_reference_log, read_reference_logs
from .results import run_attack
from .snr import spectrogram_snr_db

__all__ = ["AttackConfig", "attack", "AttackResult", "run_attack", "spectrogram_snr_db",
           "read_reference_log", "read_reference_logs"]
