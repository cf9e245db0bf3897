"""Successive halving and Hyperband over the learning-curve fidelity (training epochs).

Both controllers set a fidelity per asked id: the number of training epochs at which
the oracle should read the architecture's learning curve (``fidelity()`` after each
``ask``). The sweep reports the epoch actually served (an early-stopped replicate may
have fewer) as ``info["epoch"]`` and its simulated training seconds as ``info["cost"]``;
the controllers accumulate both (``epochs_served``, ``total_cost``) so runs can be
compared on budget.

Asynchronous use: brackets are advanced independently. An ask takes the next queued
job of the oldest bracket that has one; when every open bracket is waiting for results
(or a large ``n`` exhausts them) a new bracket is opened -- the usual way of running
successive halving in parallel -- so ``ask(n)`` always returns ``n`` ids.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any

import numpy as np

from bionas_bench.controllers.base import check
from bionas_bench.controllers.random_search import (
    IncumbentController,
    Observations,
    distinct_random_ids,
    info_array,
)
from bionas_bench.space import ModelSpace


def _check_positive_int(name: str, value: Any) -> None:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"{name} must be a positive integer, got {value!r}",
    )


@dataclasses.dataclass(frozen=True)
class HyperbandParams:
    """Hyper-parameters of :class:`Hyperband` (and the base of successive halving's)."""

    min_epochs: int = 3
    max_epochs: int = 81
    eta: int = 3

    def __post_init__(self) -> None:
        _check_positive_int("min_epochs", self.min_epochs)
        _check_positive_int("max_epochs", self.max_epochs)
        _check_positive_int("eta", self.eta)
        check(self.eta >= 2, f"eta must be at least 2, got {self.eta}")
        check(
            self.min_epochs <= self.max_epochs,
            f"min_epochs ({self.min_epochs}) must not exceed max_epochs ({self.max_epochs})",
        )


@dataclasses.dataclass(frozen=True)
class SuccessiveHalvingParams(HyperbandParams):
    """Hyper-parameters of :class:`SuccessiveHalving`."""

    #: architectures in the first rung; None means eta ** num_rungs-1 (27 by default)
    num_configs: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_configs is not None:
            _check_positive_int("num_configs", self.num_configs)


@dataclasses.dataclass(eq=False)  # identity semantics: brackets are owners of asked ids
class Bracket:
    """One successive-halving bracket: rungs of (epochs, survivors), advanced by results."""

    budgets: list[int]
    sizes: list[int]
    rung: int = 0
    queue: deque[int] = dataclasses.field(default_factory=deque)
    results: dict[int, float] = dataclasses.field(default_factory=dict)
    outstanding: int = 0

    @property
    def epochs(self) -> int:
        return self.budgets[self.rung]

    @property
    def finished(self) -> bool:
        return self.rung >= len(self.budgets)

    def record(self, arch: int, reward: float) -> None:
        """Store one result of the current rung; promote the best when the rung is done."""
        self.results[arch] = reward
        self.outstanding -= 1
        if self.outstanding == 0 and not self.queue:
            self._promote()

    def _promote(self) -> None:
        ranked = sorted(self.results, key=lambda a: (-self.results[a], a))
        self.rung += 1
        self.results = {}
        if not self.finished:
            self.queue = deque(ranked[: self.sizes[self.rung]])


def rung_budgets(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """Epochs of each rung: ``max_epochs * eta**-k`` for k = s..0, s = floor(log_eta(max/min))."""
    s = int(math.floor(math.log(max_epochs / min_epochs) / math.log(eta) + 1e-9))
    return [max(1, round(max_epochs * eta ** (k - s))) for k in range(s + 1)]


class Hyperband(IncumbentController):
    """Hyperband over training epochs (Li et al. 2018).

    With ``s_max = floor(log_eta(max_epochs / min_epochs))`` the rung budgets are
    ``max_epochs * eta**-k`` epochs. Brackets cycle through ``s = s_max, ..., 0``:
    bracket ``s`` samples ``ceil((s_max + 1) / (s + 1) * eta**s)`` distinct random
    architectures, evaluates them at ``max_epochs * eta**-s`` epochs, and runs
    successive halving -- keep the best ``1/eta``, multiply the epochs by ``eta`` --
    up to ``max_epochs``. Bracket ``s = 0`` is plain random search at full fidelity.

    Hyper-parameters
    ----------------
    min_epochs : int = 3
        Smallest fidelity (epochs) of any evaluation.
    max_epochs : int = 81
        Full fidelity; rung budgets are 3, 9, 27, 81 with the defaults. Must not exceed
        the epochs recorded in the store's learning curves.
    eta : int = 3
        Halving rate: each rung keeps ``floor(n / eta)`` (at least one) architectures
        and gives them ``eta`` times the epochs.

    ``recommend()`` is the architecture with the best mean reward among those evaluated
    at the highest fidelity reached so far (full fidelity once any bracket finished).

    Reference: L. Li, K. Jamieson, G. DeSalvo, A. Rostamizadeh and A. Talwalkar,
    "Hyperband: a novel bandit-based approach to hyperparameter optimization", JMLR 18
    (2018) 1-52.
    """

    name = "hyperband"
    Params: type = HyperbandParams
    uses_fidelity = True

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        p = self.params
        self.budgets = rung_budgets(p.min_epochs, p.max_epochs, p.eta)
        self.by_epochs: dict[int, Observations] = {}
        self.brackets: list[Bracket] = []
        self.num_brackets_opened = 0
        self.total_cost = 0.0
        self.epochs_served = 0.0
        self._owners: dict[int, deque[Bracket]] = {}

    # ------------------------------------------------------------------ schedule
    def _bracket_shape(self, index: int) -> tuple[int, int]:
        """(first-rung size, number of rungs) of the ``index``-th bracket opened."""
        s_max = len(self.budgets) - 1
        s = s_max - index % (s_max + 1)
        n0 = math.ceil((s_max + 1) / (s + 1) * self.params.eta**s)
        return n0, s + 1

    def _open_bracket(self) -> Bracket:
        n0, num_rungs = self._bracket_shape(self.num_brackets_opened)
        self.num_brackets_opened += 1
        archs = distinct_random_ids(self.space, self.rng, n0).tolist()
        eta = self.params.eta
        sizes = [max(1, min(len(archs), n0 // eta**k)) for k in range(num_rungs)]
        bracket = Bracket(budgets=self.budgets[-num_rungs:], sizes=sizes, queue=deque(archs))
        self.brackets.append(bracket)
        return bracket

    # ------------------------------------------------------------------ ask/tell
    def _ask(self, n: int) -> np.ndarray:
        ids, epochs = [], []
        for _ in range(n):
            bracket = next((b for b in self.brackets if b.queue), None) or self._open_bracket()
            arch = bracket.queue.popleft()
            bracket.outstanding += 1
            self._owners.setdefault(arch, deque()).append(bracket)
            ids.append(arch)
            epochs.append(bracket.epochs)
        self._last_fidelity = np.array(epochs, dtype=np.int64)
        return np.array(ids, dtype=np.int64)

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict[str, Any]) -> None:
        served = info_array(info, "epoch", ids, np.nan)
        self.total_cost += float(info_array(info, "cost", ids, 0.0).sum())
        for arch, reward, epoch in zip(ids.tolist(), rewards.tolist(), served.tolist(), strict=True):
            bracket = self._owner(arch, epoch)
            self.epochs_served += bracket.epochs if math.isnan(epoch) else epoch
            self.by_epochs.setdefault(bracket.epochs, Observations()).add(
                np.array([arch]), np.array([reward])
            )
            bracket.record(arch, reward)
        self.brackets = [b for b in self.brackets if not b.finished]

    def _owner(self, arch: int, served_epoch: float) -> Bracket:
        """The bracket that asked ``arch``; the served epoch disambiguates repeats."""
        owners = self._owners[arch]
        match = next((b for b in owners if b.epochs == served_epoch), None)
        if match is None:
            match = next((b for b in owners if b.epochs >= served_epoch), owners[0])
        owners.remove(match)
        if not owners:
            del self._owners[arch]
        return match

    def recommend(self) -> int:
        default = self.default_recommendation()
        if not self.by_epochs:
            return default
        return self.by_epochs[max(self.by_epochs)].best(default)


class SuccessiveHalving(Hyperband):
    """Successive halving over training epochs (Jamieson & Talwalkar 2016).

    Every bracket samples ``num_configs`` distinct random architectures, evaluates them
    at ``min_epochs`` (rounded onto the geometric rung grid ending at ``max_epochs``),
    keeps the best ``floor(n / eta)`` and gives them ``eta`` times the epochs, until
    ``max_epochs``; then a new bracket starts. It is the most aggressive bracket of
    :class:`Hyperband`, repeated.

    Hyper-parameters
    ----------------
    min_epochs : int = 3
        Fidelity of the first rung.
    max_epochs : int = 81
        Full fidelity (rungs 3, 9, 27, 81 with the defaults).
    eta : int = 3
        Halving rate.
    num_configs : int | None = None
        Architectures in the first rung; ``None`` means ``eta ** (rungs - 1)`` (27), so
        one architecture reaches full fidelity per bracket.

    ``recommend()`` is the best mean reward at the highest fidelity reached.

    Reference: K. Jamieson and A. Talwalkar, "Non-stochastic best arm identification
    and hyperparameter optimization", AISTATS 2016.
    """

    name = "successive_halving"
    Params = SuccessiveHalvingParams

    def _bracket_shape(self, index: int) -> tuple[int, int]:
        num_rungs = len(self.budgets)
        n0 = self.params.num_configs or self.params.eta ** (num_rungs - 1)
        return n0, num_rungs
