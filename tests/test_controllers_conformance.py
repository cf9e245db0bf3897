"""Every registered controller -- built-in or plugin -- passes the shared conformance suite.

The list is taken at collection time, so controllers added later (the policy-gradient
family, installed plugins) are checked without editing this file. The suite's own
ability to catch protocol violations is tested at the end with deliberately broken
controllers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

import bionas_bench as bb
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
