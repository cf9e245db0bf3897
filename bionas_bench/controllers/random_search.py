"""Random search, and the small helpers the other baseline controllers share.

The helpers live here because random search is the baseline every other controller
builds on: :class:`Observations` keeps the mean observed reward per architecture (the
basis of every baseline's ``recommend()``), :func:`random_ids` draws uniform
architectures, and :func:`neighbours` lists the one-layer mutations of an architecture.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bionas_bench.controllers.base import Controller, check
from bionas_bench.space import ModelSpace

#: spaces up to this size are searched without replacement through one permutation;
#: larger ones draw independent uniform ids (repeats are then vanishingly rare)
PERMUTATION_LIMIT = 1 << 24


class Observations:
    """Sum and count of the rewards observed per architecture.

    The oracle returns one random replicate per query, so a single observation is a
    noisy estimate; incumbents are chosen by the mean over every observation of an
    architecture. Ties are broken by more observations, then by the smaller id, so the
    choice is deterministic.
    """

    def __init__(self) -> None:
        self._sum: dict[int, float] = {}
        self._count: dict[int, int] = {}

    def add(self, ids: np.ndarray, rewards: np.ndarray) -> None:
        for arch, reward in zip(ids.tolist(), rewards.tolist(), strict=True):
            self._sum[arch] = self._sum.get(arch, 0.0) + reward
            self._count[arch] = self._count.get(arch, 0) + 1

    def __len__(self) -> int:
        return len(self._count)

    def __contains__(self, arch: object) -> bool:
        return arch in self._count

    def mean(self, arch: int) -> float:
        return self._sum[arch] / self._count[arch]

    def count(self, arch: int) -> int:
        return self._count.get(arch, 0)

    def ids(self) -> list[int]:
        """Observed architectures in first-observed order."""
        return list(self._count)

    def best(self, default: int = 0) -> int:
        """The architecture with the highest mean reward (``default`` before any)."""
        if not self._count:
            return int(default)
        return max(self._count, key=lambda a: (self.mean(a), self._count[a], -a))

    def ranked(self) -> list[int]:
        """Observed architectures, best mean first (same tie-breaks as :meth:`best`)."""
        return sorted(self._count, key=lambda a: (-self.mean(a), -self._count[a], a))


def random_ids(space: ModelSpace, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` architecture ids drawn uniformly (with replacement)."""
    return rng.integers(0, space.size, size=n, dtype=np.int64)


def distinct_random_ids(space: ModelSpace, rng: np.random.Generator, n: int) -> np.ndarray:
    """``min(n, space.size)`` distinct uniform ids (a random subset)."""
    n = min(n, space.size)
    if space.size <= PERMUTATION_LIMIT:
        return rng.choice(space.size, size=n, replace=False).astype(np.int64)
    chosen: dict[int, None] = {}
    while len(chosen) < n:
        for arch in random_ids(space, rng, n - len(chosen)).tolist():
            chosen.setdefault(arch)
    return np.fromiter(chosen, dtype=np.int64, count=n)


def neighbours(space: ModelSpace, arch: int) -> np.ndarray:
    """Every architecture that differs from ``arch`` in exactly one layer's choice."""
    digits = np.asarray(space.decode(int(arch)), dtype=np.int64)
    out = []
    for layer, radix in enumerate(space.radices):
        for choice in range(radix):
            if choice != digits[layer]:
                out.append(int(arch) + (choice - int(digits[layer])) * int(space.strides[layer]))
    return np.array(out, dtype=np.int64)


def mutate(space: ModelSpace, arch: int, rng: np.random.Generator) -> int:
    """Change one uniformly chosen layer to a different uniformly chosen choice.

    Layers with a single choice cannot change and are never picked; a space whose every
    layer has one choice returns ``arch`` itself.
    """
    radices = np.array(space.radices)
    mutable = np.flatnonzero(radices > 1)
    if mutable.size == 0:
        return int(arch)
    layer = int(mutable[rng.integers(mutable.size)])
    current = space.decode(int(arch))[layer]
    choice = int(rng.integers(radices[layer] - 1))
    choice += choice >= current  # skip the current choice
    return int(arch) + (choice - current) * int(space.strides[layer])


def info_array(info: dict[str, Any], key: str, ids: np.ndarray, default: float) -> np.ndarray:
    """``info[key]`` broadcast to one float per told id (``default`` when absent)."""
    value = info.get(key, default)
    return np.broadcast_to(np.asarray(value, dtype=np.float64), ids.shape)


class IncumbentController(Controller):
    """A controller whose ``recommend()`` is the best mean observed reward.

    Subclasses add every told result to ``self.observations`` in ``_tell``. Before any
    result, ``recommend()`` is the first id ever asked (or 0 before any ask), so it is
    valid at any time and costs no random draw.
    """

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        self.observations = Observations()
        self._first_asked: int | None = None

    def ask(self, n: int = 1) -> np.ndarray:
        ids = super().ask(n)
        if self._first_asked is None:
            self._first_asked = int(ids[0])
        return ids

    def default_recommendation(self) -> int:
        return 0 if self._first_asked is None else self._first_asked

    def recommend(self) -> int:
        return self.observations.best(self.default_recommendation())


@dataclasses.dataclass(frozen=True)
class RandomSearchParams:
    """Hyper-parameters of :class:`RandomSearch`."""

    #: draw without replacement until the space is exhausted, then start over
    unique: bool = True

    def __post_init__(self) -> None:
        check(isinstance(self.unique, bool), f"unique must be a bool, got {self.unique!r}")


class RandomSearch(IncumbentController):
    """Random search: architectures drawn uniformly at random (Bergstra & Bengio 2012).

    Hyper-parameters
    ----------------
    unique : bool = True
        Draw without replacement (one random permutation of the space, restarted when
        exhausted) so no budget is spent re-querying an architecture. ``False`` draws
        every id independently. Spaces larger than 2**24 always draw independently.

    ``recommend()`` is the architecture with the best *mean* observed reward: the oracle
    returns one random replicate per query, so a single lucky replicate of a poor
    architecture must not win over an architecture observed several times.

    Reference: J. Bergstra and Y. Bengio, "Random search for hyper-parameter
    optimization", JMLR 13 (2012) 281-305.
    """

    name = "random"
    Params = RandomSearchParams

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        self._order: np.ndarray | None = None
        self._cursor = 0

    def _ask(self, n: int) -> np.ndarray:
        if not self.params.unique or self.space.size > PERMUTATION_LIMIT:
            return random_ids(self.space, self.rng, n)
        parts, left = [], n
        while left:
            parts.append(self._next_unique(left))
            left -= len(parts[-1])
        return np.concatenate(parts)

    def _next_unique(self, want: int) -> np.ndarray:
        if self._order is None or self._cursor >= self.space.size:
            self._order = self.rng.permutation(self.space.size).astype(np.int64)
            self._cursor = 0
        take = min(want, self.space.size - self._cursor)
        ids = self._order[self._cursor : self._cursor + take]
        self._cursor += take
        return ids

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict[str, Any]) -> None:
        self.observations.add(ids, rewards)
