"""Attributions: IG and saliency maps, Robust Attribution Regularization, attribution attacks.

Modules, one job each:

- :mod:`.ig`         IG maps of the emotion outputs (captum, and a differentiable native
  version) and the baselines (``"zeros"`` = the standardised mean, ``"silence"``)
- :mod:`.saliency`   gradient saliency maps, for comparison
- :mod:`.rar`        Robust Attribution Regularization: the IG-NORM and IG-SUM-NORM
  objectives with a memory-bounded backward; it re-exports the two modules it builds on,
  so every RAR name imports from it
- :mod:`.rar_base`   :class:`RarConfig` (its field defaults are the project's RAR defaults)
  and the IG of the loss from x to x' (double backprop)
- :mod:`.rar_inner`  the inner maximisation over x' (:func:`rar_attack`)
- :mod:`.metrics`    top-k intersection and Kendall's tau-b between attribution maps
- :mod:`.surrogate`  the softplus surrogate and the top-k attribution attack
- :mod:`.report`     stored attribution-robustness tables of trained models (top-k attack,
  intersection and Kendall tau per clip and emotion), per-system summaries, example maps
  (import it as ``mer_lib.attributions.report``)

Every attribution pass runs under :func:`mer_lib.models.frozen_normalisation` (BatchNorm with
running statistics, no dropout; modes restored afterwards) and never accumulates into the
parameters' ``.grad`` (except :func:`rar_backward`, whose job that is).

Shapes: models map ``(B, 1, frames, bins)`` to ``(B, 8)``; maps are ``(B, 8, 1, frames, bins)``
for all emotions, ``(B, 1, frames, bins)`` for one.

Example:
    >>> import torch
    >>> from mer_lib.attributions import integrated_gradients, kendall_tau
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8))
    >>> maps = integrated_gradients(net, torch.randn(2, 1, 2, 3), steps=4)
    >>> kendall_tau(maps, maps).round(decimals=6).tolist()[0][:2]
    [1.0, 1.0]
"""
from .ig import (BASELINES, METHODS, integrated_gradients, make_baseline,
                 path_integrated_gradients, silence_value)
from .metrics import (DEFAULT_K, attribution_robustness, kendall_tau, topk_count, topk_intersection,
                      topk_mask)
from .rar import (RarConfig, RarTerms, attack_objective_gradient, emotion_mse, ig_l1_norm,
                  loss_integrated_gradients, rar_attack, rar_attack_objective, rar_backward, rar_loss)
from .saliency import saliency
from .surrogate import (TopkAttackConfig, TopkAttackResult, output_change, softplus_surrogate,
                        topk_attack, topk_mass)

__all__ = ["BASELINES", "METHODS", "integrated_gradients", "make_baseline",
           "path_integrated_gradients", "silence_value", "saliency",
           "DEFAULT_K", "attribution_robustness", "kendall_tau", "topk_count", "topk_intersection",
           "topk_mask",
           "RarConfig", "RarTerms", "emotion_mse", "loss_integrated_gradients", "ig_l1_norm", "rar_loss",
           "rar_backward", "rar_attack", "rar_attack_objective", "attack_objective_gradient",
           "softplus_surrogate", "topk_mass", "output_change", "TopkAttackConfig", "TopkAttackResult",
           "topk_attack"]
