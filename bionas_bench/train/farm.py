"""The training farm: every architecture x every replicate of a space, into a Zarr store.

:func:`run_farm` resolves the space, dataset and training manifests, creates the
store (or checks that an existing one was made from the very same manifests), and
trains each *unit* that is not yet done: one architecture and those of the selected
replicates (all by default) that the store's ``done`` mask lacks, trained together as
one batched computation (see :mod:`bionas_bench.train.batched`). ``done`` is kept per
architecture x replicate; a unit writes its replicates' cells of its architecture's
chunks and their ``done`` cells last, so:

* **resumable**: running the same command again trains only what is not done; a unit
  interrupted half-way (killed worker, power cut, Ctrl-C) is simply not done and is
  trained again from scratch, with the same seeds, giving the same numbers;
* **incremental**: ``replicates="0-4"`` trains only those replicates; a later run
  with more replicates (or all) trains only the missing ones and leaves the written
  ones as they are;
* **scalable**: with a Dask scheduler (``scheduler="local"`` for a LocalCluster of
  ``workers`` processes, or an address such as ``tcp://host:8786``) each unit is one
  task, and an architecture is never in two tasks, so workers write disjoint chunks
  (the store is chunked by architecture) and need no lock. The dataset is sent to
  each worker once. For several GPUs, start one worker per GPU (e.g. with
  ``dask-cuda``, which gives each worker its own ``CUDA_VISIBLE_DEVICES``);
  ``device="auto"`` then uses the worker's GPU. Two farm runs at once on one store
  must use disjoint ``archs``.

Peak memory is one unit of work (plus the dataset): units are independent and
nothing accumulates across them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from bionas_bench.errors import BionasError, TrainingError, is_out_of_memory
from bionas_bench.ids import parse_ids
from bionas_bench.knowledge import knowledge_dissimilarity
from bionas_bench.space import ModelSpace, get_space
from bionas_bench.train.batched import (
    CURVES,
    METRICS,
    TrainData,
    UnitResult,
    _torch_dtype,
    make_splits,
    resolve_device,
    train_unit,
)
from bionas_bench.train.config import TrainingConfig, load_training_config
from bionas_bench.train.memory import (
    free_bytes,
    plan_memory,
    release,
    replicate_bytes,
    replicates_at_once,
)
from bionas_bench.train.network import BatchedNetwork, first_layer_geometry
from bionas_bench.train.ops import check_space_ops

__all__ = [
    "FarmPlan",
    "FarmProgress",
    "FarmReport",
    "MemoryForecast",
    "Unit",
    "UnitOutcome",
    "UnitPlan",
    "parse_archs",
    "parse_replicates",
    "plan_farm",
    "plan_units",
    "run_farm",
    "score_knowledge",
    "train_and_write",
]


@dataclass(frozen=True)
class FarmProgress:
    """One finished unit, reported to the ``progress`` callback.

    Before the first unit the callback also gets a start event with ``done = 0`` and
    ``arch_id = -1``, so a progress bar knows its total (and ETA) from the start.
    """

    arch_id: int
    done: int  # units finished in this run so far
    total: int  # units this run trains
    seconds: float  # wall time of the unit (training + evaluation)
    failed: int  # replicates of the unit recorded as failed
    unbuildable: str = ""  # why the architecture cannot be built here (then every replicate failed)
    group: int = 0  # replicates trained together to fit in memory, when fewer than the unit's
    unfit: str = ""  # why not even one replicate fits in memory (then nothing was trained or written)


@dataclass(frozen=True)
class FarmReport:
    """What a farm run did: the store, units trained and skipped, replicates, device."""

    store: str
    trained: tuple[int, ...]  # architectures trained in this run (all or some of their replicates)
    skipped: int  # architectures whose selected replicates were all done already
    device: str
    replicates: tuple[int, ...]  # the replicate indices this run was asked for
    runs: int  # replicates trained in this run, summed over architectures
    unfit: tuple[int, ...] = ()  # architectures not trained: not one replicate fits in memory


class UnitOutcome(NamedTuple):
    """What one unit task did (:func:`train_and_write`)."""

    arch_id: int
    seconds: float  # wall time of the unit's training
    failed: int  # replicates recorded as failed
    unbuildable: str = ""  # why the architecture cannot be built (written as failed), or RUN_ENDED
    group: int = 0  # replicates trained together, when fewer than the unit's (0: all at once)
    unfit: str = ""  # why not even one replicate fits in memory (nothing trained or written)

    def progress(self, done: int, total: int) -> FarmProgress:
        return FarmProgress(
            self.arch_id, done, total, self.seconds, self.failed, self.unbuildable, self.group, self.unfit
        )


ProgressFn = Callable[[FarmProgress], None]
#: What every task of one run shares: space, dataset, training config, store path and
#: the run's token (a worker keeps one store handle per run, see ``_writable_store``).
Job = tuple[ModelSpace, Any, TrainingConfig, str, str]
#: Scheduler names that mean "train in this process, without Dask".
IN_PROCESS = ("none", "sync")
#: processes of a local cluster when ``workers`` is not given
LOCAL_WORKERS = 2


# ------------------------------------------------------------------------- inputs


def parse_archs(text: str, size: int) -> np.ndarray:
    """Parse ``"0-9,46"`` into sorted unique ids, each checked against ``0..size-1``."""
    return parse_ids(
        text,
        size,
        option="--archs",
        what="architecture id",
        hint="use ids and ranges like 0-9,46",
        error=TrainingError,
    )


def parse_replicates(text: str, config: TrainingConfig) -> np.ndarray:
    """Parse ``"0-4"`` into sorted unique indices into ``config``'s replicate seeds."""
    return parse_ids(
        text,
        config.replicates,
        option="--replicates",
        what="replicate index",
        hint="use replicate indices and ranges like 0-4,7",
        error=TrainingError,
        context=f" (training manifest {config.name!r} has {config.replicates} replicates)",
    )


