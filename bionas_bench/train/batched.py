"""Train the ``R`` replicates of one architecture as one batched computation.

:func:`train_unit` builds a :class:`~bionas_bench.train.network.BatchedNetwork` with a
leading replicate axis, and trains all replicates together: every mini-batch step is
one forward and backward pass over ``R x batch`` sequences. Replicates stay
independent: each has

* its own **initialisation** (a ``torch.Generator`` seeded from ``(seed_r, arch)``),
* its own **data order** (a numpy Generator seeded from ``(seed_r, arch)``, a fresh
  permutation of its training indices each epoch, as Keras' ``shuffle=True``),
* its own **split** when the caller gives per-replicate train / validation indices
  (see :func:`make_splits`; the split depends on ``seed_r`` only, so all
  architectures of one replicate see the same split, as in the original where each
  replicate run trained every architecture on one shuffle of the data),
* its own **early stopping**: after each epoch the validation loss of each replicate
  is compared with its best; a replicate without improvement for ``patience`` epochs
  stops: its parameters and Adam state freeze (masked updates) and its best weights
  are restored at the end. The others go on. Training ends when all have stopped or
  at ``max_epochs``.

Because no parameter is shared and every reduction is per replicate, the batched
result equals training each replicate alone with the same seed (tested; float64 to
about 1e-10, float32 to rounding).

A replicate whose training or validation loss becomes non-finite is a **failure**
(``failed = True``): it stops at once and never takes the others down. Its best weights
are restored like any other replicate's, so one that diverged after a finite epoch is
evaluated at its best epoch, as the original's checkpoint of the best weights would
have it; one that diverged before any finite epoch has nothing to restore and all its
metrics and filters are NaN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bionas_bench.errors import TrainingError
from bionas_bench.space import ModelSpace
from bionas_bench.train.config import TrainingConfig
from bionas_bench.train.metrics import accuracy, auroc, average_precision
from bionas_bench.train.network import BatchedNetwork

__all__ = [
    "CURVES",
    "METRICS",
    "BatchedAdam",
    "SplitPlan",
    "TrainData",
    "UnitResult",
    "make_splits",
    "replicate_rngs",
    "resolve_device",
    "train_unit",
]

#: Per-replicate scalar results of one unit (knowledge is added by the farm).
METRICS = ("val_loss", "test_loss", "auroc", "aupr", "accuracy", "train_seconds", "epochs", "n_params")
#: Per-replicate, per-epoch curves (NaN after a replicate stopped).
CURVES = ("val_loss", "train_loss", "val_auroc")

_SPLIT_STREAM, _INIT_STREAM, _ORDER_STREAM = 1, 2, 3


# --------------------------------------------------------------------------- devices


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            "--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto"
        )
    if device not in ("cpu", "cuda"):
        raise TrainingError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


# ----------------------------------------------------------------------------- seeds


def replicate_rngs(seed: int, arch_id: int) -> tuple[torch.Generator, np.random.Generator]:
    """The initialisation and data-order generators of replicate ``seed`` for ``arch_id``."""
    init_state = np.random.SeedSequence([seed, _INIT_STREAM, arch_id]).generate_state(1, np.uint64)[0]
    init = torch.Generator().manual_seed(int(init_state) & (2**63 - 1))
    order = np.random.default_rng(np.random.SeedSequence([seed, _ORDER_STREAM, arch_id]))
    return init, order


# ---------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitPlan:
    """Indices into the dataset: per-replicate train ``(R, n_train)`` and validation
    ``(R, n_val)``, and an optional shared test set ``(n_test,)``."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray | None


def make_splits(
    splits: dict[str, np.ndarray], n_total: int, config: TrainingConfig, seeds: Sequence[int]
) -> SplitPlan:
    """Per-replicate train / validation indices for ``seeds`` under ``config``.

    With ``resplit_per_replicate`` each replicate permutes every non-test sequence
    with a generator seeded from its seed alone, and takes the first ``n_train`` as
    training and the next ``n_val`` as validation (the original: shuffle positives and
    negatives, first 18,000 train, last 2,000 validation). Otherwise every replicate
    uses the dataset's ``train`` and ``valid`` splits.
    """
    test = _split(splits, ("test",), required=False)
    test = test if (config.evaluate_test and test is not None and len(test)) else None
    if config.resplit_per_replicate:
        held_out = _split(splits, ("test",), required=False)
        pool = np.setdiff1d(np.arange(n_total), held_out if held_out is not None else [])
        need = config.n_train + config.n_val
        if need > len(pool):
            raise TrainingError(
                f"training manifest {config.name!r} asks for n_train + n_val = {need} sequences but the "
                f"dataset has {len(pool)} outside its test split; lower n_train / n_val"
            )
        train, val = [], []
        for seed in seeds:
            perm = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_STREAM])).permutation(pool)
            train.append(perm[: config.n_train])
            val.append(perm[config.n_train : need])
        return SplitPlan(np.stack(train), np.stack(val), test)
    tr = _split(splits, ("train",), required=True)
    va = _split(splits, ("valid", "val", "validation"), required=True)
    r = len(seeds)
    return SplitPlan(np.tile(tr, (r, 1)), np.tile(va, (r, 1)), test)


