"""The ask/tell protocol every search controller follows.

A controller sees only the model space, its seed, its hyper-parameters and what it is
told (rewards, and optionally cost and fidelity) -- never the store. The sweep drives it:

    ids = ctrl.ask(3)                  # architecture ids to evaluate next
    ctrl.tell(ids, rewards, info)      # their rewards (higher is better)
    best = ctrl.recommend()            # the converged / incumbent architecture

Subclasses implement ``_ask``, ``_tell`` and ``recommend`` (and optionally ``policy``);
this base class validates every call, so every controller rejects bad input the same
way: a space that is neither a :class:`ModelSpace` nor a space name, ``tell`` with ids
that were not asked, mismatched lengths, non-finite rewards, an ``info`` that is not a
mapping.

Hyper-parameters are a frozen dataclass per controller (``Params``); unknown names
and invalid values are rejected when the controller is created. A ``Params`` whose
None defaults stand for values decided elsewhere (``ppo``'s variant flags) may say
which with a method ``in_effect() -> dict``; ``controllers list/show`` print them, as
a bare None would read as "off".
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any, ClassVar

import numpy as np

from bionas_bench.errors import ControllerError
from bionas_bench.seeds import check_seed, rng_from_seed
from bionas_bench.space import ModelSpace, get_space


@dataclasses.dataclass(frozen=True)
class NoParams:
    """A controller without hyper-parameters."""


class Controller(ABC):
    """Base class of search controllers (ask/tell)."""

    #: registry name, e.g. "ppo"
    name: ClassVar[str] = ""
    #: the hyper-parameter dataclass; its defaults are the documented defaults
    Params: ClassVar[type] = NoParams
    #: True for controllers that choose a fidelity (training epochs) per asked id
    uses_fidelity: ClassVar[bool] = False

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        self.space = resolve_space(space, self.name)
        self.params = make_params(type(self), hparams)
        self.rng = rng_from_seed(seed, ControllerError, self.name)
        self._pending: Counter[int] = Counter()
        self._last_fidelity: np.ndarray | None = None
        self.num_told = 0

    # ------------------------------------------------------------------ protocol
    def ask(self, n: int = 1) -> np.ndarray:
        """Return ``n`` architecture ids (int64) to evaluate next.

        ``_ask`` must return integer ids (floats only when whole, the rule ``tell`` applies):
        casting ``rng.uniform(...)`` draws to int64 would silently truncate them.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ControllerError(f"{self.name}.ask(n): n must be a positive integer, got {n!r}")
        asked = np.asarray(self._ask(int(n)))
        if not _integer_valued(asked):
            raise ControllerError(
                f"{self.name}._ask({n}) returned {asked!r}, which are not integer architecture ids; "
                "return integers, e.g. self.rng.integers(0, self.space.size, size=n)"
            )
        ids = asked.astype(np.int64)
        if ids.shape != (n,):
            raise ControllerError(f"{self.name} returned {ids.shape} ids for ask({n}); this is a bug")
        self.space.check_ids(ids)
        self._pending.update(ids.tolist())
        return ids

    def tell(
        self,
        ids: Any,
        rewards: Any,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Report the rewards (higher is better) of ids returned by :meth:`ask`.

        ``info`` may carry per-id arrays such as ``cost`` (simulated GPU seconds) and
        ``epoch`` (the fidelity served). ``_tell`` receives copies of the ids, the rewards
        and the ``info`` arrays, so a controller that changes them in place never changes
        the caller's.
        """
        ids = np.atleast_1d(np.asarray(ids))
        try:
            rewards = np.atleast_1d(np.array(rewards, dtype=np.float64))
        except (TypeError, ValueError):
            raise ControllerError(f"{self.name}.tell: rewards must be numbers, got {rewards!r}") from None
        if not _integer_valued(ids):
            raise ControllerError(
                f"{self.name}.tell: ids must be the integer architecture ids returned by ask(), got {ids!r}"
            )
        if ids.ndim != 1 or ids.shape != rewards.shape:
            raise ControllerError(
                f"{self.name}.tell: ids and rewards must be 1-D of equal length, "
                f"got shapes {ids.shape} and {rewards.shape}"
            )
        if ids.size == 0:
            raise ControllerError(
                f"{self.name}.tell: no ids; tell the rewards of at least one architecture returned by ask()"
            )
        if not np.all(np.isfinite(rewards)):
            raise ControllerError(f"{self.name}.tell: rewards must be finite, got {rewards.tolist()}")
        ids = ids.astype(np.int64)
        unasked = Counter(ids.tolist()) - self._pending
        if unasked:
            raise ControllerError(
                f"{self.name}.tell: ids {sorted(unasked)} were not returned by ask() "
                "(or were already told); tell only what ask() returned"
            )
        check_info(info, f"{self.name}.tell")
        info = {
            key: np.copy(value) if isinstance(value, np.ndarray) else value
            for key, value in (info or {}).items()
        }
        check_info_shapes(info, ids.shape, f"{self.name}.tell")
        self._pending.subtract(ids.tolist())
        self._pending += Counter()  # drop zero counts
        self.num_told += len(ids)
        self._tell(ids, rewards, info)

    @abstractmethod
    def _ask(self, n: int) -> np.ndarray: ...

    @abstractmethod
    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict[str, Any]) -> None: ...

    @abstractmethod
    def recommend(self) -> int:
        """The controller's converged / incumbent architecture id (valid at any time)."""

    def policy(self) -> list[np.ndarray] | None:
        """Per-layer choice probabilities, for controllers that have a policy."""
        return None

    def fidelity(self) -> np.ndarray | None:
        """Epochs requested for the ids of the last ask (``uses_fidelity`` controllers)."""
        return self._last_fidelity


def _integer_valued(ids: np.ndarray) -> bool:
    """True for integer arrays and float arrays holding whole numbers (not bools)."""
    if ids.dtype.kind in "iu":
        return True
    if ids.dtype.kind == "f":
        return bool(np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)))
    return ids.size == 0


