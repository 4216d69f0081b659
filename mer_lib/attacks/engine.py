"""The emotion attack: the MSE + correlation-ladder instance of the generic engine.

:func:`attack` is :func:`~.generic.run_engine` with the per-example MSE as the objective
(:class:`~.generic.OutputLoss`) and, per mode, the pieces of :func:`engine_pieces`:
projected: :class:`~.steps.SignStep` (``norm="l2"``: :class:`~.steps.L2Step`) into the
:class:`~.steps.LinfBall` (:class:`~.steps.L2Ball`) with the
:class:`~.stopping.CorrelationStop` ladder; reference: :class:`~.steps.AdamSignStep`, no
projection, the :class:`~.stopping.ReferenceStop` rule. The results are bit for bit those
of the hard-wired engine it replaced (``ENGINE_VERSION`` 2; tested against a stored record).

:func:`attack` perturbs every example to *increase* the MSE between ``model(x + delta)``
and the true ratings ``y`` (untargeted). Examples are processed in chunks of
``batch_size``; inside a chunk all examples step together and the per-example loss is the
*sum* over examples of each example's MSE, so each example's gradient is exactly its own,
whatever the batch (for a model in eval mode). Per-example early stopping uses a
correlation ladder — :class:`~.ladder.CorrelationLadder` in projected mode, the exact
emulation of the original's rule :class:`~.reference_ladder.ReferenceLadder` in reference
mode: an example that stops is taken out of the working batch, so its perturbation (and, in
reference mode, its Adam state) never changes again. The table of differences between the
two modes is in :mod:`mer_lib.attacks.config`.

Update rules:

- ``projected``, ``norm="linf"``: ``delta <- clamp(delta + a * sign(grad), -eps, eps)``;
  ``norm="l2"``: ``delta <- delta + a * grad / ||grad||``, then rescaled into the eps ball.
  Optional uniform random start in the ball (seeded, independent of the chunking).
- ``reference``: ``-sign(grad)`` is fed as the gradient to Adam (lr = ``step_size``,
  betas 0.9/0.999, eps 1e-8, the update of ``torch.optim.Adam``), i.e. ascent on the MSE,
  and there is no projection (the reference's clamp was a no-op), so ``|delta|`` is bounded
  only by about ``step_size * iterations``. Adam is elementwise, so batching is exact.

Counting: the perturbation after ``t`` steps is *iteration* ``t`` (``t = 0`` is the start);
every forward pass evaluates one iteration, in order. Projected mode evaluates iterations
0 .. ``max_iterations`` (up to ``max_iterations + 1`` passes); reference mode makes at most
``max_iterations`` forward passes, as the original's ``max_iters``, so its last evaluated
perturbation has ``max_iterations - 1`` steps (the original's update after its last pass was
never evaluated). ``iterations`` is the iteration of the last perturbation evaluated (whose
prediction is ``final_pred``); ``forward_passes = iterations + 1``.

Returned ("kept") perturbation per example:

- ``early_stop=False``: the final perturbation (``final_delta``).
- projected, ``early_stop=True``: the perturbation of the last *new* rung reached after the
  start (``delta_iteration >= 1``); for a converged example the one at convergence. If no
  rung below the start was reached, the final perturbation.
- reference, ``early_stop=True``: the original's ``best_delta``: the perturbation of the
  last pass whose threshold was reached, which is the start (zero) if only the first pass
  reached one (``delta_iteration == 0``).

``adv_pred`` is the prediction of the kept perturbation, ``final_pred`` that of the last
one evaluated — the original logged ``final_pred`` (its ``new-pred``), from which the paper
computed its adversarial MAE, but stored and measured (norm, SNR) the kept one.

Attacks run in full float32 (:func:`~.precision.full_float32`: no TF32 on CUDA). The engine
never calls ``model.eval()``/``model.train()`` (the caller decides) and never accumulates
gradients into the model's parameters (``torch.autograd.grad`` w.r.t. delta).

Example:
    >>> import torch
    >>> from mer_lib.attacks import AttackConfig, attack
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8))
    >>> x, y = torch.randn(3, 1, 3, 4), torch.rand(3, 8)
    >>> cfg = AttackConfig(epsilon=0.01, step_size=0.005, max_iterations=5, early_stop=False)
    >>> res = attack(model, x, y, cfg)
    >>> float(res.delta.abs().max()) <= 0.01 + 1e-7, res.iterations.tolist()
    (True, [5, 5, 5])
    >>> ref = attack(model, x, y, AttackConfig(mode="reference", max_iterations=5, early_stop=False))
    >>> ref.iterations.tolist(), ref.forward_passes.tolist()
    ([4, 4, 4], [5, 5, 5])
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..datasets import EMOTIONS
from ..errors import ParameterError, check_int
from .config import AttackConfig
from .generic import OutputLoss, example_mse, run_engine
from .ladder import RUNGS, pearson_rows
from .precision import full_float32
from .snr import spectrogram_snr_db
from .steps import AdamSignStep, L2Ball, L2Step, LinfBall, NoProjection, SignStep
from .stopping import CorrelationStop, ReferenceStop
from ..versions import ENGINE_VERSION  # noqa: F401  (re-exported)



@dataclass
class AttackResult:
    """Everything an attack produced, per example (first dimension).

    Attributes:
        x: the clean inputs (the tensor passed in, not a copy).
        y: the true ratings, (N, 8).
        x_adv: ``x + delta``, detached.
        delta: the kept perturbation (see the module docstring).
        iterations: iteration (step count) of the last perturbation evaluated (long).
        delta_iteration: the iteration whose perturbation is kept (long).
        converged: whether the example's ladder converged (bool).
        threshold: the ladder's threshold when the attack stopped (float64): reference
            mode: the original's last ``cur_target_threshold`` (NaN while unset);
            projected: the next rung below the lowest one reached, -0.9 once converged.
        rung_iterations: (N, 20) iteration at which each rung of
            :data:`~mer_lib.attacks.ladder.RUNGS` was first reached, -1 if never.
        clean_pred, adv_pred: predictions on ``x`` and ``x_adv``.
        final_pred: prediction of the last perturbation evaluated.
        final_delta: the last perturbation evaluated.
    """

    x: torch.Tensor
    y: torch.Tensor
    x_adv: torch.Tensor
    delta: torch.Tensor
    iterations: torch.Tensor
    delta_iteration: torch.Tensor
    converged: torch.Tensor
    threshold: torch.Tensor
    rung_iterations: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    final_pred: torch.Tensor
    final_delta: torch.Tensor

    @property
    def forward_passes(self) -> torch.Tensor:
        """Forward passes made per example (``iterations + 1``; the original's ``epoch``)."""
        return self.iterations + 1

    def to_frame(self, ids, mean: float, std: float) -> pd.DataFrame:
        """Tidy table, one row per example.

        Columns: ``example, iterations, forward_passes, delta_iteration, converged,
        threshold, snr_db, l2, linf, mae_clean, mae_adv, mae_final, r_clean, r_adv,
        r_final``, then ``true_<e>``, ``clean_<e>``, ``adv_<e>`` (kept perturbation),
        ``final_<e>`` (last perturbation) for the 8 emotions ``e``, then ``rung_+1.0 ...
        rung_-0.9`` (iteration at which each correlation rung was first reached, -1 if
        never). ``snr_db``, ``l2`` and ``linf`` measure the kept perturbation, as the
        original's ``db`` and ``norm``. ``mean``/``std`` are the standardisation scalars (for
        the SNR, see :mod:`.snr`).
        """
        ids = [str(i) for i in ids]
        if len(ids) != self.delta.shape[0]:
            raise ParameterError(
                f"ids must have one entry per example ({self.delta.shape[0]}), got {len(ids)}")
        y = self.y.detach().double().cpu()
        clean = self.clean_pred.detach().double().cpu()
        adv = self.adv_pred.detach().double().cpu()
        final = self.final_pred.detach().double().cpu()
        d = self.delta.detach().double().cpu().flatten(1)
        cols: dict[str, object] = {
            "example": ids,
            "iterations": self.iterations.cpu().numpy(),
            "forward_passes": self.forward_passes.cpu().numpy(),
            "delta_iteration": self.delta_iteration.cpu().numpy(),
            "converged": self.converged.cpu().numpy().astype(bool),
            "threshold": self.threshold.double().cpu().numpy(),
            "snr_db": spectrogram_snr_db(self.x.detach().cpu(), self.x_adv.detach().cpu(),
                                         mean, std).numpy(),
            "l2": d.norm(dim=1).numpy(),
            "linf": d.abs().amax(dim=1).numpy(),
            "mae_clean": (clean - y).abs().mean(dim=1).numpy(),
            "mae_adv": (adv - y).abs().mean(dim=1).numpy(),
            "mae_final": (final - y).abs().mean(dim=1).numpy(),
            "r_clean": pearson_rows(clean, y).numpy(),
            "r_adv": pearson_rows(adv, y).numpy(),
            "r_final": pearson_rows(final, y).numpy(),
        }
        for prefix, values in (("true", y), ("clean", clean), ("adv", adv), ("final", final)):
            for j, emotion in enumerate(EMOTIONS):
                cols[f"{prefix}_{emotion}"] = values[:, j].numpy()
        rungs = self.rung_iterations.cpu().numpy()
        for j, rung in enumerate(RUNGS):
            cols[f"rung_{rung:+.1f}"] = rungs[:, j]
        return pd.DataFrame(cols)


def random_start(shape: tuple[int, ...], config: AttackConfig) -> torch.Tensor:
    """Uniform random points of the eps ball for ``shape[0]`` examples (CPU, float32, seeded).

    Drawn for all examples at once from ``config.seed``, so that the start of an example
    does not depend on how the examples are chunked.
    """
    ball = LinfBall(config.epsilon) if config.norm == "linf" else L2Ball(config.epsilon)
    return ball.sample(shape, torch.Generator().manual_seed(config.seed))


def engine_pieces(config: AttackConfig) -> dict:
    """The generic engine's update rule, projection, stop rule and step count for ``config``.

    Example:
        >>> engine_pieces(AttackConfig(mode="reference", max_iterations=10))
        {'update': AdamSignStep(0.002), 'projection': NoProjection(), 'stop': ReferenceStop(early_stop=True), 'steps': 9}
    """
    if not config.projected:    # max_iterations forward passes: one step fewer
        return dict(update=AdamSignStep(config.step_size), projection=NoProjection(),
                    stop=ReferenceStop(config.early_stop), steps=config.max_iterations - 1)
    if config.norm == "linf":
        update, projection = SignStep(config.step_size), LinfBall(config.epsilon)
    else:
        update, projection = L2Step(config.step_size), L2Ball(config.epsilon)
    return dict(update=update, projection=projection, stop=CorrelationStop(config.early_stop),
                steps=config.max_iterations)


def attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, config: AttackConfig, *,
           batch_size: int | None = None, progress: bool = False) -> AttackResult:
    """Untargeted attack on ``model`` at inputs ``x`` (N, ...) with true ratings ``y`` (N, 8).

    Runs on ``x``'s device (the model must be there too); ``batch_size`` examples are
    attacked together (default: all). See the module docstring for the algorithm.
    """
    if not isinstance(config, AttackConfig):
        raise ParameterError(f"config must be an AttackConfig, got {type(config).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ParameterError("x and y must be torch tensors")
    if x.dim() < 2 or y.dim() != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ParameterError(
            f"x must be (N, ...) and y (N, outputs) with the same N >= 1, "
            f"got x {tuple(x.shape)} and y {tuple(y.shape)}")
    n = x.shape[0]
    batch_size = n if batch_size is None else check_int("batch_size", batch_size)
    x = x.detach()
    y = y.detach().to(device=x.device, dtype=x.dtype)
    starts = (random_start(tuple(x.shape), config).to(device=x.device, dtype=x.dtype)
              if config.random_start else torch.zeros_like(x))
    res = run_engine(model, x, y, objective=OutputLoss(example_mse), start=starts,
                     batch_size=batch_size, progress=progress, desc=f"attack ({config.mode})",
                     **engine_pieces(config))
    if config.random_start:     # the clean prediction is not the first pass's
        with torch.no_grad(), full_float32():
            clean = torch.cat([model(x[lo:lo + batch_size]) for lo in range(0, n, batch_size)]).detach()
    else:
        clean = res.first_output
    delta, final_delta = res.delta.detach(), res.final_delta.detach()
    return AttackResult(x=x, y=y, x_adv=(x + delta).detach(), delta=delta, final_delta=final_delta,
                        iterations=res.iterations, delta_iteration=res.delta_iteration,
                        clean_pred=clean, adv_pred=res.kept_output, final_pred=res.final_output,
                        **res.record)
