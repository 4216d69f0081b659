"""Attacks you can listen to: perturb the excerpt's audio, through the model's own front end.

The model input becomes one differentiable path (CPU or GPU, batched):

    audio excerpt s + delta  ->  peak normalisation of the clip (re-applied)  ->  frames at
    the excerpt's own starts  ->  LogFiltSpec (window, |rfft|, filterbank)  ->  log10(1 + .)
    ->  (. - mean) / std  ->  model

:class:`WaveformInput` is that path up to the model; :class:`WaveformLoss` the engine's
objective (the per-example MSE of the model's output at ``s + delta``); :func:`wave_attack`
runs the generic engine (:func:`~.generic.run_engine`) with the threat model's update rule
and projection (:mod:`.wave_config`) and the projected attack's correlation ladder.

**Peak normalisation.** The data pipeline divides every clip by its peak. A perturbed clip
is a new recording, so the path divides ``s + delta`` by the peak of the *perturbed* clip,
``max(peak outside the excerpt, max |s + delta|)`` — what the model would see if the
perturbed audio were written to a file and loaded (the clean path is unchanged, its peak is
1). The SNR and the budgets are measured on the added signal ``delta`` against ``s``, before
that division (a gain does not change an SNR). ``renormalise=False`` feeds ``s + delta``
unscaled.

**SNR budget, exactly.** Under ``threat="snr"`` the engine moves ``u = delta / ||s||`` in
the L2 ball of radius ``10 ** (-snr_db / 20)`` (:class:`RelativeL2Ball`, which projects in
float64 with a 1e-6 margin), so every kept perturbation has ``SNR >= snr_db`` (tested to
1e-6 dB). Samples outside the clip (zero padding past its end) are never perturbed.

Example (a linear model on the 8 x 149 input of a short excerpt):
    >>> import torch
    >>> from mer_lib.attacks.wave_config import WaveAttackConfig
    >>> from mer_lib.wave_excerpts import WaveExcerpts, excerpt_span
    >>> first, stop, offs = excerpt_span(0, 8)
    >>> s = torch.sin(torch.arange(stop) * 0.05).unsqueeze(0)
    >>> ex = WaveExcerpts(waves=s, frame_starts=torch.from_numpy(offs)[None], in_clip=torch.ones_like(s, dtype=torch.bool),
    ...                   peak_outside=torch.zeros(1), rows=None, ids=["a"])
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 149, 8))
    >>> res = wave_attack(model, ex, torch.rand(1, 8), WaveAttackConfig(snr_db=30, max_iterations=3), mean=0.5, std=0.3)
    >>> bool(res.wave_snr_db()[0] >= 30 - 1e-6)
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..errors import ParameterError
from ..frontend import LogFiltSpec, frame_signal
from ..spectral_ops import peak_normalise
from .engine import AttackResult
from .generic import Evaluation, example_mse, run_engine
from .precision import full_float32
from .steps import L2Ball, L2Step, LinfBall, per_example, SignStep
from .stopping import CorrelationStop
from .wave_config import WaveAttackConfig

__all__ = ["WaveformInput", "WaveformLoss", "RelativeL2Ball", "WaveAttackResult", "wave_attack", "wave_snr_db"]

#: Relative margin by which :class:`RelativeL2Ball` stays inside its radius (float32 rounding).
BALL_MARGIN = 1e-6


class WaveformInput(torch.nn.Module):
    """Audio excerpts -> the model's standardised input ``(B, 1, frames, 149)``.

    ``forward(waves, frame_starts, peak_outside=None, in_clip=None)``: ``waves`` (B, L),
    ``frame_starts`` (B, T) the first sample of each frame inside ``waves`` (long);
    ``peak_outside`` (B,) and ``in_clip`` (B, L, bool) enable the clip's peak normalisation
    (see the module docstring; ``None``: no normalisation).

    Example:
        >>> import torch
        >>> fi = WaveformInput(mean=0.0, std=1.0)
        >>> fi(torch.randn(2, 3000), torch.tensor([[0, 704], [0, 704]])).shape
        torch.Size([2, 1, 2, 149])
    """

    def __init__(self, mean: float, std: float, *, renormalise: bool = True,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not float(std) > 0:
            raise ParameterError(f"std must be > 0 (the data's standardisation), got {std!r}")
        self.mean, self.std, self.renormalise = float(mean), float(std), bool(renormalise)
        self.front = LogFiltSpec(dtype=dtype)

    def forward(self, waves: torch.Tensor, frame_starts: torch.Tensor,
                peak_outside: torch.Tensor | None = None, in_clip: torch.Tensor | None = None) -> torch.Tensor:
        if waves.dim() != 2 or frame_starts.dim() != 2 or frame_starts.shape[0] != waves.shape[0]:
            raise ParameterError(f"waves must be (B, samples) and frame_starts (B, frames), got "
                                 f"{tuple(waves.shape)} and {tuple(frame_starts.shape)}")
        if self.renormalise and peak_outside is not None:
            waves = peak_normalise(waves, peak_outside, in_clip)
        spec = self.front.from_frames(frame_signal(waves, frame_starts))               # (B, T, 149)
        return ((spec - self.mean) / self.std).unsqueeze(1).to(waves.dtype)


class RelativeL2Ball:
    """The L2 ball of radius ``r`` per example, projected in float64 ``BALL_MARGIN`` inside it.

    Example:
        >>> RelativeL2Ball(1.0)(torch.tensor([[3.0, 4.0]])).norm().item() <= 1.0
        True
    """

    def __init__(self, radius: float) -> None:
        if not radius > 0:
            raise ParameterError(f"radius must be > 0, got {radius!r}")
        self.radius = float(radius)

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(delta.flatten(1), dim=1, dtype=torch.float64)
        shrink = torch.where(norm > self.radius, self.radius * (1 - BALL_MARGIN) / norm, torch.ones_like(norm))
        # the float64 product of the float32 samples, rounded once to float32
        return (delta * per_example(shrink, delta)).to(delta.dtype)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Uniform points of the ball (float32, CPU)."""
        return self(L2Ball(self.radius).sample(shape, generator))

    def __repr__(self) -> str:
        return f"RelativeL2Ball({self.radius:g})"