def _split(splits: dict[str, np.ndarray], names: tuple[str, ...], *, required: bool) -> np.ndarray | None:
    for name in names:
        if name in splits:
            return np.asarray(splits[name], dtype=np.int64)
    if required:
        raise TrainingError(
            f"the dataset has no {names[0]!r} split (splits: {', '.join(sorted(splits)) or 'none'}); "
            "use a training manifest with resplit_per_replicate = true"
        )
    return None


# ------------------------------------------------------------------------------ data


@dataclass
class TrainData:
    """A dataset on the training device: base codes ``(N, L)`` and labels ``(N, T)``.

    Codes 0..3 are A, C, G, T; any other code (N) encodes as all zeros. One-hot
    encoding happens per batch on the device (value ``onehot_value`` for the hot base).
    """

    codes: torch.Tensor
    labels: torch.Tensor
    onehot_value: float
    dtype: torch.dtype
    _table: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        table = torch.zeros(256, 4, dtype=self.dtype, device=self.codes.device)
        table[torch.arange(4), torch.arange(4)] = self.onehot_value
        self._table = table

    @classmethod
    def from_arrays(
        cls,
        codes: np.ndarray,
        labels: np.ndarray,
        *,
        onehot_value: float,
        device: torch.device,
        dtype: torch.dtype,
    ) -> TrainData:
        codes_t = torch.as_tensor(np.array(codes, dtype=np.uint8, copy=True), device=device)
        labels_np = np.asarray(labels, dtype=np.float64)
        if labels_np.ndim == 1:
            labels_np = labels_np[:, None]
        labels_t = torch.as_tensor(labels_np, dtype=dtype, device=device)
        return cls(codes_t, labels_t, float(onehot_value), dtype)

    @property
    def seq_len(self) -> int:
        return int(self.codes.shape[1])

    @property
    def n_labels(self) -> int:
        return int(self.labels.shape[1])

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(R, B, 4, L)`` and labels ``(R, B, T)`` for indices ``(R, B)``.

        The inputs are stored position-major, ``(B, L, R, 4)`` in memory, the layout the
        ops' grouped channels-last convolutions read without a copy.
        """
        codes = self.codes[idx.t()].transpose(1, 2).contiguous()  # (B, L, R)
        x = F.embedding(codes.int(), self._table)  # (B, L, R, 4)
        return x.permute(2, 0, 3, 1), self.labels[idx]


# ------------------------------------------------------------------------- optimizer


class BatchedAdam:
    """Adam over replicate-stacked parameters with a per-replicate step mask.

    Uses Keras' Adam update (the original's optimizer): ``m, v`` as usual and
    ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``. (PyTorch's Adam adds
    ``eps`` after the bias correction instead; the difference is only in how ``eps``
    scales early on.) Replicates with ``active = False`` keep their parameters,
    moments and step count unchanged.
    """

    def __init__(self, params: list[torch.Tensor], *, lr: float, beta1: float, beta2: float, eps: float):
        self.params = params
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        r = params[0].shape[0]
        self.t = torch.zeros(r, dtype=torch.float64, device=params[0].device)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        self.t += active.to(self.t.dtype)
        t = self.t.clamp(min=1.0)
        lr_t = self.lr * torch.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            view = (-1,) + (1,) * (p.dim() - 1)
            mask = active.view(view)
            m_new = self.beta1 * m + (1.0 - self.beta1) * g
            v_new = self.beta2 * v + (1.0 - self.beta2) * g * g
            p_new = p - lr_t.to(p.dtype).view(view) * m_new / (torch.sqrt(v_new) + self.eps)
            m.copy_(torch.where(mask, m_new, m))
            v.copy_(torch.where(mask, v_new, v))
            p.copy_(torch.where(mask, p_new, p))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


# --------------------------------------------------------------------------- results


@dataclass
class UnitResult:
    """Everything one unit (an architecture x its ``R`` replicates) produced.

    ``metrics[name]`` is ``(R,)`` (see :data:`METRICS`), ``curves[name]`` is
    ``(R, max_epochs)`` NaN-padded, ``filters`` ``(R, J, W, 4)`` (base axis last) or
    None, ``failed`` ``(R,)``. ``train_seconds`` is the wall time of the whole batched
    unit (training, early-stopping evaluations, final evaluation) divided by ``R``:
    the amortised cost of one model in this farm.
    """

    arch_id: int
    metrics: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]
    filters: np.ndarray | None
    failed: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[UnitResult]) -> UnitResult:
        """The replicates of ``parts`` (one architecture trained in groups of replicates)
        as one result, in the order of ``parts``."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return cls(
            first.arch_id,
            {name: np.concatenate([p.metrics[name] for p in parts]) for name in first.metrics},
            {name: np.concatenate([p.curves[name] for p in parts]) for name in first.curves},
            None if first.filters is None else np.concatenate([p.filters for p in parts]),
            np.concatenate([p.failed for p in parts]),
        )


