"""LIME explanations on the patch grid, through :class:`captum.attr.Lime`.

Captum does the LIME part: sampling binary vectors, switching patches off (captum's
``feature_mask`` = :meth:`PatchGrid.feature_mask`, ``baselines`` = the value of a switched-off
patch), evaluating the model, weighting the samples with its default similarity kernel (an
exponential kernel of width 1 on the cosine distance between the original and the masked
input). What it lacks and is written here:

- a seeded sampler (captum's default draws from torch's global generator): each patch is
  on or off with probability 1/2, drawn from a ``torch.Generator``; the generator is
  re-seeded for every explained output, so all outputs of one call see the same masks;
- an exact, dependency-free interpretable model, :class:`WeightedLeastSquares` (closed-form
  weighted least squares with intercept; captum's own linear models either need scikit-learn
  or fit by SGD).

The baseline is :data:`mer_lib.explain.neighbours.LIME_BASELINE` = 0: in standardised
spectrograms, the training-set mean, so a switched-off patch is "average", not silent.
``n_samples`` defaults to ``4 (K + 1)`` masked copies per example (132 on a 4 x 8 grid).
Captum fits one example and one output at a time (``perturbations_per_eval`` masked copies
per forward pass), so LIME is meant for a few displayed examples; the metrics use the
batched Gaussian explainer of :mod:`mer_lib.explain.local_linear`.

Example:
    >>> import torch
    >>> from mer_lib.explain.patches import PatchGrid
    >>> grid = PatchGrid(2, 2)
    >>> w = torch.tensor([[3.0, -1.0, 0.0, 2.0]])
    >>> model = lambda x: grid.reduce(x) @ w.T          # linear in the patch means
    >>> x = torch.ones(1, 1, 8, 8)                        # every patch mean 1, baseline 0
    >>> lime_explanations(model, x, grid, seed=0).round(decimals=4)   # (B, outputs, K)
    tensor([[[ 3., -1.,  0.,  2.]]])
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from ..errors import ParameterError, check_int
from .forward import extra_passes, output_function
from .local_linear import check_neighbours, fit_local_linear
from .neighbours import LIME_BASELINE
from .patches import PatchGrid, _frames_bins


class WeightedLeastSquares:
    """Captum interpretable model: weighted least squares with intercept, in closed form.

    ``fit(dataloader)`` takes captum's batches ``(interpretable inputs (n, K), outputs (n,),
    sample weights (n,))``; ``representation()`` returns the weights ``(1, K)``, ``bias()`` the
    intercept. Solved in float64 by :func:`mer_lib.explain.local_linear.fit_local_linear` on
    rows scaled by ``sqrt(weight)``.
    """

    def __init__(self) -> None:
        self.coef: torch.Tensor | None = None

    def fit(self, train_data: DataLoader, **_: object) -> None:
        z, y, w = (torch.cat(parts).double() for parts in zip(*train_data))
        root = w.clamp_min(0).sqrt()[:, None]
        design = torch.cat([torch.ones_like(z[:, :1]), z], dim=1) * root
        check_neighbours(z.shape[0], z.shape[1], "n_samples")
        coef = torch.linalg.lstsq(design, y.reshape(-1, 1) * root).solution
        self.coef = coef[:, 0]

    def _fitted(self) -> torch.Tensor:
        if self.coef is None:
            raise ParameterError("WeightedLeastSquares: call fit() first")
        return self.coef

    def representation(self) -> torch.Tensor:
        return self._fitted()[1:][None]

    def bias(self) -> torch.Tensor:
        return self._fitted()[:1]


def _binary_sampler(generator: torch.Generator, n_patches: int) -> Callable:
    def perturb(original_input: torch.Tensor, **_: object) -> torch.Tensor:
        bits = torch.randint(0, 2, (1, n_patches), generator=generator, device=generator.device)
        return bits.to(original_input.device)
    return perturb


def lime_explanations(model: Callable, x: torch.Tensor, grid: PatchGrid, *, seed: int = 0,
                      n_samples: int | None = None, target: str = "emotions",
                      outputs: int | Sequence[int] | None = None, baseline: float = LIME_BASELINE,
                      perturbations_per_eval: int = 64) -> torch.Tensor:
    """LIME patch weights ``(B, O, K)`` of ``model`` at every input of ``x (B, 1, F, T)``.

    Args:
        model: callable ``x -> (B, outputs)`` or a model with ``forward_all`` (an ``nn.Module``
            runs under frozen normalisation, modes restored).
        grid: the patch grid; its ids are captum's ``feature_mask``.
        seed: seed of the masks (the same masks for every output).
        n_samples: masked copies per example (default ``4 (K + 1)``; at least K+1).
        target, outputs: which outputs are explained (all columns by default).
        baseline: value of a switched-off patch (default 0, the standardised mean).
        perturbations_per_eval: masked copies per forward pass.
    """
    try:
        from captum.attr import Lime   # lazy: captum takes a second to import
    except ImportError as err:  # pragma: no cover - captum is a dependency of the book
        raise ImportError("LIME explanations need captum: pip install 'captum>=0.7'") from err
    check_int("seed", seed, minimum=0)
    check_int("perturbations_per_eval", perturbations_per_eval)
    n_samples = check_neighbours(4 * (grid.n_patches + 1) if n_samples is None else n_samples,
                                 grid.n_patches, "n_samples")
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
        raise ParameterError(f"baseline must be a number, got {baseline!r}")
    grid.check_fits(*_frames_bins(x))
    fn = output_function(model, target, outputs)
    mask = grid.feature_mask(x)
    generator = torch.Generator()
    explainer = Lime(fn, interpretable_model=WeightedLeastSquares(),
                     perturb_func=_binary_sampler(generator, grid.n_patches))
    with extra_passes(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*multiple inputs for Lime.*")
        n_out = fn(x[:1]).shape[1]
        weights = []
        for column in range(n_out):
            generator.manual_seed(seed)
            w = explainer.attribute(x, baselines=float(baseline), target=column, feature_mask=mask,
                                    n_samples=n_samples, perturbations_per_eval=perturbations_per_eval,
                                    return_input_shape=False)
            weights.append(w.reshape(x.shape[0], grid.n_patches))
    return torch.stack(weights, dim=1).to(x.dtype)
