"""The attribution attack: a softplus surrogate of the network and a batched top-k PGD.

Gradients of a ReLU network are piecewise constant in the input, so the gradient of an
attribution map (a second derivative) is zero almost everywhere. The attack therefore
differentiates the maps of a **surrogate**: a copy of the model with every ``nn.ReLU``
replaced by ``nn.Softplus(beta)`` (same weights; the original is untouched), which tends to
the original as ``beta`` grows (:func:`softplus_surrogate`).

**Top-k attack** (Ghorbani et al. 2019, as used by Chen et al.): take the original model's
IG maps at ``x`` and their top-k bins (:func:`~mer_lib.attributions.metrics.topk_mask`);
push down the share of attribution mass on those bins (:func:`topk_mass`, computed on the
surrogate's differentiable IG) by signed-gradient steps projected onto the L-infinity ball
``B(x, epsilon)``, starting at ``x``. Instead of "same label" (regression has none), a step
counts only if every emotion output of the *original* model moved by at most ``tolerance``
(:func:`output_change`). Among the steps that count (and the start, ``tau = 1``) each
example keeps the one whose original-model IG maps have the lowest Kendall tau with the
clean maps (averaged over the attacked emotions).

:func:`topk_attack` is a plain batched PGD for now; it is to be expressed through the
generic attack engine (objective + projection + stop rule) when that exists.

Example:
    >>> import torch
    >>> from mer_lib.attributions import softplus_surrogate
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> smooth = softplus_surrogate(net, beta=1e3)
    >>> type(smooth[1]).__name__, type(net[1]).__name__
    ('Softplus', 'ReLU')
    >>> x = torch.randn(5, 3)
    >>> bool((smooth(x) - net(x)).abs().max() < 1e-2)
    True
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import nn

from ..errors import ParameterError, check_choice, check_int, check_positive
from ..models import frozen_normalisation
from .ig import METHODS, integrated_gradients, make_baseline, path_integrated_gradients
from .metrics import (DEFAULT_K, attribution_robustness, check_fraction, kendall_tau, topk_intersection,
                      topk_mask)

DEFAULT_BETA = 10.0


def softplus_surrogate(model: nn.Module, beta: float = DEFAULT_BETA) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.ReLU`` module replaced by ``nn.Softplus(beta)``.

    Same weights and modes; its parameters do not require grad (the attack needs input
    gradients only); ``model`` itself is not modified. Functional ReLUs (``F.relu`` inside a
    ``forward``) cannot be seen, so a model without ``nn.ReLU`` modules is an error.
    """
    beta = float(check_positive("beta", beta))
    surrogate = copy.deepcopy(model)
    replaced = _replace_relus(surrogate, beta)
    if replaced == 0:
        raise ParameterError(f"{type(model).__name__} has no nn.ReLU modules to replace by Softplus")
    for p in surrogate.parameters():
        p.requires_grad_(False)
    return surrogate


def _replace_relus(module: nn.Module, beta: float) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Softplus(beta=beta))
            count += 1
        else:
            count += _replace_relus(child, beta)
    return count