def resolve_space(space: Any, owner: str) -> ModelSpace:
    """``space`` itself, or the space a name (or manifest path) stands for.

    Checked where a controller or a set of runs is built, because anything else would
    only fail at the first ``ask`` with an unrelated ``AttributeError``. An unknown name
    raises :func:`~bionas_bench.space.get_space`'s ``SpaceError``, which lists the names.
    """
    if isinstance(space, ModelSpace):
        return space
    if isinstance(space, str | PathLike):
        return get_space(space)
    raise ControllerError(
        f"{owner}: space must be a ModelSpace or a space name such as 'bionas-conv1d', got {space!r}"
    )


def check_info(info: Any, owner: str) -> None:
    """Reject an ``info`` of ``tell`` that is neither a mapping nor None.

    The usual mistake is a key passed where the mapping belongs (``tell(ids, r, "cost")``),
    which would otherwise fail deep inside with a ``dict()`` error.
    """
    if info is not None and not isinstance(info, Mapping):
        raise ControllerError(
            f"{owner}: info must be a mapping such as {{'cost': costs}} or None, got {info!r}"
        )


def check_info_shapes(info: Mapping[str, Any], shape: tuple[int, ...], where: str) -> None:
    """Every value of ``tell``'s ``info`` is a scalar (for every id) or shaped like the
    ids (a batched ``(runs, n)`` call cannot take one run's ``(n,)`` costs)."""
    for key, value in info.items():
        if np.shape(value) not in ((), shape):
            raise ControllerError(
                f"{where}: info[{key!r}] must be a scalar or shaped like the ids {shape}, "
                f"got shape {np.shape(value)}"
            )


def check_seeds(seeds: Any, owner: str) -> list[Any]:
    """``seeds`` as a list: a non-empty sequence of seeds as a single controller takes them.

    One seed per run of ``create_runs``; each is checked like ``create``'s ``seed``
    (an integer >= 0 or a numpy Generator) before any run is built.
    """
    if isinstance(seeds, np.ndarray):
        seeds = seeds.tolist()
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ControllerError(
            f"{owner}: seeds must be a non-empty sequence of seeds, one per run (e.g. [0, 1, 2]), "
            f"got {seeds!r}"
        )
    for seed in seeds:
        check_seed(seed, ControllerError, owner)
    return list(seeds)


