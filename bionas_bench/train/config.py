"""Typed training settings, read from ``data_manifests/training/*.toml``.

A training manifest holds every setting of the farm's child-network training:

.. code-block:: toml

    [training]      name, description
    [optimizer]     name = "adam", lr, beta1, beta2, eps
    [schedule]      batch_size, max_epochs, patience, loss_includes_penalties
    [replicates]    count, seed (replicate r gets seed + r) or seeds = [..] (one per replicate)
    [data]          onehot_value, resplit_per_replicate, n_train, n_val, evaluate_test
    [knowledge]     temperature, per_filter_penalty
    [runtime]       device = "auto" | "cpu" | "cuda", dtype, deterministic, eval_batch_size

Unknown keys are rejected (a typo never passes silently). See
``data_manifests/training/bionas-pub-myc.toml`` for the original BioNAS setup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bionas_bench.errors import ManifestError
from bionas_bench.manifests import Fields, Manifest, load_manifest

__all__ = ["DEVICES", "DTYPES", "TrainingConfig", "load_training_config"]

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")
OPTIMIZERS = ("adam",)


@dataclass(frozen=True)
class TrainingConfig:
    """Every setting of child-network training, with the manifest it came from.

    Attributes (manifest table in brackets):
        optimizer [optimizer].name: only ``"adam"`` (Keras' Adam update, see
            :class:`bionas_bench.train.batched.BatchedAdam`).
        lr, beta1, beta2, eps [optimizer]: Adam settings (Keras defaults 0.9, 0.999, 1e-7).
        batch_size, max_epochs, patience [schedule]: mini-batch size, epoch cap, and
            early-stopping patience on the validation loss (best weights restored).
        loss_includes_penalties [schedule]: whether the validation loss that is
            monitored and stored includes the ops' penalties (Keras reports it so; the
            original table's loss does) or is the pure binary cross-entropy.
        replicates, replicate_seeds [replicates]: number of replicates and one seed each.
        onehot_value [data]: value of the hot base (the original used 2; N is all zero).
        resplit_per_replicate, n_train, n_val [data]: when true, each replicate shuffles
            the dataset's non-test sequences with its own seed and takes the first
            ``n_train`` for training and the next ``n_val`` for validation (the
            original's per-replicate 18,000 / 2,000 split); when false, the dataset's
            own ``train`` and ``valid`` splits are used by every replicate.
        evaluate_test [data]: evaluate the best weights on the dataset's ``test`` split.
        knowledge_temperature, per_filter_penalty [knowledge]: knowledge scoring settings.
        device, dtype, deterministic, eval_batch_size [runtime]: where and how to compute.
    """

    name: str
    description: str
    optimizer: str
    lr: float
    beta1: float
    beta2: float
    eps: float
    batch_size: int
    max_epochs: int
    patience: int
    loss_includes_penalties: bool
    replicate_seeds: tuple[int, ...]
    onehot_value: float
    resplit_per_replicate: bool
    n_train: int
    n_val: int
    evaluate_test: bool
    knowledge_temperature: float
    per_filter_penalty: float
    device: str
    dtype: str
    deterministic: bool
    eval_batch_size: int
    manifest_text: str = ""
    manifest_sha256: str = ""

    @property
    def replicates(self) -> int:
        return len(self.replicate_seeds)

    @property
    def knowledge_settings(self) -> dict[str, float]:
        """Keyword arguments of :func:`bionas_bench.knowledge.knowledge_dissimilarity`."""
        return {"temperature": self.knowledge_temperature, "per_filter_penalty": self.per_filter_penalty}


def load_training_config(name_or_path: str | Path) -> TrainingConfig:
    """Load and validate a training manifest by shipped name or path."""
    return training_config_from_manifest(load_manifest("training", name_or_path))


def training_config_from_manifest(manifest: Manifest) -> TrainingConfig:
    """Validate a parsed training manifest into a :class:`TrainingConfig`."""
    where = f"training manifest {manifest.path}"
    root = Fields(manifest.data, where)

    meta = root.table("training")
    name = meta.get("name", str)
    description = meta.get("description", str, "")
    meta.finish()

    opt = root.table("optimizer")
    optimizer = opt.get("name", str, "adam")
    lr = opt.get("lr", float)
    beta1 = opt.get("beta1", float, 0.9)
    beta2 = opt.get("beta2", float, 0.999)
    eps = opt.get("eps", float, 1e-7)
    opt.finish()

    sched = root.table("schedule")
    batch_size = sched.get("batch_size", int)
    max_epochs = sched.get("max_epochs", int)
    patience = sched.get("patience", int)
    loss_includes_penalties = sched.get("loss_includes_penalties", bool, False)
    sched.finish()

    reps = root.table("replicates")
    count = reps.get("count", int)
    seed = reps.get("seed", int, 0)
    seeds = reps.get("seeds", list, None)
    reps.finish()

    data = root.table("data")
    onehot_value = data.get("onehot_value", float, 1.0)
    resplit = data.get("resplit_per_replicate", bool, False)
    n_train = data.get("n_train", int, 0)
    n_val = data.get("n_val", int, 0)
    evaluate_test = data.get("evaluate_test", bool, True)
    data.finish()

    know = root.table("knowledge", {})
    temperature = know.get("temperature", float, 0.1)
    per_filter_penalty = know.get("per_filter_penalty", float, 0.0)
    know.finish()

    run = root.table("runtime", {})
    device = run.get("device", str, "auto")
    dtype = run.get("dtype", str, "float32")
    deterministic = run.get("deterministic", bool, True)
    eval_batch_size = run.get("eval_batch_size", int, 2000)
    run.finish()
    root.finish()

    def bad(msg: str) -> ManifestError:
        return ManifestError(f"{where}: {msg}")

    if optimizer not in OPTIMIZERS:
        raise bad(f"[optimizer].name {optimizer!r} is not supported; use one of {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise bad(f"[optimizer].lr must be > 0, got {lr}")
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1 and eps > 0):
        raise bad("[optimizer] needs 0 <= beta1, beta2 < 1 and eps > 0")
    for key, value in (("batch_size", batch_size), ("max_epochs", max_epochs), ("patience", patience)):
        if value < 1:
            raise bad(f"[schedule].{key} must be >= 1, got {value}")
    if count < 1:
        raise bad(f"[replicates].count must be >= 1, got {count}")
    if seeds is None:
        replicate_seeds = tuple(seed + r for r in range(count))
    else:
        if len(seeds) != count or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise bad(f"[replicates].seeds must be {count} integers (one per replicate), got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise bad("[replicates].seeds must be distinct")
        replicate_seeds = tuple(seeds)
    if any(s < 0 for s in replicate_seeds):
        raise bad("replicate seeds must be >= 0")
    if resplit and (n_train < 1 or n_val < 1):
        raise bad("[data].resplit_per_replicate = true needs n_train >= 1 and n_val >= 1")
    if not resplit and (n_train or n_val):
        raise bad("[data].n_train / n_val apply only with resplit_per_replicate = true; remove them")
    if not math.isfinite(onehot_value) or onehot_value <= 0:
        raise bad(f"[data].onehot_value must be > 0, got {onehot_value}")
    if temperature <= 0:
        raise bad(f"[knowledge].temperature must be > 0, got {temperature}")
    if device not in DEVICES:
        raise bad(f"[runtime].device must be one of {', '.join(DEVICES)}, got {device!r}")
    if dtype not in DTYPES:
        raise bad(f"[runtime].dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if eval_batch_size < 1:
        raise bad(f"[runtime].eval_batch_size must be >= 1, got {eval_batch_size}")

    return TrainingConfig(
        name=name,
        description=description,
        optimizer=optimizer,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        loss_includes_penalties=loss_includes_penalties,
        replicate_seeds=replicate_seeds,
        onehot_value=onehot_value,
        resplit_per_replicate=resplit,
        n_train=n_train,
        n_val=n_val,
        evaluate_test=evaluate_test,
        knowledge_temperature=temperature,
        per_filter_penalty=per_filter_penalty,
        device=device,
        dtype=dtype,
        deterministic=deterministic,
        eval_batch_size=eval_batch_size,
        manifest_text=manifest.text,
        manifest_sha256=manifest.sha256,
    )
