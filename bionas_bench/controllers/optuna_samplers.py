"""TPE and GP-based Bayesian optimisation through Optuna's samplers (ask/tell).

The architecture is presented to Optuna as one categorical parameter per layer
(``layer_0 ... layer_{L-1}``, choices = the layer's choice indices), so the samplers
model the space exactly as a product of categorical dimensions. Each controller owns an
in-memory study (direction "maximize") whose sampler is seeded from the controller's
generator, so a run is reproducible for a given seed and Optuna version.

Optuna logs every created study and finished trial at INFO level on the ``optuna``
logger. The controllers raise that logger to WARNING only while they call into Optuna
and restore the previous level afterwards, so a user's own Optuna logging settings are
left as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from bionas_bench.controllers.base import check
from bionas_bench.controllers.random_search import IncumbentController
from bionas_bench.space import ModelSpace


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's INFO logs and experimental warnings for the enclosed calls only."""
    logger = logging.getLogger("optuna")
    previous = logger.level
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        logger.setLevel(previous)


def _positive_int(name: str, value: Any) -> None:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"{name} must be a positive integer, got {value!r}",
    )


class OptunaController(IncumbentController):
    """Shared ask/tell plumbing between a controller and an Optuna study.

    Subclasses provide :meth:`make_sampler`. Repeated ids (a sampler may propose an
    architecture again: rewards are noisy) are matched to their trials first-in
    first-out.
    """

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        self.distributions = {
            f"layer_{i}": CategoricalDistribution(tuple(range(radix)))
            for i, radix in enumerate(self.space.radices)
        }
        sampler_seed = int(self.rng.integers(2**31 - 1))
        with quiet_optuna():
            self.study = optuna.create_study(direction="maximize", sampler=self.make_sampler(sampler_seed))
        self._trials: dict[int, deque[optuna.Trial]] = {}

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def _ask(self, n: int) -> np.ndarray:
        ids = []
        with quiet_optuna():
            for _ in range(n):
                trial = self.study.ask(self.distributions)
                digits = [trial.params[name] for name in self.distributions]
                arch = int(self.space.encode(np.array(digits, dtype=np.int64)))
                self._trials.setdefault(arch, deque()).append(trial)
                ids.append(arch)
        return np.array(ids, dtype=np.int64)

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict[str, Any]) -> None:
        self.observations.add(ids, rewards)
        with quiet_optuna():
            for arch, reward in zip(ids.tolist(), rewards.tolist(), strict=True):
                trials = self._trials[arch]
                self.study.tell(trials.popleft(), reward)
                if not trials:
                    del self._trials[arch]


@dataclasses.dataclass(frozen=True)
class TPEParams:
    """Hyper-parameters of :class:`TPE`."""

    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = True
    constant_liar: bool = True

    def __post_init__(self) -> None:
        _positive_int("n_startup_trials", self.n_startup_trials)
        _positive_int("n_ei_candidates", self.n_ei_candidates)
        for name in ("multivariate", "constant_liar"):
            check(isinstance(getattr(self, name), bool), f"{name} must be a bool")


class TPE(OptunaController):
    """Tree-structured Parzen estimator through Optuna's ``TPESampler`` (Bergstra et al. 2011).

    Hyper-parameters
    ----------------
    n_startup_trials : int = 10
        Random trials before the Parzen estimators are used (Optuna's default).
    n_ei_candidates : int = 24
        Candidates drawn from l(x) to maximise l(x)/g(x) (Optuna's default).
    multivariate : bool = True
        Model the layers jointly (multivariate TPE, Falkner et al. 2018) rather than
        independently; layer choices interact in this space.
    constant_liar : bool = True
        Treat asked-but-untold trials as bad, so a batch ask does not propose the same
        region repeatedly.

    ``recommend()`` is the architecture with the best mean observed reward.

    Reference: J. Bergstra, R. Bardenet, Y. Bengio and B. Kegl, "Algorithms for
    hyper-parameter optimization", NeurIPS 2011; T. Akiba et al., "Optuna: a
    next-generation hyperparameter optimization framework", KDD 2019.
    """

    name = "tpe"
    Params = TPEParams

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        p = self.params
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=p.n_startup_trials,
            n_ei_candidates=p.n_ei_candidates,
            multivariate=p.multivariate,
            constant_liar=p.constant_liar,
        )


@dataclasses.dataclass(frozen=True)
class GPParams:
    """Hyper-parameters of :class:`GaussianProcessBO`."""

    n_startup_trials: int = 10
    deterministic_objective: bool = False

    def __post_init__(self) -> None:
        _positive_int("n_startup_trials", self.n_startup_trials)
        check(
            isinstance(self.deterministic_objective, bool),
            f"deterministic_objective must be a bool, got {self.deterministic_objective!r}",
        )


class GaussianProcessBO(OptunaController):
    """Gaussian-process Bayesian optimisation through Optuna's ``GPSampler``.

    Optuna fits a GP (Matern-5/2 kernel with automatic relevance determination;
    categorical layers enter through a Hamming-type distance) by marginal likelihood and
    proposes the maximiser of log expected improvement. It is far slower per ask than
    the other baselines (a GP fit per trial); use it with budgets of a few hundred.

    Hyper-parameters
    ----------------
    n_startup_trials : int = 10
        Random trials before the GP is used (Optuna's default).
    deterministic_objective : bool = False
        Keep False: the oracle's rewards are noisy (one random replicate per query), so
        the GP must fit a noise variance.

    ``recommend()`` is the architecture with the best mean observed reward.

    Reference: J. Snoek, H. Larochelle and R. P. Adams, "Practical Bayesian optimization
    of machine learning algorithms", NeurIPS 2012; T. Akiba et al., "Optuna", KDD 2019.
    """

    name = "gp"
    Params = GPParams

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=self.params.n_startup_trials,
            deterministic_objective=self.params.deterministic_objective,
            warn_independent_sampling=False,
        )