def _as_space(space: ModelSpace | str | Path) -> ModelSpace:
    return space if isinstance(space, ModelSpace) else get_space(space)


def _as_config(training: TrainingConfig | str | Path) -> TrainingConfig:
    return training if isinstance(training, TrainingConfig) else load_training_config(training)


def _as_dataset(dataset: Any) -> Any:
    if isinstance(dataset, str | Path):
        from bionas_bench.data.datasets import build_dataset

        return build_dataset(dataset)
    return dataset


def _check_archs(space: ModelSpace, archs: Any) -> np.ndarray:
    if archs is None:
        return np.arange(space.size, dtype=np.int64)
    if isinstance(archs, str):
        return parse_archs(archs, space.size)
    arr = np.unique(np.asarray(archs).reshape(-1))  # no int64 cast here: it would truncate 1.7
    if arr.size == 0:
        raise TrainingError("archs is empty; give at least one architecture id")
    try:
        return space.check_ids(arr)
    except BionasError as exc:
        raise TrainingError(str(exc)) from None


def _check_replicates(config: TrainingConfig, replicates: Any) -> np.ndarray:
    """Sorted unique replicate indices (all of the manifest's by default), checked."""
    if replicates is None:
        return np.arange(config.replicates, dtype=np.int64)
    if isinstance(replicates, str):
        return parse_replicates(replicates, config)
    arr = np.unique(np.asarray(replicates).reshape(-1))
    if arr.size == 0 or arr.dtype.kind not in "iu":
        raise TrainingError(
            f"replicates {np.asarray(replicates).tolist()} must be a non-empty list of integer indices "
            f"into training manifest {config.name!r}'s replicates, or a string like 0-4"
        )
    if arr[0] < 0 or arr[-1] >= config.replicates:
        bad = int(arr[0] if arr[0] < 0 else arr[-1])
        raise TrainingError(
            f"replicate index {bad} is out of range; training manifest {config.name!r} has "
            f"{config.replicates} replicates, valid indices are 0..{config.replicates - 1}"
        )
    return arr.astype(np.int64)


# -------------------------------------------------------------------------- store


def _expected_attrs(space: ModelSpace, dataset: Any, config: TrainingConfig) -> dict[str, dict[str, str]]:
    return {
        "space": {"name": space.name, "manifest_sha256": space.manifest_sha256},
        "dataset": {
            "name": dataset.name,
            "manifest_sha256": dataset.manifest_sha256,
            "data_sha256": dataset.sha256,
        },
        "training": {"name": config.name, "manifest_sha256": config.manifest_sha256},
    }


