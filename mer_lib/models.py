"""The VGG-style CNN of the paper, its two heads, and the registry of model variants.

Backbone (DESIGN §3; every conv is followed by BatchNorm and ReLU, "same" padding,
Kaiming-normal init)::

    conv 5x5 / stride 2 (64) -> conv 3x3 (64) -> maxpool 2 + dropout2d 0.3
    -> conv 128 -> conv 128 -> maxpool 2 + dropout2d 0.3
    -> conv 256 -> conv 256 -> conv 384 -> conv 512 -> conv 1x1 (256) -> global average pool

Channel counts are multiplied by ``width`` (``max(4, round(c * width))``), so the same
architecture trains on a 2-core CPU. The network is fully convolutional: any number of
frames and bands (>= 8 each) works; the data uses 149 bands.

Heads:

- ``"direct"``     linear 256 -> 8 emotions (A2E, aA2E)
- ``"bottleneck"`` linear 256 -> 7 units -> linear 7 -> 8 emotions (A2B2E, A2M2E, aA2B2E);
  the 7 units are the *concepts*, trained on the mid-level ratings when the variant's
  ``concept_weight`` is > 0 (A2M2E).

A :class:`Variant` names a head plus a training recipe; :func:`register_variant` adds one
(the ExpO and RAR variants are registered this way by :mod:`mer_lib.objectives`, each naming
its training objective).

Example:
    >>> import torch
    >>> from mer_lib.models import build_model
    >>> model = build_model("a2m2e", width=0.0625).eval()
    >>> emotions, concepts = model.forward_all(torch.zeros(2, 1, 63, 149))
    >>> tuple(emotions.shape), tuple(concepts.shape)
    ((2, 8), (2, 7))
    >>> tuple(model.emotion_head_weights().shape)
    (8, 7)
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from .datasets import EMOTIONS, MIDLEVEL
from .errors import ParameterError

N_EMOTIONS = len(EMOTIONS)
N_CONCEPTS = len(MIDLEVEL)
HEADS = ("direct", "bottleneck")

#: Backbone layers as (kind, channels, kernel, stride); "pool" = maxpool 2 + dropout2d 0.3.
BACKBONE = (
    ("conv", 64, 5, 2), ("conv", 64, 3, 1), ("pool",),
    ("conv", 128, 3, 1), ("conv", 128, 3, 1), ("pool",),
    ("conv", 256, 3, 1), ("conv", 256, 3, 1), ("conv", 384, 3, 1), ("conv", 512, 3, 1),
    ("conv", 256, 1, 1),
)
DROPOUT = 0.3
MIN_SIZE = 8  # smallest number of frames / bands the backbone accepts


def scaled_channels(channels: int, width: float) -> int:
    """Channel count of a layer at a width multiplier: ``max(4, round(channels * width))``."""
    return max(4, int(round(channels * width)))


# --------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """A model variant: which head, and how it is trained.

    Attributes:
        name: registry key, lower case (``"a2m2e"``).
        head: ``"direct"`` or ``"bottleneck"``.
        concept_weight: weight w of the concept (mid-level) MSE; the loss is
            ``(1 - w) * emotion MSE + w * concept MSE`` (w = 0: emotion MSE only).
        adversarial: adversarial training (an extra step on attacked batches, see training).
        description: one line for tables and ``python -m mer_lib list-variants``.
        needs_midlevel: training needs mid-level ratings in the data.
        label: display name (``"A2M2E"``); defaults to the upper-cased name.
        objective: name of the training objective in :data:`mer_lib.objectives.OBJECTIVES`
            (default: ``"adversarial"`` for adversarial variants, else ``"mse"``).
        options: the variant's defaults for the objective's options, as ``((key, value), ...)``
            with JSON-serialisable values; part of the cache key (a training configuration
            may override them). Read them with :meth:`option`.
    """

    name: str
    head: str
    concept_weight: float = 0.0
    adversarial: bool = False
    description: str = ""
    needs_midlevel: bool = False
    label: str = ""
    objective: str = ""
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.lower():
            raise ParameterError(f"variant name must be a non-empty lower-case string, got {self.name!r}")
        if self.head not in HEADS:
            raise ParameterError(f"variant {self.name}: head must be one of {list(HEADS)}, got {self.head!r}")
        w = self.concept_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (0.0 <= w < 1.0):
            raise ParameterError(f"variant {self.name}: concept_weight must be a number in [0, 1), got {w!r}")
        if w > 0 and self.head != "bottleneck":
            raise ParameterError(f"variant {self.name}: concept_weight > 0 needs the bottleneck head")
        if w > 0 and not self.needs_midlevel:
            object.__setattr__(self, "needs_midlevel", True)
        if not self.label:
            object.__setattr__(self, "label", self.name.upper())
        if not self.objective:
            object.__setattr__(self, "objective", "adversarial" if self.adversarial else "mse")
        if not isinstance(self.objective, str):
            raise ParameterError(f"variant {self.name}: objective must be a name, got {self.objective!r}")
        items = self.options.items() if isinstance(self.options, dict) else self.options
        object.__setattr__(self, "options", tuple((str(k), v) for k, v in items))

    def option(self, key: str, default: Any = None) -> Any:
        """The value of one entry of :attr:`options` (``default`` when absent)."""
        return dict(self.options).get(key, default)

    def identity(self) -> dict:
        """The fields that change what is trained (for cache keys; no label/description)."""
        d = asdict(self)
        d.pop("description")
        d.pop("label")
        d["options"] = [list(kv) for kv in self.options]
        return d


VARIANTS: dict[str, Variant] = {}


def register_variant(variant: Variant, *, replace: bool = False) -> Variant:
    """Add a variant to :data:`VARIANTS` (``replace=True`` to redefine an existing name)."""
    if not isinstance(variant, Variant):
        raise ParameterError(f"register_variant expects a Variant, got {type(variant).__name__}")
    if variant.name in VARIANTS and not replace and VARIANTS[variant.name] != variant:
        raise ParameterError(f"variant {variant.name!r} is already registered; pass replace=True")
    VARIANTS[variant.name] = variant
    return variant


def get_variant(name: str | Variant) -> Variant:
    """Look a variant up by name (case-insensitive); a Variant is returned as is."""
    if isinstance(name, Variant):
        return name
    key = name.lower() if isinstance(name, str) else name
    if key not in VARIANTS:
        raise ParameterError(f"unknown model variant {name!r}; known variants: {sorted(VARIANTS)}")
    return VARIANTS[key]


for _v in (
    Variant("a2e", "direct", description="black box: audio -> emotions"),
    Variant("a2b2e", "bottleneck",
            description="7-unit bottleneck trained on emotions only (no concept supervision)"),
    Variant("a2m2e", "bottleneck", concept_weight=0.5, needs_midlevel=True,
            description="interpretable: 7 units trained on mid-level features, 0.5/0.5 loss"),
    Variant("aa2e", "direct", adversarial=True, label="aA2E",
            description="A2E with adversarial training"),
    Variant("aa2b2e", "bottleneck", adversarial=True, label="aA2B2E",
            description="A2B2E with adversarial training"),
):
    register_variant(_v)


# --------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------

def _conv_block(c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def make_backbone(width: float = 1.0) -> tuple[nn.Sequential, int]:
    """The VGG-style feature extractor (up to, not including, global pooling) and its width."""
    layers: list[nn.Module] = []
    c_in = 1
    for spec in BACKBONE:
        if spec[0] == "pool":
            layers += [nn.MaxPool2d(2), nn.Dropout2d(DROPOUT)]
        else:
            _, c, k, s = spec
            c_out = scaled_channels(c, width)
            layers += _conv_block(c_in, c_out, k, s)
            c_in = c_out
    return nn.Sequential(*layers), c_in


class MerNet(nn.Module):
    """VGG-style CNN with a direct or a bottleneck head.

    ``forward(x)`` returns the emotions ``(B, 8)`` as a plain tensor (for captum and the
    attacks); ``forward_all(x)`` returns ``(emotions, concepts)`` with concepts ``(B, 7)``
    for bottleneck models and None otherwise.

    Attributes:
        variant: the variant's name (``"a2m2e"``); ``spec`` is the :class:`Variant`.
        width: the channel multiplier.
        head: ``"direct"`` or ``"bottleneck"``.
    """

    def __init__(self, variant: str | Variant = "a2e", width: float = 1.0):
        super().__init__()
        spec = get_variant(variant)
        if isinstance(width, bool) or not isinstance(width, (int, float)) \
                or not math.isfinite(width) or not 0 < width <= 16:
            raise ParameterError(f"width must be a number in (0, 16], got {width!r}")
        self.spec = spec
        self.variant = spec.name
        self.head = spec.head
        self.width = float(width)
        self.features, self.n_features = make_backbone(self.width)
        if spec.head == "bottleneck":
            self.to_concepts: nn.Linear | None = nn.Linear(self.n_features, N_CONCEPTS)
            self.to_emotions = nn.Linear(N_CONCEPTS, N_EMOTIONS)
        else:
            self.to_concepts = None
            self.to_emotions = nn.Linear(self.n_features, N_EMOTIONS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal weights (fan-in, ReLU gain), zero biases, BatchNorm (1, 0)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] < MIN_SIZE or x.shape[3] < MIN_SIZE:
            raise ParameterError(
                f"MerNet expects a tensor (batch, 1, frames, bands) with frames and bands >= "
                f"{MIN_SIZE}, got shape {tuple(x.shape)}")

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output after global average pooling, ``(B, n_features)``."""
        self._check(x)
        return self.features(x).mean(dim=(2, 3))

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(emotions (B, 8), concepts (B, 7) or None)``."""
        h = self.embedding(x)
        if self.to_concepts is None:
            return self.to_emotions(h), None
        concepts = self.to_concepts(h)
        return self.to_emotions(concepts), concepts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Emotions ``(B, 8)``."""
        return self.forward_all(x)[0]

    def emotion_head_weights(self) -> torch.Tensor:
        """The 7 -> 8 weight matrix of a bottleneck model, shape (8 emotions, 7 concepts).

        Rows follow :data:`mer_lib.datasets.EMOTIONS`, columns :data:`MIDLEVEL`.
        """
        if self.to_concepts is None:
            raise ParameterError(f"model {self.variant} has a direct head: no 7 -> 8 weights")
        return self.to_emotions.weight.detach().clone()

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, width={self.width}"


