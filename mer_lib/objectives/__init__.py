"""Training objectives: what one training step does, and their building blocks.

Modules:

- ``base``         the :class:`Objective` API (a step owns forward, extra passes, backward and
                   the optimiser step, and returns named components), its registry and
                   :func:`task_loss`
- ``supervised``   ``"mse"``: the plain task loss (A2E, A2B2E, A2M2E)
- ``adversarial``  ``"adversarial"``: the reference's adversarial training (aA2E, aA2B2E)
- ``expo_training`` ``"expo_fidelity"`` / ``"expo_stability"``: ExpO-regularised training and
                   the variants ``expof_a2e``, ``expof_a2b2e``, ``expos_a2e``, ``expos_a2b2e``
- ``rar_training`` ``"ig_norm"`` / ``"ig_sum_norm"``: Robust Attribution Regularization (Chen et al.
                   2019) through :mod:`mer_lib.attributions.rar` and the variants ``ignorm_a2e``,
                   ``ignorm_a2b2e``, ``igsumnorm_a2e``, ``igsumnorm_a2b2e``
- ``expo``         the ExpO regularisers (Plumb et al. 2020) as pure functions: ExpO-Fidelity
                   (closed-form local-linear residual on Gaussian patch neighbours, also as a
                   chunked backward), ExpO-Stability, and the weight ``c * L(init) / R(init)``

Importing :mod:`mer_lib` registers every objective, so a stored model is loadable anywhere.

Example:
    >>> from mer_lib.objectives import OBJECTIVES, SIGMA_REG, regulariser_weight
    >>> {"mse", "adversarial", "expo_fidelity", "expo_stability", "ig_norm", "ig_sum_norm"} <= set(OBJECTIVES)
    True
    >>> from mer_lib.objectives import stackable_objectives
    >>> stackable_objectives()
    ['adversarial', 'expo_fidelity', 'expo_stability', 'ig_norm', 'ig_sum_norm', 'mse']
    >>> SIGMA_REG, regulariser_weight(1.5, loss_init=0.5, reg_init=0.25)
    (0.5, 3.0)
"""
from .base import (OBJECTIVES, Objective, StepContext, check_finite_option, get_objective, make_objective,
                   register_objective, resolve_options, stackable_objectives, task_loss, task_losses)
from .supervised import Supervised
from .adversarial import Adversarial
from .expo_training import ExpoFidelity, ExpoStability
from .rar_training import IgNorm, IgSumNorm
from .expo import (SIGMA_REG, STABILITY_RADIUS, fidelity_regulariser, fidelity_regulariser_backward,
                   regulariser_weight, stability_regulariser)

__all__ = ["OBJECTIVES", "Objective", "StepContext", "register_objective", "get_objective",
           "make_objective", "resolve_options", "stackable_objectives", "task_loss", "task_losses", "check_finite_option", "Supervised",
           "Adversarial", "ExpoFidelity", "ExpoStability", "IgNorm", "IgSumNorm", "SIGMA_REG", "STABILITY_RADIUS", "fidelity_regulariser",
           "fidelity_regulariser_backward", "stability_regulariser", "regulariser_weight"]