def topk_mass(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of each map's absolute attribution on the masked bins, ``(B, E)`` in [0, 1].

    ``maps`` ``(B, E, *bins)``, ``mask`` boolean ``(B, E, n_bins)`` (from
    :func:`~mer_lib.attributions.metrics.topk_mask` of the clean maps). Differentiable; the
    attack minimises it. Being a share, it cannot be lowered by shrinking all attributions.

    Example:
        >>> maps = torch.tensor([[[4.0, -3.0, 2.0, 1.0]]])
        >>> round(topk_mass(maps, torch.tensor([[[True, False, False, False]]])).item(), 6)
        0.4
    """
    flat = maps.flatten(2).abs()
    if mask.shape != flat.shape:
        raise ParameterError(f"mask must be (examples, maps, bins) {tuple(flat.shape)}, got {tuple(mask.shape)}")
    total = flat.sum(dim=-1).clamp_min(torch.finfo(flat.dtype).tiny)
    return (flat * mask).sum(dim=-1) / total


def output_change(clean_pred: torch.Tensor, adv_pred: torch.Tensor) -> torch.Tensor:
    """Largest absolute change of any output per example, ``(B,)`` (the tolerance check).

    Example:
        >>> round(output_change(torch.tensor([[0.1, 0.5]]), torch.tensor([[0.12, 0.47]])).item(), 6)
        0.03
    """
    return (adv_pred - clean_pred).abs().flatten(1).amax(dim=1)


@dataclass(frozen=True)
class TopkAttackConfig:
    """Settings of the top-k attribution attack (frozen, validated, hashable).

    Attributes:
        epsilon: L-infinity radius in standardised units, > 0.
        iterations: PGD steps, >= 1.
        step_size: the step; ``None`` gives ``2.5 * epsilon / iterations``.
        k: size of the top set as a fraction of the bins, in (0, 1].
        tolerance: largest allowed change of any emotion output of the original model
            (in output units: ratings / 10), >= 0.
        beta: softplus sharpness of the surrogate, > 0.
        emotion: attack one emotion's map (index) or all eight (``None``, the mean).
        ig_steps: quadrature points of the original model's (evaluation) IG maps, >= 2.
        method: their quadrature (:data:`~mer_lib.attributions.ig.METHODS`).
        attack_ig_steps: right-Riemann steps of the surrogate's differentiable IG, >= 1.
        internal_batch_size: captum's ``internal_batch_size`` for the evaluation maps.
    """

    epsilon: float
    iterations: int = 10
    step_size: float | None = None
    k: float = DEFAULT_K
    tolerance: float = 0.05
    beta: float = DEFAULT_BETA
    emotion: int | None = None
    ig_steps: int = 50
    method: str = "riemann_right"
    attack_ig_steps: int = 10
    internal_batch_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", float(check_positive("epsilon", self.epsilon)))
        check_int("iterations", self.iterations, minimum=1)
        alpha = 2.5 * self.epsilon / self.iterations if self.step_size is None else self.step_size
        object.__setattr__(self, "step_size", float(check_positive("step_size", alpha)))
        object.__setattr__(self, "k", check_fraction("k", self.k))
        object.__setattr__(self, "tolerance", float(check_positive("tolerance", self.tolerance,
                                                                   allow_zero=True)))
        object.__setattr__(self, "beta", float(check_positive("beta", self.beta)))
        if self.emotion is not None:
            check_int("emotion", self.emotion, minimum=0)
        check_int("ig_steps", self.ig_steps, minimum=2)
        check_choice("method", self.method, METHODS)
        check_int("attack_ig_steps", self.attack_ig_steps, minimum=1)
        if self.internal_batch_size is not None:
            check_int("internal_batch_size", self.internal_batch_size, minimum=1)

    def to_dict(self) -> dict:
        """Plain dict of all fields (JSON-serialisable)."""
        return dataclasses.asdict(self)


@dataclass
class TopkAttackResult:
    """Per example (first dimension), the kept step of the top-k attack.

    Attributes:
        x_adv, delta: the kept perturbed input and its perturbation (``delta = 0`` when no
            step within tolerance lowered tau).
        clean_maps, adv_maps: the original model's IG maps at ``x`` and ``x_adv``,
            ``(B, E, 1, F, K)`` (``E = 1`` for one emotion).
        kendall_tau, topk_intersection: ``(B, E)`` between the clean and kept maps.
        output_change: largest change of any output of the original model, ``(B,)``.
        step: the kept step (0 = the start), ``(B,)``.
    """

    x_adv: torch.Tensor
    delta: torch.Tensor
    clean_maps: torch.Tensor
    adv_maps: torch.Tensor
    kendall_tau: torch.Tensor
    topk_intersection: torch.Tensor
    output_change: torch.Tensor
    step: torch.Tensor
    k: float = DEFAULT_K

    def table(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """:func:`~mer_lib.attributions.metrics.attribution_robustness` of the kept maps."""
        return attribution_robustness(self.clean_maps, self.adv_maps, self.k, names=names)


def _maps(model, x, cfg: TopkAttackConfig, baseline) -> torch.Tensor:
    maps = integrated_gradients(model, x, emotion=cfg.emotion, baseline=baseline, steps=cfg.ig_steps,
                                method=cfg.method, internal_batch_size=cfg.internal_batch_size)
    return maps.unsqueeze(1) if cfg.emotion is not None else maps


def topk_attack(model: nn.Module, x: torch.Tensor, config: TopkAttackConfig, *,
                baseline: str | torch.Tensor = "zeros", mean: float | None = None,
                std: float | None = None, surrogate: nn.Module | None = None,
                batch_size: int | None = None) -> TopkAttackResult:
    """Attack the IG maps of ``model`` at ``x`` (see the module docstring), examples together.

    ``baseline``/``mean``/``std`` as in :func:`~mer_lib.attributions.ig.make_baseline` (the
    same baseline is used at ``x`` and at every ``x + delta``); ``surrogate`` defaults to
    ``softplus_surrogate(model, config.beta)``. ``batch_size`` examples are attacked at a
    time (default: all; the results do not depend on it, only the memory does: the
    surrogate's differentiable IG holds ``attack_ig_steps * batch_size`` examples' graphs for
    every attacked emotion). Both models run frozen; no ``.grad`` is touched. Deterministic
    (no random start).

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 6), torch.nn.ReLU(),
        ...                           torch.nn.Linear(6, 8))
        >>> res = topk_attack(net, torch.randn(2, 1, 2, 3),
        ...                   TopkAttackConfig(epsilon=0.3, iterations=3, k=0.34, ig_steps=4))
        >>> bool((res.output_change <= 0.05).all()), bool((res.delta.abs() <= 0.3 + 1e-6).all())
        (True, True)
    """
    if not isinstance(config, TopkAttackConfig):
        raise ParameterError(f"config must be a TopkAttackConfig, got {type(config).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ParameterError("x must be a tensor (batch >= 1, ...)")
    n = x.shape[0]
    batch_size = n if batch_size is None else check_int("batch_size", batch_size)
    x = x.detach()
    base = make_baseline(baseline, x, mean=mean, std=std)
    sur = softplus_surrogate(model, config.beta) if surrogate is None else surrogate
    parts = [_attack_chunk(model, sur, x[lo:lo + batch_size], base[lo:lo + batch_size], config)
             for lo in range(0, n, batch_size)]
    fields = {f.name: torch.cat([getattr(p, f.name) for p in parts])
              for f in dataclasses.fields(TopkAttackResult) if f.name != "k"}
    return TopkAttackResult(**fields, k=config.k)


def _attack_chunk(model: nn.Module, sur: nn.Module, x: torch.Tensor, base: torch.Tensor,
                  cfg: TopkAttackConfig) -> TopkAttackResult:
    """:func:`topk_attack` on one chunk of examples."""
    with frozen_normalisation(model), frozen_normalisation(sur):
        with torch.no_grad():
            clean_pred = model(x)
        clean_maps = _maps(model, x, cfg, base)
        mask = topk_mask(clean_maps, cfg.k)
        n, dev = x.shape[0], x.device
        delta = torch.zeros_like(x)
        best = dict(delta=delta.clone(), maps=clean_maps.clone(),
                    change=torch.zeros(n, dtype=x.dtype, device=dev),
                    tau_e=torch.ones(clean_maps.shape[:2], dtype=torch.float64),
                    step=torch.zeros(n, dtype=torch.long))
        best_tau = torch.ones(n, dtype=torch.float64)
        for t in range(1, cfg.iterations + 1):
            xv = (x + delta).requires_grad_(True)
            sur_maps = path_integrated_gradients(sur, xv, emotion=cfg.emotion, baseline=base,
                                                 steps=cfg.attack_ig_steps, create_graph=True)
            if cfg.emotion is not None:
                sur_maps = sur_maps.unsqueeze(1)
            (grad,) = torch.autograd.grad(topk_mass(sur_maps, mask).sum(), xv)
            delta = (delta - cfg.step_size * torch.sign(grad)).clamp(-cfg.epsilon, cfg.epsilon)
            with torch.no_grad():
                change = output_change(clean_pred, model(x + delta))
            maps = _maps(model, x + delta, cfg, base)
            tau_e = kendall_tau(clean_maps, maps)
            tau = torch.nanmean(tau_e, dim=1)
            better = (change.cpu() <= cfg.tolerance) & (tau < best_tau)   # nan never better
            if bool(better.any()):
                b_dev = better.to(dev)
                best["delta"][b_dev] = delta[b_dev]
                best["maps"][b_dev] = maps[b_dev]
                best["change"][b_dev] = change[b_dev]
                best["tau_e"][better] = tau_e[better]
                best["step"][better] = t
                best_tau[better] = tau[better]
    inter = topk_intersection(clean_maps, best["maps"], cfg.k)
    return TopkAttackResult(x_adv=(x + best["delta"]).detach(), delta=best["delta"],
                            clean_maps=clean_maps, adv_maps=best["maps"], kendall_tau=best["tau_e"],
                            topk_intersection=inter, output_change=best["change"], step=best["step"],
                            k=cfg.k)


__all__ = ["DEFAULT_BETA", "softplus_surrogate", "topk_mass", "output_change", "TopkAttackConfig",
           "TopkAttackResult", "topk_attack"]
