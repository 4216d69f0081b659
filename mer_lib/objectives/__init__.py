"""Training objectives and their building blocks.

Modules:

- ``expo``  the ExpO regularisers (Plumb et al. 2020) as pure functions: ExpO-Fidelity
            (closed-form local-linear residual on Gaussian patch neighbours, also as a
            chunked backward), ExpO-Stability, and the weight ``c * L(init) / R(init)``.

Example:
    >>> from mer_lib.objectives import SIGMA_REG, regulariser_weight
    >>> SIGMA_REG, regulariser_weight(1.5, loss_init=0.5, reg_init=0.25)
    (0.5, 3.0)
"""
from .expo import (SIGMA_REG, STABILITY_RADIUS, fidelity_regulariser, fidelity_regulariser_backward,
                   regulariser_weight, stability_regulariser)

__all__ = ["SIGMA_REG", "STABILITY_RADIUS", "fidelity_regulariser", "fidelity_regulariser_backward",
           "stability_regulariser", "regulariser_weight"]
