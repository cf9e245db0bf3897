"""How well two results stores of one space agree on their architectures.

A store trained by this farm from the ``bionas-pub-myc`` manifests should rank the
architectures as the authors' own table does; a store rebuilt on another machine or
with more replicates should rank them as the one it replaces. :func:`compare_stores`
answers with, per quantity (loss and knowledge), the Spearman rank correlation of the
per-architecture medians of the two stores (over their done replicates, failed ones
included as recorded, as the oracle's gold standard takes them), and where each
store's best architecture ranks in the other.

Only architectures with a finite median in both stores count, so a store with some
architectures or replicates still missing can be compared (``n`` says how many).
``replicates_a`` / ``replicates_b`` restrict the medians to some replicates: comparing
one replicate of a store with the median of its other replicates (``compare_stores(s,
s, replicates_a=[0], replicates_b=range(1, 20))``) measures how far a single training
can agree with a median at all, the ceiling for a one-replicate rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import permutation_test, rankdata, spearmanr

from bionas_bench.errors import StoreError
from bionas_bench.store import Store, open_store

__all__ = ["Agreement", "compare_stores"]

#: Fewest architectures with a median in both stores for a correlation to mean anything.
MIN_ARCHS = 3
#: Up to this many architectures the p-value is exact (all n! pairings); above it, the
#: t-approximation, which says p = 0 for a perfect correlation of 3 (exactly 1/3).
EXACT_MAX = 8


@dataclass(frozen=True)
class Agreement:
    """Agreement of two stores on one quantity (``"loss"`` or ``"knowledge"``).

    ``rho``/``p_value``: Spearman correlation of the per-architecture medians and its
    two-sided p-value (exact for ``n <= EXACT_MAX``, else the t-approximation);
    ``best_a``/``best_b``: each store's best (lowest median) architecture;
    ``best_a_rank_in_b``: where ``best_a`` ranks in ``b`` (1 = best of ``n``, ties
    averaged), and the reverse.
    """

    quantity: str
    name_a: str
    name_b: str
    n: int
    rho: float
    p_value: float
    best_a: int
    best_b: int
    best_a_rank_in_b: float
    best_b_rank_in_a: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def compare_stores(
    a: Store | str | Path,
    b: Store | str | Path,
    *,
    loss: str = "val_loss",
    loss_b: str | None = None,
    knowledge: str | None = None,
    knowledge_b: str | None = None,
    replicates_a: Sequence[int] | None = None,
    replicates_b: Sequence[int] | None = None,
) -> list[Agreement]:
    """Agreement of ``a`` and ``b`` on median loss and, when both have one, median knowledge.

    ``loss`` names the loss metric of ``a`` (and of ``b`` unless ``loss_b``);
    ``knowledge``/``knowledge_b`` name the knowledge sets (``knowledge_b`` defaults to
    ``knowledge``, and either to its store's default set). ``replicates_a`` /
    ``replicates_b``: replicate indices whose done results form each store's medians
    (default: all). Raises :class:`StoreError` when the stores are
    of different spaces, a replicate index is out of range, or they share fewer than
    :data:`MIN_ARCHS` architectures with a median. ``a`` and ``b`` are stores or their
    paths.
    """
    a, b = (s if isinstance(s, Store) else open_store(s) for s in (a, b))
    if a.space.name != b.space.name or a.space.size != b.space.size:
        raise StoreError(
            f"stores {a.location} ({a.space.name}) and {b.location} ({b.space.name}) are of "
            "different model spaces; compare stores of one space"
        )
    pairs = [("loss", loss, loss_b or loss, a.metric, b.metric)]
    set_a = knowledge or a.default_knowledge_set
    set_b = knowledge_b or knowledge or b.default_knowledge_set
    if set_a is not None and set_b is not None:
        pairs.append(("knowledge", set_a, set_b, a.knowledge, b.knowledge))
    mask_a, mask_b = _done(a, replicates_a), _done(b, replicates_b)
    return [
        _agreement(
            quantity,
            name_a,
            name_b,
            a.arch_medians(get_a(name_a), mask_a),
            b.arch_medians(get_b(name_b), mask_b),
        )
        for quantity, name_a, name_b, get_a, get_b in pairs
    ]


def _done(store: Store, replicates: Sequence[int] | None) -> np.ndarray:
    """``store.done`` restricted to ``replicates`` (all when None)."""
    if replicates is None:
        return store.done
    chosen = np.asarray(replicates)
    if chosen.dtype.kind not in "iu":  # a cast would truncate 0.7 to 0 and read True as 1
        raise StoreError(
            f"replicates {chosen.tolist()} of store {store.location} must be integer indices "
            f"in 0..{store.num_replicates - 1}"
        )
    bad = chosen[(chosen < 0) | (chosen >= store.num_replicates)]
    if len(chosen) == 0 or len(bad):
        raise StoreError(
            f"replicates {chosen.tolist()} of store {store.location}: give indices in "
            f"0..{store.num_replicates - 1} (it has {store.num_replicates} replicates)"
        )
    keep = np.zeros(store.num_replicates, dtype=bool)
    keep[chosen] = True
    return store.done & keep[None, :]


def _exact_p_value(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of Spearman's rho from all ``n!`` pairings of ``x`` with ``y``
    (NaN, as scipy's, when either is constant)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    ry = rankdata(y)
    ry = (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())

    def rho(rx: np.ndarray, axis: int = -1) -> np.ndarray:
        centred = rx - rx.mean(axis=axis, keepdims=True)
        return (centred * ry).sum(axis=axis) / np.linalg.norm(centred, axis=axis)

    result = permutation_test(
        (rankdata(x),), rho, permutation_type="pairings", n_resamples=np.inf, vectorized=True
    )
    return float(result.pvalue)


def _agreement(quantity: str, name_a: str, name_b: str, med_a: np.ndarray, med_b: np.ndarray) -> Agreement:
    both = np.isfinite(med_a) & np.isfinite(med_b)
    n = int(both.sum())
    if n < MIN_ARCHS:
        raise StoreError(
            f"{n} architecture{'' if n == 1 else 's'} with a median {quantity} in both stores; "
            f"at least {MIN_ARCHS} are needed (train more architectures, or check --loss / --knowledge)"
        )
    ids = np.flatnonzero(both)
    x, y = med_a[both], med_b[both]
    rho, p_value = spearmanr(x, y)
    if n <= EXACT_MAX:
        p_value = _exact_p_value(x, y)
    rank_a, rank_b = rankdata(x), rankdata(y)
    best_a, best_b = int(np.argmin(x)), int(np.argmin(y))
    return Agreement(
        quantity=quantity,
        name_a=name_a,
        name_b=name_b,
        n=n,
        rho=float(rho),
        p_value=float(p_value),
        best_a=int(ids[best_a]),
        best_b=int(ids[best_b]),
        best_a_rank_in_b=float(rank_b[best_a]),
        best_b_rank_in_a=float(rank_a[best_b]),
    )
