"""Sweeps: every controller x every knowledge weight lambda x many runs, against the oracle.

A sweep is what a user of the benchmark runs: "search this space with each controller
hundreds of times at each lambda, and keep everything they saw". One **cell** is one
(controller, lambda) pair; its runs are advanced together through
:func:`bionas_bench.controllers.create_runs` (batched controllers step all runs at
once), each run against its own bootstrap oracle. Cells are independent, so they run
in parallel on Dask (a local cluster by default, ``"sync"`` in-process, or the address
of a running scheduler).

Configs are TOML manifests (``data_manifests/sweeps/<name>.toml``) parsed into the
frozen :class:`SweepConfig`; every unknown key is an error. Seeds are derived from the
sweep seed and the *content* of a cell (controller label, lambda value, run index) with
:class:`numpy.random.SeedSequence`, so a run's result does not depend on the order the
cells run in, on the scheduler, on how many runs a cell has, or on which other
controllers and lambdas share the sweep.

Results directory (self-contained; the report needs nothing else)::

    <out>/sweep.json          format, config text + sha256, input hashes, cells
    <out>/gold.csv            gold standard per lambda and architecture (medians, ranks)
    <out>/.sweep.lock         while a sweep writes: its pid and host (a second is refused)
    <out>/cells/<key>.zarr    one Zarr v3 group per finished cell:
        steps/<field>   [run, episode, slot]  arch, replicate, loss, knowledge, reward,
                                              cost, failed (bool) and every field of
                                              [oracle].record
        incumbent       [run, episode]        recommend() after the episode's tell (every
                                              ``incumbent_every`` episodes and the last; -1
                                              where not recorded)
        within_budget   [run, episode]        False once a run spent its GPU-seconds budget
        policy/<layer>  [run, episode, choice] choice probabilities of the step (policy()
                                              after the ask; policy controllers only)
        runs/<field>    [run]                 seeds, recommended arch, its medians and ranks

The unit of parallel work is a **task**, a slice of a cell's runs (at most 25 by
default, see :func:`plan_tasks`), so that cells of unequal cost balance and more workers
than cells can help;
a slice is written to ``cells/<key>.parts/runs-<lo>-<hi>.zarr`` and the slices of a cell
are joined into ``<key>.zarr`` (the bytes a whole-cell task writes) as soon as all are in.
Every group is written to ``<name>.partial`` and renamed when complete, with the group
attribute ``done`` written last, so an interrupted sweep (Ctrl-C, a killed worker)
resumes by skipping finished cells and slices and rerunning the rest; a finished cell
that lost an array or a chunk since counts as unfinished (:func:`is_done`). The same config
and seeds give byte-identical files whatever the scheduler and the slicing.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bionas_bench.errors import BionasError, ManifestError, OracleError, StoreError, SweepError
from bionas_bench.manifests import Fields, Manifest, load_manifest, sha256_text

RESULTS_FORMAT = "bionas-bench-sweep-results/1"
STORE_SOURCES = ("embedded", "path", "bionas-pub")
REPLICATE_POLICIES = ("random", "fixed", "median")
FAILED_POLICIES = ("include", "exclude")
#: Largest task of an automatic split: a slice of at most this many of a cell's runs.
RUNS_PER_TASK = 25
#: Fields of every oracle answer kept per step (plus "failed" and [oracle].record).
CORE_FIELDS = ("arch", "replicate", "loss", "knowledge", "reward", "cost")
#: Largest knowledge weight: the objective loss + lambda K must stay finite, and a weight
#: near the float range (1e308) overflows it to infinity (every objective rank then ties).
MAX_LAMBDA = 1e12


# ---------------------------------------------------------------------- config
@dataclass(frozen=True)
class StoreSpec:
    """Which store the oracle serves.

    ``source``: ``"embedded"`` (the shipped default store), ``"path"`` (a store at
    ``path``) or ``"bionas-pub"`` (the original BioNAS table at ``path``, default
    ``$BIONAS_PUB_DIR`` or ``../shared/bionas_pub``, imported once into a cache).
    """

    source: str = "embedded"
    path: str | None = None


@dataclass(frozen=True)
class OracleSpec:
    """How the oracle serves metrics (see :class:`bionas_bench.BootstrapOracle`).

    ``record`` names extra store metrics (e.g. ``"accuracy"``) kept per step besides
    arch, replicate, loss, knowledge, reward, cost and failed.
    """

    loss: str = "val_loss"
    knowledge: str | None = None
    failed: str = "include"
    replicate: str | int = "random"
    record: tuple[str, ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "knowledge": self.knowledge,
            "failed": self.failed,
            "replicate": self.replicate,
        }


@dataclass(frozen=True)
class ControllerSpec:
    """One controller of a sweep: registry name, unique label, hyper-parameters."""

    name: str
    label: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class BudgetSpec:
    """Per-run budget: ``episodes`` asks of ``archs_per_episode`` ids each.

    ``gpu_seconds`` (optional) additionally ends a run once the simulated training
    seconds it was charged reach the budget: later steps are kept but flagged outside
    the budget, and the run's recommendation is its incumbent at its last step inside.
    An episode that starts with budget left counts whole, so a run overruns the budget
    by at most one episode's charge.
    """

    episodes: int
    archs_per_episode: int = 1
    gpu_seconds: float | None = None

    @property
    def samples(self) -> int:
        return self.episodes * self.archs_per_episode


@dataclass(frozen=True)
class ReportSpec:
    """Report settings: title, free Markdown notes, the lambdas of the policy figure."""

    title: str = ""
    notes: str = ""
    policy_lambdas: tuple[float, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One controller at one lambda, all runs: one entry of the results."""

    index: int
    controller: ControllerSpec
    lam_index: int
    lam: float

    @property
    def key(self) -> str:
        return f"{self.controller.label}__lam{self.lam_index:02d}"


