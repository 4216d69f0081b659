"""The inner attack of adversarial training and the adversarial batch it gives (aA2E, aA2B2E).

Shared by the ``"adversarial"`` objective (:mod:`mer_lib.objectives.adversarial`), the
training configuration (:mod:`mer_lib.train_config`: the default ``adv_attack`` and the
allowed ``adv_input``) and stacked training (:mod:`mer_lib.stack_training`); re-exported by
:mod:`mer_lib.training`.

- :func:`default_adv_attack`: the reference's attack inside adversarial training (reference
  mode, eps :data:`ADV_EPSILON` = 0.001, Adam step :data:`ADV_STEP_SIZE` = 0.002, 50 forward
  passes) as an ``AttackConfig.to_dict()``.
- :func:`adversarial_input`: the batch of the adversarial step from an
  :class:`~mer_lib.attacks.AttackResult`, by ``adv_input`` (one of :data:`ADV_INPUTS`).

Example:
    >>> from mer_lib.objectives.adversarial_batch import ADV_INPUTS, default_adv_attack
    >>> cfg = default_adv_attack(iterations=10)
    >>> cfg["mode"], cfg["epsilon"], cfg["step_size"], cfg["max_iterations"]
    ('reference', 0.001, 0.002, 10)
    >>> ADV_INPUTS
    ('kept', 'kept_or_final')
"""
from __future__ import annotations

import torch

from ..attacks.config import AttackConfig
from ..errors import ParameterError

#: Attack of the reference's adversarial training: epsilon, Adam step size (DESIGN §3-4).
ADV_EPSILON = 0.001
ADV_STEP_SIZE = 0.002
#: How adversarial training builds its adversarial batch (see :mod:`mer_lib.training`).
ADV_INPUTS = ("kept", "kept_or_final")


def default_adv_attack(iterations: int = 50) -> dict:
    """The attack inside adversarial training: reference mode, eps 0.001, Adam lr 0.002.

    ``iterations`` counts forward passes, as the original's ``max_iters`` (50).
    """
    return AttackConfig(mode="reference", epsilon=ADV_EPSILON, step_size=ADV_STEP_SIZE,
                        max_iterations=iterations, norm="linf", random_start=False,
                        early_stop=True).to_dict()


def adversarial_input(result, how: str = "kept") -> torch.Tensor:
    """The adversarial batch of one training step from an :class:`~mer_lib.attacks.AttackResult`.

    ``"kept"``: ``x +`` the kept perturbation (the original's ``input + best_delta``, i.e.
    the clean input where the ladder reached no rung below its start); ``"kept_or_final"``:
    ``x +`` the last perturbation for those examples (``delta_iteration == 0``) instead.
    """
    if how == "kept":
        return result.x_adv.detach()
    if how != "kept_or_final":
        raise ParameterError(f"adv_input must be one of {list(ADV_INPUTS)}, got {how!r}")
    none = (result.delta_iteration == 0).view(-1, *[1] * (result.x.dim() - 1))
    return torch.where(none, result.x + result.final_delta, result.x_adv).detach()


__all__ = ["ADV_EPSILON", "ADV_STEP_SIZE", "ADV_INPUTS", "default_adv_attack", "adversarial_input"]
