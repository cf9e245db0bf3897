"""Regularized (aging) evolution (Real et al. 2019)."""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

import numpy as np

from bionas_bench.controllers.base import check
from bionas_bench.controllers.random_search import IncumbentController, mutate, random_ids
from bionas_bench.space import ModelSpace


@dataclasses.dataclass(frozen=True)
class EvolutionParams:
    """Hyper-parameters of :class:`RegularizedEvolution`."""

    population_size: int = 20
    sample_size: int = 5

    def __post_init__(self) -> None:
        for name in ("population_size", "sample_size"):
            value = getattr(self, name)
            check(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be a positive integer, got {value!r}",
            )
        check(
            self.sample_size <= self.population_size,
            f"sample_size ({self.sample_size}) must not exceed population_size ({self.population_size})",
        )


class RegularizedEvolution(IncumbentController):
    """Regularized (aging) evolution with tournament selection (Real et al. 2019).

    The first ``population_size`` asks are uniform random architectures. After that,
    each ask draws ``sample_size`` members of the population (without replacement),
    takes the one with the highest observed reward as parent, and proposes a child that
    differs from it in exactly one layer (a uniformly chosen layer set to a uniformly
    chosen *different* choice). Every told result joins the population and the oldest
    member leaves it once it holds more than ``population_size`` -- ageing rather than
    removing the worst, which is what regularizes against a lucky noisy evaluation
    surviving forever. Asks made before any result is told are also random, so the
    controller works in any batch size.

    Hyper-parameters
    ----------------
    population_size : int = 20
        Size of the living population (the paper uses 100 on NAS spaces of ~10^5+
        architectures; 20 suits the 216-architecture BioNAS space and a few hundred
        queries).
    sample_size : int = 5
        Tournament size S; larger S is greedier. Must not exceed ``population_size``.

    ``recommend()`` is the architecture with the best mean observed reward over the
    whole history (not only the living population).

    Reference: E. Real, A. Aggarwal, Y. Huang and Q. V. Le, "Regularized evolution for
    image classifier architecture search", AAAI 2019.
    """

    name = "evolution"
    Params = EvolutionParams

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        self.population: deque[tuple[int, float]] = deque(maxlen=self.params.population_size)
        self._num_asked = 0

    def _ask(self, n: int) -> np.ndarray:
        return np.array([self._propose() for _ in range(n)], dtype=np.int64)

    def _propose(self) -> int:
        self._num_asked += 1
        if self._num_asked <= self.params.population_size or not self.population:
            return int(random_ids(self.space, self.rng, 1)[0])
        size = min(self.params.sample_size, len(self.population))
        picks = self.rng.choice(len(self.population), size=size, replace=False)
        parent = max(picks.tolist(), key=lambda i: (self.population[i][1], -i))
        return mutate(self.space, self.population[parent][0], self.rng)

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict[str, Any]) -> None:
        self.observations.add(ids, rewards)
        self.population.extend(zip(ids.tolist(), rewards.tolist(), strict=True))