@dataclass(frozen=True)
class Task:
    """The unit of parallel work: runs ``lo`` .. ``hi - 1`` of one cell."""

    cell: Cell
    lo: int
    hi: int

    @property
    def runs(self) -> range:
        return range(self.lo, self.hi)

    @property
    def name(self) -> str:
        return f"runs-{self.lo:05d}-{self.hi:05d}"


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep manifest (frozen; ``text`` and ``sha256`` identify it)."""

    name: str
    description: str
    seed: int
    lambdas: tuple[float, ...]
    runs: int
    budget: BudgetSpec
    controllers: tuple[ControllerSpec, ...]
    store: StoreSpec = field(default_factory=StoreSpec)
    oracle: OracleSpec = field(default_factory=OracleSpec)
    report: ReportSpec = field(default_factory=ReportSpec)
    incumbent_every: int = 0
    text: str = ""
    path: str = ""

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)

    def cells(self) -> list[Cell]:
        """All cells, controller-major then lambda, with a stable index."""
        out = []
        for controller in self.controllers:
            for li, lam in enumerate(self.lambdas):
                out.append(Cell(len(out), controller, li, lam))
        return out


def load_sweep_config(name_or_path: str | Path) -> SweepConfig:
    """Load and validate a sweep manifest by shipped name (``"paper-fig2"``) or path."""
    return parse_sweep_config(load_manifest("sweeps", name_or_path))


def parse_sweep_config(manifest: Manifest) -> SweepConfig:
    """Build a :class:`SweepConfig` from a parsed manifest; every error names the key."""
    where = f"sweep manifest {manifest.path}"
    root = Fields(manifest.data, where)
    meta = root.table("sweep")
    name = meta.get("name", str, manifest.name)
    description = meta.get("description", str, "")
    seed = meta.get("seed", int)
    lambdas = _lambdas(meta.get("lambdas", list), where)
    runs = meta.get("runs", int)
    incumbent_every = meta.get("incumbent_every", int, 0)
    meta.finish()
    _require(incumbent_every >= 0, f"{where}: [sweep].incumbent_every must be >= 0, got {incumbent_every}")
    _require(runs >= 1, f"{where}: [sweep].runs must be >= 1, got {runs}")
    _require(seed >= 0, f"{where}: [sweep].seed must be an integer >= 0, got {seed}")
    config = SweepConfig(
        name=name,
        description=description,
        seed=_seed(seed, where),
        lambdas=lambdas,
        runs=runs,
        budget=_budget(root.table("budget"), where),
        controllers=_controllers(root.get("controllers", list), where),
        store=_store(root.table("store", {}), where),
        oracle=_oracle(root.table("oracle", {}), where),
        report=_report(root.table("report", {}), where, lambdas),
        incumbent_every=incumbent_every,
        text=manifest.text,
        path=str(manifest.path),
    )
    root.finish()
    return config


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ManifestError(message)


def _seed(seed: int, where: str) -> int:
    _require(0 <= seed < 2**63, f"{where}: [sweep].seed must be in 0..2**63-1, got {seed}")
    return seed


def _is_number(value: Any) -> bool:
    """Whether a TOML value is a number (TOML's booleans are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _lambdas(values: list[Any], where: str) -> tuple[float, ...]:
    out = []
    for v in values:
        ok = _is_number(v) and 0 <= v <= MAX_LAMBDA
        _require(
            ok,
            f"{where}: [sweep].lambdas must be numbers from 0 to {MAX_LAMBDA:g} (a larger weight "
            f"overflows the objective loss + lambda K), got {v!r}",
        )
        out.append(float(v))
    _require(bool(out), f"{where}: [sweep].lambdas is empty; give at least one lambda")
    _require(len(set(out)) == len(out), f"{where}: [sweep].lambdas has duplicates: {out}")
    return tuple(out)


def _budget(f: Fields, where: str) -> BudgetSpec:
    episodes = f.get("episodes", int)
    per = f.get("archs_per_episode", int, 1)
    gpu = f.get("gpu_seconds", float, None)
    f.finish()
    _require(episodes >= 1, f"{where}: [budget].episodes must be >= 1, got {episodes}")
    _require(per >= 1, f"{where}: [budget].archs_per_episode must be >= 1, got {per}")
    _require(gpu is None or gpu > 0, f"{where}: [budget].gpu_seconds must be > 0, got {gpu}")
    return BudgetSpec(episodes, per, gpu)


def _controllers(raw: list[Any], where: str) -> tuple[ControllerSpec, ...]:
    _require(bool(raw), f'{where}: [[controllers]] is empty; add e.g. name = "random"')
    specs = []
    for i, table in enumerate(raw):
        f = Fields(table, f"{where} [[controllers]] #{i + 1}")
        name = f.get("name", str)
        label = f.get("label", str, name)
        params = f.get("params", dict, {})
        f.finish()
        _require(
            label.replace("-", "").replace("_", "").isalnum(),
            f"{where}: controller label {label!r} may hold only letters, digits, '-' and '_'",
        )
        specs.append(ControllerSpec(name, label, tuple(sorted(params.items()))))
    labels = [s.label for s in specs]
    _require(
        len(set(labels)) == len(labels),
        f'{where}: controller labels must be unique, got {labels}; set label = "..." to tell them apart',
    )
    return tuple(specs)


def _store(f: Fields, where: str) -> StoreSpec:
    source = f.get("source", str, "embedded")
    path = f.get("path", str, None)
    f.finish()
    _require(
        source in STORE_SOURCES, f"{where}: [store].source must be one of {STORE_SOURCES}, got {source!r}"
    )
    _require(source != "path" or bool(path), f'{where}: [store].source = "path" needs [store].path')
    return StoreSpec(source, path)


def _oracle(f: Fields, where: str) -> OracleSpec:
    loss = f.get("loss", str, "val_loss")
    knowledge = f.get("knowledge", str, None)
    failed = f.get("failed", str, "include")
    replicate = f.get("replicate", (str, int), "random")
    record = f.get("record", list, [])
    f.finish()
    _require(
        all(isinstance(r, str) for r in record) and len(set(record)) == len(record),
        f"{where}: [oracle].record must be a list of distinct metric names, got {record!r}",
    )
    _require(failed in FAILED_POLICIES, f"{where}: [oracle].failed must be one of {FAILED_POLICIES}")
    _require(
        isinstance(replicate, int) or replicate in REPLICATE_POLICIES,
        f"{where}: [oracle].replicate must be a replicate index or one of {REPLICATE_POLICIES}",
    )
    return OracleSpec(loss, knowledge or None, failed, replicate, tuple(record))


def _report(f: Fields, where: str, lambdas: tuple[float, ...]) -> ReportSpec:
    title = f.get("title", str, "")
    notes = f.get("notes", str, "")
    raw = f.get("policy_lambdas", list, [])
    f.finish()
    for x in raw:
        _require(
            _is_number(x), f"{where}: [report].policy_lambdas must be numbers from [sweep].lambdas, got {x!r}"
        )
    chosen = tuple(float(x) for x in raw)
    unknown = [x for x in chosen if x not in lambdas]
    _require(not unknown, f"{where}: [report].policy_lambdas {unknown} are not in [sweep].lambdas")
    return ReportSpec(title, notes, chosen)


# ---------------------------------------------------------------------- seeds
def run_seeds(config: SweepConfig, cell: Cell) -> tuple[list[int], list[int]]:
    """Controller and oracle seeds of every run of ``cell``.

    Derived from the sweep seed and the cell's content (controller label, the bits of
    lambda, run index) through :class:`numpy.random.SeedSequence`, never from the cell's
    position, so adding a controller or a lambda leaves the other cells' runs unchanged.
    """
    label_key = zlib.crc32(cell.controller.label.encode("utf-8"))
    lam_hi, lam_lo = struct.unpack("<II", struct.pack("<d", cell.lam))[::-1]
    controller_seeds, oracle_seeds = [], []
    for run in range(config.runs):
        base = (label_key, lam_hi, lam_lo, run)
        controller_seeds.append(_seed_int(config.seed, (*base, 0)))
        oracle_seeds.append(_seed_int(config.seed, (*base, 1)))
    return controller_seeds, oracle_seeds


def _seed_int(entropy: int, key: tuple[int, ...]) -> int:
    state = np.random.SeedSequence(entropy, spawn_key=key).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


# ---------------------------------------------------------------------- store + oracle
def default_cache_dir() -> Path:
    """Where imported stores are cached: $BIONAS_BENCH_CACHE, else ~/.cache/bionas-bench."""
    env = os.environ.get("BIONAS_BENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bionas-bench"


def find_bionas_pub(path: str | Path | None = None) -> Path | None:
    """The original BioNAS data folder holding the authors' table (``mock_black_box/``):
    ``path`` when given, else where every user of the data looks
    (:func:`~bionas_bench.data.datasets.find_bionas_pub_dir`: $BIONAS_PUB_DIR when set,
    else ../shared/bionas_pub)."""
    from bionas_bench.data.datasets import find_bionas_pub_dir

    folder = Path(path) if path else find_bionas_pub_dir()
    return folder if folder is not None and (folder / "mock_black_box").is_dir() else None


def imported_bionas_pub(source_dir: str | Path | None = None, cache: Path | None = None) -> Path:
    """The store imported from the original table, importing it into the cache once.

    The cache entry is named by the sha256 of the table files, so a changed table is
    imported afresh. Raises :class:`SweepError` naming the fix when the table is absent
    or the cache cannot be written.
    """
    found = find_bionas_pub(source_dir)
    if found is None:
        from bionas_bench.data.datasets import bionas_pub_places

        looked = str(source_dir) if source_dir else bionas_pub_places()
        raise SweepError(
            f"the original BioNAS table was not found (looked at {looked}); set BIONAS_PUB_DIR to "
            "the folder holding "
            'mock_black_box/, or use a store with [store].source = "path"'
        )
    digest = _tree_sha256(found / "mock_black_box")
    target = (cache or default_cache_dir()) / f"bionas-pub-{digest[:16]}.zarr"
    if not (target / "zarr.json").is_file():
        from bionas_bench.importers import import_bionas_pub

        tmp = _cache_work_folder(target.parent) / "store.zarr"
        import_bionas_pub(found, tmp)
        if not (target / "zarr.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return target


def _cache_work_folder(cache: Path) -> Path:
    """A new folder to import into inside the store cache ``cache`` (created if need be).

    A cache that cannot be written (a file, a folder without permission) is a
    :class:`SweepError` naming $BIONAS_BENCH_CACHE, which chooses it, instead of a bare
    OS error.
    """
    try:
        cache.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".import-", dir=cache))
    except OSError as exc:
        why = "it is a file" if cache.is_file() else exc.strerror or str(exc)
        raise SweepError(
            f"cannot write the cache of imported stores {cache} ({why}); set BIONAS_BENCH_CACHE "
            "to a folder you can write in"
        ) from None


def _tree_sha256(folder: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def resolve_store(spec: StoreSpec) -> str | None:
    """The store location the workers open (None = the embedded default store)."""
    if spec.source == "embedded":
        return None
    if spec.source == "path":
        return str(spec.path)
    return str(imported_bionas_pub(spec.path))


_STORES: dict[str | None, Any] = {}


def open_cached_store(location: str | None) -> Any:
    """Open a store once per process (workers run many cells on the same store)."""
    if location not in _STORES:
        from bionas_bench.store import open_store

        _STORES[location] = open_store(location)
    return _STORES[location]


def make_oracle(store: Any, lam: float, seed: int, spec: OracleSpec) -> Any:
    """A bootstrap oracle on ``store`` at ``lam`` with its own seed."""
    from bionas_bench.oracle import BootstrapOracle

    return BootstrapOracle(store, lam=lam, seed=seed, **spec.kwargs())


#: keys of :func:`store_hashes` that differ between copies of one store (where it lies;
#: when and from which folder it was made or imported), not between their contents
STORE_COPY_KEYS = ("location", "created", "source_path")


def store_hashes(store: Any, location: str | None) -> dict[str, Any]:
    """The input hashes a store records: space, dataset, training manifests, provenance."""
    attrs = dict(getattr(store, "attrs", {}) or {})
    out: dict[str, Any] = {"location": location or "embedded"}
    for key in ("space", "dataset", "training"):
        info = attrs.get(key) or {}
        if isinstance(info, Mapping):
            out[key] = {k: v for k, v in info.items() if k in ("name",) or k.endswith("sha256")}
    prov = attrs.get("provenance") or {}
    if isinstance(prov, Mapping):
        out["provenance"] = {
            k: v for k, v in prov.items() if isinstance(v, str | int | float) and k != "notes"
        }
    return out


def gold_table(oracle: Any) -> pd.DataFrame:
    """The oracle's gold standard in the canonical columns the results keep.

    Columns: arch, loss, knowledge, objective (medians) and loss_rank, knowledge_rank,
    objective_rank (1 = best, ties averaged).
    """
    gold = oracle.gold_standard()
    gold = gold.reset_index() if "arch" not in gold.columns else gold
    aliases = {
        "loss": ("loss", "median_loss", "loss_median"),
        "knowledge": ("knowledge", "median_knowledge", "knowledge_median"),
        "objective": ("objective", "median_objective", "objective_median"),
        "loss_rank": ("loss_rank", "rank_loss"),
        "knowledge_rank": ("knowledge_rank", "rank_knowledge"),
        "objective_rank": ("objective_rank", "rank_objective"),
    }
    out = {"arch": gold["arch"].to_numpy(dtype=np.int64)}
    for name, options in aliases.items():
        column = next((c for c in options if c in gold.columns), None)
        if column is None:
            raise SweepError(
                f"the oracle's gold_standard() lacks a {name!r} column (has {list(gold.columns)}); "
                "this is a version mismatch between oracle and sweep"
            )
        out[name] = gold[column].to_numpy(dtype=np.float64)
    return pd.DataFrame(out).sort_values("arch", kind="stable").reset_index(drop=True)


def _answer(res: Any, name: str) -> Any:
    """One field of an oracle answer (a mapping-like result, or an object with attributes)."""
    if hasattr(res, "keys"):
        return res[name]
    return getattr(res, name)


def _answer_fields(res: Any) -> list[str]:
    if hasattr(res, "keys"):
        return list(res.keys())
    if hasattr(res, "__dataclass_fields__"):
        return list(res.__dataclass_fields__)
    return [k for k in vars(res) if not k.startswith("_")]


# ---------------------------------------------------------------------- one cell
@dataclass
class CellData:
    """Everything one cell recorded, as numpy arrays (see the module docstring)."""

    steps: dict[str, np.ndarray]
    incumbent: np.ndarray
    within_budget: np.ndarray
    policy: dict[str, np.ndarray]
    runs: dict[str, np.ndarray]


def simulate_cell(config: SweepConfig, cell: Cell, store: Any, runs: range | None = None) -> CellData:
    """Run the runs of ``cell`` (all, or the slice ``runs`` of run indices) for the budget;
    the heart of a sweep (pure, no I/O).

    Each run has its own seeds and oracle, and batched controllers give every run the
    result it has alone, so a slice's runs equal the same runs of the whole cell -- except
    under a GPU-seconds budget, where a cell stops once none of its runs is inside the
    budget (which is why :func:`plan_tasks` never splits such a cell).
    """
    from bionas_bench import controllers

    spec = cell.controller
    controller_seeds, oracle_seeds = run_seeds(config, cell)
    if runs is not None:
        controller_seeds, oracle_seeds = (
            controller_seeds[runs.start : runs.stop],
            oracle_seeds[runs.start : runs.stop],
        )
    count = len(controller_seeds)
    batch = controllers.create_runs(spec.name, store.space, controller_seeds, **spec.hparams)
    oracles = [make_oracle(store, cell.lam, s, config.oracle) for s in oracle_seeds]
    rec = _Recorder(count, config.budget, store.space)
    spent = np.zeros(count)
    names = (*CORE_FIELDS, "failed", *config.oracle.record)
    for episode in range(config.budget.episodes):
        ids = np.asarray(batch.ask(config.budget.archs_per_episode), dtype=np.int64)
        rec.policy(episode, batch.policy())  # after the ask: the policy this step sampled from
        fidelity = batch.fidelity()
        answers = [
            oracles[r].query(ids[r], **({} if fidelity is None else {"epoch": np.asarray(fidelity)[r]}))
            for r in range(count)
        ]
        fields = rec.step(episode, answers, names)
        rec.within_budget[:, episode] = _inside(spent, config.budget.gpu_seconds)
        spent += fields["cost"].sum(axis=1)
        info = {"cost": fields["cost"]}
        if "epoch" in fields:
            info["epoch"] = fields["epoch"]
        batch.tell(ids, fields["reward"], info)
        if _record_incumbent(config, episode):
            rec.incumbent[:, episode] = np.asarray(batch.recommend(), dtype=np.int64)
        if config.budget.gpu_seconds is not None and not rec.within_budget[:, episode].any():
            rec.truncate(episode + 1)
            break
    gold = gold_table(oracles[0])
    return rec.finish(controller_seeds, oracle_seeds, gold)


def _record_incumbent(config: SweepConfig, episode: int) -> bool:
    """Whether to call recommend() after ``episode`` (it can cost more than a step).

    Always after the last episode, after every episode under a GPU-seconds budget (the
    run's answer is its incumbent when the budget ran out), else every
    ``incumbent_every`` episodes (0 = never before the last).
    """
    if episode == config.budget.episodes - 1 or config.budget.gpu_seconds is not None:
        return True
    every = config.incumbent_every
    return every > 0 and (episode + 1) % every == 0


def _inside(spent: np.ndarray, budget: float | None) -> np.ndarray:
    return np.ones(spent.shape, dtype=bool) if budget is None else spent < budget


class _Recorder:
    """Collects a cell's per-step arrays as the runs advance."""

    def __init__(self, runs: int, budget: BudgetSpec, space: Any):
        self.shape = (runs, budget.episodes, budget.archs_per_episode)
        self.steps: dict[str, np.ndarray] = {}
        self.incumbent = np.full(self.shape[:2], -1, dtype=np.int64)
        self.within_budget = np.zeros(self.shape[:2], dtype=bool)
        self.probs: dict[str, np.ndarray] = {}
        self.space = space

    def policy(self, episode: int, policy: list[np.ndarray] | None) -> None:
        if policy is None:
            return
        for layer, probs in zip(self.space.layers, policy, strict=True):
            if layer.name not in self.probs:
                self.probs[layer.name] = np.full((*self.shape[:2], len(layer.choices)), np.nan)
            self.probs[layer.name][:, episode] = np.asarray(probs, dtype=np.float64)

    def step(self, episode: int, answers: list[Any], names: tuple[str, ...]) -> dict[str, np.ndarray]:
        out = {}
        for name in names:
            try:
                values = np.stack([np.asarray(_answer(a, name)) for a in answers])
            except (KeyError, AttributeError, BionasError):
                if name == "failed":
                    continue
                if name in CORE_FIELDS:
                    raise SweepError(
                        f"the oracle's query() answer lacks {name!r}; oracle and sweep versions differ"
                    ) from None
                raise SweepError(
                    f"the oracle serves no metric {name!r} named in [oracle].record; "
                    f"remove it or use a store that has it"
                ) from None
            if name not in self.steps:
                kind = values.dtype.kind
                dtype = bool if kind == "b" else np.int64 if kind in "iu" else np.float64
                self.steps[name] = np.zeros(self.shape, dtype=dtype)
            self.steps[name][:, episode] = values
            out[name] = values
        return out

    def truncate(self, episodes: int) -> None:
        self.steps = {k: v[:, :episodes] for k, v in self.steps.items()}
        self.incumbent = self.incumbent[:, :episodes]
        self.within_budget = self.within_budget[:, :episodes]
        self.probs = {k: v[:, :episodes] for k, v in self.probs.items()}

    def finish(self, controller_seeds: list[int], oracle_seeds: list[int], gold: pd.DataFrame) -> CellData:
        last = _last_inside(self.within_budget)
        recommended = self.incumbent[np.arange(len(last)), last]
        g = gold.set_index("arch").loc[recommended]
        runs = {
            "controller_seed": np.array(controller_seeds, dtype=np.uint64),
            "oracle_seed": np.array(oracle_seeds, dtype=np.uint64),
            "recommended": recommended.astype(np.int64),
            "episodes": (last + 1).astype(np.int64),
        }
        for column in ("loss", "knowledge", "objective", "loss_rank", "knowledge_rank", "objective_rank"):
            runs[column] = g[column].to_numpy(dtype=np.float64)
        return CellData(self.steps, self.incumbent, self.within_budget, self.probs, runs)


def _last_inside(within: np.ndarray) -> np.ndarray:
    """Index of each run's last episode inside its budget (0 when none was)."""
    count = within.sum(axis=1)
    return np.maximum(count - 1, 0).astype(np.int64)


# ---------------------------------------------------------------------- cell I/O
def cell_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / f"{cell.key}.zarr"


def part_path(out: Path, task: Task) -> Path:
    """Where a task that is a slice of its cell writes its runs until the cell is merged."""
    return out / "cells" / f"{task.cell.key}.parts" / f"{task.name}.zarr"


def plan_tasks(config: SweepConfig, runs_per_task: int | None = None, workers: int = 1) -> list[Task]:
    """Split every cell into tasks of at most ``runs_per_task`` runs (0: whole cells).

    Slices balance cells of unequal cost and let more workers than cells help; a run's
    result does not depend on the slicing. ``None`` (auto): slices of at most
    :data:`RUNS_PER_TASK` runs, smaller where that leaves fewer than two tasks a worker
    (``workers``). Measured on 2 cores (2026-12-01): slices of 25 runs cost 1-2 % more
    CPU time than whole cells, and gave paper-fig2-pub in 506 s instead of 561 s (a heavy
    cell no longer runs alone at the end) and paper-fig2 in 603 s instead of 583 s. A
    cell with a GPU-seconds budget stays whole (it ends when none of its runs is inside
    the budget, a property of all its runs).
    """
    if runs_per_task is not None and (
        isinstance(runs_per_task, bool) or not isinstance(runs_per_task, int) or runs_per_task < 0
    ):
        raise SweepError(
            f"runs per task must be a whole number >= 0 (0: whole cells) or None (auto), "
            f"got {runs_per_task!r}"
        )
    cells = config.cells()
    if runs_per_task is None:
        slices = max(math.ceil(config.runs / RUNS_PER_TASK), math.ceil(2 * max(1, workers) / len(cells)))
        runs_per_task = math.ceil(config.runs / min(slices, config.runs))
    size = config.runs
    if runs_per_task and config.budget.gpu_seconds is None:
        size = runs_per_task
    return [
        Task(cell, lo, min(lo + size, config.runs)) for cell in cells for lo in range(0, config.runs, size)
    ]


def merge_parts(out: Path, cell: Cell, tasks: list[Task]) -> None:
    """Join the finished slices ``tasks`` of ``cell`` into the cell, written as
    :func:`write_cell` writes a whole cell (the same bytes)."""
    parts = [read_cell(part_path(out, t))[1] for t in sorted(tasks, key=lambda t: t.lo)]

    def join(name: str) -> dict[str, np.ndarray]:
        return {k: np.concatenate([getattr(p, name)[k] for p in parts]) for k in getattr(parts[0], name)}

    data = CellData(
        steps=join("steps"),
        incumbent=np.concatenate([p.incumbent for p in parts]),
        within_budget=np.concatenate([p.within_budget for p in parts]),
        policy=join("policy"),
        runs=join("runs"),
    )
    write_cell(cell_path(out, cell), cell, data)


#: cell attribute: every chunk of the cell's arrays was written. Zarr leaves out a chunk
#: that equals the fill value (an all-False ``failed``), so in a cell written without it a
#: lost chunk cannot be told from such an array, and only missing arrays are detected.
ALL_CHUNKS = "all_chunks"


def is_done(path: Path) -> bool:
    """A cell counts as finished only when its group holds ``done = true`` and none of the
    arrays it lists is missing or lacks a chunk (:func:`_cell_damage`): a damaged cell is
    then run again by a resumed sweep."""
    attrs = _done_attrs(path)
    return attrs is not None and _cell_damage(path, attrs) is None


def _done_attrs(path: Path) -> dict[str, Any] | None:
    """The attributes of the group at ``path`` when they hold ``done = true``, else None."""
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return None
    return attrs if isinstance(attrs, dict) and attrs.get("done") else None


def _cell_arrays(attrs: Mapping[str, Any]) -> dict[str, list[str]]:
    """The arrays a cell's attributes list, by group ("" for the top level)."""
    return {
        "steps": list(attrs["steps"]),
        "policy": list(attrs["policy_layers"]),
        "runs": list(attrs["runs_fields"]),
        "": ["incumbent", "within_budget"],
    }


def _cell_damage(path: Path, attrs: Mapping[str, Any]) -> str | None:
    """What is missing from the finished cell at ``path``, found without reading its data:
    an array its attributes list, or (in a cell written with :data:`ALL_CHUNKS`) a chunk
    of one; None when nothing is. Zarr would read a lost chunk as its fill value (0) and
    skip a lost array, so such a cell passed for valid data."""
    damage, _arrays = _open_cell_arrays(path, attrs)
    return damage


def _open_cell_arrays(path: Path, attrs: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The cell's arrays by name (``"steps/arch"``), opened once each, and what is missing
    from them (:func:`_cell_damage`; None when nothing is, else the arrays are partial)."""
    import zarr

    try:
        names = [
            f"{group}/{name}".lstrip("/") for group, arrays in _cell_arrays(attrs).items() for name in arrays
        ]
    except (KeyError, TypeError):
        return "its attributes do not list its arrays", {}
    arrays: dict[str, Any] = {}
    for name in names:
        if not (path / name / "zarr.json").is_file():
            return f"array {name} is missing", arrays
        try:
            array = zarr.open_array(str(path / name), mode="r")
            written, total = (array.nchunks_initialized, array.nchunks) if attrs.get(ALL_CHUNKS) else (0, 0)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            return f"array {name} has unreadable metadata ({type(exc).__name__}: {exc})", arrays
        if written < total:
            return f"array {name} lacks {total - written} of its {total} chunk(s)", arrays
        arrays[name] = array
    return None, arrays


def write_cell(path: Path, cell: Cell, data: CellData) -> None:
    """Write one cell atomically: to ``.partial``, ``done`` last, then rename."""
    import zarr

    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(str(tmp), mode="w")
    _write_arrays(group, "steps", data.steps)
    _write_arrays(group, "policy", data.policy)
    _write_arrays(group, "runs", data.runs)
    _write_array(group, "incumbent", data.incumbent)
    _write_array(group, "within_budget", data.within_budget)
    group.attrs.update(
        {
            "key": cell.key,
            "controller": cell.controller.name,
            "label": cell.controller.label,
            "params": json.loads(json.dumps(cell.controller.hparams)),
            "lam": cell.lam,
            "lam_index": cell.lam_index,
            "steps": sorted(data.steps),
            "policy_layers": list(data.policy),
            "runs_fields": sorted(data.runs),
            ALL_CHUNKS: True,
        }
    )
    group.attrs["done"] = True
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _write_arrays(group: Any, name: str, arrays: Mapping[str, np.ndarray]) -> None:
    sub = group.create_group(name)
    for key in sorted(arrays):
        _write_array(sub, key, arrays[key])


def _write_array(group: Any, name: str, value: np.ndarray) -> None:
    """Write ``value`` as one chunk, written even when it equals the fill value, so that
    a missing chunk always means a lost one (see :data:`ALL_CHUNKS`)."""
    value = np.ascontiguousarray(value)
    group.create_array(name, data=value, chunks=value.shape, config={"write_empty_chunks": True})


def read_cell(path: Path) -> tuple[dict[str, Any], CellData]:
    """Read one finished cell: its attributes and its arrays.

    A cell that cannot be read (a damaged chunk, a missing array) is a SweepError saying
    how to recompute it; each array is one chunk, so a failed read leaves no other
    reads pending.
    """
    try:
        return _read_cell(path)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise _damaged_cell(path, f"{type(exc).__name__}: {exc}") from None


def _read_cell(path: Path) -> tuple[dict[str, Any], CellData]:
    """Read the arrays the cell's attributes list, once :func:`_cell_damage` finds them all
    (each array is opened once, for both)."""
    import zarr

    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    damage, arrays = _open_cell_arrays(path, attrs)
    if damage is not None:
        raise _damaged_cell(path, damage)
    listed = _cell_arrays(attrs)

    def read(name: str) -> np.ndarray:
        return np.asarray(arrays[name][...])

    data = CellData(
        steps={k: read(f"steps/{k}") for k in listed["steps"]},
        incumbent=read("incumbent"),
        within_budget=read("within_budget"),
        policy={k: read(f"policy/{k}") for k in listed["policy"]},
        runs={k: read(f"runs/{k}") for k in listed["runs"]},
    )
    return attrs, data


def _damaged_cell(path: Path, why: str) -> SweepError:
    """The error of a cell that cannot be read, saying how to recompute it."""
    return SweepError(
        f"results cell {path} is damaged and cannot be read ({why}); "
        "delete that folder and run the sweep again with the same --out to recompute it"
    )


def run_task(config: SweepConfig, task: Task, location: str | None, out: str) -> dict[str, Any]:
    """Dask task: run the runs of ``task`` unless already written, write them (the cell
    itself when the task is the whole cell, else a slice); returns timing facts."""
    whole = task.lo == 0 and task.hi == config.runs
    path = cell_path(Path(out), task.cell) if whole else part_path(Path(out), task)
    facts = _skipped(task)
    if is_done(path):
        return facts
    # the task runs in this one thread (torch and the compiled PPO update on one thread), so
    # its CPU time is this thread's: process time would also count the tasks of the other
    # threads of a threaded scheduler, and a Dask worker's own threads
    start, cpu = time.perf_counter(), time.thread_time()
    with _single_thread():
        data = simulate_cell(config, task.cell, open_cached_store(location), None if whole else task.runs)
    write_cell(path, task.cell, data)
    facts.update(skipped=False, seconds=time.perf_counter() - start, cpu_seconds=time.thread_time() - cpu)
    return facts


def _written(out: Path, task: Task, sliced: bool) -> bool:
    """Whether the runs of ``task`` are already in ``out``: its cell is finished, or
    (``sliced``: the task is one of several slices of its cell) the slice is."""
    return is_done(cell_path(out, task.cell)) or (sliced and is_done(part_path(out, task)))


def _skipped(task: Task) -> dict[str, Any]:
    """The timing facts of a task found already written."""
    return {"key": task.cell.key, "runs": len(task.runs), "skipped": True, "seconds": 0.0, "cpu_seconds": 0.0}


class _single_thread:
    """Run a cell with one torch thread, then restore the previous setting.

    The controllers' tensors are tiny, so intra-op threads only add synchronisation: on a
    busy 2-core machine a PPO cell ran 15x slower with two threads than with one. Cells
    are parallelised across processes instead.
    """

    def __enter__(self) -> None:
        self.torch = sys.modules.get("torch")
        if self.torch is None:
            try:
                import torch

                self.torch = torch
            except ImportError:  # pragma: no cover - torch is a dependency
                return
        self.previous = self.torch.get_num_threads()
        self.torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.torch is not None:
            self.torch.set_num_threads(self.previous)


# ---------------------------------------------------------------------- the sweep
@dataclass(frozen=True)
class TaskProgress:
    """A progress event: one more task finished (or found finished) -- ``runs`` more runs
    of cell ``key``; ``done`` of ``total`` tasks so far; ``cell_done`` when it completed
    the cell. The first event, ``done = 0`` (no key, no runs), comes once the sweep's
    checks have passed, before any task: the moment to show a progress bar."""

    key: str
    done: int
    total: int
    skipped: bool
    seconds: float
    runs: int = 0
    cell_done: bool = False


@dataclass
class SweepRun:
    """What :func:`run_sweep` returns: the results folder and timing (kept out of the results,
    which must not depend on the machine)."""

    out: Path
    config: SweepConfig
    seconds: float
    cell_seconds: dict[str, float]
    skipped: list[str]
    cell_cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        """CPU time the cells took (all processes; excludes cluster start-up)."""
        return float(sum(self.cell_cpu_seconds.values()))

    def load(self) -> SweepResults:
        return load_results(self.out)


def run_sweep(
    config: SweepConfig | str | Path,
    out: str | Path | None = None,
    scheduler: str | None = None,
    progress: Callable[[TaskProgress], None] | None = None,
    store: str | Path | None = None,
    runs_per_task: int | None = None,
) -> SweepRun:
    """Run every cell of ``config`` and write the results folder ``out``.

    ``scheduler``: None or ``"sync"`` (the default: in order, in this process, as
    :func:`~bionas_bench.train.run_farm`; ``"none"`` is the same), ``"local"`` (a local
    Dask cluster, one process per core, which the CLI uses), ``"threads"`` (a local
    in-process cluster), or a Dask scheduler address. The worker processes of
    ``"local"`` import the calling script's main module, so a script that uses it must
    call ``run_sweep`` under ``if __name__ == "__main__":``.
    ``store`` overrides the config's store with a path.
    Finished cells in ``out`` are kept (resume); ``out`` made by another config is an
    error. ``runs_per_task`` splits each cell into tasks of that many runs, 0 runs whole
    cells, None (default) chooses from the runs and the workers (see :func:`plan_tasks`;
    the results are the same bytes whatever the split).
    ``progress`` is called once before the first task and once per finished task (see
    :class:`TaskProgress`). Without ``out`` the results go to a new temporary folder.

    An exception (KeyboardInterrupt included) leaves ``out`` resumable: the local
    cluster's worker processes are killed at once (see :mod:`bionas_bench.cluster`),
    and a cell cut short is never marked done, so the next call reruns its unfinished
    tasks (finished slices are kept). With ``"threads"`` the tasks running at that
    moment cannot be killed and are waited for.
    """
    if not isinstance(config, SweepConfig):
        config = load_sweep_config(config)
    scheduler = check_scheduler(scheduler)
    if scheduler == "local":
        from bionas_bench.cluster import refuse_reimported_script

        refuse_reimported_script("run_sweep")
    if progress is not None and not callable(progress):
        raise SweepError(f"progress must be None or a function taking a TaskProgress, got {progress!r}")
    start = time.perf_counter()
    # absolute: the workers of a scheduler address run in folders of their own
    out_path = Path(out).absolute() if out is not None else Path(tempfile.mkdtemp(prefix="bionas-sweep-"))
    location, opened, gold = _checked_inputs(config, store)
    plan_tasks(config, runs_per_task)  # a bad runs_per_task fails before any work
    # a folder that is not this config's results is refused before anything is written
    # into it (the lock included); checked again under the lock
    meta = _metadata(config, opened, location, store is not None)
    _check_out(out_path, config, meta, gold)
    with contextlib.ExitStack() as stack:
        remote = None  # a scheduler address is reached before out is touched
        if scheduler not in ("local", "threads", "sync"):
            from bionas_bench.cluster import dask_client

            remote = stack.enter_context(dask_client(scheduler, 1, error=SweepError, hint=SCHEDULER_HINT))
        with _exclusive(out_path):
            _prepare_out(out_path, config, meta, gold)
            skipped = [c.key for c in config.cells() if is_done(cell_path(out_path, c))]
            results = _dispatch(config, location, out_path, scheduler, progress, runs_per_task, remote)
            _check_written(config, out_path, scheduler)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for r in results:
        seconds[r["key"]] = seconds.get(r["key"], 0.0) + r["seconds"]
        cpu[r["key"]] = cpu.get(r["key"], 0.0) + r["cpu_seconds"]
    return SweepRun(
        out=out_path,
        config=config,
        seconds=time.perf_counter() - start,
        cell_seconds=seconds,
        skipped=skipped,
        cell_cpu_seconds=cpu,
    )


@dataclass(frozen=True)
class CellPlan:
    """What a sweep would run of one cell: its tasks, and those not yet in the results."""

    cell: Cell
    tasks: int
    tasks_to_run: int
    runs_to_run: int


@dataclass(frozen=True)
class SweepPlan:
    """What :func:`run_sweep` would do with the same arguments (see :func:`plan_sweep`)."""

    config: SweepConfig
    out: Path | None
    store: str  #: the store's location ("embedded (PATH)" for the shipped default)
    workers: int  #: the workers the tasks were planned for
    task_runs: int  #: runs of the largest task
    cells: tuple[CellPlan, ...]

    @property
    def tasks(self) -> int:
        return sum(c.tasks for c in self.cells)

    @property
    def tasks_to_run(self) -> int:
        return sum(c.tasks_to_run for c in self.cells)

    @property
    def runs_to_run(self) -> int:
        return sum(c.runs_to_run for c in self.cells)


def plan_sweep(
    config: SweepConfig | str | Path,
    out: str | Path | None = None,
    scheduler: str | None = None,
    store: str | Path | None = None,
    runs_per_task: int | None = None,
) -> SweepPlan:
    """The cells and tasks ``run_sweep(config, out, scheduler, store=store,
    runs_per_task=runs_per_task)`` would run, and which of them ``out`` already holds;
    runs nothing and writes nothing into ``out``.

    It checks what the sweep would check before any work (controller names and
    hyper-parameters, the store, ``runs_per_task``, that ``out`` is this config's results
    or new) and raises the same errors. The automatic split is planned for the workers
    of ``scheduler`` as the sweep counts them; for a remote scheduler, which the sweep
    asks for its thread count when it starts, for this machine's cores. A task counts
    as done as it would for the sweep: its cell is finished, or it is a finished slice
    of the same split.
    """
    if not isinstance(config, SweepConfig):
        config = load_sweep_config(config)
    location, opened, gold = _checked_inputs(config, store)
    workers = local_workers(check_scheduler(scheduler))
    tasks = plan_tasks(config, runs_per_task, workers)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _check_out(out_path, config, _metadata(config, opened, location, store is not None), gold)
    cells = []
    for cell in config.cells():
        mine = [t for t in tasks if t.cell == cell]
        todo = [t for t in mine if out_path is None or not _written(out_path, t, sliced=len(mine) > 1)]
        cells.append(CellPlan(cell, len(mine), len(todo), sum(len(t.runs) for t in todo)))
    largest = max(len(t.runs) for t in tasks)
    where = location or f"embedded ({opened.location})"
    return SweepPlan(config, out_path, where, workers, largest, tuple(cells))


def _checked_inputs(config: SweepConfig, store: str | Path | None) -> tuple[str | None, Any, str]:
    """The controllers checked, and the store (``store`` overriding the config's): its
    location for the workers, the store opened here, and the text of gold.csv (which
    builds the oracle of every lambda, so a metric or knowledge set the store lacks
    fails here, before ``out`` is touched)."""
    check_controllers(config)
    location = str(store) if store is not None else resolve_store(config.store)
    if location is not None and "://" not in location:  # workers may run in other folders
        location = os.path.abspath(location)
    opened = open_cached_store(location)
    _check_recorded(config, opened, store)
    try:
        gold = _gold_frame(config, opened)
    except (StoreError, OracleError) as exc:  # the store given by --store is named first
        given = f"--store {store} with " if store is not None else ""
        raise SweepError(f"{given}sweep config {config.path or config.name} [oracle]: {exc}") from None
    _check_servable(config, opened, gold)
    _check_fidelities(config, opened)
    return location, opened, gold.to_csv(index=False, float_format="%.17g")


def _check_recorded(config: SweepConfig, opened: Any, store: str | Path | None) -> None:
    """Every field of ``[oracle].record`` is one the oracle answers on this store: a
    field of every answer or a metric of the store (``store``: the ``--store`` given, if
    any). Without this check an unknown name failed in the first task, after the
    results folder was written."""
    served = (*CORE_FIELDS, "failed", *opened.metric_names)
    unknown = [name for name in config.oracle.record if name not in served]
    if unknown:
        given = f"--store {store} with " if store is not None else ""
        raise SweepError(
            f"{given}sweep config {config.path or config.name} [oracle]: record names {unknown}, which "
            f"store {opened.location} does not serve (its metrics: {', '.join(opened.metric_names)}); "
            "remove them from record or use a store that has them"
        )


def _check_servable(config: SweepConfig, store: Any, gold: pd.DataFrame) -> None:
    """Every architecture has a replicate to serve: a controller may ask for any of them,
    and the oracle cannot answer one without (a partial store fails mid-sweep)."""
    empty = gold.loc[gold["loss"].isna(), "arch"].unique()  # no usable replicate: no median
    if empty.size:
        raise SweepError(
            f"store {store.location} has no usable replicate for {empty.size} of {store.num_archs} "
            f"architectures (e.g. {int(empty[0])}, {store.space.arch_name(int(empty[0]))}), so the "
            f"oracle cannot answer a controller that asks for one; finish training the store "
            f"('bionas-bench train' with the same options trains what is missing) or use another "
            f"(sweep config {config.path or config.name})"
        )


def _check_fidelities(config: SweepConfig, store: Any) -> None:
    """Multi-fidelity controllers ask for epochs up to their ``max_epochs``; the store's
    learning curves must be that long."""
    from bionas_bench import controllers
    from bionas_bench.controllers.base import make_params

    epochs = store.max_epochs
    for spec in config.controllers:
        cls = controllers.get(spec.name)
        if not cls.uses_fidelity:
            continue
        wanted = getattr(make_params(cls, spec.hparams), "max_epochs", None)
        if wanted is None or wanted <= epochs:
            continue
        fix = (
            f"set params = {{ max_epochs = {epochs} }} for it (and min_epochs <= {epochs})"
            if epochs
            else "use a store with learning curves"
        )
        raise SweepError(
            f"sweep config {config.path or config.name}: controller {spec.label!r} asks for up to "
            f"{wanted} training epochs, but store {store.location} has learning curves of {epochs} "
            f"epochs; {fix}"
        )


def check_controllers(config: SweepConfig) -> None:
    """Fail before any work when a controller name or hyper-parameter is bad."""
    from bionas_bench import controllers
    from bionas_bench.controllers.base import make_params
    from bionas_bench.errors import ControllerError

    for spec in config.controllers:
        try:
            make_params(controllers.get(spec.name), spec.hparams)
        except ControllerError as exc:
            raise SweepError(f"sweep config {config.path or config.name}: {exc}") from None


LOCK_NAME = ".sweep.lock"


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``out/.sweep.lock`` (pid and host of this process) while the sweep writes.

    Two sweeps writing one folder would write the same ``.partial`` groups and delete
    each other's; the second is refused instead. A lock left by a process that no longer
    runs on this host (a SIGKILL) is taken over.
    """
    from bionas_bench.locks import folder_lock

    check_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    busy = (
        f"results folder {out} is being written by another sweep (process {{owner}}); "
        f"wait for it to finish or use another results folder (delete {lock} only if no sweep runs)"
    )
    with folder_lock(lock, SweepError, busy):
        yield


def check_folder(out: Path, what: str = "the results") -> None:
    """Refuse an ``out`` that is a file: it must be a folder for ``what``.

    Messages about the results folder name it by its path, not by a command-line flag:
    the sweep, the demo and ``regress check --keep`` all pass it on.
    """
    if out.exists() and not out.is_dir():
        raise SweepError(f"{out} is a file; give a folder for {what}")


def same_store(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two ``store`` entries of sweep.json (source and :func:`store_hashes`) name the
    same store content: the keys of :data:`STORE_COPY_KEYS` are left out."""

    def content(tree: Any) -> Any:
        if not isinstance(tree, Mapping):
            return tree
        return {k: content(v) for k, v in tree.items() if k not in STORE_COPY_KEYS}

    return content(a) == content(b)


def _check_out(out: Path, config: SweepConfig, meta: dict[str, Any], gold: str | None = None) -> None:
    """Refuse an ``out`` that is a file, another config's or store's results (``gold``, the
    text of gold.csv: also another gold standard), results written by another version of
    this package, or a folder that is not a sweep's results; a missing or empty ``out`` is
    fine."""
    check_folder(out)
    meta_path = out / "sweep.json"
    if meta_path.is_file():
        old = _read_meta(out)
        name = old.get("config", {}).get("name")
        if old.get("config", {}).get("sha256") != config.sha256:
            raise SweepError(
                f"results folder {out} was made by another sweep config ({name!r}, or an edited "
                f"{config.name!r}); use a new results folder or delete this one"
            )
        if not same_store(old.get("store", {}), meta["store"]):
            raise SweepError(
                f"results folder {out} was made from another store ({_store_label(old)}; now "
                f"{_store_label(meta)}); use a new results folder or delete this one"
            )
        written_by, running = old.get("package_version"), meta["package_version"]
        if written_by != running:
            raise SweepError(
                f"results folder {out} was written by bionas-bench {written_by}, this is {running}: "
                "its finished cells may differ from what this version computes, and one folder "
                f"must not mix the two; use a new results folder, or finish it with bionas-bench {written_by}"
            )
        old_gold = out / "gold.csv"
        if gold is not None and old_gold.is_file() and old_gold.read_text() != gold:
            raise SweepError(
                f"results folder {out} was scored against another gold standard: the store's "
                "values changed since; use a new results folder or delete this one"
            )
    elif out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise SweepError(f"results folder {out} exists and is not a sweep's results; use a new folder")


def _store_label(meta: Mapping[str, Any]) -> str:
    """The store of a sweep.json, in a few words: source, dataset, where."""
    store = meta.get("store", {})
    hashes = store.get("hashes", {})
    dataset = hashes.get("dataset", {}).get("name", "?")
    return f"{store.get('source', '?')} store of dataset {dataset} at {hashes.get('location', '?')}"


def _prepare_out(out: Path, config: SweepConfig, meta: dict[str, Any], gold: str) -> None:
    """Create ``out`` (or check it belongs to this config) and write sweep.json (``meta``)
    and gold.csv (``gold``: its text)."""
    _check_out(out, config, meta, gold)
    meta_path = out / "sweep.json"
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    (out / "cells").mkdir(parents=True, exist_ok=True)
    for stale in [*(out / "cells").glob("*.partial"), *(out / "cells").glob("*.parts/*.partial")]:
        shutil.rmtree(stale, ignore_errors=True)
    _atomic_write(out / "gold.csv", gold)
    _atomic_write(meta_path, text)


def _metadata(config: SweepConfig, store: Any, location: str | None, override: bool) -> dict[str, Any]:
    from bionas_bench import __version__

    return {
        "format": RESULTS_FORMAT,
        "package_version": __version__,
        "config": {
            "name": config.name,
            "file": Path(config.path).name if config.path else "",
            "sha256": config.sha256,
            "text": config.text,
        },
        "store": {
            "source": "path (override)" if override else config.store.source,
            "hashes": store_hashes(
                store, location if override or config.store.source != "embedded" else None
            ),
        },
        "space": {
            "name": store.space.name,
            "sha256": store.space.manifest_sha256,
            "layers": [{"name": la.name, "choices": list(la.choice_names)} for la in store.space.layers],
        },
        "cells": [
            {"key": c.key, "controller": c.controller.name, "label": c.controller.label, "lam": c.lam}
            for c in config.cells()
        ],
    }


def _gold_frame(config: SweepConfig, store: Any) -> pd.DataFrame:
    """The rows of gold.csv: the gold standard (medians and ranks) of every lambda."""
    frames = []
    for li, lam in enumerate(config.lambdas):
        gold = gold_table(make_oracle(store, lam, 0, config.oracle))
        gold.insert(0, "lam", lam)
        gold.insert(0, "lam_index", li)
        gold.insert(3, "arch_name", store.space.arch_names(gold["arch"].tolist()))
        frames.append(gold)
    return pd.concat(frames, ignore_index=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Tracker:
    """Bookkeeping of a sweep's tasks: which are done, when a cell is complete (its slices
    are then joined into the cell), and the progress events."""

    def __init__(self, tasks: list[Task], out: Path, progress: Callable[[TaskProgress], None] | None):
        self.tasks, self.out, self.progress = tasks, out, progress
        self.results: list[dict[str, Any]] = []
        self.by_cell: dict[str, list[Task]] = {}
        for task in tasks:
            self.by_cell.setdefault(task.cell.key, []).append(task)
        self.waiting = {key: len(group) for key, group in self.by_cell.items()}
        if progress is not None:  # the checks passed and the work begins
            progress(TaskProgress("", 0, len(tasks), False, 0.0))

    def pending(self) -> list[Task]:
        """The tasks to run; those already written are reported (skipped) on the way."""
        todo = []
        for task in self.tasks:
            if _written(self.out, task, sliced=len(self.by_cell[task.cell.key]) > 1):
                self.report(_skipped(task))
            else:
                todo.append(task)
        return todo

    def report(self, result: dict[str, Any]) -> None:
        self.results.append(result)
        key = result["key"]
        self.waiting[key] -= 1
        cell_done = self.waiting[key] == 0
        group = self.by_cell[key]
        if cell_done:
            if len(group) > 1 and not is_done(cell_path(self.out, group[0].cell)):
                merge_parts(self.out, group[0].cell, group)
            # the slices, and any of an earlier run with another split
            shutil.rmtree(self.out / "cells" / f"{key}.parts", ignore_errors=True)
        if self.progress is not None:
            done, total = len(self.results), len(self.tasks)
            runs = result["runs"]
            self.progress(
                TaskProgress(key, done, total, result["skipped"], result["seconds"], runs, cell_done)
            )


def _dispatch(
    config: SweepConfig,
    location: str | None,
    out: Path,
    scheduler: str | None,
    progress: Callable[[TaskProgress], None] | None,
    runs_per_task: int | None,
    remote: Any,
) -> list[dict[str, Any]]:
    """Plan the tasks for the workers at hand and run those not yet done in ``out`` on
    ``scheduler`` (``remote``: the client of a scheduler address); one timing dict per task.

    On any exit before the end (a task's error, Ctrl-C) :func:`~bionas_bench.cluster.dask_client`
    releases the tasks not yet started and kills the local cluster's workers.
    """
    if scheduler == "sync":
        tracker = _Tracker(plan_tasks(config, runs_per_task, local_workers(scheduler)), out, progress)
        for task in tracker.pending():
            tracker.report(run_task(config, task, location, str(out)))
        return tracker.results
    if scheduler in ("local", "threads"):
        from bionas_bench.cluster import dask_client

        cores = local_workers(scheduler)
        tracker = _Tracker(plan_tasks(config, runs_per_task, workers=cores), out, progress)
        todo = tracker.pending()
        if todo:
            workers = min(len(todo), cores)  # one per core, no idle ones
            hint = "use --scheduler sync"
            with dask_client(
                "local", workers, error=SweepError, hint=hint, processes=scheduler != "threads"
            ) as client:
                _run_on(client, config, todo, location, out, tracker)
        return tracker.results
    workers = sum(remote.nthreads().values())
    tracker = _Tracker(plan_tasks(config, runs_per_task, workers=max(1, workers)), out, progress)
    _run_on(remote, config, tracker.pending(), location, out, tracker)
    return tracker.results


def _check_written(config: SweepConfig, out: Path, scheduler: str | None) -> None:
    """Every cell is marked done in ``out`` as this process sees it; a cell missing after
    all tasks reported success was written where only the workers see it."""
    missing = [c.key for c in config.cells() if not is_done(cell_path(out, c))]
    if missing:
        raise SweepError(
            f"the workers of {scheduler} finished {len(missing)} cell(s) (e.g. {missing[0]}) but "
            f"{out} does not hold them: the results folder (and a store given by path) must be on a "
            "file system that this machine and every worker share, at the same path"
        )


SCHEDULER_HINT = "use --scheduler local, threads or sync (none = sync)"


def check_scheduler(scheduler: str | None) -> str:
    """``scheduler`` stripped; None (the default) and ``"none"`` (the farm's word for
    in-process) are ``"sync"``; anything but ``local``, ``threads`` and ``sync`` must be
    a Dask scheduler address (checked without connecting)."""
    name = "sync" if scheduler is None else scheduler.strip()
    if name.lower() in ("none", "sync"):
        return "sync"
    if name not in ("local", "threads"):
        from bionas_bench.cluster import check_address

        check_address(name, SweepError, SCHEDULER_HINT)
    return name


def local_workers(scheduler: str | None) -> int:
    """The workers a sweep plans its tasks for without asking a cluster: 1 in order
    (``"sync"``), else one per core of this machine (the local clusters' size)."""
    return 1 if scheduler == "sync" else os.cpu_count() or 1


def _run_on(
    client: Any, config: SweepConfig, todo: list[Task], location: str | None, out: Path, tracker: _Tracker
) -> None:
    from distributed import as_completed

    futures = [
        client.submit(
            run_task,
            config,
            task,
            location,
            str(out),
            key=f"bionas-task-{task.cell.key}-{task.name}-{config.sha256[:8]}",
            pure=False,
        )
        for task in todo
    ]
    for future in as_completed(futures):
        tracker.report(future.result())


# ---------------------------------------------------------------------- loading results
@dataclass
class SweepResults:
    """A results folder read back: metadata, config, gold standard and every cell."""

    path: Path
    meta: dict[str, Any]
    config: SweepConfig
    gold: pd.DataFrame
    cells: dict[str, tuple[dict[str, Any], CellData]]

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.config.controllers]

    @property
    def lambdas(self) -> tuple[float, ...]:
        return self.config.lambdas

    def cell(self, label: str, lam: float) -> CellData:
        key = self._key(label, lam)
        if key not in self.cells:
            raise SweepError(f"results {self.path} have no finished cell {key}; finish the sweep first")
        return self.cells[key][1]

    def has_cell(self, label: str, lam: float) -> bool:
        return self._key(label, lam) in self.cells

    def _key(self, label: str, lam: float) -> str:
        """The cell key of controller ``label`` at ``lam``; either unknown to the config is an error."""
        labels = ", ".join(c.label for c in self.config.controllers)
        if label not in self.labels:
            raise SweepError(
                f"label {label!r} is not a controller of sweep {self.config.name!r}; use one of {labels}"
            )
        if lam not in self.config.lambdas:
            lambdas = ", ".join(f"{x:g}" for x in self.config.lambdas)
            raise SweepError(
                f"lam {lam!r} is not a lambda of sweep {self.config.name!r}; use one of {lambdas}"
            )
        return f"{label}__lam{self.config.lambdas.index(lam):02d}"

    @property
    def missing(self) -> list[str]:
        """The config's cells not finished in this folder (an interrupted sweep's)."""
        return [c.key for c in self.config.cells() if c.key not in self.cells]


def load_results(path: str | Path) -> SweepResults:
    """Read a results folder written by :func:`run_sweep` (finished cells only).

    A folder whose sweep.json or gold.csv is damaged (cut short, edited, missing) is one
    :class:`SweepError` saying so, as is a cell marked finished that cannot be read.
    """
    path = Path(path)
    meta_path = path / "sweep.json"
    if not meta_path.is_file():
        raise SweepError(
            f"{path} is not a sweep results folder (no sweep.json); run 'bionas-bench sweep' first"
        )
    meta = _read_meta(path)
    if meta.get("format") != RESULTS_FORMAT:
        raise SweepError(
            f"{path}: unsupported results format {meta.get('format')!r}; expected {RESULTS_FORMAT}"
        )
    config = _stored_config(path, meta)
    gold = _read_gold(path, config, meta)
    cells = {}
    for cell in config.cells():
        cpath = cell_path(path, cell)
        if _done_attrs(cpath) is not None:  # marked finished: damage is an error, not "unfinished"
            cells[cell.key] = read_cell(cpath)
    if not cells:
        raise SweepError(f"results {path} hold no finished cell yet; run or resume the sweep")
    return SweepResults(path, meta, config, gold, cells)


def _damaged_results(path: Path, why: str) -> SweepError:
    """The error of a results folder whose sweep.json or gold.csv cannot be used."""
    return SweepError(f"results folder {path} is damaged: {why}; rerun the sweep into a new folder")


def _read_meta(path: Path) -> dict[str, Any]:
    """The sweep.json of the results folder ``path``, checked to hold what the report and a
    resumed sweep read from it."""
    try:
        meta = json.loads((path / "sweep.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _damaged_results(path, f"sweep.json is not valid JSON ({exc})") from None
    problem = _meta_problem(meta)
    if problem is not None:
        raise _damaged_results(path, f"sweep.json {problem}")
    return meta


def _meta_problem(meta: Any) -> str | None:
    """What a parsed sweep.json lacks of the entries :func:`_metadata` writes, or None."""
    if not isinstance(meta, dict):
        return "does not hold a JSON object"
    if "format" in meta and meta["format"] != RESULTS_FORMAT:
        return None  # another format: load_results names it
    for key, fields in (("config", ("name", "sha256", "text")), ("space", ("name", "sha256"))):
        entry = meta.get(key)
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in fields):
            return f"lacks its {key!r} entry (with {', '.join(fields)})"
    layers = meta["space"].get("layers")
    if not isinstance(layers, list) or not all(
        isinstance(la, dict) and isinstance(la.get("choices"), list) and la["choices"] for la in layers
    ):
        return "lacks the space's layers and their choices"
    return None


def _stored_config(path: Path, meta: dict[str, Any]) -> SweepConfig:
    """The sweep config kept in sweep.json, which must match its sha256 and be valid."""
    from bionas_bench.manifests import parse_manifest

    stored = meta["config"]
    if sha256_text(stored["text"]) != stored["sha256"]:
        raise _damaged_results(
            path, "the config text in sweep.json does not match its sha256 (it was edited)"
        )
    file_name = stored.get("file") or f"{stored['name']}.toml"
    try:
        return parse_sweep_config(parse_manifest("sweeps", stored["text"], Path(str(file_name))))
    except ManifestError as exc:
        raise _damaged_results(
            path, f"the config text in sweep.json is not a valid sweep config ({exc})"
        ) from None


#: columns of gold.csv, in order (see :func:`_gold_frame`)
GOLD_COLUMNS = (
    "lam_index",
    "lam",
    "arch",
    "arch_name",
    "loss",
    "knowledge",
    "objective",
    "loss_rank",
    "knowledge_rank",
    "objective_rank",
)


def _read_gold(path: Path, config: SweepConfig, meta: dict[str, Any]) -> pd.DataFrame:
    """gold.csv of the results folder ``path``: a row per lambda of ``config`` and
    architecture of the space of ``meta``, in order, and the whole file (it ends with a
    line break, so a file cut short is caught wherever it was cut)."""
    try:
        text = (path / "gold.csv").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _damaged_results(path, "gold.csv is missing") from None
    except UnicodeDecodeError as exc:
        raise _damaged_results(path, f"gold.csv is not text ({exc})") from None
    try:
        gold = pd.read_csv(io.StringIO(text))
    except ValueError as exc:  # pandas' ParserError and EmptyDataError among them
        raise _damaged_results(path, f"gold.csv cannot be parsed ({exc})") from None
    problem = _gold_problem(text, gold, config, meta)
    if problem is not None:
        raise _damaged_results(path, f"gold.csv {problem}")
    return gold


def _gold_problem(text: str, gold: pd.DataFrame, config: SweepConfig, meta: dict[str, Any]) -> str | None:
    """What is wrong with the parsed gold.csv ``gold`` (``text``: the file), or None."""
    if tuple(gold.columns) != GOLD_COLUMNS:
        return f"has columns {list(gold.columns)}, not {list(GOLD_COLUMNS)}"
    if not text.endswith("\n"):
        return "is cut short (its last line is incomplete)"
    archs = math.prod(len(layer["choices"]) for layer in meta["space"]["layers"])
    if len(gold) != archs * len(config.lambdas):
        return (
            f"holds {len(gold)} rows, not {archs * len(config.lambdas)} ({len(config.lambdas)} "
            f"lambdas x {archs} architectures)"
        )
    lam_index = np.repeat(np.arange(len(config.lambdas)), archs)
    expected = {
        "lam_index": lam_index,
        "lam": np.asarray(config.lambdas)[lam_index],
        "arch": np.tile(np.arange(archs), len(config.lambdas)),
    }
    for column, values in expected.items():
        if not np.array_equal(pd.to_numeric(gold[column], errors="coerce").to_numpy(), values):
            return f"does not hold the lambdas and architectures of the sweep in order (column {column})"
    return None
