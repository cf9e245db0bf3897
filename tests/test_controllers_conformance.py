"""Every registered controller -- built-in or plugin -- passes the shared conformance suite.

The list is taken at collection time, so controllers added later (the policy-gradient
family, installed plugins) are checked without editing this file. The suite's own
ability to catch protocol violations is tested at the end with deliberately broken
controllers.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

import bionas_bench as bb
import bionas_bench.store  # noqa: F401 - makes bb.store an attribute for the routes below
from bionas_bench.controllers import Controller
from bionas_bench.controllers.base import check
from bionas_bench.controllers.conformance import (
    CHECKS,
    ConformanceError,
    SyntheticRewards,
    check_controller,
    conformance_cases,
    tiny_space,
)
from bionas_bench.errors import ControllerError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: settings that keep slow controllers fast here: Optuna's GP fits one model per ask, and the
#: policy-gradient controllers train an LSTM per update (small LSTM, few epochs, short runs)
_SMALL_LSTM = {"lstm_units": 8, "embedding_dim": 4, "max_epochs": 2}
FAST: dict[str, dict[str, Any]] = {
    "gp": {"hparams": {"n_startup_trials": 10}, "budget": 12},
    "ppo": {"hparams": {**_SMALL_LSTM, "warmup_episodes": 2, "buffer_episodes": 3}, "budget": 15},
    "reinforce": {"hparams": _SMALL_LSTM, "budget": 15},
    "diverse_pg": {"hparams": _SMALL_LSTM, "budget": 15},
}


def _settings(name: str) -> dict[str, Any]:
    """FAST settings of ``name``, keeping only hyper-parameters its ``Params`` declares."""
    settings = dict(FAST.get(name, {}))
    fields = {f.name for f in dataclasses.fields(bb.controllers.get(name).Params)}
    settings["hparams"] = {k: v for k, v in settings.get("hparams", {}).items() if k in fields}
    return settings


@pytest.mark.parametrize(("controller", "check_name"), conformance_cases(bb.controllers.list()))
def test_conformance(controller: str, check_name: str) -> None:
    assert check_controller(controller, checks=[check_name], **_settings(controller)) == [check_name]


@pytest.mark.parametrize("controller", [c for c in bb.controllers.list() if c != "gp"])
def test_trajectory_on_the_real_spaces(controller: str) -> None:
    for space in ("bionas-conv1d", "bionas-eclip"):
        settings = {**_settings(controller), "budget": 15}
        check_controller(controller, bb.get_space(space), checks=["ask", "trajectory"], **settings)


def test_check_controller_rejects_unknown_checks_and_subjects() -> None:
    with pytest.raises(ControllerError, match="unknown conformance check"):
        check_controller("random", checks=["nosuch"])
    with pytest.raises(ControllerError, match="Controller subclass or a registered name"):
        check_controller(42)  # type: ignore[arg-type]
    with pytest.raises(ControllerError, match="unknown controller 'nosuch'"):
        check_controller("nosuch")


def test_synthetic_rewards_are_deterministic_and_fidelity_aware() -> None:
    space = tiny_space()
    assert space.size == 24
    ids = np.arange(space.size)
    a, info_a = SyntheticRewards(space, seed=3)(ids)
    b, _ = SyntheticRewards(space, seed=3)(ids)
    np.testing.assert_array_equal(a, b)
    assert set(info_a) == {"cost"}
    low, info = SyntheticRewards(space, seed=3)(ids, np.full(space.size, 1))
    np.testing.assert_allclose(low, a - 1.0)
    assert info["epoch"].dtype == np.int64


# ---------------------------------------------------------------------- the suite catches bugs
@dataclasses.dataclass(frozen=True)
class _P:
    step: int = 1

    def __post_init__(self) -> None:
        check(self.step >= 1, "step must be >= 1")


class _Good(Controller):
    """A minimal correct controller: uniform random asks, best single reward."""

    name = "good"
    Params = _P

    def __init__(self, space: Any, seed: Any = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        self.best: tuple[float, int] | None = None

    def _ask(self, n: int) -> np.ndarray:
        return self.rng.integers(0, self.space.size, size=n)

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict) -> None:
        for arch, reward in zip(ids.tolist(), rewards.tolist(), strict=True):
            if self.best is None or reward > self.best[0]:
                self.best = (reward, arch)

    def recommend(self) -> int:
        return 0 if self.best is None else self.best[1]


class _GlobalRandom(_Good):
    name = "global_random"

    def _ask(self, n: int) -> np.ndarray:
        return np.random.default_rng().integers(0, self.space.size, size=n)  # unseeded


class _BadRecommend(_Good):
    name = "bad_recommend"

    def recommend(self) -> int:
        return self.space.size if self.num_told > 1 else 0


class _ImpureRecommend(_Good):
    name = "impure_recommend"

    def recommend(self) -> int:
        self.rng.random()
        return super().recommend()


class _BadPolicy(_Good):
    name = "bad_policy"

    def policy(self) -> list[np.ndarray]:
        return [np.full(r, 0.5) for r in self.space.radices]


class _NoFidelity(_Good):
    name = "no_fidelity"
    uses_fidelity = True


@dataclasses.dataclass
class _MutableParams:
    step: int = 1


class _MutableParamsController(_Good):
    name = "mutable_params"
    Params = _MutableParams


class _UsesStore(_Good):
    name = "uses_store"

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict) -> None:
        import bionas_bench.oracle  # noqa: F401 - the violation under test

        super()._tell(ids, rewards, info)


class _NeedsInfo(_Good):
    name = "needs_info"

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict) -> None:
        info["cost"].sum()
        super()._tell(ids, rewards, info)


class _SpaceBeforeBase(_Good):
    """Reads the space before the base class validated it: a bad space gives AttributeError."""

    name = "space_before_base"

    def __init__(self, space: Any, seed: Any = 0, **hparams: Any):
        self.radices = space.radices
        super().__init__(space, seed, **hparams)


class _LaxInfo(_Good):
    """Overrides tell() and drops an ``info`` that is not a mapping instead of rejecting it."""

    name = "lax_info"

    def tell(self, ids: Any, rewards: Any, info: Any = None) -> None:
        super().tell(ids, rewards, info if isinstance(info, Mapping) else None)


def test_a_correct_controller_passes_every_check() -> None:
    assert check_controller(_Good) == list(CHECKS)


@pytest.mark.parametrize(
    ("cls", "failing_check"),
    [
        (_GlobalRandom, "determinism"),
        (_BadRecommend, "recommend"),
        (_ImpureRecommend, "recommend"),
        (_BadPolicy, "policy"),
        (_NoFidelity, "fidelity"),
        (_MutableParamsController, "params"),
        (_UsesStore, "no_store"),
        (_NeedsInfo, "trajectory"),
        (_SpaceBeforeBase, "params"),
        (_LaxInfo, "tell_misuse"),
    ],
)
def test_the_suite_catches_protocol_violations(cls: type[Controller], failing_check: str) -> None:
    with pytest.raises(ConformanceError, match=f"check '{failing_check}'"):
        check_controller(cls, checks=[failing_check])


def test_a_deterministic_controller_opts_out_of_the_different_seed_check() -> None:
    class Fixed(_Good):
        name = "fixed"

        def _ask(self, n: int) -> np.ndarray:
            return np.arange(n) % self.space.size

    with pytest.raises(ConformanceError, match="stochastic=False"):
        check_controller(Fixed, checks=["determinism"])
    check_controller(Fixed, checks=["determinism"], stochastic=False)


# ---------------------------------------------------------------------- ask and tell at the base class
class _FloatIds(_Good):
    """Draws ids as floats (``uniform`` instead of ``integers``): truncating them would hide the bug."""

    name = "float_ids"

    def _ask(self, n: int) -> np.ndarray:
        return self.rng.uniform(0, self.space.size, size=n)


class _WholeFloatIds(_Good):
    name = "whole_float_ids"

    def _ask(self, n: int) -> np.ndarray:
        return self.rng.integers(0, self.space.size, size=n).astype(np.float64)


def test_ask_refuses_ids_that_are_not_integers_and_names_what_ask_returned() -> None:
    ctrl = _FloatIds(tiny_space(), seed=0)
    with pytest.raises(ControllerError, match=r"float_ids\._ask\(2\) returned array\(\[.*\]\).*not integer"):
        ctrl.ask(2)
    assert ctrl.num_told == 0 and not ctrl._pending
    ids = _WholeFloatIds(tiny_space(), seed=0).ask(3)  # whole numbers are ids, as tell() accepts them
    assert ids.dtype == np.int64


def test_the_ask_check_reports_float_ids() -> None:
    with pytest.raises(
        ConformanceError, match=r"check 'ask': ask\(1\) raised ControllerError: float_ids\._ask"
    ):
        check_controller(_FloatIds, checks=["ask"])
    check_controller(_WholeFloatIds, checks=["ask"])


class _MutatesItsInput(_Good):
    """Normalises what it is told in place."""

    name = "mutates_its_input"

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict) -> None:
        rewards -= rewards.mean()
        ids[:] = 0
        for value in info.values():
            value *= 0
        super()._tell(ids, rewards, info)


def test_tell_gives_the_controller_its_own_copies() -> None:
    ctrl = _MutatesItsInput(tiny_space(), seed=0)
    ids = ctrl.ask(3)
    rewards, cost = np.array([1.0, 2.0, 4.0]), np.array([10.0, 20.0, 30.0])
    asked = ids.copy()
    ctrl.tell(ids, rewards, {"cost": cost})
    np.testing.assert_array_equal(ids, asked)
    np.testing.assert_array_equal(rewards, [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(cost, [10.0, 20.0, 30.0])


# ---------------------------------------------------------------------- messages that name the cause
def test_global_randomness_is_named_as_the_cause_in_tell_misuse() -> None:
    with pytest.raises(
        ConformanceError, match=r"check 'tell_misuse': two controllers made with the same seed"
    ):
        check_controller(_GlobalRandom, checks=["tell_misuse"])


def test_global_randomness_is_named_as_the_cause_in_recommend() -> None:
    with pytest.raises(ConformanceError, match=r"check 'recommend': two controllers made with the same seed"):
        check_controller(_GlobalRandom, checks=["recommend"])


class _SkipsBaseTell(_Good):
    """Overrides ``tell`` and goes straight to ``_tell``: nothing is validated or counted."""

    name = "skips_base_tell"

    def tell(self, ids: Any, rewards: Any, info: Any = None) -> None:
        self._tell(np.asarray(ids), np.asarray(rewards, dtype=np.float64), dict(info or {}))


def test_a_tell_that_skips_the_base_class_is_named_as_the_cause() -> None:
    with pytest.raises(
        ConformanceError,
        match=r"num_told is 0 after telling 33 results: _SkipsBaseTell\.tell\(\) overrides Controller\.tell"
        r".*implement _tell",
    ):
        check_controller(_SkipsBaseTell, checks=["trajectory"])


# ---------------------------------------------------------------------- no_store, the README's way
#: references a cheating plugin might keep where the module scan of ``no_store`` does not look
_KEPT: dict[str, Any] = {}


def _kept(key: str, make: Callable[[], Any]) -> Any:
    """``make()`` the first time (in an earlier check), the kept value after."""
    if key not in _KEPT:
        _KEPT[key] = make()
    return _KEPT[key]


def _best_loss(store: Any) -> int:
    return int(np.nanargmin(store.arch_medians(store.metric("val_loss"), store.done)))


def _kept_store() -> Any:
    return _kept("store", lambda: bb.open_store())


def _oracle_of_kept_store() -> int:
    oracle = _kept("BootstrapOracle", lambda: bb.BootstrapOracle)(_kept_store(), lam=1.0, seed=0)
    return _best_loss(oracle.store)


def _open_with_kept_class() -> int:
    path = _kept("path", lambda: bb.store.embedded_store_path())
    return _best_loss(_kept("Store", lambda: bb.Store).open(path))


#: ways to reach the store, and the entry point no_store must name
_STORE_ROUTES: dict[str, tuple[Callable[[], int], str]] = {
    "bb.open_store": (lambda: _best_loss(bb.open_store()), "bionas_bench.open_store"),
    "bb.store.open_store": (lambda: _best_loss(bb.store.open_store()), "bionas_bench.store.open_store"),
    "a kept Store class": (_open_with_kept_class, "bionas_bench.store.Store.open"),
    "a kept open_store": (
        lambda: _best_loss(_kept("open", lambda: functools.partial(bb.store.open_store))()),
        "bionas_bench.store.embedded_store_path",
    ),
    "a store opened earlier": (lambda: _best_loss(_kept_store()), "bionas_bench.store.Store.arch_medians"),
    "a kept BootstrapOracle": (_oracle_of_kept_store, "bionas_bench.oracle.BootstrapOracle"),
}


def _reads_store(route: Callable[[], int], swallow: bool) -> type[Controller]:
    """A controller that recommends from the store (``swallow``: and hides any error doing so)."""

    class ReadsStore(_Good):
        name = "reads_store"

        def __init__(self, space: Any, seed: Any = 0, **hparams: Any):
            super().__init__(space, seed, **hparams)
            try:
                self.cheat = route() % self.space.size
            except Exception:
                if not swallow:
                    raise
                self.cheat = 0

        def recommend(self) -> int:
            return self.cheat if self.best is None else super().recommend()

    return ReadsStore


def _failures(cls: type[Controller], order: list[str]) -> dict[str, str]:
    """Every check run one at a time in one process, as the README's parametrized test does."""
    failures = {}
    for name in order:
        try:
            check_controller(cls, checks=[name])
        except ConformanceError as exc:
            failures[name] = str(exc)
    return failures


