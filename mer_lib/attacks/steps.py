"""The two halves of an attack step: an *update rule*, then a *projection*.

The generic engine (:mod:`.generic`) moves every example's perturbation ``delta`` by
``delta <- projection(update(delta, grad))``, where ``grad`` is the gradient of the
objective to *ascend* with respect to ``delta``.

Update rules (``reset`` at the start of a batch, ``keep`` when examples leave the working
batch, so stateful rules drop their state with them):

- :class:`SignStep`      ``delta + a * sign(grad)`` (BIM/PGD under L-infinity; RAR's inner max)
- :class:`L2Step`        ``delta + a * grad / ||grad||`` per example (PGD under L2; a zero
  gradient leaves the example where it is)
- :class:`AdamSignStep`  ``-sign(grad)`` fed as the gradient to Adam with learning rate ``a``
  (``torch.optim.Adam``'s update, betas 0.9/0.999, eps 1e-8), i.e. ascent: the original
  attacker's step. Adam is elementwise, so batching is exact.

Projections (each can also draw a uniform random start from its set):

- :class:`LinfBall`      ``clamp(delta, -eps, eps)``
- :class:`L2Ball`        rescale ``delta`` into ``||delta||_2 <= eps`` per example
- :class:`NoProjection`  nothing (the reference mode: the original's clip was a no-op)

Example:
    >>> import torch
    >>> step, ball = SignStep(0.5), LinfBall(0.7)
    >>> delta = torch.tensor([[0.4, -0.1, 0.0]])
    >>> ball(step(delta, torch.tensor([[1.0, -2.0, 0.0]]))).tolist()
    [[0.699999988079071, -0.6000000238418579, 0.0]]
    >>> L2Ball(1.0)(torch.tensor([[3.0, 4.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    >>> bool(LinfBall(0.1).sample((4, 3), torch.Generator().manual_seed(0)).abs().max() <= 0.1)
    True
"""
from __future__ import annotations

import math

import torch

from ..errors import check_positive

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(B,)`` tensor viewed as ``(B, 1, ..., 1)`` to broadcast against ``like``."""
    return v.view(-1, *[1] * (like.dim() - 1))


# --------------------------------------------------------------------------------------
# Update rules
# --------------------------------------------------------------------------------------

class UpdateRule:
    """Base class: a stateless rule; stateful ones override :meth:`reset` and :meth:`keep`."""

    def __init__(self, step_size: float) -> None:
        self.step_size = float(check_positive("step_size", step_size))

    def reset(self, delta: torch.Tensor) -> None:
        """Start a new batch whose perturbations are ``delta``."""

    def keep(self, mask: torch.Tensor) -> None:
        """Only the examples ``mask`` stay in the working batch."""

    def __call__(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define __call__")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.step_size:g})"


class SignStep(UpdateRule):
    """``delta + step_size * sign(grad)``."""

    def __call__(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return delta + self.step_size * torch.sign(grad)


class L2Step(UpdateRule):
    """``delta + step_size * grad / ||grad||_2`` per example (no move where ``grad`` is 0)."""

    def __call__(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        gnorm = grad.flatten(1).norm(dim=1)
        scale = torch.where(gnorm > 0, self.step_size / gnorm, torch.zeros_like(gnorm))
        return delta + per_example(scale, grad) * grad


class AdamSignStep(UpdateRule):
    """Ascent by Adam (learning rate ``step_size``) fed with ``-sign(grad)`` as its gradient."""

    def reset(self, delta: torch.Tensor) -> None:
        self.step = 0
        self.exp_avg = torch.zeros_like(delta)
        self.exp_avg_sq = torch.zeros_like(delta)

    def keep(self, mask: torch.Tensor) -> None:
        self.exp_avg = self.exp_avg[mask]
        self.exp_avg_sq = self.exp_avg_sq[mask]

    def __call__(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        g = -torch.sign(grad)
        beta1, beta2 = ADAM_BETAS
        self.step += 1
        self.exp_avg.lerp_(g, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = self.step_size / (1 - beta1 ** self.step)
        denom = (self.exp_avg_sq.sqrt() / (1 - beta2 ** self.step) ** 0.5).add_(ADAM_EPS)
        return delta.addcdiv(self.exp_avg, denom, value=-step_size)


# --------------------------------------------------------------------------------------
# Projections
# --------------------------------------------------------------------------------------

class NoProjection:
    """Leave the perturbation as it is (no constraint)."""

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        return delta

    def __repr__(self) -> str:
        return "NoProjection()"


class LinfBall:
    """The L-infinity ball of radius ``epsilon``: ``clamp(delta, -eps, eps)``."""

    def __init__(self, epsilon: float) -> None:
        self.epsilon = float(check_positive("epsilon", epsilon))

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.clamp(-self.epsilon, self.epsilon)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform points of the ball, ``shape[0]`` examples, drawn on the CPU in ``dtype``."""
        return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * self.epsilon

    def __repr__(self) -> str:
        return f"LinfBall({self.epsilon:g})"


class L2Ball:
    """The L2 ball of radius ``epsilon`` per example: ``delta * min(1, eps / ||delta||_2)``."""

    def __init__(self, epsilon: float) -> None:
        self.epsilon = float(check_positive("epsilon", epsilon))

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        dnorm = delta.flatten(1).norm(dim=1)
        shrink = torch.where(dnorm > self.epsilon, self.epsilon / dnorm, torch.ones_like(dnorm))
        return delta * per_example(shrink, delta)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform points of the ball (a Gaussian direction, radius ``eps * U ** (1/dims)``)."""
        direction = torch.randn(shape, generator=generator, dtype=dtype)
        view = (-1, *[1] * (len(shape) - 1))
        direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-30).view(view)
        dims = math.prod(shape[1:])
        radius = self.epsilon * torch.rand(shape[0], generator=generator, dtype=dtype) ** (1.0 / dims)
        return direction * radius.view(view)

    def __repr__(self) -> str:
        return f"L2Ball({self.epsilon:g})"


__all__ = ["UpdateRule", "SignStep", "L2Step", "AdamSignStep", "NoProjection", "LinfBall", "L2Ball",
           "per_example", "ADAM_BETAS", "ADAM_EPS"]
