"""Local search: hill climbing over one-layer neighbourhoods with random restarts."""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from typing import Any

import numpy as np

from bionas_bench.controllers.base import check
from bionas_bench.controllers.random_search import (
    IncumbentController,
    distinct_random_ids,
    neighbours,
    random_ids,
)
from bionas_bench.space import ModelSpace


@dataclasses.dataclass(frozen=True)
class LocalSearchParams:
    """Hyper-parameters of :class:`LocalSearch`."""

    num_init: int = 10
    first_improvement: bool = False

    def __post_init__(self) -> None:
        check(
            isinstance(self.num_init, int) and not isinstance(self.num_init, bool) and self.num_init >= 1,
            f"num_init must be a positive integer, got {self.num_init!r}",
        )
        check(
            isinstance(self.first_improvement, bool),
            f"first_improvement must be a bool, got {self.first_improvement!r}",
        )


class LocalSearch(IncumbentController):
    """Local search with restarts, in the style of White et al. (2021).

    A start phase evaluates ``num_init`` distinct random architectures and takes the
    best as the current architecture. A neighbourhood phase evaluates, in random order,
    every not-yet-observed architecture that differs from the current one in exactly one
    layer; the search then moves to the best neighbour if its mean reward beats the
    current one (best improvement), or -- with ``first_improvement`` -- as soon as any
    neighbour beats it. A current architecture no neighbour beats is a local optimum
    (kept in ``local_optima``) and the search restarts with a new start phase.

    Asks beyond the ids of the running phase (a large ``n``, or asks while the phase
    waits for results) are filled with uniform random architectures; their results are
    recorded like any other but do not steer the phase.

    Hyper-parameters
    ----------------
    num_init : int = 10
        Random architectures evaluated at each (re)start; the best one starts the climb.
        1 gives plain random-restart hill climbing.
    first_improvement : bool = False
        Move to the first improving neighbour instead of the best of the full
        neighbourhood (cheaper steps, more of them).

    ``recommend()`` is the architecture with the best mean observed reward.

    Reference: C. White, S. Nolen and Y. Savani, "Exploring the loss landscape in neural
    architecture search", UAI 2021 (local search as a strong NAS baseline).
    """

    name = "local_search"
    Params = LocalSearchParams

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        self.current: int | None = None
        self.local_optima: list[int] = []
        self._queue: deque[int] = deque()
        self._waiting: Counter[int] = Counter()
        self._phase_ids: list[int] = []

    # ------------------------------------------------------------------ ask/tell
    def _ask(self, n: int) -> np.ndarray:
        return np.array([self._next_id() for _ in range(n)], dtype=np.int64)

    def _next_id(self) -> int:
        if not self._queue and not self._waiting:
            self._advance()
        if self._queue:
            arch = self._queue.popleft()
            self._waiting[arch] += 1
            return arch
        return int(random_ids(self.space, self.rng, 1)[0])

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict[str, Any]) -> None:
        self.observations.add(ids, rewards)
        for arch in ids.tolist():
            if self._waiting[arch] > 0:
                self._waiting[arch] -= 1
        self._waiting += Counter()  # drop zero counts
        if self.params.first_improvement and self.current is not None:
            better = [a for a in ids.tolist() if a in self._phase_ids and self._beats_current(a)]
            if better:
                self._move_to(max(better, key=lambda a: (self.observations.mean(a), -a)))

    # ------------------------------------------------------------------ phases
    def _advance(self) -> None:
        """Close the finished phase and open the next one (which always has ids to ask)."""
        while not self._queue:
            if self.current is None:
                if self._phase_ids:  # a start phase just finished
                    self._move_to(self._best_of(self._phase_ids))
                else:
                    self._restart()
                continue
            candidates = [a for a in neighbours(self.space, self.current) if a in self.observations]
            best = self._best_of(candidates) if candidates else None
            if best is not None and self._beats_current(best):
                self._move_to(best)
            else:
                self.local_optima.append(self.current)
                self._restart()

    def _restart(self) -> None:
        self.current = None
        self._phase_ids = distinct_random_ids(self.space, self.rng, self.params.num_init).tolist()
        self._queue = deque(self._phase_ids)
        self._waiting = Counter()

    def _move_to(self, arch: int) -> None:
        """Make ``arch`` current and queue its unobserved neighbours in random order."""
        self.current = int(arch)
        fresh = [a for a in neighbours(self.space, arch).tolist() if a not in self.observations]
        self._phase_ids = [fresh[i] for i in self.rng.permutation(len(fresh))]
        self._queue = deque(self._phase_ids)
        self._waiting = Counter()

    def _best_of(self, archs: list[int]) -> int:
        observed = [a for a in archs if a in self.observations]
        if not observed:
            return int(archs[0])
        return max(observed, key=lambda a: (self.observations.mean(a), -a))

    def _beats_current(self, arch: int) -> bool:
        assert self.current is not None
        if self.current not in self.observations:
            return True
        return self.observations.mean(arch) > self.observations.mean(self.current)