def _store_attrs(space: ModelSpace, dataset: Any, config: TrainingConfig, device: torch.device) -> dict:
    from bionas_bench.store import default_provenance

    return {
        "dataset": {
            "name": dataset.name,
            "manifest_text": dataset.manifest_text,
            "manifest_sha256": dataset.manifest_sha256,
            "data_sha256": dataset.sha256,
        },
        "training": {
            "name": config.name,
            "manifest_text": config.manifest_text,
            "manifest_sha256": config.manifest_sha256,
        },
        "knowledge": {
            "settings": dict(config.knowledge_settings),
            "motif_sets": {
                name: [{"name": m.name, "pwm": np.asarray(m.pwm).tolist()} for m in motifs]
                for name, motifs in dataset.motif_sets.items()
            },
        },
        "replicate_seeds": list(config.replicate_seeds),
        "provenance": default_provenance(
            "farm", torch_version=torch.__version__, device=_device_name(device)
        ),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def _existing_store(out: Path, space: ModelSpace, dataset: Any, config: TrainingConfig, mode: str) -> Any:
    """The store at ``out`` checked for resuming with these manifests; None when ``out``
    is absent or an empty directory."""
    from bionas_bench.store import Store

    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file; give a new or existing store directory")
    if out.exists() and any(out.iterdir()):
        if not (out / "zarr.json").is_file():
            raise TrainingError(
                f"--out {out} is a folder that is not a bionas_bench store; give a new folder, "
                "or a store to resume"
            )
        store = Store.open(out, mode=mode)
        _check_resume(store, space, dataset, config)
        return store
    return None


def _open_or_create(out: Path, space: ModelSpace, dataset: Any, config: TrainingConfig, device: torch.device):
    """Open ``out`` for resuming after checking its manifests, or create it."""
    from bionas_bench.store import Store

    store = _existing_store(out, space, dataset, config, mode="r+")
    if store is not None:
        return store
    if out.exists():
        out.rmdir()  # an empty directory: create the store in its place
    # made beside ``out`` and renamed into place, so that a create cut short (Ctrl-C,
    # SIGKILL) leaves no half-made store to refuse on resume; this run holds the store's
    # lock, so leftovers of earlier cut-short creates are removed first
    for stale in out.parent.glob(f".{out.name}.creating-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = out.with_name(f".{out.name}.creating-{os.getpid()}")
    max_j, max_w = first_layer_geometry(space)
    Store.create(
        work,
        space=space,
        num_replicates=config.replicates,
        metrics=METRICS,
        knowledge_sets=tuple(dataset.motif_sets),
        curves=CURVES,
        max_epochs=config.max_epochs,
        max_filters=max_j,
        max_width=max_w,
        attrs=_store_attrs(space, dataset, config, device),
    )
    os.replace(work, out)
    return Store.open(out, mode="r+")


def _check_resume(store: Any, space: ModelSpace, dataset: Any, config: TrainingConfig) -> None:
    """Refuse to resume into a store built from other manifests, data or seeds."""
    attrs = store.attrs
    for section, want in _expected_attrs(space, dataset, config).items():
        have = attrs.get(section) or {}
        for key, value in want.items():
            if key != "name" and have.get(key) != value:
                if key == "data_sha256":  # the same manifest, other sequences (an edited FASTA file)
                    raise TrainingError(
                        f"store {store.location} was trained on other data of dataset {want['name']!r} "
                        f"(data sha256 {str(have.get(key))[:12]}..., now {value[:12]}...): its manifest is "
                        "the same but its input files changed since; train into a new --out, or restore "
                        "the files the store was trained on"
                    )
                raise TrainingError(
                    f"store {store.location} was built with {section} {have.get('name')!r} "
                    f"({key} {str(have.get(key))[:12]}...) but this run uses {section} {want['name']!r} "
                    f"({key} {value[:12]}...); resume only with the same manifests, or choose a new --out"
                )
    if list(attrs.get("replicate_seeds", [])) != list(config.replicate_seeds):
        raise TrainingError(
            f"store {store.location} has replicate seeds {attrs.get('replicate_seeds')} but the training "
            f"manifest gives {list(config.replicate_seeds)}; choose a new --out"
        )
    if (attrs.get("provenance") or {}).get("source") != "farm":
        raise TrainingError(f"store {store.location} was not written by the farm; choose a new --out")


# -------------------------------------------------------------------------- units


def score_knowledge(
    filters: np.ndarray | None, motif_sets: dict[str, Sequence[Any]], config: TrainingConfig, replicates: int
) -> dict[str, np.ndarray]:
    """Knowledge dissimilarity ``(R,)`` per motif set; NaN without filters or for failed replicates."""
    out = {}
    for name, motifs in motif_sets.items():
        if filters is None:
            out[name] = np.full(replicates, np.nan)
        else:
            out[name] = np.asarray(
                knowledge_dissimilarity(
                    filters.astype(np.float64), list(motifs), **config.knowledge_settings
                ),
                dtype=np.float64,
            )
    return out


_DATA_CACHE: dict[tuple, TrainData] = {}
_STORE_CACHE: dict[str, tuple[str, Any]] = {}
_LOCK = threading.Lock()


def _device_data(dataset: Any, config: TrainingConfig, device: torch.device) -> TrainData:
    """The dataset on ``device`` (one copy per process, reused by every unit)."""
    key = (dataset.sha256, str(device), config.dtype, config.onehot_value)
    with _LOCK:
        if key not in _DATA_CACHE:
            _DATA_CACHE.clear()  # one dataset at a time keeps memory bounded
            _DATA_CACHE[key] = TrainData.from_arrays(
                dataset.codes,
                dataset.labels,
                onehot_value=config.onehot_value,
                device=device,
                dtype=_torch_dtype(config.dtype),
            )
        return _DATA_CACHE[key]


def _writable_store(path: str, run: str) -> Any:
    """This process's handle on the store at ``path`` for the farm run ``run``.

    A handle lives for one run: a worker of a long-lived cluster that trained for an
    earlier run would otherwise write through a handle opened before that run ended
    (and packed the store, or the store was deleted and made anew), with stale
    attributes -- it would leave the packed copies marked current while changing the
    arrays under them.
    """
    from bionas_bench.store import Store

    with _LOCK:
        cached = _STORE_CACHE.get(path)
        if cached is None or cached[0] != run:
            cached = _STORE_CACHE[path] = (run, Store.open(path, mode="r+"))
        return cached[1]


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels, and float32 that is float32 on the GPU too, for the duration
    of a unit (restores the previous settings).

    TF32 (on by default for cuDNN convolutions) rounds float32 products to 10-bit
    mantissas: off, so a GPU trains in the precision the manifest names (the original
    Keras models trained in true float32) and replicate-batched training equals each
    replicate alone to float32 rounding on the GPU as on the CPU.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    if device.type == "cuda":
        if enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def train_and_write(
    space: ModelSpace,
    dataset: Any,
    config: TrainingConfig,
    out: str,
    run: str,
    arch_id: int,
    device: str,
    threads: int | None = None,
    replicates: Sequence[int] | None = None,
) -> UnitOutcome:
    """Train one unit and write it to the store at ``out`` (a Dask task, or called in-process).

    ``run`` names the farm run the task belongs to (any string, one per run).
    ``replicates`` are indices into ``config.replicate_seeds`` (None: all of them);
    only those replicates are trained and written, with their own seeds and splits,
    so the others of the architecture keep what the store holds. ``threads`` sets
    torch's CPU threads for this process (None leaves it).

    An architecture that cannot be built for the dataset's sequences (e.g. more pooling
    than their length allows) is written as done with every replicate failed and NaN
    values, and ``unbuildable`` says why, so one such architecture neither stops the farm
    nor is retried on every resume. Replicates that would not fit in memory together are
    trained a group at a time (:mod:`~bionas_bench.train.memory`); a unit of which not
    even one replicate fits is neither trained nor written (``unfit`` says why), so that
    a resume with more memory trains it.
    """
    if _run_ended(out, run):
        return UnitOutcome(int(arch_id), 0.0, 0, RUN_ENDED)
    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    data = _device_data(dataset, config, dev)
    arch_id = int(arch_id)
    reps = list(range(config.replicates)) if replicates is None else [int(r) for r in replicates]
    reason = _unbuildable(space, arch_id, data)
    if reason:
        _write_unbuildable(_writable_store(out, run), arch_id, reps)
        return UnitOutcome(arch_id, 0.0, len(reps), reason)
    memory = plan_memory(space, arch_id, data, config, len(reps))
    if memory.group == 0:
        return UnitOutcome(arch_id, 0.0, 0, unfit=memory.why_not(space, arch_id, config, dev))
    seeds = [config.replicate_seeds[r] for r in reps]
    result, group = _train_in_groups(space, arch_id, data, dataset, config, seeds, memory.group)
    if result is None:
        unfit = (
            f"architecture {arch_id} ({space.arch_name(arch_id)}) ran out of memory on {dev.type} with "
            f"one replicate at batch size {config.batch_size} (evaluation batch {config.eval_batch_size})"
        )
        return UnitOutcome(arch_id, 0.0, 0, unfit=unfit)
    if _run_ended(out, run):
        return UnitOutcome(arch_id, 0.0, 0, RUN_ENDED)
    _write(_writable_store(out, run), result, dataset, config, reps)
    seconds = float(result.metrics["train_seconds"].sum())
    return UnitOutcome(arch_id, seconds, int(result.failed.sum()), group=group if group < len(reps) else 0)


def _train_in_groups(
    space: ModelSpace,
    arch_id: int,
    data: TrainData,
    dataset: Any,
    config: TrainingConfig,
    seeds: list[int],
    group: int,
) -> tuple[UnitResult | None, int]:
    """Train the replicates of ``seeds`` in groups of at most ``group``, halving the group
    whenever an allocation fails; returns their result and the last group size, or
    ``(None, 0)`` when even a single replicate runs out of memory."""
    parts: list[UnitResult] = []
    start = 0
    while start < len(seeds):
        chunk = seeds[start : start + group]
        try:
            plan = make_splits(dataset.splits, dataset.n_sequences, config, chunk)
            with determinism(config.deterministic, data.codes.device):
                parts.append(train_unit(space, arch_id, data, plan, config, chunk))
            start += len(chunk)
            continue
        except (MemoryError, RuntimeError) as exc:  # torch's OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(exc):
                raise
        release(data.codes.device)  # after the except block: the traceback no longer holds tensors
        if len(chunk) == 1:
            return None, 0
        group = len(chunk) // 2
    return UnitResult.concat(parts), group


def _unbuildable(space: ModelSpace, arch_id: int, data: TrainData) -> str:
    """Why ``arch_id`` cannot be built for ``data``'s sequences ("" when it can): its
    layers are checked on torch's meta device (shapes only, no memory, no random draws).

    An op that refuses its input in its own words raises a TrainingError; one that does
    not check (a registered op) fails inside torch or its own arithmetic instead, with
    these errors. Values no input allows were refused before the run (``check_space_ops``),
    so what is left is this architecture's shapes on this data.
    """
    try:
        with torch.device("meta"):
            BatchedNetwork(space, arch_id, seq_len=data.seq_len, n_labels=data.n_labels, replicates=1)
    except TrainingError as exc:
        return str(exc)
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        return (
            f"architecture {arch_id} ({space.arch_name(arch_id)}) of space {space.name!r} cannot be "
            f"built for sequences of length {data.seq_len}: {exc}"
        )
    return ""


def _write_unbuildable(store: Any, arch_id: int, replicates: list[int]) -> None:
    """Every replicate of ``replicates`` done and failed, with NaN values."""
    nan = np.full(len(replicates), np.nan)
    store.write_unit(
        arch_id,
        metrics={name: nan for name in store.metric_names},
        knowledge={name: nan for name in store.knowledge_sets},
        failed=np.ones(len(replicates), dtype=bool),
        replicates=replicates,
    )


def _write(
    store: Any, result: UnitResult, dataset: Any, config: TrainingConfig, replicates: list[int]
) -> None:
    knowledge = score_knowledge(result.filters, dataset.motif_sets, config, len(result.failed))
    store.write_unit(
        result.arch_id,
        metrics=result.metrics,
        knowledge=knowledge,
        curves=result.curves,
        filters=result.filters,
        failed=result.failed,
        replicates=replicates,
    )


@dataclass(frozen=True)
class Unit:
    """One task of the farm: an architecture and the replicate indices it still lacks."""

    arch_id: int
    replicates: tuple[int, ...]


class UnitPlan(Sequence[Unit]):
    """The units left to train, in architecture order, kept as arrays.

    Per unit, its architecture id and an index into the distinct sets of missing
    replicates (~16 bytes a unit: the plan of all 1,166,400 architectures of
    ``bionas-eclip`` takes ~19 MB, where a list of :class:`Unit` objects took ~190 MB);
    a :class:`Unit` is made when one is asked for.
    """

    def __init__(self, archs: np.ndarray, kinds: np.ndarray, patterns: Sequence[tuple[int, ...]]) -> None:
        self.archs = archs  #: ``(n,)`` architecture ids
        self._kinds = kinds  #: ``(n,)`` index into ``patterns``
        self._patterns = tuple(patterns)  #: distinct sets of missing replicates

    def __len__(self) -> int:
        return int(self.archs.size)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Unit(int(self.archs[index]), self._patterns[self._kinds[index]])

    def __repr__(self) -> str:
        return f"UnitPlan({len(self)} units, {self.runs} replicate trainings)"

    @property
    def runs(self) -> int:
        """Replicate trainings in all units."""
        counts = np.bincount(self._kinds, minlength=len(self._patterns))
        return int(sum(len(p) * int(c) for p, c in zip(self._patterns, counts, strict=True)))


def plan_units(done: np.ndarray, archs: np.ndarray, replicates: np.ndarray) -> UnitPlan:
    """The units left to train: per architecture in ``archs``, its ``replicates`` not yet done.

    ``done`` is the store's ``[arch, replicate]`` mask. An architecture whose selected
    replicates are all done is skipped; otherwise it is *one* unit holding all its
    missing selected replicates: an architecture's replicates share a store chunk, so
    one task writing them keeps every chunk written by a single worker.
    """
    archs = np.asarray(archs, dtype=np.int64).reshape(-1)
    replicates = np.asarray(replicates, dtype=np.int64).reshape(-1)
    missing = ~done[np.ix_(archs, replicates)]
    rows = np.flatnonzero(missing.any(axis=1))
    _, first, kinds = np.unique(
        np.packbits(missing[rows], axis=1), axis=0, return_index=True, return_inverse=True
    )
    patterns = [tuple(replicates[missing[rows[i]]].tolist()) for i in first]
    return UnitPlan(archs[rows], kinds.reshape(-1).astype(np.int64), patterns)


# -------------------------------------------------------------------------- farm


#: a dry run estimates the memory of at most this many units (a meta-device build each)
MEMORY_FORECAST_UNITS = 10_000


@dataclass(frozen=True)
class MemoryForecast:
    """What the units of a plan need in memory on this machine (see :func:`plan_farm`)."""

    device: str
    free: int  #: bytes one process may use now (a GPU's free memory, or the CPU's share)
    largest: int  #: estimated peak of the largest unit with all its replicates at once
    grouped: tuple[int, ...]  #: architectures that would train a few replicates at a time
    unfit: tuple[int, ...]  #: architectures of which not even one replicate fits
    estimated: int  #: units estimated (at most :data:`MEMORY_FORECAST_UNITS`)


@dataclass(frozen=True)
class FarmPlan:
    """What :func:`run_farm` would train with the same arguments (see :func:`plan_farm`)."""

    store: str
    resumed: bool  #: ``store`` holds a store made from the same manifests
    space: ModelSpace
    config: TrainingConfig
    dataset: str
    archs: tuple[int, ...]  #: the architectures asked for
    replicates: tuple[int, ...]  #: the replicate indices asked for
    units: UnitPlan  #: what is still to train, one unit per architecture
    memory: MemoryForecast | None = None  #: what the units need in memory here (``processes`` given)

    @property
    def runs(self) -> int:
        """Replicate trainings still to do."""
        return self.units.runs

    @property
    def asked(self) -> int:
        """Replicate trainings asked for (done or not)."""
        return len(self.archs) * len(self.replicates)


def plan_farm(
    space: ModelSpace | str | Path,
    dataset: Any,
    training: TrainingConfig | str | Path,
    out: str | Path,
    *,
    archs: Any = None,
    replicates: Any = None,
    device: str | None = None,
    threads: int | None = None,
    processes: int | None = None,
) -> FarmPlan:
    """The units :func:`run_farm` would train into ``out``; trains nothing and writes
    nothing into ``out`` (the dataset is built into its cache if it is not there yet).

    Every check of :func:`run_farm` before training runs here too, with the same errors:
    the manifests, ``archs``, ``replicates``, ``device`` and ``threads``, and that an
    existing ``out`` is a store made from the same space, dataset, training manifest and
    seeds. With ``processes`` (the processes that would train on this machine at once: 1
    in-process, the workers of a local cluster) the plan also forecasts the units' memory
    on this machine (:mod:`~bionas_bench.train.memory`), for the first
    :data:`MEMORY_FORECAST_UNITS` units.
    """
    space = _as_space(space)
    check_space_ops(space)  # a misspelt op or parameter: before anything trains
    config = _as_config(training)
    ids = _check_archs(space, archs)
    reps = _check_replicates(config, replicates)
    dev = _check_run(out, device or config.device, threads)
    data = _as_dataset(dataset)
    out_path = Path(out)
    store = _existing_store(out_path, space, data, config, mode="r")
    done = store.done if store is not None else np.zeros((space.size, config.replicates), dtype=bool)
    units = plan_units(done, ids, reps)
    return FarmPlan(
        store=str(out_path),
        resumed=store is not None,
        space=space,
        config=config,
        dataset=data.name,
        archs=tuple(int(a) for a in ids),
        replicates=tuple(int(r) for r in reps),
        units=units,
        memory=None if processes is None else _forecast_memory(space, data, config, units, dev, processes),
    )


def _forecast_memory(
    space: ModelSpace,
    dataset: Any,
    config: TrainingConfig,
    units: UnitPlan,
    device: torch.device,
    processes: int,
) -> MemoryForecast:
    """:class:`MemoryForecast` of the first :data:`MEMORY_FORECAST_UNITS` of ``units``,
    trained by ``processes`` processes at once on ``device`` here."""
    free = free_bytes(device)
    if device.type != "cuda" and processes > 1:  # a local cluster gives each worker its share
        import psutil

        free = min(free, int(psutil.virtual_memory().total // processes))
    data = _device_data(dataset, config, device)
    grouped, unfit, largest = [], [], 0
    estimated = units[:MEMORY_FORECAST_UNITS]
    for unit in estimated:
        try:
            need = replicate_bytes(space, unit.arch_id, data, config)
        except TrainingError:  # cannot be built for these sequences: recorded failed, no memory
            continue
        largest = max(largest, need * len(unit.replicates))
        group = replicates_at_once(need, free, len(unit.replicates))
        if group == 0:
            unfit.append(unit.arch_id)
        elif group < len(unit.replicates):
            grouped.append(unit.arch_id)
    return MemoryForecast(_device_name(device), free, largest, tuple(grouped), tuple(unfit), len(estimated))


def _check_run(out: str | Path, device: str, threads: int | None) -> torch.device:
    """The device to train on, after checking the options of a run (``threads``, that
    ``out`` is not a URL, that ``device`` exists here)."""
    if threads is not None and threads < 1:
        raise TrainingError(f"--threads must be >= 1, got {threads}")
    if "://" in str(out):
        raise TrainingError(
            f"--out {out}: the farm writes a local (or shared, mounted) folder, not a URL; train into "
            "a folder, then copy the store where it should live"
        )
    return resolve_device(device)


def run_farm(
    space: ModelSpace | str | Path,
    dataset: Any,
    training: TrainingConfig | str | Path,
    out: str | Path,
    *,
    device: str | None = None,
    archs: Any = None,
    replicates: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> FarmReport:
    """Train every not-yet-done replicate of ``archs`` x ``replicates`` into the store ``out``.

    Args:
        space: a :class:`ModelSpace` or a space name / manifest path.
        dataset: a :class:`~bionas_bench.data.datasets.Dataset` or a dataset name / path.
        training: a :class:`TrainingConfig` or a training manifest name / path.
        out: store directory; created when absent, resumed when it holds a store made
            from the same manifests (anything else is refused, untouched).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; None takes the manifest's.
        archs: ids, or a string like ``"0-9,46"``; None = the whole space.
        replicates: indices into the training manifest's replicates (its seeds), or a
            string like ``"0-4"``; None = all. A later call with more (or None) trains
            only the replicates still missing; the store records each replicate's
            completion separately.
        scheduler: where units run. The library default None (also ``"none"`` or
            ``"sync"``) trains in this process, one unit after the other: no Dask, no
            extra processes, exceptions with plain tracebacks, which is what a library
            call should do unless asked. ``"local"`` starts a Dask LocalCluster of
            ``workers`` processes (the ``bionas-bench train`` default); anything else
            is the address of a running Dask scheduler (``tcp://host:8786``).
        workers: processes of the ``"local"`` cluster (None: 2); refused with any
            other scheduler, whose workers are not this call's to choose.
        threads: torch CPU threads per process (None: torch's default in-process, and
            ``cpu_count // workers`` per local-cluster worker so workers do not
            oversubscribe the cores; small networks often run fastest on 1).
        progress: called once before the first unit and once per finished unit with
            a :class:`FarmProgress`.

    Everything is validated before the store is touched: bad input raises a
    :class:`~bionas_bench.errors.BionasError` and writes nothing. Replicates trained
    in separate calls equal those of one call up to floating-point rounding (batched
    kernels round differently for different replicate counts); the same calls give
    the same bytes. ``train_seconds`` is a unit's wall time shared among the
    replicates it trained, so replicates trained a few at a time record more each.
    """
    space = _as_space(space)
    check_space_ops(space)  # a misspelt op or parameter: before anything trains
    config = _as_config(training)
    ids = _check_archs(space, archs)
    reps = _check_replicates(config, replicates)
    scheduler, workers = check_scheduler(scheduler, workers)
    if scheduler == "local":
        from bionas_bench.cluster import refuse_reimported_script

        refuse_reimported_script("run_farm")
    if progress is not None and not callable(progress):
        raise TrainingError(f"progress must be None or a function taking a FarmProgress, got {progress!r}")
    device_name = device or config.device
    dev = _check_run(out, device_name, threads)
    dataset = _as_dataset(dataset)
    out_path = Path(out).absolute()  # the workers of a scheduler address run in their own folders
    with contextlib.ExitStack() as stack:
        # a scheduler address is reached before the store is made: a wrong one leaves nothing
        remote = scheduler not in (None, "local")
        client = stack.enter_context(_client(scheduler, workers)) if remote else None
        run = uuid.uuid4().hex  # names this run in the lock and in the workers' store handles
        stack.enter_context(_store_lock(out_path, run))
        from bionas_bench.cluster import ctrl_c_after  # here: it imports Dask

        with ctrl_c_after():  # a store cut short mid-create prints asyncio's "never awaited" warnings
            store = _open_or_create(out_path, space, dataset, config, dev)
        units = plan_units(store.done, ids, reps)
        if units:
            store.note_training(_device_name(dev), torch.__version__)
        if progress is not None:
            progress(FarmProgress(-1, 0, len(units), 0.0, 0))
        job = (space, dataset, config, str(out_path), run)
        outcomes: list[UnitOutcome] = []  # of the units that did not fit in memory
        if scheduler is None:
            outcomes = _run_in_process(store, job, units, device_name, threads, progress)
        elif units:
            if client is None:  # a local cluster, started only when there is work
                threads = max(1, (os.cpu_count() or 1) // workers) if threads is None else threads
                client = stack.enter_context(_client(scheduler, workers))
            outcomes = _run_dask(client, job, units, device_name, threads, progress)
        _pack_when_complete(out_path)
    unfit = {o.arch_id for o in outcomes}
    return FarmReport(
        store=str(out),
        trained=tuple(a for a in units.archs.tolist() if a not in unfit),
        skipped=len(ids) - len(units),
        device=_device_name(dev),
        replicates=tuple(int(r) for r in reps),
        runs=units.runs - (sum(len(u.replicates) for u in units if u.arch_id in unfit) if unfit else 0),
        unfit=tuple(sorted(unfit)),
    )


def _lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


def _store_lock(out: Path, run: str) -> contextlib.AbstractContextManager[None]:
    """``STORE.lock`` beside the store, held while this run creates or writes it: the
    replicates of an architecture share a chunk, so two runs (say ``--replicates 0-4`` and
    ``5-9`` at once) would overwrite each other's values. The second run is refused. The
    lock names the run (``run``): see :func:`_run_ended`."""
    from bionas_bench.locks import folder_lock

    lock = _lock_path(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    busy = (
        f"store {out} is being trained by another run (process {{owner}}); wait for it to finish, "
        f"or train into another --out (delete {lock} only if no run trains it)"
    )
    return folder_lock(lock, TrainingError, busy, token=run)


#: what a unit of an ended run returns instead of training or writing
RUN_ENDED = "not trained: the run that asked for it has ended (its store lock is gone)"


def _run_ended(out: str, run: str) -> bool:
    """Whether the farm run ``run`` no longer holds the store's lock.

    A task already running on a remote Dask worker goes on after its run stopped (Ctrl-C,
    an error: closing the client only cancels what has not started), and the lock is
    released then; a resumed run may take it and train the same unit. So a unit checks
    the lock before it trains and again before it writes, and an ended run's unit writes
    nothing.
    """
    from bionas_bench.locks import holds

    return not holds(_lock_path(Path(out)), run)


SCHEDULER_HINT = "use --scheduler local (a local cluster) or none (in this process)"


def check_scheduler(scheduler: str | None, workers: int | None) -> tuple[str | None, int]:
    """``(None, 1)`` for in-process training, else ``("local", workers)`` or ``(address, 0)``."""
    name = None if scheduler is None else scheduler.strip()
    if name is not None and not name:
        raise TrainingError("--scheduler is empty; give 'local', 'none' or an address like tcp://host:8786")
    if name is not None and name.lower() == "local":
        workers = LOCAL_WORKERS if workers is None else workers
        if workers < 1:
            raise TrainingError(f"--workers must be >= 1, got {workers}")
        return "local", workers
    if workers is not None:
        here = name is None or name.lower() in IN_PROCESS
        where = f"{name or 'none'} trains in this process" if here else f"{name} trains on its own workers"
        raise TrainingError(
            f"--workers {workers} applies to --scheduler local only; --scheduler {where}: "
            f"drop --workers, or use --scheduler local --workers {workers}"
        )
    if name is None or name.lower() in IN_PROCESS:
        return None, 1
    from bionas_bench.cluster import check_address

    check_address(name, TrainingError, SCHEDULER_HINT)
    return name, 0


def _pack_when_complete(out_path: Path) -> None:
    """Once every unit is done, write the packed copies that make opening the store fast.

    Workers write per-architecture chunks (disjoint, safe in parallel); reading a
    finished store that way is slow, so the last step packs it (see ``Store.pack``).
    A partial store stays unpacked and is still readable.
    """
    from bionas_bench.store import Store

    store = Store.open(out_path, mode="r+")
    if not store.missing_units().size:
        store.pack()


def _run_in_process(
    store: Any,
    job: Job,
    units: UnitPlan,
    device: str,
    threads: int | None,
    progress: ProgressFn | None,
) -> list[UnitOutcome]:
    """Train the units one after the other in this process, writing through ``store``;
    torch's thread count, which ``threads`` sets, is the caller's again afterwards.
    Returns the outcomes of the units that did not fit in memory."""
    out, run = job[3], job[4]
    _STORE_CACHE[out] = (run, store)
    callers_threads = torch.get_num_threads()
    unfit = []
    try:
        for n, unit in enumerate(units, start=1):
            outcome = train_and_write(*job, unit.arch_id, device, threads, unit.replicates)
            if outcome.unfit:
                unfit.append(outcome)
            if progress is not None:
                progress(outcome.progress(n, len(units)))
    finally:
        _STORE_CACHE.pop(out, None)
        torch.set_num_threads(callers_threads)
    return unfit


def _client(scheduler: str, workers: int) -> contextlib.AbstractContextManager[Any]:
    """A Dask client of a new local cluster (``"local"``) or of the scheduler at an address."""
    from bionas_bench.cluster import dask_client

    return dask_client(scheduler, workers, error=TrainingError, hint=SCHEDULER_HINT)


def _run_dask(
    client: Any,
    job: Job,
    units: UnitPlan,
    device: str,
    threads: int | None,
    progress: ProgressFn | None,
) -> list[UnitOutcome]:
    """Dask tasks of ``client``, one per unit; results are written by the workers themselves.

    Units are submitted a few at a time, about two per worker thread (counted again as
    each finishes, so workers that join later get work), not all at once: the scheduler
    of a 1,166,400-unit space would otherwise hold every task. The space, dataset and
    training config are sent to every worker once.

    A Ctrl-C while the data is sent takes effect once it is sent (a second one at once). On any
    exit before the end (an error, Ctrl-C) the caller's
    :func:`~bionas_bench.cluster.dask_client` closes the client first, releasing the
    units not yet started, then kills the local cluster's worker processes; a unit cut
    short is simply not done and is retrained on resume. Returns the outcomes of the
    units that did not fit in memory.
    """
    from dask.distributed import as_completed

    from bionas_bench.cluster import ctrl_c_after

    space, dataset, config, out, run = job
    with ctrl_c_after():  # a Ctrl-C mid-scatter would leave the scheduler a broadcast to fail
        shared = client.scatter([space, dataset, config], broadcast=True)
    todo = iter(units)

    def top_up(pending: Any) -> None:
        window = max(2, 2 * sum(client.nthreads().values()))
        while pending.count() < window:
            unit = next(todo, None)
            if unit is None:
                return
            pending.add(
                client.submit(
                    train_and_write,
                    *shared,
                    out,
                    run,
                    unit.arch_id,
                    device,
                    threads,
                    unit.replicates,
                    pure=False,
                )
            )

    pending = as_completed()
    top_up(pending)
    unfit = []
    for n, future in enumerate(pending, start=1):
        outcome = future.result()
        if outcome.unfit:
            unfit.append(outcome)
        top_up(pending)
        if progress is not None:
            progress(outcome.progress(n, len(units)))
    return unfit