ProgressFn = Callable[[int, int], None]


def train_unit(
    space: ModelSpace,
    arch_id: int,
    data: TrainData,
    plan: SplitPlan,
    config: TrainingConfig,
    seeds: Sequence[int],
    *,
    on_epoch: ProgressFn | None = None,
) -> UnitResult:
    """Train the ``len(seeds)`` replicates of ``arch_id`` together; see the module docstring.

    ``plan`` holds one row of train / validation indices per seed. ``on_epoch(epoch,
    n_active)`` is called after each epoch (for progress displays).
    """
    r = len(seeds)
    if plan.train.shape[0] != r or plan.val.shape[0] != r:
        raise TrainingError(f"split plan has {plan.train.shape[0]} rows for {r} replicates")
    device = data.codes.device
    start = _clock(device)

    net = BatchedNetwork(space, arch_id, seq_len=data.seq_len, n_labels=data.n_labels, replicates=r)
    net = net.to(device=device, dtype=data.dtype)
    generators = []
    order_rngs = []
    for seed in seeds:
        init, order = replicate_rngs(int(seed), int(arch_id))
        generators.append(init)
        order_rngs.append(order)
    net.init_replicates(generators)
    params = list(net.parameters())
    opt = BatchedAdam(params, lr=config.lr, beta1=config.beta1, beta2=config.beta2, eps=config.eps)

    train_idx = torch.as_tensor(plan.train, device=device)
    val_idx = torch.as_tensor(plan.val, device=device)
    n_train = train_idx.shape[1]
    epochs_cap = config.max_epochs

    curves = {name: np.full((r, epochs_cap), np.nan) for name in CURVES}
    active = torch.ones(r, dtype=torch.bool, device=device)
    failed = np.zeros(r, dtype=bool)
    best_val = np.full(r, np.inf)
    wait = np.zeros(r, dtype=np.int64)
    epochs_run = np.zeros(r, dtype=np.int64)
    best_state = [p.detach().clone() for p in params]

    for epoch in range(epochs_cap):
        act_np = active.cpu().numpy()
        if not act_np.any():
            break
        perms = np.stack([rng.permutation(n_train) for rng in order_rngs])
        perms_t = torch.as_tensor(perms, device=device)
        loss_sum = torch.zeros(r, dtype=torch.float64, device=device)
        for s in range(0, n_train, config.batch_size):
            idx = train_idx.gather(1, perms_t[:, s : s + config.batch_size])
            x, y = data.batch(idx)
            loss = _loss(net, x, y, with_penalty=True)
            opt.zero_grad()
            loss.sum().backward()
            opt.step(active)
            _project_masked(net, params, active)
            loss_sum += loss.detach().to(torch.float64) * idx.shape[1]
        train_loss = (loss_sum / n_train).cpu().numpy()
        val_loss, val_probs = _evaluate(net, data, val_idx, config)
        val_auc = auroc(val_probs, _labels_np(data, plan.val))

        for i in np.flatnonzero(act_np):
            curves["train_loss"][i, epoch] = train_loss[i]
            curves["val_loss"][i, epoch] = val_loss[i]
            curves["val_auroc"][i, epoch] = val_auc[i]
            epochs_run[i] = epoch + 1
            if not (math.isfinite(train_loss[i]) and math.isfinite(val_loss[i])):
                failed[i] = True
                act_np[i] = False
            elif val_loss[i] < best_val[i]:  # Keras EarlyStopping: strict improvement, min_delta 0
                best_val[i] = val_loss[i]
                wait[i] = 0
                for b, p in zip(best_state, params, strict=True):
                    b[i].copy_(p.detach()[i])
            else:
                wait[i] += 1
                if wait[i] >= config.patience:
                    act_np[i] = False
        active = torch.as_tensor(act_np, device=device)
        if on_epoch is not None:
            on_epoch(epoch + 1, int(act_np.sum()))

    with torch.no_grad():
        for b, p in zip(best_state, params, strict=True):
            p.copy_(b)
    metrics = _final_metrics(net, data, plan, config, val_idx)
    filters_t = net.first_layer_filters()
    filters = None if filters_t is None else filters_t.detach().cpu().numpy().astype(np.float32)
    seconds = (_clock(device) - start) / r

    metrics["train_seconds"] = np.full(r, seconds)
    metrics["epochs"] = epochs_run.astype(np.float64)
    metrics["n_params"] = np.full(r, float(net.n_params()))
    lost = failed & ~np.isfinite(best_val)  # diverged before any finite epoch: no best weights
    if lost.any():
        for name in ("val_loss", "test_loss", "auroc", "aupr", "accuracy"):
            metrics[name][lost] = np.nan
        if filters is not None:
            filters[lost] = np.nan
    return UnitResult(int(arch_id), metrics, curves, filters, failed)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _loss(net: BatchedNetwork, x: torch.Tensor, y: torch.Tensor, *, with_penalty: bool) -> torch.Tensor:
    """Per-replicate loss ``(R,)``: mean binary cross-entropy (+ the ops' penalties)."""
    logits = net(x)
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=(1, 2))
    if with_penalty:
        penalty = net.penalty()
        if penalty is not None:
            loss = loss + penalty
    return loss


