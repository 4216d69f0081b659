"""Local explanations in a time-frequency patch space, and ExpO's quality metrics.

Modules, one job each:

- ``patches``       :class:`PatchGrid`: K = bands x segments patches <-> input (ids, expand,
                    reduce, captum ``feature_mask``)
- ``neighbours``    Gaussian neighbours (ExpO), binary LIME masks with baseline 0, uniform boxes
- ``forward``       which output is explained (emotions / concepts, columns) and chunked
                    evaluation of many neighbours under frozen normalisation
- ``local_linear``  batched least-squares fits with intercept (:class:`LocalLinear`), the
                    residual projection, and the Gaussian explainer
- ``lime``          LIME via :class:`captum.attr.Lime` with the patch ``feature_mask``
- ``metrics``       neighbourhood fidelity NF and stability S (refitted at each neighbour)

Example:
    >>> import torch
    >>> from mer_lib.explain import PatchGrid, explain_local_linear, explanation_quality
    >>> from mer_lib.models import build_model
    >>> model = build_model("a2e", width=0.0625).eval()
    >>> x, grid = torch.randn(2, 1, 32, 24), PatchGrid(bands=2, segments=4)
    >>> explain_local_linear(model, x, grid).coef.shape            # (B, 8 emotions, K + 1)
    torch.Size([2, 8, 9])
    >>> q = explanation_quality(model, x, grid, seed=0)             # sigma 0.1, 5 neighbours
    >>> q.nf.shape, q.stability.shape
    (torch.Size([2, 8]), torch.Size([2, 8]))
"""
from .forward import TARGETS, extra_passes, output_function, outputs_at_offsets
from .lime import WeightedLeastSquares, lime_explanations
from .local_linear import (SIGMA_EVAL, LocalLinear, check_neighbours, default_fit_neighbours,
                           design_matrix, explain_local_linear, fit_local_linear, least_squares_residual)
from .metrics import (N_EVAL, ExplanationQuality, explanation_quality, explanation_stability,
                      neighbourhood_fidelity)
from .neighbours import (LIME_BASELINE, apply_masks, gaussian_neighbours, gaussian_offsets, lime_masks,
                         uniform_box)
from .patches import DEFAULT_BANDS, DEFAULT_SEGMENTS, PatchGrid, split_sizes

__all__ = [
    "PatchGrid", "split_sizes", "DEFAULT_BANDS", "DEFAULT_SEGMENTS",
    "gaussian_offsets", "gaussian_neighbours", "lime_masks", "apply_masks", "uniform_box", "LIME_BASELINE",
    "TARGETS", "output_function", "outputs_at_offsets", "extra_passes",
    "LocalLinear", "fit_local_linear", "least_squares_residual", "design_matrix", "check_neighbours",
    "default_fit_neighbours", "explain_local_linear",
    "WeightedLeastSquares", "lime_explanations",
    "ExplanationQuality", "explanation_quality", "neighbourhood_fidelity", "explanation_stability",
    "SIGMA_EVAL", "N_EVAL",
]
