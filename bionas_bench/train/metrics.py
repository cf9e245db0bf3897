"""Per-replicate classification metrics on held-out predictions (numpy, batched over replicates).

All functions take probabilities ``(R, N, T)`` and 0/1 labels ``(R, N, T)`` or
``(N, T)`` and return one value per replicate, the mean over labels of the per-label
metric (macro average). A label with a single class in the evaluated set has no
AUROC / AUPR and is left out of the mean (all labels single-class gives NaN). A
replicate with any non-finite probability (a diverged model) gets NaN from each.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

__all__ = ["accuracy", "auroc", "average_precision"]


def _broadcast(probs: NDArray, labels: NDArray) -> tuple[NDArray, NDArray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.broadcast_to(np.asarray(labels) > 0.5, probs.shape)
    return probs, labels


def auroc(probs: NDArray, labels: NDArray) -> NDArray[np.float64]:
    """Area under the ROC curve per replicate (Mann-Whitney form, ties count one half)."""
    probs, labels = _broadcast(probs, labels)
    ranks = rankdata(probs, axis=1)  # ranks along samples, ties averaged
    n_pos = labels.sum(axis=1).astype(np.float64)
    n_neg = labels.shape[1] - n_pos
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_label = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    per_label = np.where((n_pos > 0) & (n_neg > 0), per_label, np.nan)
    return _finite_only(probs, _nanmean_labels(per_label))


def average_precision(probs: NDArray, labels: NDArray) -> NDArray[np.float64]:
    """Area under the precision-recall curve per replicate (average precision, step form).

    ``AP = sum_k (recall_k - recall_{k-1}) * precision_k`` over the distinct score
    thresholds in decreasing order (tied scores enter together), as scikit-learn's
    ``average_precision_score`` computes it.
    """
    probs, labels = _broadcast(probs, labels)
    r, _, t = probs.shape
    out = np.full((r, t), np.nan)
    for i in range(r):
        for j in range(t):
            out[i, j] = _ap_one(probs[i, :, j], labels[i, :, j])
    return _finite_only(probs, _nanmean_labels(out))


def _ap_one(scores: NDArray, positive: NDArray) -> float:
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == positive.size:
        return np.nan
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order]
    tp = np.cumsum(y)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a threshold ends where the score changes
    tp = tp[last_of_tie].astype(np.float64)
    predicted = (np.flatnonzero(last_of_tie) + 1).astype(np.float64)
    precision = tp / predicted
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def accuracy(probs: NDArray, labels: NDArray) -> NDArray[np.float64]:
    """Fraction of correct calls at probability threshold 0.5, over samples and labels."""
    probs, labels = _broadcast(probs, labels)
    return _finite_only(probs, ((probs > 0.5) == labels).mean(axis=(1, 2)))


def _finite_only(probs: NDArray, values: NDArray) -> NDArray[np.float64]:
    """``values`` per replicate, NaN where the replicate has a non-finite probability."""
    return np.where(np.isfinite(probs).all(axis=(1, 2)), values, np.nan)


def _nanmean_labels(per_label: NDArray) -> NDArray[np.float64]:
    valid = np.isfinite(per_label)
    total = np.where(valid, per_label, 0.0).sum(axis=1)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