class WaveformLoss:
    """The engine's objective: per-example MSE of ``model(to_input(s + delta * scale))``.

    ``context`` (from :meth:`~mer_lib.wave_excerpts.WaveExcerpts.context`) carries each
    excerpt's frame starts, in-clip mask, peak outside the excerpt and norm; with
    ``relative=True`` the engine's perturbation is in units of the excerpt's norm (the SNR
    threat), else in sample amplitude.
    """

    def __init__(self, to_input: WaveformInput, *, relative: bool, loss=example_mse) -> None:
        self.to_input, self.relative, self.loss = to_input, bool(relative), loss

    def sample_scale(self, context: dict, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, L): what turns the engine's ``delta`` into samples: 1 (or the excerpt's norm if
        relative) inside the clip, 0 outside."""
        scale = context["in_clip"].to(dtype)
        if self.relative:
            scale = scale * context["norms"].to(dtype).unsqueeze(1)
        return scale

    def prepare(self, context: dict) -> dict:
        """``context`` plus its ``sample_scale`` (computed once per attack, not once per step)."""
        return {**context, "sample_scale": self.sample_scale(context)}

    def audio_delta(self, delta: torch.Tensor, context: dict) -> torch.Tensor:
        """The perturbation in samples: ``delta`` (times the norm if relative), zero outside the clip."""
        scale = context.get("sample_scale")
        return delta * (self.sample_scale(context, delta.dtype) if scale is None else scale.to(delta.dtype))

    def __call__(self, model, x, delta, y, *, grad, context):
        dvar = delta.detach().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            inputs = self.to_input(x + self.audio_delta(dvar, context), context["frame_starts"],
                                   context["peak_outside"], context["in_clip"])
            pred = model(inputs)
        if pred.shape != y.shape:
            raise ParameterError(f"model output shape {tuple(pred.shape)} does not match y {tuple(y.shape)}")
        if not grad:
            return Evaluation(output=pred.detach(), value=lambda: self.loss(pred, y).detach(),
                              inputs=inputs.detach())
        per = self.loss(pred, y)
        return Evaluation(output=pred.detach(), value=per.detach(), inputs=inputs.detach(),
                          gradient=lambda: torch.autograd.grad(per.sum(), dvar)[0])


def wave_snr_db(signal: torch.Tensor, delta: torch.Tensor, in_clip: torch.Tensor | None = None) -> torch.Tensor:
    """True SNR in dB per example: ``20 log10(||s|| / ||delta||)`` over the in-clip samples (float64).

    ``inf`` for a zero perturbation.

    >>> wave_snr_db(torch.ones(1, 100), torch.full((1, 100), 0.01)).round(decimals=4).tolist()
    [40.0]
    """
    mask = torch.ones_like(signal, dtype=torch.bool) if in_clip is None else in_clip
    s = (signal.double() * mask).norm(dim=1)
    d = (delta.double() * mask).norm(dim=1)
    return 20.0 * torch.log10(s / d)


@dataclass
class WaveAttackResult:
    """A waveform attack: the spectrogram-domain view (:class:`~.engine.AttackResult`, whose
    ``x``/``x_adv``/``delta`` are the model inputs of the clean and perturbed audio) plus the audio.

    Attributes:
        spec: the :class:`~.engine.AttackResult` of the model's inputs.
        waves: (N, L) the clean audio excerpts.
        wave_delta: (N, L) the kept perturbation in samples (zero outside the clip).
        final_wave_delta: the last perturbation evaluated, in samples.
        in_clip: (N, L) the in-clip mask.
    """

    spec: AttackResult
    waves: torch.Tensor
    wave_delta: torch.Tensor
    final_wave_delta: torch.Tensor
    in_clip: torch.Tensor

    def wave_snr_db(self) -> torch.Tensor:
        """(N,) true SNR in dB of the kept perturbation."""
        return wave_snr_db(self.waves, self.wave_delta, self.in_clip)

    def to_frame(self, ids, mean: float, std: float) -> pd.DataFrame:
        """:meth:`AttackResult.to_frame <mer_lib.attacks.AttackResult.to_frame>` (its ``snr_db``, ``l2``,
        ``linf`` measure the change of the model's input) plus ``wave_snr_db``, ``wave_l2`` and
        ``wave_linf`` of the kept audio perturbation and ``final_wave_snr_db`` of the last one."""
        table = self.spec.to_frame(ids, mean, std)
        d = (self.wave_delta.double() * self.in_clip).cpu()
        at = table.columns.get_loc("snr_db") + 1
        for i, (name, values) in enumerate((
                ("wave_snr_db", self.wave_snr_db().cpu()), ("wave_l2", d.norm(dim=1)),
                ("wave_linf", d.abs().amax(dim=1)),
                ("final_wave_snr_db", wave_snr_db(self.waves, self.final_wave_delta, self.in_clip).cpu()))):
            table.insert(at + i, name, values.numpy())
        return table


def _pieces(config: WaveAttackConfig):
    if config.threat == "snr":
        return L2Step(config.step_size), RelativeL2Ball(config.bound)
    return SignStep(config.step_size), LinfBall(config.bound)


def wave_attack(model: torch.nn.Module, excerpts, y: torch.Tensor, config: WaveAttackConfig, *,
                mean: float, std: float, batch_size: int | None = None, progress: bool = False) -> WaveAttackResult:
    """Untargeted waveform attack on ``model`` at the audio ``excerpts`` (a
    :class:`~mer_lib.wave_excerpts.WaveExcerpts`) with true ratings ``y`` (N, 8).

    Runs on the model's device; ``mean``/``std`` are the data's standardisation. The engine
    never changes the model's train/eval mode (the caller decides, as for :func:`~.engine.attack`).
    """
    if not isinstance(config, WaveAttackConfig):
        raise ParameterError(f"config must be a WaveAttackConfig, got {type(config).__name__}")
    if not isinstance(y, torch.Tensor) or y.dim() != 2 or y.shape[0] != len(excerpts):
        raise ParameterError(f"y must be ({len(excerpts)}, outputs), one row per excerpt, got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    x = excerpts.waves.to(device)
    y = y.detach().to(device=device, dtype=x.dtype)
    to_input = WaveformInput(mean, std, renormalise=config.renormalise).to(device)
    objective = WaveformLoss(to_input, relative=config.threat == "snr")
    context = objective.prepare(excerpts.context(device))
    update, projection = _pieces(config)
    start = torch.zeros_like(x)
    if config.random_start:
        start = projection.sample(tuple(x.shape), torch.Generator().manual_seed(config.seed)).to(device)
        start = start * context["in_clip"]
    res = run_engine(model, x, y, objective=objective, update=update, projection=projection,
                     stop=CorrelationStop(config.early_stop), start=start, steps=config.max_iterations,
                     batch_size=batch_size, progress=progress, desc=f"attack ({config.describe()})",
                     context=context)
    wave_delta = objective.audio_delta(res.delta.detach(), context)
    final_wave_delta = objective.audio_delta(res.final_delta.detach(), context)
    peaks, mask = context["peak_outside"], context["in_clip"]
    # the engine kept the model inputs at the kept and final perturbations (the objective gives
    # them), so only a random start's clean input is computed again
    adv, final = res.kept_inputs, res.final_inputs
    clean, clean_pred = res.first_inputs, res.first_output
    if config.random_start:
        with torch.no_grad(), full_float32():
            clean = to_input(x, context["frame_starts"], peaks, mask)
            clean_pred = model(clean).detach()
    spec = AttackResult(x=clean, y=y, x_adv=adv, delta=adv - clean, final_delta=final - clean,
                        iterations=res.iterations, delta_iteration=res.delta_iteration,
                        clean_pred=clean_pred, adv_pred=res.kept_output, final_pred=res.final_output,
                        **res.record)
    return WaveAttackResult(spec=spec, waves=x, wave_delta=wave_delta, final_wave_delta=final_wave_delta,
                            in_clip=mask)
