"""Bayesian optimisation with a surrogate over the architecture encoding, after BONAS.

BONAS (Shi et al. 2020) embeds each architecture with a graph convolutional network,
puts a Bayesian sigmoid regression on the embedding, picks a batch of candidates by
upper confidence bound, and evaluates them together through weight sharing. This is a
deliberately simplified, exact-arithmetic version for finite tabular spaces:

- **Encoding** (instead of the GCN): a bias, the one-hot choice of every layer, and --
  with ``pairwise`` -- the one-hot *pair* of choices of every two adjacent layers (the
  chain graph's edges), so the surrogate can model interactions between neighbours.
- **Surrogate** (instead of the Bayesian sigmoid regression): Bayesian linear regression
  on that encoding with a Gaussian prior; the prior precision and the noise precision
  are set by maximising the evidence (MacKay's fixed-point updates, Bishop 2006
  section 3.5.2), so there is nothing to tune and the fit is deterministic. Rewards are
  standardised before fitting.
- **Acquisition**: UCB = posterior mean + ``kappa`` * posterior standard deviation of the
  architecture's mean reward, over the *whole* space when it has at most
  ``max_candidates`` architectures (216 for ``bionas-conv1d``), otherwise over a pool
  of ``max_candidates`` uniform architectures plus every one-layer neighbour of the ten
  best observed ones. A batch ask takes the top ``n`` (as BONAS does), skipping ids still
  waiting for results and, unless ``revisit``, ids already observed.
- No weight sharing: each asked architecture is one oracle query.

Cost: every ask after new results refits the surrogate -- one eigendecomposition of the
D x D Gram matrix (D = 88 features for ``bionas-conv1d``), about a millisecond with one
BLAS thread. Small BLAS calls degrade badly when BLAS threads oversubscribe busy cores;
Dask workers already run with one thread, elsewhere set ``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import dataclasses
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

#: evidence-maximisation iterations and the clip that keeps precisions finite
EVIDENCE_ITERATIONS = 50
PRECISION_RANGE = (1e-6, 1e6)
#: candidates scored per block (bounds the memory of a prediction)
PREDICT_CHUNK = 4096


class ArchitectureEncoding:
    """Sparse binary features of architectures: bias, per-layer and adjacent-pair one-hots.

    Every architecture activates exactly one feature per group, so it is stored as the
    ``(m, groups)`` matrix of active feature indices rather than a dense design matrix.
    """

    def __init__(self, space: ModelSpace, pairwise: bool):
        self.space = space
        radices = list(space.radices)
        sizes = [1, *radices]
        if pairwise:
            sizes += [a * b for a, b in zip(radices[:-1], radices[1:], strict=True)]
        self.pairwise = pairwise
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.num_features = int(sum(sizes))

    def active(self, ids: np.ndarray) -> np.ndarray:
        """``(m, groups)`` indices of the features each architecture activates."""
        digits = np.asarray(self.space.decode(np.asarray(ids, dtype=np.int64))).reshape(len(ids), -1)
        groups = [np.zeros(len(ids), dtype=np.int64), *digits.T]
        if self.pairwise:
            radices = self.space.radices
            groups += [digits[:, l] * radices[l + 1] + digits[:, l + 1] for l in range(len(radices) - 1)]
        return np.stack(groups, axis=1) + self.offsets

    def dense(self, ids: np.ndarray) -> np.ndarray:
        """The ``(m, num_features)`` 0/1 design matrix."""
        active = self.active(ids)
        out = np.zeros((len(ids), self.num_features))
        np.put_along_axis(out, active, 1.0, axis=1)
        return out


class BayesianLinearRegression:
    """Conjugate Bayesian linear regression with evidence-maximised precisions."""

    def __init__(self, features: np.ndarray, targets: np.ndarray):
        gram = features.T @ features
        eigvals, self._eigvecs = np.linalg.eigh(gram)
        eigvals = np.clip(eigvals, 0.0, None)
        xty = features.T @ targets
        n = len(targets)
        alpha, beta = 1.0, 1.0
        for _ in range(EVIDENCE_ITERATIONS):
            weights = self._solve(alpha, beta, eigvals, xty)
            gamma = float(np.sum(beta * eigvals / (alpha + beta * eigvals)))
            residual = float(np.sum((targets - features @ weights) ** 2))
            alpha = float(np.clip(gamma / max(float(weights @ weights), 1e-12), *PRECISION_RANGE))
            beta = float(np.clip(max(n - gamma, 1e-6) / max(residual, 1e-12), *PRECISION_RANGE))
        self.alpha, self.beta = alpha, beta
        self.weights = self._solve(alpha, beta, eigvals, xty)
        #: a square root of the posterior weight covariance: covariance = root @ root.T
        self.covariance_root = self._eigvecs / np.sqrt(alpha + beta * eigvals)

    def _solve(self, alpha: float, beta: float, eigvals: np.ndarray, xty: np.ndarray) -> np.ndarray:
        v = self._eigvecs
        return beta * (v @ ((v.T @ xty) / (alpha + beta * eigvals)))

    def predict(self, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the noise-free reward, from active indices."""
        mean = self.weights[active].sum(axis=1)
        std = np.empty(len(active))
        for start in range(0, len(active), PREDICT_CHUNK):
            chunk = active[start : start + PREDICT_CHUNK]
            projected = self.covariance_root[chunk[:, 0]].copy()  # phi @ root, phi binary
            for group in range(1, chunk.shape[1]):
                projected += self.covariance_root[chunk[:, group]]
            std[start : start + PREDICT_CHUNK] = np.sqrt(np.einsum("ij,ij->i", projected, projected))
        return mean, std


