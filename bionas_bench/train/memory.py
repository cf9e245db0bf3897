"""How many replicates of one architecture to train at once so that they fit in memory.

The farm trains the ``R`` replicates of an architecture as one batched network, so a
unit needs ``R`` times the memory of one replicate: 20 replicates of an architecture
with wide layers can exceed a GPU's memory, or a CPU machine's, where one replicate fits.
Before a unit trains, :func:`plan_memory` estimates one replicate's peak
(:func:`replicate_bytes`) and splits the unit into groups of replicates that fit in the
memory the device has free; a unit of which not even one replicate fits is not trained
at all (the farm goes on with the others and says which). An allocation that fails
anyway (the estimate is rough) halves the group and retries
(:func:`~bionas_bench.errors.is_out_of_memory`).

Why estimate instead of only retrying: on Linux a CPU process that allocates more than
the machine holds is usually killed by the kernel (no exception to catch), and a failed
allocation can come minutes into a unit. Replicates trained in smaller groups equal
those of one group up to floating-point rounding (batched kernels round differently
for different replicate counts), as with ``--replicates`` subsets.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass

import torch

from bionas_bench.space import ModelSpace
from bionas_bench.train.batched import TrainData
from bionas_bench.train.config import TrainingConfig
from bionas_bench.train.network import BatchedNetwork
from bionas_bench.train.ops import N_BASES, SeqShape, Shape

__all__ = [
    "MemoryPlan",
    "free_bytes",
    "plan_memory",
    "release",
    "replicate_bytes",
    "replicates_at_once",
]

#: Peak memory of a training step per sample, in multiples of the largest tensor one
#: sample makes (its input or a layer's output): the saved activations, their
#: gradients and the temporaries of the backward pass. Measured on CPU (2026-12-03,
#: float32, batch 250-500, 1-4 replicates, first layers of 300 filters): the growth of
#: the process's peak RSS over a unit was 3.1-3.7 times that tensor x batch x replicates
#: (the README's "Units larger than memory" has the comparison).
TRAIN_FACTOR = 3.7
#: Evaluation holds no gradients: about a layer's input and output at a time. Measured
#: as above with an evaluation batch of 2,000 (batch 50, 1-2 replicates): 2.1-2.2 times.
EVAL_FACTOR = 2.2
#: Copies of the parameters a replicate keeps: weights, gradients, Adam's two moments,
#: the best weights (early stopping) and the copy made when a constraint is applied.
PARAM_COPIES = 6
#: Share of the free memory a unit may plan to use (the estimate is rough).
USABLE = 0.8


@dataclass(frozen=True)
class MemoryPlan:
    """The estimate for one unit: bytes per replicate, bytes free, replicates at once."""

    per_replicate: int
    free: int
    group: int  #: replicates trained together (<= the unit's); 0 when not even one fits

    def why_not(self, space: ModelSpace, arch_id: int, config: TrainingConfig, device: torch.device) -> str:
        """Why not even one replicate fits, in the words of the farm's note."""
        return (
            f"architecture {arch_id} ({space.arch_name(arch_id)}) needs about {_gib(self.per_replicate)} "
            f"per replicate at batch size {config.batch_size} (evaluation batch {config.eval_batch_size}), "
            f"more than the {_gib(USABLE * self.free)} usable of the {_gib(self.free)} free on {device.type}"
        )


def plan_memory(
    space: ModelSpace, arch_id: int, data: TrainData, config: TrainingConfig, replicates: int
) -> MemoryPlan:
    """How many of ``replicates`` replicates of ``arch_id`` to train together on ``data``'s device now."""
    per_replicate = replicate_bytes(space, arch_id, data, config)
    free = free_bytes(data.codes.device)
    return MemoryPlan(per_replicate, free, replicates_at_once(per_replicate, free, replicates))


def replicates_at_once(per_replicate: int, free: int, replicates: int) -> int:
    """How many of ``replicates`` replicates of ``per_replicate`` bytes each to train
    together in ``free`` bytes (:data:`USABLE` of them); 0 when not even one fits."""
    return min(int(replicates), int(USABLE * free // max(1, per_replicate)))


def replicate_bytes(space: ModelSpace, arch_id: int, data: TrainData, config: TrainingConfig) -> int:
    """Estimated peak bytes of training one replicate of ``arch_id`` on ``data`` (see
    :data:`TRAIN_FACTOR`); the layers are built on torch's meta device (shapes only)."""
    with torch.device("meta"):
        net = BatchedNetwork(space, arch_id, seq_len=data.seq_len, n_labels=data.n_labels, replicates=1)
    largest = max([N_BASES * data.seq_len] + [_numel(layer.out_shape) for layer in net.layers])
    params = sum(p.numel() for p in net.parameters())
    item = torch.finfo(data.dtype).bits // 8
    n_eval = min(config.eval_batch_size, int(data.codes.shape[0]))
    per_sample = max(TRAIN_FACTOR * config.batch_size, EVAL_FACTOR * n_eval)
    return math.ceil(per_sample * largest * item + PARAM_COPIES * params * item)


def free_bytes(device: torch.device) -> int:
    """Memory a unit may use on ``device``: a GPU's free memory; on a CPU, the memory
    the system has available, and no more than the Dask worker's memory limit when the
    unit runs in one (a local cluster gives each worker its share of the machine)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    free = int(psutil.virtual_memory().available)
    limit = _worker_memory_limit()
    return min(free, limit) if limit else free


def _worker_memory_limit() -> int | None:
    """The memory limit of the Dask worker running this code (None outside a worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    return int(limit) if limit else None


def release(device: torch.device) -> None:
    """Give back what a failed attempt allocated, before a smaller one."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _numel(shape: Shape) -> int:
    return shape.channels * shape.length if isinstance(shape, SeqShape) else int(shape.features)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