def build_model(variant: str | Variant, width: float = 1.0) -> MerNet:
    """A freshly initialised :class:`MerNet` of a variant (seed torch first for repeatability)."""
    return MerNet(variant, width)


#: Modules whose behaviour differs between train and eval mode and that extra passes freeze:
#: every BatchNorm / InstanceNorm (``_NormBase``: running statistics) and every dropout.
FROZEN_MODULE_TYPES = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


@contextmanager
def frozen_normalisation(model: nn.Module) -> Iterator[nn.Module]:
    """Run extra passes (neighbours, attacks) with frozen normalisation and no dropout.

    Inside the block every normalisation layer (BatchNorm, InstanceNorm) is in eval mode, so
    it normalises with its running statistics and does *not* update them, and every dropout
    layer is off; all other modules (and ``model.training`` itself) keep their mode, and
    gradients flow as usual, so a regulariser computed inside can be backpropagated. On exit
    (also on an exception) every module gets back the exact mode it had before.

    Example:
        >>> model = build_model("a2e", width=0.0625).train()
        >>> before = model.features[1].running_mean.clone()
        >>> with frozen_normalisation(model):
        ...     _ = model(torch.randn(2, 1, 16, 16))
        ...     model.training, model.features[1].training
        (True, False)
        >>> model.features[1].training, bool(torch.equal(before, model.features[1].running_mean))
        (True, True)
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        for module in model.modules():
            if isinstance(module, FROZEN_MODULE_TYPES):
                module.training = False
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