@dataclasses.dataclass(frozen=True)
class BONASParams:
    """Hyper-parameters of :class:`BONAS`."""

    n_init: int = 10
    kappa: float = 2.0
    pairwise: bool = True
    revisit: bool = False
    max_candidates: int = 16384

    def __post_init__(self) -> None:
        for name in ("n_init", "max_candidates"):
            value = getattr(self, name)
            check(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be a positive integer, got {value!r}",
            )
        check(
            isinstance(self.kappa, int | float)
            and not isinstance(self.kappa, bool)
            and np.isfinite(self.kappa)
            and self.kappa >= 0,
            f"kappa must be a finite number >= 0, got {self.kappa!r}",
        )
        for name in ("pairwise", "revisit"):
            check(isinstance(getattr(self, name), bool), f"{name} must be a bool")


class BONAS(IncumbentController):
    """BO with a Bayesian surrogate over the architecture encoding (simplified BONAS).

    See the module docstring for exactly what is simplified relative to Shi et al.
    (2020): one-hot (+ adjacent-pair) encoding instead of a GCN embedding, evidence-
    maximised Bayesian linear regression instead of Bayesian sigmoid regression, UCB over
    the whole finite space, no weight sharing.

    Hyper-parameters
    ----------------
    n_init : int = 10
        Distinct random architectures asked before the surrogate is used (asks made
        before ``n_init`` results are told are random).
    kappa : float = 2.0
        UCB exploration weight on the posterior standard deviation.
    pairwise : bool = True
        Add adjacent-layer choice-pair features (interactions); False is an additive
        model of per-layer effects.
    revisit : bool = False
        Allow asking architectures already observed (spends budget on de-noising the
        incumbent instead of exploring). Observed ones are asked anyway once every
        candidate has been observed.
    max_candidates : int = 16384
        Spaces up to this size are scored exhaustively; larger ones through a pool.

    ``recommend()`` is the architecture with the best mean observed reward.

    Reference: H. Shi, R. Pi, H. Xu, Z. Li, J. T. Kwok and T. Zhang, "Bridging the gap
    between sample-based and one-shot neural architecture search with BONAS", NeurIPS
    2020.
    """

    name = "bonas"
    Params = BONASParams

    def __init__(self, space: ModelSpace | str, seed: int | np.random.Generator = 0, **hparams: Any):
        super().__init__(space, seed, **hparams)
        self.encoding = ArchitectureEncoding(self.space, self.params.pairwise)
        self._told_ids: list[int] = []
        self._told_rewards: list[float] = []
        self._surrogate: BayesianLinearRegression | None = None
        self._init_ids: list[int] | None = None

    # ------------------------------------------------------------------ ask/tell
    def _ask(self, n: int) -> np.ndarray:
        if self.num_told < self.params.n_init:
            return self._initial(n)
        return self._by_acquisition(n)

    def _initial(self, n: int) -> np.ndarray:
        if self._init_ids is None:  # drawn once; later asks before n_init tells are uniform
            self._init_ids = distinct_random_ids(self.space, self.rng, self.params.n_init).tolist()[::-1]
        take = [self._init_ids.pop() for _ in range(min(n, len(self._init_ids)))]
        extra = random_ids(self.space, self.rng, n - len(take))
        return np.concatenate([np.array(take, dtype=np.int64), extra])

    def _by_acquisition(self, n: int) -> np.ndarray:
        surrogate = self.surrogate()
        candidates = self._candidates()
        mean, std = surrogate.predict(self.encoding.active(candidates))
        score = mean + self.params.kappa * std
        order = np.lexsort((candidates, -score))  # best UCB first, ties by smaller id
        ranked = candidates[order]
        pending = set(self._pending)
        fresh = [a for a in ranked.tolist() if a not in pending and a not in self.observations]
        if self.params.revisit or len(fresh) < n:
            seen = set(fresh)
            fresh += [a for a in ranked.tolist() if a not in pending and a not in seen]
        chosen = np.array(fresh[:n], dtype=np.int64)
        extra = random_ids(self.space, self.rng, n - len(chosen))
        return np.concatenate([chosen, extra])

    def _candidates(self) -> np.ndarray:
        if self.space.size <= self.params.max_candidates:
            return np.arange(self.space.size, dtype=np.int64)
        pool = [distinct_random_ids(self.space, self.rng, self.params.max_candidates)]
        pool += [neighbours(self.space, a) for a in self.observations.ranked()[:10]]
        pool.append(np.array(self.observations.ids(), dtype=np.int64))
        return np.unique(np.concatenate(pool))

    def _tell(self, ids: np.ndarray, rewards: np.ndarray, info: dict[str, Any]) -> None:
        self.observations.add(ids, rewards)
        self._told_ids += ids.tolist()
        self._told_rewards += rewards.tolist()
        self._surrogate = None

    def surrogate(self) -> BayesianLinearRegression:
        """The surrogate fitted to every reward told so far (standardised)."""
        if self._surrogate is None:
            y = np.array(self._told_rewards)
            scale = y.std() if len(y) > 1 and y.std() > 0 else 1.0
            features = self.encoding.dense(np.array(self._told_ids, dtype=np.int64))
            self._surrogate = BayesianLinearRegression(features, (y - y.mean()) / scale)
        return self._surrogate