@torch.no_grad()
def _project_masked(net: BatchedNetwork, params: list[torch.Tensor], active: torch.Tensor) -> None:
    """Apply the constraints; frozen replicates keep their parameters bit for bit."""
    if bool(active.all()):
        net.project_()
        return
    before = [p.detach().clone() for p in params]
    net.project_()
    for p, b in zip(params, before, strict=True):
        p.copy_(torch.where(active.view((-1,) + (1,) * (p.dim() - 1)), p, b))


@torch.no_grad()
def _evaluate(
    net: BatchedNetwork, data: TrainData, idx: torch.Tensor, config: TrainingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per-replicate loss ``(R,)`` and probabilities ``(R, N, T)`` on indices ``(R, N)``.

    The loss is the mean binary cross-entropy, plus the penalties when the manifest
    says ``loss_includes_penalties`` (Keras' reported validation loss does include them).
    """
    r, n = idx.shape
    bce = torch.zeros(r, dtype=torch.float64, device=idx.device)
    probs = []
    for s in range(0, n, config.eval_batch_size):
        x, y = data.batch(idx[:, s : s + config.eval_batch_size])
        logits = net(x)
        bce += F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(dim=(1, 2)).double()
        probs.append(torch.sigmoid(logits).double().cpu())
    loss = bce / (n * data.n_labels)
    if config.loss_includes_penalties:
        penalty = net.penalty()
        if penalty is not None:
            loss = loss + penalty.double()
    return loss.cpu().numpy(), torch.cat(probs, dim=1).numpy()


def _labels_np(data: TrainData, idx: np.ndarray) -> np.ndarray:
    return data.labels.detach().cpu().numpy()[idx]


def _final_metrics(
    net: BatchedNetwork, data: TrainData, plan: SplitPlan, config: TrainingConfig, val_idx: torch.Tensor
) -> dict[str, np.ndarray]:
    """Validation loss, AUROC, AUPR, accuracy (validation split) and test loss of the best weights."""
    r = val_idx.shape[0]
    val_loss, probs = _evaluate(net, data, val_idx, config)
    labels = _labels_np(data, plan.val)
    out = {
        "val_loss": val_loss,
        "auroc": auroc(probs, labels),
        "aupr": average_precision(probs, labels),
        "accuracy": accuracy(probs, labels),
        "test_loss": np.full(r, np.nan),
    }
    if plan.test is not None:
        test_idx = torch.as_tensor(np.tile(plan.test, (r, 1)), device=val_idx.device)
        out["test_loss"], _ = _evaluate(net, data, test_idx, config)
    return out
