"""Replicate-batched child-network operations, one builder per op name of a space.

Every op holds its parameters with a leading **replicate axis** ``R``: the ``R``
replicates of one architecture are ``R`` independent networks that run as one
batched computation (grouped convolutions, batched matrix products, einsums). No
parameter is shared between replicates, so the gradient of the summed loss with
respect to replicate ``r``'s parameters is exactly the gradient of replicate ``r``'s
own loss: training ``R`` replicates together is training each alone.

Tensor layout between ops:

* sequence tensors ``(R, B, C, L)``, described by the shape ``SeqShape(C, L)``. Their
  memory is position-major, ``(B, L, R, C)``: seen as the image ``(B, R * C, 1, L)``
  of all replicates (:func:`_as_image`) that is channels-last, the layout in which
  grouped convolutions and pooling over ``R`` groups run fastest on CPU;
* flat tensors ``(R, B, F)``, described by ``FlatShape(F)``.

Ops are looked up by the ``op`` name of a space :class:`~bionas_bench.space.Choice` in
:data:`OPS` (a registry, not a chain of ifs), and built with the choice's parameters;
an unknown parameter is a :class:`~bionas_bench.errors.TrainingError`.

Each op may contribute a per-replicate **penalty** (``(R,)`` tensor added to the
training loss) and a **projection** applied to its parameters after each optimizer
step (the counterpart of a Keras weight constraint, which Keras also applies after
each update). Initialisation draws each replicate's slice from that replicate's own
``torch.Generator`` in float64 (then casts), so a replicate's initial weights depend
only on its seed, never on ``R``, the dtype or the device.

Correspondence with the original Keras child networks (facts in
``shared/bionas_pub/README.md``) is given per op below; departures are stated.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bionas_bench.errors import TrainingError

__all__ = [
    "OPS",
    "BatchedOp",
    "FlatShape",
    "SeqShape",
    "Shape",
    "build_op",
    "register_op",
]

N_BASES = 4


@dataclass(frozen=True)
class SeqShape:
    """A per-sample sequence tensor of ``channels`` x ``length`` (channels first)."""

    channels: int
    length: int


@dataclass(frozen=True)
class FlatShape:
    """A per-sample flat feature vector of ``features`` values."""

    features: int


Shape = SeqShape | FlatShape

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def _activation(name: str, op: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise TrainingError(
            f"op {op!r}: unknown activation {name!r}; known: {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


# ------------------------------------------------------------------ parameter values


@dataclass(frozen=True)
class Rule:
    """What one op parameter's value must be: ``test`` accepts it, ``expected`` says it in words."""

    expected: str
    test: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (TOML's booleans are ints to Python, and are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(*values: str) -> Rule:
    return Rule(f"one of {', '.join(repr(v) for v in values)}", lambda value: value in values)


SIZE = Rule("a whole number >= 1", lambda value: _is_int(value) and value >= 1)
NON_NEGATIVE = Rule("a finite number >= 0", lambda value: _is_number(value) and value >= 0)
POSITIVE = Rule("a finite number > 0", lambda value: _is_number(value) and value > 0)
FLAG = Rule("true or false", lambda value: isinstance(value, bool))
ACTIVATION = _one_of(*sorted(_ACTIVATIONS))


def check_params(op: str, params: Mapping[str, Any]) -> None:
    """Refuse a parameter value op ``op`` cannot be built with whatever its input (a negative
    or zero size, an unknown activation), naming the parameter and what it must be.

    Every architecture using such a choice would fail alike, so this is bad input, not an
    architecture that does not fit the data. An op's rules are its ``param_rules``
    (parameters without one, and ops registered without any, are not checked here).
    """
    rules: Mapping[str, Rule] = getattr(OPS.get(op), "param_rules", {})
    for name, value in params.items():
        rule = rules.get(name)
        if rule is not None and not rule.test(value):
            raise TrainingError(f"op {op!r}: {name} = {value!r} must be {rule.expected}")


# ------------------------------------------------------------------------------ base


class BatchedOp(nn.Module):
    """One layer of ``R`` independent networks.

    Subclasses set ``out_shape``, create parameters with a leading ``R`` axis in
    ``__init__``, and implement :meth:`forward`. Optional hooks: :meth:`init_replicate`
    (draw replicate ``r``'s initial values from its generator), :meth:`penalty`
    (``(R,)`` regularisation added to the loss), :meth:`project_` (constraints after
    each optimizer step) and :meth:`first_layer_filters` (``(R, J, W, 4)`` for
    knowledge scoring, base axis last).
    """

    out_shape: Shape
    #: what each parameter's value must be, checked before any network is built (see check_params)
    param_rules: ClassVar[Mapping[str, Rule]] = {}

    def init_replicate(self, r: int, gen: torch.Generator) -> None:  # noqa: B027 - optional hook
        """Draw replicate ``r``'s initial parameters from ``gen`` (no parameters: nothing)."""

    def penalty(self) -> torch.Tensor | None:
        """Per-replicate regularisation ``(R,)`` added to the training loss, or None."""
        return None

    @torch.no_grad()
    def project_(self) -> None:  # noqa: B027 - optional hook
        """Apply the op's constraints to its parameters in place (after an update)."""

    def first_layer_filters(self) -> torch.Tensor | None:
        """Motif-like filters ``(R, J, W, 4)`` if this op scans the one-hot input."""
        return None


def _uniform_(t: torch.Tensor, limit: float, gen: torch.Generator) -> None:
    draw = torch.rand(t.shape, generator=gen, dtype=torch.float64) * (2 * limit) - limit
    t.copy_(draw.to(dtype=t.dtype, device=t.device))


def _normal_(t: torch.Tensor, std: float, gen: torch.Generator) -> None:
    draw = torch.randn(t.shape, generator=gen, dtype=torch.float64) * std
    t.copy_(draw.to(dtype=t.dtype, device=t.device))


def _glorot_limit(fan_in: int, fan_out: int) -> float:
    """Glorot (Xavier) uniform bound ``sqrt(6 / (fan_in + fan_out))``, as Keras computes it."""
    return math.sqrt(6.0 / (fan_in + fan_out))


def _as_image(x: torch.Tensor) -> torch.Tensor:
    """``(R, B, C, L)`` -> the grouped image ``(B, R * C, 1, L)`` of its ``R`` replicates.

    A view (no copy) when ``x`` is stored position-major, ``(B, L, R, C)`` in memory,
    as :meth:`~bionas_bench.train.batched.TrainData.batch` and every sequence op here
    produce it; the image is then channels-last. On CPU, oneDNN's channels-first grouped
    ``conv1d`` of 20 groups of 4 channels took about 2x the time per replicate of one
    replicate's own convolution; the channels-last one takes less than half of that,
    and channels-last max pooling over ``R * C`` channels is several times faster per
    replicate than over one replicate's ``C``.
    """
    r, b, c, length = x.shape
    return x.permute(1, 0, 2, 3).reshape(b, r * c, 1, length)


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands the gradient on in channels-last layout.

    The gradient reaching an image op from a flat op (flatten, ``sfc``, global pooling,
    dense) comes in those ops' layout; given so to a channels-last pooling or
    convolution backward it makes the kernel convert its input and output images
    (two full-size copies per step). One copy of the incoming gradient, here, is less.
    """

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor) -> torch.Tensor:
        return y.view_as(y)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def _from_image(y: torch.Tensor, r: int) -> torch.Tensor:
    """The inverse of :func:`_as_image`: ``(B, R * C, 1, L)`` -> ``(R, B, C, L)`` (a view)."""
    if y.requires_grad:
        y = _ChannelsLastGrad.apply(y)
    b, rc, _, length = y.shape
    return y.reshape(b, r, rc // r, length).permute(1, 0, 2, 3)


def _grouped_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: str) -> torch.Tensor:
    """``R`` independent 1-d convolutions as one grouped, channels-last 2-d convolution.

    ``x`` ``(R, B, C, L)``, ``weight`` ``(R, J, C, W)``, ``bias`` ``(R, J)`` ->
    ``(R, B, J, L')`` (``L' = L - W + 1`` for ``"valid"``, ``L`` for ``"same"``, whose odd
    extra padding goes at the end, as Keras places it).
    """
    r, _, c, _ = x.shape
    j, w = weight.shape[1], weight.shape[3]
    image = _as_image(x).contiguous(memory_format=torch.channels_last)
    if padding == "same":
        image = F.pad(image, ((w - 1) // 2, w // 2))
    out = F.conv2d(image, weight.reshape(r * j, c, 1, w), bias.reshape(r * j), groups=r)
    return _from_image(out, r)


def _need_seq(in_shape: Shape, op: str) -> SeqShape:
    if not isinstance(in_shape, SeqShape):
        raise TrainingError(
            f"op {op!r} needs a sequence input (channels x length) but gets a flat vector of "
            f"{in_shape.features}; put it before the flatten/pooling layer of the space"
        )
    return in_shape


# ------------------------------------------------------------------------------ ops


class Identity(BatchedOp):
    """Passes its input through (the original's identity choice)."""

    def __init__(self, in_shape: Shape, replicates: int):
        super().__init__()
        self.out_shape = in_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Conv1d(BatchedOp):
    """Keras ``Conv1D(filters, kernel_size, activation, padding)`` with Glorot-uniform kernel.

    Weight ``(R, J, C, W)``, bias ``(R, J)`` initialised to zero (Keras default). Padding
    ``"valid"`` or ``"same"`` (Keras places the odd extra padding at the end; so do we).
    """

    param_rules = {
        "filters": SIZE,
        "kernel_size": SIZE,
        "activation": ACTIVATION,
        "init": _one_of("glorot_uniform"),
        "padding": _one_of("valid", "same"),
    }

    def __init__(
        self,
        in_shape: Shape,
        replicates: int,
        *,
        filters: int,
        kernel_size: int,
        activation: str = "relu",
        init: str = "glorot_uniform",
        padding: str = "valid",
    ):
        super().__init__()
        shape = _need_seq(in_shape, "conv1d")
        if init != "glorot_uniform":
            raise TrainingError(f"op 'conv1d': init {init!r} is not supported; use 'glorot_uniform'")
        if padding not in ("valid", "same"):
            raise TrainingError(f"op 'conv1d': padding must be 'valid' or 'same', got {padding!r}")
        if kernel_size > shape.length and padding == "valid":
            raise TrainingError(
                f"op 'conv1d': kernel_size {kernel_size} is longer than its input ({shape.length})"
            )
        self.act = _activation(activation, "conv1d")
        self.padding = padding
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.zeros(replicates, filters, shape.channels, kernel_size))
        self.bias = nn.Parameter(torch.zeros(replicates, filters))
        out_len = shape.length if padding == "same" else shape.length - kernel_size + 1
        self.out_shape = SeqShape(filters, out_len)

    @torch.no_grad()
    def init_replicate(self, r: int, gen: torch.Generator) -> None:
        j, c, w = self.weight.shape[1:]
        _uniform_(self.weight[r], _glorot_limit(c * w, j * w), gen)
        self.bias[r].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(_grouped_conv(x, self.weight, self.bias, self.padding))

    def first_layer_filters(self) -> torch.Tensor:
        return self.weight.detach().transpose(2, 3)  # (R, J, W, C): base axis last


class RegConv2d(BatchedOp):
    """The original's constrained "de novo" motif convolution (``regconv2d``).

    Keras built it as ``Conv2D(filters, (4, k))`` over the one-hot input seen as a
    4 x L image, which is a 1-d convolution with weight ``w[j, b, i]`` (filter ``j``,
    base ``b``, position ``i``); we store it as ``(R, J, 4, W)``.

    * init: kernel Normal(0, ``init_std``), bias zero; sigmoid activation.
    * penalties (added to the loss), per replicate:
      ``l1 * sum |w|``;
      positional ``sum_i loc[i] * sum_{b,j} |w[j, b, i]|`` with
      ``loc[i] = (|i - (k - 1) / 2| + 1/2) * positional / (k / 2)``, i.e. ``k/2 .. 1 1 .. k/2``
      scaled by ``positional / (k/2)``, growing toward the filter edges (for even ``k``
      this is exactly the original's; the original's formula does not give ``k``
      weights for odd ``k``, ours extends it symmetrically);
      filter penalty ``filter_penalty * sum_{i,j} s / max(|s|, 1e-6)`` with
      ``s = sum_b w[j, b, i]`` (the original L2-normalises over a singleton axis, which
      is the same sign function; its gradient is zero almost everywhere, and at
      1e-8 it is negligible; kept for fidelity).
    * constraints, as projections after each optimizer step (Keras applies weight
      constraints after each update too): kernel ``w <- max(w, 0)``, then for each
      filter and base the sum along the filter length is capped at ``kernel_sum_max``
      by rescaling ``w <- w * cap / max(sum_i w, cap)`` (the original's
      "InfoConstraint", summed over the length axis of its kernel); bias
      ``b <- b * [b <= 0]``, i.e. positive biases become 0 (the original's
      "NegativeConstraint"). These match the original exactly.
    """

    param_rules = {
        "filters": SIZE,
        "kernel_size": SIZE,
        "activation": ACTIVATION,
        "init_std": NON_NEGATIVE,
        "kernel_sum_max": POSITIVE,
        "l1": NON_NEGATIVE,
        "positional": NON_NEGATIVE,
        "filter_penalty": NON_NEGATIVE,
    }

    def __init__(
        self,
        in_shape: Shape,
        replicates: int,
        *,
        filters: int,
        kernel_size: int,
        activation: str = "sigmoid",
        init_std: float = 0.5,
        kernel_sum_max: float = 2.0,
        l1: float = 0.0,
        positional: float = 0.0,
        filter_penalty: float = 0.0,
    ):
        super().__init__()
        shape = _need_seq(in_shape, "regconv2d")
        if shape.channels != N_BASES:
            raise TrainingError(
                f"op 'regconv2d' scans one-hot DNA (4 channels) but gets {shape.channels} channels; "
                "use it as the first layer"
            )
        if kernel_size > shape.length:
            raise TrainingError(
                f"op 'regconv2d': kernel_size {kernel_size} is longer than its input ({shape.length})"
            )
        self.act = _activation(activation, "regconv2d")
        self.init_std = float(init_std)
        self.kernel_sum_max = float(kernel_sum_max)
        self.l1 = float(l1)
        self.positional = float(positional)
        self.filter_penalty = float(filter_penalty)
        self.weight = nn.Parameter(torch.zeros(replicates, filters, N_BASES, kernel_size))
        self.bias = nn.Parameter(torch.zeros(replicates, filters))
        i = torch.arange(kernel_size, dtype=torch.float64)
        loc = (torch.abs(i - (kernel_size - 1) / 2) + 0.5) * (self.positional / (kernel_size / 2))
        self.register_buffer("location", loc.to(torch.get_default_dtype()), persistent=False)
        self.out_shape = SeqShape(filters, shape.length - kernel_size + 1)

    @torch.no_grad()
    def init_replicate(self, r: int, gen: torch.Generator) -> None:
        _normal_(self.weight[r], self.init_std, gen)
        self.bias[r].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(_grouped_conv(x, self.weight, self.bias, "valid"))

    def penalty(self) -> torch.Tensor:
        w = self.weight
        absw = w.abs()
        total = self.l1 * absw.sum(dim=(1, 2, 3))
        per_pos = absw.sum(dim=(1, 2))  # (R, W)
        total = total + (per_pos * self.location.to(w.dtype)).sum(dim=1)
        if self.filter_penalty:
            s = w.sum(dim=2)  # (R, J, W): sum over bases
            total = total + self.filter_penalty * (s / s.abs().clamp_min(1e-6)).sum(dim=(1, 2))
        return total

    @torch.no_grad()
    def project_(self) -> None:
        w = self.weight.clamp_(min=0.0)
        sums = w.sum(dim=3, keepdim=True)  # along the filter length, per (filter, base)
        w.mul_(self.kernel_sum_max / sums.clamp(min=self.kernel_sum_max))
        self.bias.clamp_(max=0.0)

    def first_layer_filters(self) -> torch.Tensor:
        return self.weight.detach().transpose(2, 3)


class _Pool1d(BatchedOp):
    """Keras ``MaxPool1D`` / ``AveragePooling1D`` with "valid" padding (floor of the length)."""

    fn: Callable[..., torch.Tensor]
    param_rules = {"pool_size": SIZE, "stride": SIZE}

    def __init__(self, in_shape: Shape, replicates: int, *, pool_size: int, stride: int | None = None):
        super().__init__()
        shape = _need_seq(in_shape, type(self).__name__.lower())
        self.pool_size = int(pool_size)
        self.stride = int(stride or pool_size)
        if shape.length < self.pool_size:
            raise TrainingError(
                f"pooling of size {pool_size} needs an input of at least that length, got {shape.length}"
            )
        self.out_shape = SeqShape(shape.channels, (shape.length - self.pool_size) // self.stride + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window, stride = (1, self.pool_size), (1, self.stride)
        return _from_image(type(self).fn(_as_image(x), window, stride), x.shape[0])


class MaxPool1d(_Pool1d):
    fn = staticmethod(F.max_pool2d)


class AvgPool1d(_Pool1d):
    fn = staticmethod(F.avg_pool2d)


class Flatten(BatchedOp):
    """Keras ``Flatten`` of a ``(length, channels)`` tensor: position-major order."""

    def __init__(self, in_shape: Shape, replicates: int):
        super().__init__()
        shape = _need_seq(in_shape, "flatten")
        self.out_shape = FlatShape(shape.channels * shape.length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(2, 3).reshape(x.shape[0], x.shape[1], -1)


class GlobalMaxPool1d(BatchedOp):
    """Keras ``GlobalMaxPooling1D``: the maximum over positions of each channel."""

    def __init__(self, in_shape: Shape, replicates: int):
        super().__init__()
        self.out_shape = FlatShape(_need_seq(in_shape, "globalmaxpool1d").channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=3)


class GlobalAvgPool1d(BatchedOp):
    """Keras ``GlobalAveragePooling1D``: the mean over positions of each channel."""

    def __init__(self, in_shape: Shape, replicates: int):
        super().__init__()
        self.out_shape = FlatShape(_need_seq(in_shape, "globalavgpool1d").channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=3)


class SeparableFC(BatchedOp):
    """Separable fully-connected layer (``sfc``): ``units`` outputs, no bias, no activation.

    Output ``u`` is ``sum_{l,c} x[c, l] * P[u, l] * Q[u, c]`` with positional weights
    ``P`` (units x length) and channel weights ``Q`` (units x channels). With
    ``symmetric`` the free positional parameters cover half the length
    (``ceil(length / 2)``) and ``P`` is them followed by their mirror image (the middle
    one not repeated for odd lengths). Init: both uniform in ``+-(2 / (half * C +
    units)) ** 0.25`` (the original's bound).

    * penalty: ``smoothness_penalty * mean |second differences of the free positional
      weights|`` (the original's L1 smoothness regulariser on second differences).
    * constraint ``curvature_constraint = m``: after each step the second differences
      of the free positional weights are clipped to ``[-m, m]`` and the weights are
      rebuilt from them by two cumulative sums, keeping the mean of the first
      differences and the mean of the weights (the original's CurvatureConstraint
      does the same reconstruction with masked matrix products, every step). Weights
      whose curvature is already within bounds come back equal up to the rounding
      of the reconstruction (in float32 they drift by ~1e-4 over 1,000 steps, as in
      the original).
    """

    param_rules = {
        "units": SIZE,
        "symmetric": FLAG,
        "smoothness_penalty": NON_NEGATIVE,
        "curvature_constraint": NON_NEGATIVE,
    }

    def __init__(
        self,
        in_shape: Shape,
        replicates: int,
        *,
        units: int,
        symmetric: bool = True,
        smoothness_penalty: float = 0.0,
        curvature_constraint: float | None = None,
    ):
        super().__init__()
        shape = _need_seq(in_shape, "sfc")
        self.length = shape.length
        self.symmetric = bool(symmetric)
        self.half = (shape.length + 1) // 2 if self.symmetric else shape.length
        self.smoothness = float(smoothness_penalty)
        self.curvature = None if curvature_constraint is None else float(curvature_constraint)
        self.w_pos = nn.Parameter(torch.zeros(replicates, units, self.half))
        self.w_chan = nn.Parameter(torch.zeros(replicates, units, shape.channels))
        self.out_shape = FlatShape(units)

    @torch.no_grad()
    def init_replicate(self, r: int, gen: torch.Generator) -> None:
        units, channels = self.w_chan.shape[1:]
        limit = (2.0 / (self.half * channels + units)) ** 0.25
        _uniform_(self.w_pos[r], limit, gen)
        _uniform_(self.w_chan[r], limit, gen)

    def positional(self) -> torch.Tensor:
        """The full positional weights ``(R, units, length)``."""
        if not self.symmetric:
            return self.w_pos
        mirror = self.w_pos.flip(2)
        if self.length % 2 == 1:
            mirror = mirror[:, :, 1:]
        return torch.cat([self.w_pos, mirror], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_unit = torch.einsum("rbcl,rul->rbuc", x, self.positional())
        return (per_unit * self.w_chan.unsqueeze(1)).sum(dim=3)

    def penalty(self) -> torch.Tensor | None:
        if not self.smoothness or self.half < 3:
            return None
        d2 = self.w_pos[:, :, 2:] - 2 * self.w_pos[:, :, 1:-1] + self.w_pos[:, :, :-2]
        return self.smoothness * d2.abs().mean(dim=(1, 2))

    @torch.no_grad()
    def project_(self) -> None:
        if self.curvature is None or self.half < 3:
            return
        p = self.w_pos
        d1 = p[:, :, 1:] - p[:, :, :-1]
        d2 = (d1[:, :, 1:] - d1[:, :, :-1]).clamp(-self.curvature, self.curvature)
        new_d1 = _integrate(d2, d1.mean(dim=2, keepdim=True))
        p.copy_(_integrate(new_d1, p.mean(dim=2, keepdim=True)))


def _integrate(diffs: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Values whose successive differences are ``diffs`` and whose mean is ``mean``."""
    zero = torch.zeros_like(diffs[:, :, :1])
    values = torch.cat([zero, torch.cumsum(diffs, dim=2)], dim=2)
    return values - values.mean(dim=2, keepdim=True) + mean


class Dense(BatchedOp):
    """Keras ``Dense(units, activation)``: Glorot-uniform kernel, zero bias; flat input."""

    param_rules = {"units": SIZE, "activation": ACTIVATION}

    def __init__(self, in_shape: Shape, replicates: int, *, units: int, activation: str = "linear"):
        super().__init__()
        if not isinstance(in_shape, FlatShape):
            raise TrainingError(
                f"op 'dense' needs a flat input but gets a sequence of {in_shape.channels} x "
                f"{in_shape.length}; put a flatten or global pooling layer before it"
            )
        self.act = _activation(activation, "dense")
        self.weight = nn.Parameter(torch.zeros(replicates, in_shape.features, units))
        self.bias = nn.Parameter(torch.zeros(replicates, units))
        self.out_shape = FlatShape(units)

    @torch.no_grad()
    def init_replicate(self, r: int, gen: torch.Generator) -> None:
        fan_in, fan_out = self.weight.shape[1:]
        _uniform_(self.weight[r], _glorot_limit(fan_in, fan_out), gen)
        self.bias[r].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.baddbmm(self.bias.unsqueeze(1), x, self.weight))


# -------------------------------------------------------------------------- registry

OpBuilder = Callable[..., BatchedOp]

#: op name (as in space manifests) -> builder ``(in_shape, replicates, **params)``.
OPS: dict[str, OpBuilder] = {
    "identity": Identity,
    "conv1d": Conv1d,
    "regconv2d": RegConv2d,
    "maxpool1d": MaxPool1d,
    "avgpool1d": AvgPool1d,
    "flatten": Flatten,
    "globalmaxpool1d": GlobalMaxPool1d,
    "globalavgpool1d": GlobalAvgPool1d,
    "sfc": SeparableFC,
    "dense": Dense,
}


def register_op(name: str, builder: OpBuilder) -> None:
    """Add an op to :data:`OPS` so spaces may use it (a name may be registered once)."""
    if name in OPS:
        raise TrainingError(f"op {name!r} is already registered")
    OPS[name] = builder


def check_space_ops(space: Any) -> None:
    """Refuse a space whose manifest misspells an op or an op's parameter, before training:
    each architecture using it would otherwise be recorded as a failed replicate, in a
    store that the corrected manifest (another hash) no longer opens.

    A parameter a known op does not take is an error; so is an unknown op name close to a
    known one (``maxpool`` for ``maxpool1d``). Other unknown ops are ops not implemented
    here (``bionas-eclip`` has ``dropout`` and ``sparsek_vec``): architectures using them
    are recorded as failed, as documented. A value no input allows is an error too (see
    :func:`check_params`); one that only some inputs allow (a kernel longer than the
    sequence) is checked as each network is built, and makes only those architectures fail.
    """
    for index, layer in enumerate(space.layers):
        for choice in layer.choices:
            where = f"space {space.name!r}, layer {index} ({layer.name!r}), choice {choice.name!r}"
            if choice.op not in OPS:
                close = difflib.get_close_matches(choice.op, OPS, n=1, cutoff=0.8)
                if close:
                    raise TrainingError(
                        f"{where}: no child-network op {choice.op!r}; did you mean {close[0]!r}? "
                        "Fix the space manifest"
                    )
                continue
            try:
                inspect.signature(OPS[choice.op]).bind(None, 1, **dict(choice.kwargs))
            except TypeError as exc:
                raise TrainingError(
                    f"{where}: op {choice.op!r} does not take parameters {dict(choice.kwargs)} ({exc}); "
                    "fix the space manifest"
                ) from None
            try:
                check_params(choice.op, choice.kwargs)
            except TrainingError as exc:
                raise TrainingError(f"{where}: {exc}; fix the space manifest") from None


def build_op(op: str, params: Mapping[str, Any], in_shape: Shape, replicates: int) -> BatchedOp:
    """Build op ``op`` with ``params``; unknown ops and parameters, and values the op never
    accepts, give a TrainingError."""
    try:
        builder = OPS[op]
    except KeyError:
        raise TrainingError(
            f"no child-network op {op!r}; known ops: {', '.join(sorted(OPS))} "
            "(register new ones with bionas_bench.train.ops.register_op)"
        ) from None
    check_params(op, params)
    try:
        return builder(in_shape, replicates, **dict(params))
    except TypeError as exc:
        raise TrainingError(f"op {op!r} with parameters {dict(params)}: {exc}") from None
