"""The bootstrap oracle: instant, realistic answers from a results store.

A search controller asks for architectures; the oracle answers each with the result
of one of that architecture's real trainings, so a search that would take GPU-months
runs in milliseconds while keeping the training noise of the original benchmark.

Semantics (documented here, tested in ``tests/test_oracle.py``):

* **Usable replicates.** A replicate of an architecture is *usable* when its unit is
  done and it has a value to serve: a finite loss, and a finite knowledge unless
  ``lam`` is 0 (a training that diverged before any finite epoch is recorded failed
  with NaN metrics and is never served). ``failed="include"`` (default, as the original
  BioNAS oracle did: its table kept the failed trainings and served them) serves failed
  replicates as recorded; ``failed="exclude"`` never serves them (an architecture whose
  every done replicate failed then has no usable replicate).
* **Replicate modes.** ``replicate="random"``: every query of an id draws, independently
  and uniformly, one usable replicate of that architecture, and returns all of its
  metrics together (loss and knowledge stay *paired*: they are one training's values).
  ``"fixed"``: one usable replicate per architecture is drawn at the start of each
  *trial* and reused for every query of that architecture until :meth:`new_trial`; a
  trial is one search run, by default the oracle instance's lifetime (a deterministic
  "one realisation of the table" view). An ``int`` r: replicate r of the store for every
  architecture (an error where r is not usable). ``"median"``: per-architecture medians
  over usable replicates of every metric (``replicate`` is -1, reward uses the medians).
* **Reward.** ``reward = -(loss + lam * knowledge)`` (``-loss`` when ``lam`` is 0, whatever
  the knowledge) with ``loss`` a metric of the store
  (``"val_loss"`` by default) and ``knowledge`` a knowledge set (default: the store's
  ``knowledge.default_set`` attribute when recorded, else its first set, which by the
  farm's convention is the unmasked motif set).
* **Cost.** The replicate's recorded ``train_seconds`` (NaN when the store lacks it), so
  controllers can be compared on simulated GPU time. For ``epoch=e`` the cost of the
  epochs actually trained up to e: ``train_seconds * min(e, epochs) / epochs``, with
  ``epochs`` the recorded epoch count (or the number of finite curve points).
* **Multi-fidelity.** ``query(ids, epoch=e)`` (1-based, ``1 <= e <= max_epochs``) serves
  the loss learning curve at epoch e (the curve named like the loss metric, unless
  ``loss_curve`` says otherwise) as early stopping would leave it had training ended at
  epoch e: the lowest value of epochs 1..e (the restored best weights' loss; a training
  that stopped before e keeps its best). At the last epoch this is the replicate's final
  loss. Knowledge and the other metrics are the replicate's final values (knowledge is
  scored once, on the final filters), and the reward uses the epoch-e loss.
* **Randomness.** No global state: each oracle owns ``np.random.default_rng(seed)``; the
  same seed gives the same stream, and a batch of n ids consumes exactly what n scalar
  queries would (one uniform double per id), so both give identical draws.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bionas_bench.errors import OracleError, StoreError
from bionas_bench.seeds import rng_from_seed
from bionas_bench.store import Store, check_lam, check_loss_name, objective, open_store

ReplicateMode = str | int
_CORE = ("reward", "loss", "knowledge", "cost")
_FAILED_POLICIES = ("include", "exclude")


class OracleResult:
    """Answers to one query: arrays shaped like the query's ids (numpy scalars for a scalar id).

    Eager fields: ``arch``, ``replicate`` (store replicate index; -1 in median mode),
    ``loss``, ``knowledge``, ``reward``, ``cost``. Every other metric of the store is
    gathered on first access: ``result["auroc"]``, ``result.metric("auroc")``,
    ``result.metrics`` (all of them) or ``result.failed``.
    """

    __slots__ = ("arch", "replicate", "loss", "knowledge", "reward", "cost", "_rows", "_columns")

    def __init__(
        self,
        arch: Any,
        replicate: Any,
        loss: Any,
        knowledge: Any,
        reward: Any,
        cost: Any,
        rows: Any,
        columns: dict[str, np.ndarray],
    ) -> None:
        self.arch = arch
        self.replicate = replicate
        self.loss = loss
        self.knowledge = knowledge
        self.reward = reward
        self.cost = cost
        self._rows = rows
        self._columns = columns

    @property
    def metric_names(self) -> list[str]:
        return [name for name in self._columns if name != "failed"]

    def metric(self, name: str) -> Any:
        """Values of metric ``name`` for the served replicates (the final values)."""
        try:
            column = self._columns[name]
        except KeyError:
            raise OracleError(f"no metric {name!r} in this result; it has {self.metric_names}") from None
        return column[self._rows] if np.ndim(self._rows) == 0 else column.take(self._rows)

    @property
    def metrics(self) -> dict[str, Any]:
        """Every metric of the store, gathered for the served replicates."""
        return {name: self.metric(name) for name in self.metric_names}

    @property
    def failed(self) -> Any:
        """Whether each served replicate failed to train (always False in median mode)."""
        return np.asarray(self.metric("failed")) > 0.5

    def __getitem__(self, name: str) -> Any:
        if name in ("arch", "replicate", *_CORE, "failed"):
            return getattr(self, name)
        return self.metric(name)

    def keys(self) -> list[str]:
        return ["arch", "replicate", *_CORE, *self.metric_names, "failed"]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> dict[str, Any]:
        """All fields, metrics included, as a dict of arrays."""
        return {name: self[name] for name in self.keys()}

    def __len__(self) -> int:
        return int(np.size(self.arch))

    def __repr__(self) -> str:
        return f"OracleResult(n={len(self)}, arch={self.arch!r}, reward={self.reward!r})"


class BootstrapOracle:
    """Serve a store's replicate results for architecture ids (see the module docstring).

    Args:
        store: a :class:`~bionas_bench.store.Store`, or a path / URL to open.
        lam: knowledge weight lambda >= 0 of the reward ``-(loss + lam * knowledge)``.
        seed: an integer >= 0 (or a ``np.random.Generator``) for this oracle's own random
            stream; None is refused (see :mod:`~bionas_bench.seeds`).
        replicate: ``"random"``, ``"fixed"``, an ``int`` replicate index, or ``"median"``.
        loss: the metric used as loss (default ``"val_loss"``).
        knowledge: the knowledge set (default: the store's default / first set).
        failed: ``"include"`` failed replicates as recorded (default) or ``"exclude"`` them.
        loss_curve: the learning curve served by ``epoch=`` queries (default: ``loss``).
    """

    def __init__(
        self,
        store: Store | str | Path,
        lam: float = 1.0,
        seed: int | np.random.Generator = 0,
        replicate: ReplicateMode = "random",
        loss: str = "val_loss",
        knowledge: str | None = None,
        failed: str = "include",
        loss_curve: str | None = None,
    ) -> None:
        self.store = store if isinstance(store, Store) else open_store(store)
        self.lam = check_lam(lam, OracleError)
        self.replicate = _check_mode(replicate, self.store.num_replicates)
        if failed not in _FAILED_POLICIES:
            raise OracleError(f"failed={failed!r} is not a policy; use one of {_FAILED_POLICIES}")
        self.failed_policy = failed
        self.loss_name = check_loss_name(loss, OracleError)
        self.knowledge_name = self._pick_knowledge(knowledge)
        self.loss_curve = loss_curve or loss
        self._loss = self.store.metric(loss)  # StoreError names the metrics that exist
        self._knowledge = self.store.knowledge(self.knowledge_name)
        if not self.store.done.any():
            raise StoreError(
                f"store {self.store.location} has no completed trainings (its done mask is all False); "
                f"train or import results into it before building an oracle"
            )
        self._rng = rng_from_seed(seed, OracleError, "BootstrapOracle")
        self._build_tables()
        self._fixed_rows: np.ndarray | None = None
        if self.replicate == "fixed":
            self.new_trial()
        self._curve_table: np.ndarray | None = None
        self._gold = None

    # ------------------------------------------------------------ construction
    def _pick_knowledge(self, knowledge: str | None) -> str:
        name = knowledge if knowledge is not None else self.store.default_knowledge_set
        if name is None:
            raise StoreError(f"store {self.store.location} has no knowledge set; the oracle needs one")
        return name

    def _build_tables(self) -> None:
        """Dense ``[arch * K + k]`` columns of usable replicates, K = most per arch."""
        store = self.store
        usable = store.done & np.isfinite(self._loss)
        if self.lam != 0:
            usable &= np.isfinite(self._knowledge)
        if self.failed_policy == "exclude":
            usable &= ~store.failed
        self.usable = usable
        counts = usable.sum(axis=1).astype(np.int64)
        num_archs = usable.shape[0]
        k_max = max(int(counts.max()), 1)
        order = np.argsort(~usable, axis=1, kind="stable")[:, :k_max]  # usable replicates first
        valid = np.arange(k_max) < counts[:, None]
        self.counts = counts
        self._k = k_max
        self._num_archs = num_archs
        self._uniform_count = int(counts[0]) if np.all(counts == counts[0]) else 0
        self._has_empty = bool(np.any(counts == 0))
        self._rep_table = np.where(valid, order, -1).ravel()
        arch_index = np.arange(num_archs)[:, None]

        def dense(values: np.ndarray) -> np.ndarray:
            return np.where(valid, values[arch_index, order], np.nan).ravel()

        seconds = self._seconds()
        self._columns = {name: dense(store.metric(name)) for name in store.metric_names}
        self._columns["failed"] = dense(store.failed.astype(np.float64))
        loss, know = dense(self._loss), dense(self._knowledge)
        self._core = {
            "reward": -objective(loss, know, self.lam),
            "loss": loss,
            "knowledge": know,
            "cost": dense(seconds),
        }
        if self.replicate == "median":
            self._build_median_tables()
        elif isinstance(self.replicate, int):
            self._given_rows = self._rows_of_replicate(self.replicate)
        # python-level copies for the scalar fast path
        self._counts_list = counts.tolist()

    def _seconds(self) -> np.ndarray:
        if "train_seconds" in self.store.metric_names:
            return self.store.metric("train_seconds")
        return np.full(self.store.done.shape, np.nan)

    def _build_median_tables(self) -> None:
        """Median mode: one row per architecture, medians over usable replicates."""
        med = self.store.arch_medians
        mask = self.usable
        self._columns = {name: med(self.store.metric(name), mask) for name in self.store.metric_names}
        self._columns["failed"] = np.zeros(self._num_archs)
        loss, know = med(self._loss, mask), med(self._knowledge, mask)
        self._core = {
            "reward": -objective(loss, know, self.lam),
            "loss": loss,
            "knowledge": know,
            "cost": med(self._seconds(), mask),
        }

    def _rows_of_replicate(self, r: int) -> np.ndarray:
        table = self._rep_table.reshape(self._num_archs, self._k)
        hit = table == r
        rows = np.arange(self._num_archs) * self._k + hit.argmax(axis=1)
        return np.where(hit.any(axis=1), rows, -1)

    # ------------------------------------------------------------ trials / streams
    def new_trial(self) -> None:
        """Start a new trial: in ``"fixed"`` mode, redraw the replicate of every architecture.

        One uniform draw per architecture from this oracle's stream; architectures
        without a usable replicate get none (querying them raises OracleError).
        """
        if self.replicate != "fixed":
            return
        u = self._rng.random(self._num_archs)
        k = (u * self.counts).astype(np.int64)
        rows = np.arange(self._num_archs) * self._k + k
        self._fixed_rows = np.where(self.counts > 0, rows, -1)

    def spawn(self, n: int) -> list[BootstrapOracle]:
        """``n`` oracles sharing this one's tables with independent child streams."""
        children = []
        for rng in self._rng.spawn(int(n)):
            child = copy.copy(self)
            child._rng = rng
            child.new_trial()
            children.append(child)
        return children

    @property
    def rng(self) -> np.random.Generator:
        return self._rng

    # ------------------------------------------------------------ queries
    def query(self, arch_ids: Any, epoch: Any = None) -> OracleResult:
        """Results for ``arch_ids`` (int or integer array); output arrays have its shape."""
        if epoch is None and type(arch_ids) is int:
            return self._query_scalar(arch_ids)
        ids = np.asarray(arch_ids)
        if ids.dtype.kind not in "iu":
            ids = self.store.space.check_ids(ids)  # floats that are whole numbers, or an error
        self._check_range(ids)
        ids = ids.astype(np.int64, copy=False)  # table rows are ids * K: no small or unsigned types
        rows = self._rows(ids)
        if epoch is not None:
            return self._query_epoch(ids, rows, epoch)
        core = self._core
        scalar = ids.ndim == 0
        take = (lambda c: c[rows]) if scalar else (lambda c: c.take(rows))
        return OracleResult(
            ids[()] if scalar else ids,
            self._replicate_of(rows, scalar),
            take(core["loss"]),
            take(core["knowledge"]),
            take(core["reward"]),
            take(core["cost"]),
            rows[()] if scalar else rows,
            self._columns,
        )

    def _query_scalar(self, a: int) -> OracleResult:
        """Fast path for one Python int id (the common ask-one/tell-one loop)."""
        if a < 0 or a >= self._num_archs:
            self._raise_range(a)
        mode = self.replicate
        if mode == "random":
            count = self._counts_list[a]
            if count == 0:
                self._raise_empty(a)
            row = a * self._k + int(self._rng.random() * count)
        elif mode == "median":
            if self._counts_list[a] == 0:
                self._raise_empty(a)
            row = a
        else:
            row = int((self._fixed_rows if mode == "fixed" else self._given_rows)[a])
            if row < 0:
                self._raise_empty(a)
        core = self._core
        rep = -1 if mode == "median" else int(self._rep_table[row])
        return OracleResult(
            a,
            rep,
            core["loss"][row],
            core["knowledge"][row],
            core["reward"][row],
            core["cost"][row],
            row,
            self._columns,
        )

    def _check_range(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0:
            self._raise_range(lo)
        if hi >= self._num_archs:
            self._raise_range(hi)

    def _raise_range(self, a: int) -> None:
        raise OracleError(
            f"architecture id {a} is out of range for space {self.store.space.name!r}; "
            f"valid ids are 0..{self._num_archs - 1}"
        )

    def _raise_empty(self, a: int) -> None:
        policy = " (failed replicates are excluded)" if self.failed_policy == "exclude" else ""
        which = f"replicate {self.replicate}" if isinstance(self.replicate, int) else "no replicate"
        raise OracleError(
            f"architecture {a} ({self.store.space.arch_name(a)}) has {which} usable in store "
            f"{self.store.location}{policy}; {int(self.counts[a])} usable of {self.store.num_replicates}. "
            f"Query only architectures with completed replicates (see store.missing_units())"
        )

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Flat table rows serving ``ids`` under the replicate mode (draws in random mode)."""
        mode = self.replicate
        if mode == "random":
            if self._has_empty:
                empty = self.counts.take(ids) == 0
                if np.any(empty):
                    self._raise_empty(int(ids[empty].flat[0]))
            u = self._rng.random(ids.shape)
            u *= self._uniform_count if self._uniform_count else self.counts.take(ids)
            rows = ids * self._k
            rows += u.astype(np.int64)
            return rows
        if mode == "median":
            if self._has_empty:
                empty = self.counts.take(ids) == 0
                if np.any(empty):
                    self._raise_empty(int(ids[empty].flat[0]))
            return ids
        table = self._fixed_rows if mode == "fixed" else self._given_rows
        rows = table.take(ids)
        if rows.size and rows.min() < 0:
            self._raise_empty(int(ids[rows < 0].flat[0]))
        return rows

    def _replicate_of(self, rows: np.ndarray, scalar: bool) -> Any:
        if self.replicate == "median":
            reps = np.full(rows.shape, -1, dtype=np.int64)
        else:
            reps = self._rep_table.take(rows)
        return reps[()] if scalar else reps

    # ------------------------------------------------------------ multi-fidelity
    def _query_epoch(self, ids: np.ndarray, rows: np.ndarray, epoch: Any) -> OracleResult:
        curve = self._curve()
        epochs = np.asarray(epoch)
        if epochs.dtype.kind not in "iu":
            raise OracleError(f"epoch must be an integer (or integer array), got {epoch!r}")
        max_e = curve.shape[1]
        if epochs.size and (epochs.min() < 1 or epochs.max() > max_e):
            raise OracleError(
                f"epoch {epoch!r} is out of range; this store's curves have epochs 1..{max_e} (a "
                f"multi-fidelity controller: create it with max_epochs={max_e} or less)"
            )
        rows_b, e_b = np.broadcast_arrays(rows, epochs)
        loss = curve[rows_b, e_b - 1]
        knowledge = self._core["knowledge"].take(rows_b)
        seconds = self._core["cost"].take(rows_b)
        trained = self._epochs_trained.take(rows_b)
        cost = seconds * np.minimum(e_b, trained) / trained
        scalar = rows_b.ndim == 0
        out = (lambda x: x[()]) if scalar else (lambda x: x)
        return OracleResult(
            out(np.broadcast_to(ids, rows_b.shape).copy()),
            self._replicate_of(rows_b, scalar),
            out(loss),
            out(knowledge),
            out(-objective(loss, knowledge, self.lam)),
            out(cost),
            out(rows_b.copy()),
            self._columns,
        )

    def _curve(self) -> np.ndarray:
        """The loss curve as ``[row, epoch]``: the lowest value up to each epoch."""
        if self._curve_table is not None:
            return self._curve_table
        store = self.store
        if self.loss_curve not in store.curve_names:
            raise OracleError(
                f"epoch queries need learning curve {self.loss_curve!r}; store {store.location} has "
                f"curves {store.curve_names or 'none'} (pass loss_curve=... or query without epoch)"
            )
        raw = np.fmin.accumulate(store.curve(self.loss_curve).astype(np.float64), axis=2)
        finite = np.isfinite(store.curve(self.loss_curve)).sum(axis=2).astype(np.float64)
        if "epochs" in store.metric_names:
            recorded = store.metric("epochs")
            finite = np.where(np.isfinite(recorded) & (recorded > 0), recorded, finite)
        if self.replicate == "median":
            mask = self.usable[:, :, None]
            table = _masked_nanmedian(raw, mask)
            trained = store.arch_medians(finite, self.usable)
        else:
            order = np.clip(self._rep_table.reshape(self._num_archs, self._k), 0, None)
            arch_index = np.arange(self._num_archs)[:, None]
            table = raw[arch_index, order].reshape(self._num_archs * self._k, -1)
            trained = finite[arch_index, order].ravel()
        self._epochs_trained = np.where(trained > 0, trained, np.nan)
        self._curve_table = table
        return table

    # ------------------------------------------------------------ gold standard
    def gold_standard(self) -> Any:
        """Per-architecture medians over usable replicates and their ranks (1 = best).

        A ``pandas.DataFrame`` indexed by ``arch`` with columns ``name``, ``loss``,
        ``knowledge``, ``objective`` (= median loss + lam * median knowledge),
        ``loss_rank``, ``knowledge_rank``, ``objective_rank`` (ties averaged, as
        ``scipy.stats.rankdata(method="average")``; NaN for architectures without a
        usable replicate) and ``n_replicates``. ``df.attrs`` records the settings.
        """
        import pandas as pd

        if self._gold is None:
            med = self.store.arch_medians
            loss = med(self._loss, self.usable)
            know = med(self._knowledge, self.usable)
            space = self.store.space
            frame = pd.DataFrame(
                {
                    "name": space.arch_names(),
                    "loss": loss,
                    "knowledge": know,
                    "objective": objective(loss, know, self.lam),
                },
                index=pd.RangeIndex(space.size, name="arch"),
            )
            for col in ("loss", "knowledge", "objective"):
                frame[f"{col}_rank"] = frame[col].rank(method="average", na_option="keep")
            frame["n_replicates"] = self.counts
            frame.attrs = {
                "lam": self.lam,
                "loss": self.loss_name,
                "knowledge": self.knowledge_name,
                "failed": self.failed_policy,
                "store": self.store.location,
            }
            self._gold = frame
        return self._gold.copy()

    def __repr__(self) -> str:
        return (
            f"BootstrapOracle(store={self.store.location!r}, lam={self.lam:g}, replicate={self.replicate!r}, "
            f"loss={self.loss_name!r}, knowledge={self.knowledge_name!r}, failed={self.failed_policy!r})"
        )


# ---------------------------------------------------------------------- helpers
def _check_mode(replicate: Any, num_replicates: int) -> ReplicateMode:
    if isinstance(replicate, str):
        if replicate in ("random", "fixed", "median"):
            return replicate
    elif isinstance(replicate, int | np.integer) and not isinstance(replicate, bool):
        if 0 <= int(replicate) < num_replicates:
            return int(replicate)
        raise OracleError(
            f"replicate={replicate} is out of range; the store has replicates 0..{num_replicates - 1}"
        )
    raise OracleError(
        f"replicate={replicate!r} is not a mode; use 'random', 'fixed', 'median' or an int index"
    )


def _masked_nanmedian(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(np.where(mask, values, np.nan), axis=1)
