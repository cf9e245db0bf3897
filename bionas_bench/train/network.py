"""A child network of a model space, built from its choices, for ``R`` replicates at once.

:class:`BatchedNetwork` chains the ops of one architecture (looked up by op name in
:data:`bionas_bench.train.ops.OPS`) and ends, like the original child networks, in a
``Dense(n_labels)`` whose sigmoid gives one probability per label. The head returns
**logits**; the loss is binary cross-entropy on logits, which equals Keras' sigmoid +
binary cross-entropy except that Keras clips probabilities to ``[1e-7, 1 - 1e-7]``
(that only matters for extremely confident wrong predictions).
"""

from __future__ import annotations

import torch
from torch import nn

from bionas_bench.errors import TrainingError
from bionas_bench.space import ModelSpace
from bionas_bench.train.ops import N_BASES, BatchedOp, Dense, FlatShape, SeqShape, build_op

__all__ = ["BatchedNetwork", "first_layer_geometry"]


class BatchedNetwork(nn.Module):
    """The ``R`` replicates of architecture ``arch_id`` of ``space`` as one module.

    Input ``(R, B, 4, L)`` one-hot sequences (channels first); output ``(R, B,
    n_labels)`` logits.
    """

    def __init__(self, space: ModelSpace, arch_id: int, *, seq_len: int, n_labels: int, replicates: int):
        super().__init__()
        if replicates < 1:
            raise TrainingError(f"need at least one replicate, got {replicates}")
        self.arch_id = int(arch_id)
        self.replicates = replicates
        shape: SeqShape | FlatShape = SeqShape(N_BASES, seq_len)
        layers: list[BatchedOp] = []
        for index in range(space.num_layers):
            choice = space.choice(self.arch_id, index)
            try:
                op = build_op(choice.op, choice.kwargs, shape, replicates)
            except TrainingError as exc:
                raise TrainingError(
                    f"architecture {self.arch_id} ({space.arch_name(self.arch_id)}) of space "
                    f"{space.name!r}, layer {index} ({choice.name}): {exc}"
                ) from None
            layers.append(op)
            shape = op.out_shape
        if not isinstance(shape, FlatShape):
            raise TrainingError(
                f"architecture {self.arch_id} of space {space.name!r} ends in a sequence of "
                f"{shape.channels} x {shape.length}; its last layers must flatten it"
            )
        layers.append(Dense(shape, replicates, units=n_labels, activation="linear"))
        self.layers = nn.ModuleList(layers)

    def init_replicates(self, generators: list[torch.Generator]) -> None:
        """Initialise replicate ``r`` from ``generators[r]``, layer by layer in order."""
        if len(generators) != self.replicates:
            raise TrainingError(f"need {self.replicates} generators, got {len(generators)}")
        for r, gen in enumerate(generators):
            for layer in self.layers:
                layer.init_replicate(r, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def penalty(self) -> torch.Tensor | None:
        """Sum of the ops' penalties per replicate ``(R,)``, or None when no op has one."""
        terms = [p for p in (layer.penalty() for layer in self.layers) if p is not None]
        if not terms:
            return None
        return torch.stack(terms).sum(dim=0)

    @torch.no_grad()
    def project_(self) -> None:
        """Apply every op's constraints (after an optimizer step)."""
        for layer in self.layers:
            layer.project_()

    def first_layer_filters(self) -> torch.Tensor | None:
        """Filters ``(R, J, W, 4)`` of the first op that scans the input, or None."""
        for layer in self.layers:
            filters = layer.first_layer_filters()
            if filters is not None:
                return filters
        return None

    def n_params(self) -> int:
        """Trainable parameters of one replicate."""
        return sum(p.numel() for p in self.parameters()) // self.replicates


def first_layer_geometry(space: ModelSpace) -> tuple[int, int]:
    """The largest ``(filters, kernel_size)`` over first-layer ops of ``space`` (0, 0 if none).

    Sizes the store's filter array so every architecture's filters fit.
    """
    max_j = max_w = 0
    for layer in space.layers:
        for choice in layer.choices:
            kw = choice.kwargs
            if "filters" in kw and "kernel_size" in kw:
                max_j = max(max_j, int(kw["filters"]))
                max_w = max(max_w, int(kw["kernel_size"]))
    return max_j, max_w