def make_params(cls: type[Controller], hparams: Mapping[str, Any]) -> Any:
    """Build ``cls.Params`` from keyword hyper-parameters with clear errors."""
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(hparams) - fields)
    if unknown:
        known = ", ".join(sorted(fields)) or "(none)"
        raise ControllerError(
            f"controller {cls.name!r}: unknown hyper-parameter(s) {', '.join(unknown)}; known: {known}"
        )
    try:
        hints = typing.get_type_hints(cls.Params)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: values unchecked
        hints = {}
    for key, value in hparams.items():
        if key in hints and _type_ok(value, hints[key]) is False:
            raise ControllerError(
                f"controller {cls.name!r}: hyper-parameter {key!r} must be {_type_name(hints[key])}, "
                f"got {value!r}"
            )
    try:
        return cls.Params(**hparams)
    except (TypeError, ValueError) as exc:
        raise ControllerError(f"controller {cls.name!r}: bad hyper-parameter: {exc}") from None


def _type_ok(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``hint`` (None: a kind of annotation not
    checked here). An int fits float; a bool fits only bool."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        fits = [_type_ok(value, arg) for arg in typing.get_args(hint)]
        return None if None in fits else any(fits)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return None


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def check(condition: bool, message: str) -> None:
    """Validate one hyper-parameter value inside a ``Params.__post_init__``."""
    if not condition:
        raise ValueError(message)


class BatchedRuns(ABC):
    """Many independent runs of one controller advanced together.

    ``ask(n)`` returns ``(runs, n)`` ids, ``tell`` takes ``(runs, n)`` ids and rewards,
    ``recommend()`` returns ``(runs,)``. Results must equal running each run alone with
    the same seed. :class:`LoopedRuns` is the generic fallback.
    """

    @abstractmethod
    def ask(self, n: int) -> np.ndarray: ...

    @abstractmethod
    def tell(self, ids: np.ndarray, rewards: np.ndarray, info: Mapping[str, Any] | None = None) -> None: ...

    @abstractmethod
    def recommend(self) -> np.ndarray: ...

    def policy(self) -> list[np.ndarray] | None:
        """Per-layer probabilities stacked over runs ``[(runs, radix_l)]``, if any."""
        return None

    def fidelity(self) -> np.ndarray | None:
        return None


class LoopedRuns(BatchedRuns):
    """Runs advanced one after another: the reference the batched forms must match."""

    def __init__(self, controllers: list[Controller]):
        if not controllers:
            raise ControllerError("LoopedRuns needs at least one controller (one per run)")
        self.controllers = controllers
        self.name = controllers[0].name

    def ask(self, n: int) -> np.ndarray:
        return np.stack([c.ask(n) for c in self.controllers])

    def tell(self, ids: np.ndarray, rewards: np.ndarray, info: Mapping[str, Any] | None = None) -> None:
        where = f"{self.name} (looped).tell"
        check_info(info, where)
        ids, rewards, info = np.asarray(ids), np.asarray(rewards), dict(info or {})
        runs = len(self.controllers)
        if ids.ndim != 2 or ids.shape[0] != runs or rewards.shape != ids.shape:
            raise ControllerError(
                f"{where}: ids and rewards must both be (runs={runs}, n) like ask(n)'s answer, "
                f"got shapes {ids.shape} and {rewards.shape}"
            )
        check_info_shapes(info, ids.shape, where)
        for r, c in enumerate(self.controllers):
            run_info = {k: v if np.ndim(v) == 0 else np.asarray(v)[r] for k, v in info.items()}
            c.tell(ids[r], rewards[r], run_info)

    def recommend(self) -> np.ndarray:
        return np.array([c.recommend() for c in self.controllers], dtype=np.int64)

    def policy(self) -> list[np.ndarray] | None:
        per_run = [c.policy() for c in self.controllers]
        if any(p is None for p in per_run):
            return None
        return [np.stack([p[layer] for p in per_run]) for layer in range(len(per_run[0]))]

    def fidelity(self) -> np.ndarray | None:
        per_run = [c.fidelity() for c in self.controllers]
        if any(f is None for f in per_run):
            return None
        return np.stack(per_run)