@pytest.mark.parametrize("swallow", [False, True], ids=["raises", "swallows-errors"])
@pytest.mark.parametrize("order", ["sorted", "reversed"])
@pytest.mark.parametrize("route", sorted(_STORE_ROUTES))
def test_no_store_catches_a_controller_reading_the_store_after_other_checks(
    route: str, order: str, swallow: bool
) -> None:
    reach, entry_point = _STORE_ROUTES[route]
    cls = _reads_store(reach, swallow)
    package, store_class = dict(vars(bb)), dict(vars(bb.store.Store))
    names = sorted(CHECKS) if order == "sorted" else sorted(CHECKS, reverse=True)
    failures = _failures(cls, names)
    assert set(failures) == {"no_store"}, failures
    assert re.search(rf"check 'no_store': it used {re.escape(entry_point)}", failures["no_store"])
    assert "never the store" in failures["no_store"]
    assert dict(vars(bb)).items() >= package.items()  # restored (names loaded meanwhile may stay)
    assert dict(vars(bb.store.Store)) == store_class
    assert _best_loss(bb.open_store()) >= 0
    assert check_controller(_Good) == list(CHECKS)


def test_no_store_names_an_import_of_the_store() -> None:
    with pytest.raises(ConformanceError, match=r"check 'no_store': it imported bionas_bench\.oracle"):
        check_controller(_UsesStore, checks=["no_store"])
