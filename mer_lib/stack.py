"""A model stack: K independent MerNets of one architecture evaluated as one network.

The K models share nothing but the shape: every convolution is one grouped convolution
(``groups=K``, model k owns output channels ``k*C .. (k+1)*C - 1``), every BatchNorm one
``BatchNorm2d`` over ``K*C`` channels (per-channel statistics, so per model), the heads are
batched matrix products (``torch.baddbmm``) with per-model weights. The input is
``(K, B, 1, frames, bands)`` — model k sees its own ``B`` examples — and the outputs are
``(K, B, ...)``. A shared input ``(B, 1, frames, bands)`` is fed to every model.

- :func:`stack_models` builds a stack from K :class:`~mer_lib.models.MerNet` (exact copy of
  their parameters and buffers), :func:`unstack` splits it back into K ordinary MerNets;
  :meth:`ModelStack.member_state_dict` is model k's ``state_dict`` in the single-model format.
  The stack's state-dict keys are the MerNet's: stacked tensor ``t`` holds model k's tensor
  at ``t.view(K, *shape)[k]`` (``num_batches_tracked``, a step counter, is one for the stack,
  with each member's own offset: fine-tunes of models that stopped at different epochs stack).
- Dropout: each member draws its masks from its own generator (``ModelStack.generators``),
  in the same call as ``torch.nn.functional.dropout2d`` does, so member k's masks are those
  a single model would draw from a global generator in the same state (the trainer sets them;
  with ``generators=None`` all members draw from the global generator).
- :func:`mer_lib.attacks.stacked.stacked_attack` runs the evaluation attack on all K models
  in one pass (an algorithm on top of this model layer, so it lives with the attacks).
- :func:`check_stack_state` rejects a stacked checkpoint of another K.

Example:
    >>> import torch
    >>> from mer_lib.models import build_model
    >>> torch.manual_seed(0) and None
    >>> models = [build_model("a2b2e", width=0.0625).eval() for _ in range(3)]
    >>> stack = stack_models(models).eval()
    >>> x = torch.randn(3, 2, 1, 16, 16)
    >>> emotions, concepts = stack.forward_all(x)
    >>> tuple(emotions.shape), tuple(concepts.shape)
    ((3, 2, 8), (3, 2, 7))
    >>> bool(torch.allclose(emotions[1], models[1](x[1]), atol=1e-5))
    True
    >>> back = unstack(stack)
    >>> all(torch.equal(a.to_emotions.weight, b.to_emotions.weight) for a, b in zip(models, back))
    True
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .errors import MerError, ParameterError
from .models import MIN_SIZE, MerNet, build_model


class StackError(MerError, ValueError):
    """Models that cannot share a stack, a bad stack size or a checkpoint of another K."""


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------

class StackedDropout2d(nn.Dropout2d):
    """``Dropout2d`` over ``K`` members, each drawing its channel mask from its own generator."""

    def __init__(self, p: float, k: int, owner: "ModelStack") -> None:
        super().__init__(p)
        self.k = k
        self._owner = [owner]          # a list: not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        gens = self._owner[0].generators
        b, kc = x.shape[0], x.shape[1]
        c = kc // self.k
        noise = []
        for k in range(self.k):
            # the same draws as ATen's feature dropout: an (B, C, 1, 1) bernoulli_(1 - p) / (1 - p)
            n = torch.empty((b, c, 1, 1), dtype=x.dtype, device=x.device)
            n.bernoulli_(1 - self.p, generator=None if gens is None else gens[k])
            noise.append(n.div_(1 - self.p))
        return x * torch.cat(noise, dim=1)


class StackedLinear(nn.Module):
    """K linear layers ``(K, B, in) -> (K, B, out)``: weight ``(K, out, in)``, bias ``(K, out)``."""

    def __init__(self, k: int, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(k, n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(k, n_out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight.transpose(1, 2))


# --------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------

class ModelStack(nn.Module):
    """K MerNets of one variant and width as one network (see the module docstring).

    Attributes:
        k: number of members; ``variant``, ``head``, ``width`` as the members'.
        generators: None, or one ``torch.Generator`` per member for its dropout masks.
    """

    def __init__(self, template: MerNet, k: int) -> None:
        super().__init__()
        k = check_stack_size(k)
        self.k, self.spec, self.variant, self.head, self.width = k, template.spec, template.variant, \
            template.head, template.width
        self.n_features = template.n_features
        self.generators: list[torch.Generator] | None = None
        layers: list[nn.Module] = []
        for m in template.features:
            if isinstance(m, nn.Conv2d):
                layers.append(nn.Conv2d(k * m.in_channels, k * m.out_channels, m.kernel_size,
                                        stride=m.stride, padding=m.padding, groups=k, bias=False))
            elif isinstance(m, nn.BatchNorm2d):
                layers.append(nn.BatchNorm2d(k * m.num_features, eps=m.eps, momentum=m.momentum))
            elif isinstance(m, nn.ReLU):
                layers.append(nn.ReLU(inplace=True))
            elif isinstance(m, nn.MaxPool2d):
                layers.append(nn.MaxPool2d(m.kernel_size))
            elif isinstance(m, nn.Dropout2d):
                layers.append(StackedDropout2d(m.p, k, self))
            else:
                raise StackError(f"cannot stack a backbone layer of type {type(m).__name__}")
        self.features = nn.Sequential(*layers)
        if template.to_concepts is not None:
            self.to_concepts: StackedLinear | None = StackedLinear(
                k, template.to_concepts.in_features, template.to_concepts.out_features)
        else:
            self.to_concepts = None
        self.to_emotions = StackedLinear(k, template.to_emotions.in_features, template.to_emotions.out_features)
        self._shapes = {name: tuple(t.shape) for name, t in template.state_dict().items()}
        self._tracked_offsets: dict[str, list[int]] = {}

    # ---------------------------------------------------------------- forward
    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``(K, B, 1, T, F)`` or shared ``(B, 1, T, F)`` -> the grouped layout ``(B, K, T, F)``."""
        if x.dim() == 4 and x.shape[1] == 1 and min(x.shape[2:]) >= MIN_SIZE:
            return x.expand(x.shape[0], self.k, *x.shape[2:])
        if x.dim() != 5 or x.shape[0] != self.k or x.shape[2] != 1 or min(x.shape[3:]) < MIN_SIZE:
            raise ParameterError(
                f"a stack of {self.k} models expects a tensor ({self.k}, batch, 1, frames, bands) or a "
                f"shared (batch, 1, frames, bands) with frames and bands >= {MIN_SIZE}, got shape {tuple(x.shape)}")
        return x.squeeze(2).transpose(0, 1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone outputs after global average pooling, ``(K, B, n_features)``."""
        h = self.features(self._inputs(x)).mean(dim=(2, 3))
        return h.view(h.shape[0], self.k, -1).transpose(0, 1)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(emotions (K, B, 8), concepts (K, B, 7) or None)``."""
        h = self.embedding(x)
        if self.to_concepts is None:
            return self.to_emotions(h), None
        concepts = self.to_concepts(h)
        return self.to_emotions(concepts), concepts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Emotions ``(K, B, 8)``."""
        return self.forward_all(x)[0]

    # ---------------------------------------------------------------- members
    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Model ``k``'s ``state_dict`` in the single-model format (detached copies, on the CPU)."""
        if not 0 <= k < self.k:
            raise ParameterError(f"member index must be in [0, {self.k}), got {k}")
        out = {}
        for name, t in self.state_dict().items():
            shape = self._shapes[name]
            if name.endswith("num_batches_tracked"):
                part = t + self._tracked_offsets.get(name, [0] * self.k)[k]
            else:
                part = t.reshape(self.k, *shape)[k]
            out[name] = part.detach().to("cpu", copy=True).contiguous()
        return out

    def load_members(self, states: Sequence[dict[str, torch.Tensor]]) -> "ModelStack":
        """Copy K single-model state dicts in (exact copies)."""
        if len(states) != self.k:
            raise StackError(f"a stack of {self.k} models needs {self.k} state dicts, got {len(states)}")
        tracked = {name for name in self._shapes if name.endswith("num_batches_tracked")}
        cumulative = any(isinstance(m, nn.BatchNorm2d) and m.momentum is None for m in self.modules())
        self._tracked_offsets = {}
        with torch.no_grad():
            own = self.state_dict()
            for name, t in own.items():
                if name in tracked:
                    # a step counter: with a momentum BatchNorm it enters no computation, so members
                    # may differ (fine-tunes of models that stopped at other epochs); the stack counts
                    # from the first member's and each member keeps its own offset
                    counts = [int(s[name]) for s in states]
                    if len(set(counts)) != 1 and cumulative:
                        raise StackError(f"the models took different numbers of training steps "
                                         f"({name}: {sorted(set(counts))}) and average their BatchNorm "
                                         f"statistics cumulatively; they cannot share a stack")
                    t.copy_(states[0][name])
                    self._tracked_offsets[name] = [c - counts[0] for c in counts]
                else:
                    t.copy_(torch.stack([s[name].to(t.device, t.dtype) for s in states])
                            .reshape(t.shape))
        return self

    def extra_repr(self) -> str:
        return f"k={self.k}, variant={self.variant!r}, width={self.width}"


class StackSizeError(StackError, ParameterError):
    """A bad ``stack_size``: a stack error and a bad parameter value (the CLI exits 2 with one line)."""


def check_stack_size(k) -> int:
    """``k`` as an int >= 1, else :class:`StackSizeError` naming ``stack_size``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise StackSizeError(f"stack_size must be an integer >= 1, got {k!r}")
    return k


def _signature(model: MerNet) -> tuple:
    return model.variant, model.width, tuple((n, tuple(t.shape)) for n, t in model.state_dict().items())


def stack_models(models: Sequence[MerNet]) -> ModelStack:
    """A :class:`ModelStack` holding exact copies of ``models`` (same variant and width), on their device."""
    if isinstance(models, MerNet) or not isinstance(models, (list, tuple)):
        raise StackError(f"models must be a list of MerNet, got {type(models).__name__}")
    check_stack_size(len(models))
    bad = [i for i, m in enumerate(models) if not isinstance(m, MerNet)]
    if bad:
        raise StackError(f"models[{bad[0]}] is a {type(models[bad[0]]).__name__}, not a MerNet")
    first = _signature(models[0])
    for i, m in enumerate(models[1:], 1):
        if _signature(m) != first:
            raise StackError(f"models[{i}] ({m.variant}, width {m.width}) does not share the shape of "
                             f"models[0] ({models[0].variant}, width {models[0].width}); a stack holds "
                             f"models of one variant and width")
    p = next(models[0].parameters())
    stack = ModelStack(models[0], len(models)).to(device=p.device, dtype=p.dtype)
    stack.load_members([m.state_dict() for m in models])
    return stack.train(models[0].training)


def unstack(stack: ModelStack) -> list[MerNet]:
    """K ordinary :class:`~mer_lib.models.MerNet` with the members' exact parameters and buffers.

    They are built on the stack's device and dtype, in the stack's train/eval mode; building
    does not touch the global random state.
    """
    p = next(stack.parameters())
    out = []
    with torch.random.fork_rng(devices=[]):
        for k in range(stack.k):
            model = build_model(stack.spec, stack.width).to(device=p.device, dtype=p.dtype)
            model.load_state_dict(stack.member_state_dict(k))
            out.append(model.train(stack.training))
    return out


def stack_state(stack: ModelStack) -> dict:
    """A stacked checkpoint: the stack's ``state_dict`` with its size, variant and width."""
    return {"stack_size": stack.k, "variant": stack.variant, "width": stack.width,
            "state_dict": {k: v.detach().cpu() for k, v in stack.state_dict().items()}}


class FlatStack(nn.Module):
    """A stack seen as one model of ``K * R`` examples: ``(n K R, ...) -> (n K R, ...)``.

    The rows come in ``n >= 1`` blocks of ``K * R``; in each block, rows ``k*R .. (k+1)*R - 1``
    are member k's. With one block this is member-major order; algorithms that evaluate
    several points per example as one batch *point-major* (the Riemann steps of Integrated
    Gradients: step 1 of every example, then step 2, ...) give ``n`` blocks, and each row
    still reaches its own member. Per-example algorithms written for one model (attacks,
    attributions) then run on all members at once; what they average over the batch is
    averaged over ``K * R`` examples (scale a mean-based loss by K to get the members' own
    means summed).

    Example:
        >>> torch.manual_seed(0) and None
        >>> models = [build_model("a2e", width=0.0625).eval() for _ in range(2)]
        >>> flat = FlatStack(stack_models(models).eval(), rows_per_member=3)
        >>> x = torch.randn(12, 1, 16, 16)                 # two blocks of 2 x 3 rows
        >>> bool(torch.allclose(flat(x)[9:], models[1](x[9:]), atol=1e-5))
        True
    """

    def __init__(self, stack: "ModelStack", rows_per_member: int) -> None:
        super().__init__()
        if isinstance(rows_per_member, bool) or not isinstance(rows_per_member, int) or rows_per_member < 1:
            raise ParameterError(f"rows_per_member must be an integer >= 1, got {rows_per_member!r}")
        self.stack, self.rows = stack, rows_per_member

    def forward_all(self, x: torch.Tensor):
        k, r = self.stack.k, self.rows
        if x.shape[0] % (k * r):
            raise ParameterError(f"a flat stack of {k} members x {r} rows needs a multiple of {k * r} rows, "
                                 f"got {x.shape[0]}")
        n = x.shape[0] // (k * r)
        members = x.view(n, k, r, *x.shape[1:]).transpose(0, 1).reshape(k, n * r, *x.shape[1:])

        def back(t):
            return None if t is None else t.view(k, n, r, *t.shape[2:]).transpose(0, 1).reshape(x.shape[0], *t.shape[2:])

        e, c = self.stack.forward_all(members)
        return back(e), back(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]


def check_stack_state(stack: ModelStack, state: dict) -> None:
    """Load a :func:`stack_state` checkpoint into ``stack``; :class:`StackError` if it is of another K or shape."""
    if not isinstance(state, dict) or "stack_size" not in state:
        raise StackError("not a stacked checkpoint (no stack_size)")
    if state["stack_size"] != stack.k:
        raise StackError(f"the checkpoint holds a stack of stack_size={state['stack_size']} models, "
                         f"this stack has {stack.k}")
    if (state.get("variant"), state.get("width")) != (stack.variant, stack.width):
        raise StackError(f"the checkpoint holds {state.get('variant')} models of width {state.get('width')}, "
                         f"this stack {stack.variant} of width {stack.width}")
    stack.load_state_dict(state["state_dict"])


# --------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------

__all__ = ["ModelStack", "FlatStack", "StackError", "StackedDropout2d", "StackedLinear", "stack_models", "unstack",
           "stack_state", "check_stack_state", "check_stack_size"]
