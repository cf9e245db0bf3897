"""Scoring a sweep: ranks of what each run converged to, anytime curves, statistics.

Every score is measured against the **gold standard** of the store: per architecture
the median over its replicates of loss and knowledge, and of the objective
``median(loss) + lambda * median(knowledge)``, each ranked over all architectures
(1 = best, ties averaged). The sweep keeps that table per lambda (``gold.csv``), so
scoring needs nothing but the results folder.

* :func:`recommended` -- per run the recommended (converged) architecture and its ranks.
* :func:`summary` -- per controller and lambda, means with percentile-bootstrap
  confidence intervals (:func:`mean_ci`: ranks are bounded and skewed, so a t interval
  could reach below rank 1).
* :func:`trend_check` -- the paper's qualitative result per controller, with a paired
  Wilcoxon signed-rank test of loss rank against knowledge rank at the end lambdas.
* :func:`anytime` -- best-so-far objective rank and regret against samples or simulated
  GPU seconds; a run whose GPU-seconds budget has ended keeps its last in-budget value, so
  every point is a mean over all runs.
* :func:`compare` -- pairwise controller comparisons per lambda: two-sided Mann-Whitney U
  on the runs' objective ranks (runs are independent, samples unpaired), Holm-corrected
  over every test of the table (``statsmodels.stats.multitest.multipletests``).
* :func:`pareto_front`, :func:`hypervolume`, :func:`hypervolumes` -- the Pareto front of
  median loss vs median knowledge over all architectures and the hypervolume that each
  controller's lambda sweep reaches. The **reference point** is the worst point of the
  space (worst median loss, worst median knowledge): the largest median loss and the
  largest median knowledge over all architectures -- not the nadir of the front, which
  takes the worst values over the Pareto front only. Every architecture's point then
  counts (>= 0) and the true front's hypervolume is the most any set can reach;
  hypervolumes are also given as a fraction of the front's.
* :func:`per_step`, :func:`policy_curves` -- per-episode means over runs with a 95% band
  (mean +- t SD / sqrt(n), t of the runs at that step) after a trailing simple moving
  average of 10 steps, as in the paper's Figure 2 (the first 9 steps: the mean so far, as
  the original's figure code). The paper's band is mean +- 1.96 SD / sqrt(n) (numpy's SD,
  ddof 0, in the original's figure code); ours takes Student's t and the sample SD (ddof
  1), which at the paper's 100 runs is 1.7% wider and keeps its 95% coverage at the few
  runs of a demo.

A bad argument (a label or lambda not in the sweep, an unknown field or metric, a level
outside (0, 1), a path where the loaded results belong) is one :class:`SweepError`
naming the argument and the values it may take.
"""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bionas_bench.errors import SweepError
from bionas_bench.sweep import CellData, SweepResults

#: moving-average window of the paper's per-step figures
SMA_WINDOW = 10
#: resamples of the percentile bootstrap of :func:`mean_ci` (seeded: the same values give
#: the same interval)
BOOTSTRAP_RESAMPLES = 2000
#: significance level of :func:`trend_check`'s tests
TREND_ALPHA = 0.05
RANK_COLUMNS = ("loss_rank", "knowledge_rank", "objective_rank")
VALUE_COLUMNS = ("loss", "knowledge", "objective")
ANYTIME_AXES = ("samples", "gpu_seconds")


# ---------------------------------------------------------------------- argument checks
def _check_results(results: Any) -> None:
    """``results`` must be a loaded results folder; a path is the likeliest mistake."""
    if not isinstance(results, SweepResults):
        raise SweepError(
            "results must be a sweep's results as bionas_bench.load_results(folder) returns them, "
            f"got {type(results).__name__} {str(results)[:80]!r}"
        )


def _check_fraction(value: Any, name: str, example: str) -> None:
    """``value`` (a confidence or significance level) must lie strictly between 0 and 1."""
    if not (isinstance(value, numbers.Real) and 0 < value < 1):
        raise SweepError(f"{name} must be a number in (0, 1), e.g. {example}, got {value!r}")


def _check_count(value: Any, name: str, what: str) -> None:
    """``value`` must be a whole number >= 1."""
    if not (isinstance(value, numbers.Integral) and value >= 1):
        raise SweepError(f"{name} must be a whole number >= 1 ({what}), got {value!r}")


def _check_choice(value: Any, name: str, valid: Any, what: str) -> None:
    """``value`` must be one of ``valid``; the error lists them."""
    if value not in valid:
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in valid)
        raise SweepError(f"{name} {value!r} is not {what}; use one of: {shown}")


def _check_lam(results: SweepResults, lam: float) -> None:
    """``lam`` must be one of the sweep's lambdas (looked up by value)."""
    _check_results(results)
    _check_choice(lam, "lam", results.lambdas, f"a lambda of the sweep in {results.path}")


def _checked_cell(results: SweepResults, label: str, lam: float) -> CellData:
    """The cell of ``label`` at ``lam`` (:meth:`SweepResults.cell` names an unknown one)."""
    _check_results(results)
    return results.cell(label, lam)


# ---------------------------------------------------------------------- helpers
def gold_at(results: SweepResults, lam: float) -> pd.DataFrame:
    """The gold standard at ``lam``, indexed by architecture id."""
    _check_lam(results, lam)
    gold = results.gold
    return gold[gold["lam"] == lam].set_index("arch").sort_index()


def mean_ci(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its two-sided percentile-bootstrap confidence interval (NaNs dropped;
    NaN when n < 1, the interval NaN when n < 2). See :func:`mean_ci_columns`."""
    mean, lo, hi = mean_ci_columns(np.asarray(values, dtype=np.float64).reshape(-1, 1), level)
    return float(mean[0]), float(lo[0]), float(hi[0])


def mean_ci_columns(values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values (n, k)``: the mean of its finite entries and the percentile
    bootstrap interval of that mean (:data:`BOOTSTRAP_RESAMPLES` resamples of the rows,
    shared by the columns, from a fixed seed). Unlike a t interval it stays within the
    values' range, which matters for ranks (bounded, skewed); its coverage is close to
    nominal for the 20-100 runs of a sweep cell."""
    _check_fraction(level, "level", "0.95 for a 95% interval")
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    count = finite.sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.where(count > 0, np.nansum(x, axis=0) / np.maximum(count, 1), np.nan)
        rows = np.random.default_rng(0).integers(0, x.shape[0], size=(BOOTSTRAP_RESAMPLES, x.shape[0]))
        sample = x[rows]  # (resamples, n, k)
        means = np.nanmean(sample, axis=1)  # a resample of only NaNs gives NaN: left out below
        alpha = 1.0 - level
        lo, hi = np.nanquantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    small = count < 2
    return mean, np.where(small, np.nan, lo), np.where(small, np.nan, hi)


def sma(values: np.ndarray, window: int = SMA_WINDOW, axis: int = -1) -> np.ndarray:
    """Trailing simple moving average over ``axis``: point ``t`` (0-based) is the mean of
    the last ``window`` values up to it, and of all ``t + 1`` values before ``window`` are
    reached -- the head of the original BioNAS figure code (its ``sma``: cumulative means
    first), so a curve starts at the first step. A NaN makes its step and every later one
    NaN (meant for the steps after a run's budget ended)."""
    _check_count(window, "window", "the moving average's length in steps")
    x = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    steps = x.shape[-1]
    c = np.cumsum(np.concatenate([np.zeros((*x.shape[:-1], 1)), x], axis=-1), axis=-1)
    end = np.arange(1, steps + 1)
    start = np.maximum(end - window, 0)
    out = (c[..., end] - c[..., start]) / (end - start)
    return np.moveaxis(out, -1, axis)


def _cells(results: SweepResults) -> list[tuple[str, float, CellData]]:
    _check_results(results)
    return [
        (label, lam, results.cell(label, lam))
        for label in results.labels
        for lam in results.lambdas
        if results.has_cell(label, lam)
    ]


# ---------------------------------------------------------------------- converged ranks
def recommended(results: SweepResults) -> pd.DataFrame:
    """One row per run: controller, lambda, run, recommended arch, its medians and ranks."""
    frames = []
    for label, lam, cell in _cells(results):
        runs = cell.runs
        frame = pd.DataFrame(
            {
                "controller": label,
                "lam": lam,
                "run": np.arange(len(runs["recommended"])),
                "arch": runs["recommended"],
                **{c: runs[c] for c in (*VALUE_COLUMNS, *RANK_COLUMNS)},
            }
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    names = results.gold.drop_duplicates("arch").set_index("arch")["arch_name"]
    out.insert(4, "arch_name", names.reindex(out["arch"]).to_numpy())
    return out


def summary(results: SweepResults, level: float = 0.95) -> pd.DataFrame:
    """Per controller and lambda: n runs, mean with CI of every rank and median value, and
    the most frequent recommended architecture (see :func:`_modes`).

    ``unranked`` counts the runs whose recommended architecture has no gold-standard
    value (no usable replicate in the store: possible on a partial store); the means
    are over the other runs.
    """
    _check_fraction(level, "level", "0.95 for 95% intervals")
    rec = recommended(results)
    rows = []
    for (label, lam), group in rec.groupby(["controller", "lam"], sort=False):
        row: dict[str, Any] = {
            "controller": label,
            "lam": lam,
            "n": len(group),
            "unranked": int(group["objective_rank"].isna().sum()),
        }
        for column in (*RANK_COLUMNS, *VALUE_COLUMNS):
            mean, lo, hi = mean_ci(group[column], level)
            row[column] = mean
            row[f"{column}_lo"] = lo
            row[f"{column}_hi"] = hi
        row.update(_modes(group["arch"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _modes(archs: pd.Series) -> dict[str, Any]:
    """The most frequent recommended architecture of a cell's runs: ``modal_arch`` (the
    smallest id when several tie), ``modal_share`` (its share of runs), and ``modal_archs``
    (every tied id, space-separated, so that a tie is not passed off as one winner)."""
    tied = sorted(int(a) for a in archs.mode())
    return {
        "modal_arch": tied[0],
        "modal_share": float((archs == tied[0]).mean()),
        "modal_archs": " ".join(str(a) for a in tied),
    }


@dataclass(frozen=True)
class TrendCheck:
    """The paper's qualitative result for one controller: the direction of the mean ranks
    at the smallest and largest lambda, and whether each is significant (two-sided paired
    Wilcoxon signed-rank test of each run's loss rank against its knowledge rank)."""

    controller: str
    small_lam: float
    large_lam: float
    small_ok: bool  # at the smallest lambda: mean loss rank < mean knowledge rank
    large_ok: bool  # at the largest lambda: mean knowledge rank < mean loss rank
    small_p: float = math.nan  # p of the test at the smallest lambda
    large_p: float = math.nan

    @property
    def significant(self) -> bool:
        """Both ends' differences significant at :data:`TREND_ALPHA`."""
        return bool(self.small_p < TREND_ALPHA and self.large_p < TREND_ALPHA)

    @property
    def reproduced(self) -> bool:
        """Both directions as in the paper, and both significant."""
        return self.small_ok and self.large_ok and self.significant

    @property
    def verdict(self) -> str:
        if self.reproduced:
            return "reproduced"
        if self.small_ok and self.large_ok:
            return "same direction, not significant"
        return "not reproduced"


def trend_check(results: SweepResults) -> list[TrendCheck]:
    """Per controller: low loss / high knowledge rank at the smallest lambda, the reverse
    at the largest, over the runs' recommended architectures."""
    rec = recommended(results)
    out = []
    for label, group in rec.groupby("controller", sort=False):
        lams = sorted(group["lam"].unique())
        ends = [group[group["lam"] == lam] for lam in (lams[0], lams[-1])]
        diffs = [(g["loss_rank"] - g["knowledge_rank"]).dropna().to_numpy() for g in ends]
        out.append(
            TrendCheck(
                str(label),
                float(lams[0]),
                float(lams[-1]),
                bool(diffs[0].size and diffs[0].mean() < 0),
                bool(diffs[1].size and diffs[1].mean() > 0),
                _signed_rank_p(diffs[0]),
                _signed_rank_p(diffs[1]),
            )
        )
    return out


def _signed_rank_p(diff: np.ndarray) -> float:
    """Two-sided p of the Wilcoxon signed-rank test that ``diff`` is centred on 0 (1 when
    every difference is 0, NaN with fewer than 2 runs)."""
    if diff.size < 2:
        return math.nan
    if not np.any(diff):
        return 1.0
    return float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)


# ---------------------------------------------------------------------- anytime curves
def _flat(cell: CellData, name: str) -> np.ndarray:
    """A per-step array ``[run, episode, slot]`` as ``[run, sample]``."""
    values = cell.steps[name]
    return values.reshape(values.shape[0], -1)


def _inside_samples(cell: CellData) -> np.ndarray:
    """Per run and sample: whether the sample's episode started inside the run's budget."""
    slots = cell.steps["arch"].shape[2]
    return np.repeat(cell.within_budget, slots, axis=1)


def best_so_far(cell: CellData, gold: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per run and sample: the best gold objective seen so far and its rank (NaN outside budget)."""
    arch = _flat(cell, "arch")
    objective = gold["objective"].to_numpy()[arch]
    rank = gold["objective_rank"].to_numpy()[arch]
    objective = np.where(np.isfinite(objective), objective, np.inf)
    best_idx = _running_argmin(objective)
    rows = np.arange(arch.shape[0])[:, None]
    best_obj = objective[rows, best_idx]
    best_rank = rank[rows, best_idx]
    inside = _inside_samples(cell)
    return np.where(inside, best_obj, np.nan), np.where(inside, best_rank, np.nan)


def carry_last_inside(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``values [run, sample]`` with each run's samples after its budget ended replaced by
    its last in-budget value (all NaN for a run with none inside).

    A run that has stopped keeps the best it found, so an anytime curve averages all runs
    at every point instead of the shrinking set of runs still inside their budget (the
    runs that spend slowly, whose mean best-so-far could then rise). ``inside`` is a
    prefix of each run's samples: ``within_budget`` turns False for good once a run has
    spent its budget.
    """
    last = inside.sum(axis=1) - 1
    return _take_or_nan(values, np.minimum(np.arange(values.shape[1]), last[:, None]))


def _running_argmin(values: np.ndarray) -> np.ndarray:
    """Index of the running minimum along the last axis (first occurrence wins)."""
    running = np.minimum.accumulate(values, axis=-1)
    is_new = np.ones(values.shape, dtype=bool)
    is_new[..., 1:] = values[..., 1:] < running[..., :-1]
    idx = np.where(is_new, np.arange(values.shape[-1]), 0)
    return np.maximum.accumulate(idx, axis=-1)


def anytime(
    results: SweepResults, axis: str = "samples", points: int = 60, level: float = 0.95
) -> pd.DataFrame:
    """Anytime curves per controller and lambda against ``axis`` (samples or gpu_seconds).

    Columns: controller, lam, x, n (runs with a value at x), rank (mean best-so-far
    objective rank) with CI, regret (best-so-far objective minus the best objective of
    the space) with CI, and regret_norm (regret over the objective's range, 0..1).

    Under a GPU-seconds budget a run keeps, once its budget has ended, its last in-budget
    best-so-far value (:func:`carry_last_inside`), on both axes: every point averages all
    runs. Against samples the curve runs from 1 to the most samples any run took inside
    its budget (the whole budget's samples when none ends early). Against GPU seconds the
    best-so-far value at time t is that of the last sample whose cumulative in-budget
    simulated cost is <= t, from the time every run has a sample (so every point averages
    all runs) to the runs' median in-budget total; cells whose store records no cost are
    skipped.
    """
    _check_choice(axis, "axis", ANYTIME_AXES, "an anytime axis")
    _check_count(points, "points", "how many x values per curve")
    _check_fraction(level, "level", "0.95 for 95% intervals")
    rows = []
    for label, lam, cell in _cells(results):
        gold = gold_at(results, lam)
        inside = _inside_samples(cell)
        best_obj, best_rank = (carry_last_inside(v, inside) for v in best_so_far(cell, gold))
        finite = gold["objective"][np.isfinite(gold["objective"])]
        regret = best_obj - finite.min()
        regret_norm = regret / max(finite.max() - finite.min(), 1e-300)
        if axis == "samples":
            grid = _sample_grid(int(inside.sum(axis=1).max()), points)
            curves = {"rank": best_rank[:, grid - 1], "regret": regret[:, grid - 1]}
            curves["regret_norm"] = regret_norm[:, grid - 1]
            x = grid.astype(np.float64)
        else:
            # out-of-budget samples cost nothing here: each run's clock stops at its in-budget total
            charged = np.where(inside, np.nan_to_num(_flat(cell, "cost"), nan=np.nan), 0.0)
            cost = np.cumsum(charged, axis=1)
            if not np.isfinite(cost).all() or cost[:, -1].max() <= 0:
                continue
            # from the time every run has its first sample on: each point is then a mean over
            # all runs, so the mean best-so-far cannot rise (a run whose first, cheap sample
            # was good used to stand alone at the start, and runs joining later raised it)
            start = float(cost[:, 0].max())
            x = np.linspace(start, max(float(np.median(cost[:, -1])), start), points)
            # side="right": on a stopped run's flat clock, its last sample (the carried value)
            idx = np.stack([np.searchsorted(c, x, side="right") - 1 for c in cost])
            take = {"rank": best_rank, "regret": regret, "regret_norm": regret_norm}
            curves = {k: _take_or_nan(v, idx) for k, v in take.items()}
        for j, xj in enumerate(x):
            row: dict[str, Any] = {"controller": label, "lam": lam, "x": xj}
            row["n"] = int(np.isfinite(curves["rank"][:, j]).sum())
            rows.append(row)
        for name, values in curves.items():
            mean, lo, hi = mean_ci_columns(values, level)
            for j, row in enumerate(rows[len(rows) - len(x) :]):
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = mean[j], lo[j], hi[j]
    return pd.DataFrame(rows)


def _sample_grid(total: int, points: int) -> np.ndarray:
    """About ``points`` sample counts from 1 to ``total``, log-spaced, always with both ends."""
    grid = np.unique(np.round(np.geomspace(1, total, num=min(points, total))).astype(np.int64))
    return np.unique(np.concatenate([grid, [total]]))


def _take_or_nan(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    rows = np.arange(values.shape[0])[:, None]
    out = values[rows, np.clip(idx, 0, None)]
    return np.where(idx >= 0, out, np.nan)


# ---------------------------------------------------------------------- comparisons
def compare(results: SweepResults, metric: str = "objective_rank", alpha: float = 0.05) -> pd.DataFrame:
    """Pairwise controller comparisons per lambda on ``metric`` of the recommended archs.

    Two-sided Mann-Whitney U test (the runs of two controllers are independent samples
    of unknown, often tied and skewed, distributions); p-values Holm-corrected over every
    row of the table. ``p_a_better`` is the common-language effect size: the probability
    that a random run of ``a`` has a lower (better) value than one of ``b``, ties half.
    Runs without a value (a recommendation without gold standard) are left out; ``n_a``
    and ``n_b`` are the runs compared.
    """
    from statsmodels.stats.multitest import multipletests

    _check_choice(metric, "metric", (*RANK_COLUMNS, *VALUE_COLUMNS), "a score of the recommended archs")
    _check_fraction(alpha, "alpha", "0.05 for a 5% family-wise error rate")
    rec = recommended(results)
    rows = []
    for lam in results.lambdas:
        at = rec[rec["lam"] == lam]
        labels = [label for label in results.labels if (at["controller"] == label).any()]
        for a, b in itertools.combinations(labels, 2):
            xa, xb = (_finite(at.loc[at["controller"] == c, metric]) for c in (a, b))
            if not (xa.size and xb.size):
                continue
            u, p = _mann_whitney(xa, xb)
            rows.append(
                {
                    "lam": lam,
                    "a": a,
                    "b": b,
                    "n_a": xa.size,
                    "n_b": xb.size,
                    "mean_a": float(np.mean(xa)),
                    "mean_b": float(np.mean(xb)),
                    "U": u,
                    "p": p,
                    "p_a_better": 1.0 - u / (xa.size * xb.size),
                }
            )
    columns = ["lam", "a", "b", "n_a", "n_b", "mean_a", "mean_b", "U", "p", "p_a_better"]
    table = pd.DataFrame(rows, columns=columns)
    if len(table):
        reject, p_holm, _, _ = multipletests(table["p"].to_numpy(), alpha=alpha, method="holm")
        table["p_holm"] = p_holm
        table["significant"] = reject
    else:
        table["p_holm"] = []
        table["significant"] = []
    return table


def _finite(values: Any) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def _mann_whitney(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float]:
    """U statistic of ``xa`` and two-sided p; p = 1 when every value is tied."""
    if np.unique(np.concatenate([xa, xb])).size < 2:
        return len(xa) * len(xb) / 2.0, 1.0
    res = stats.mannwhitneyu(xa, xb, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


# ---------------------------------------------------------------------- Pareto front
def pareto_front(loss: Any, knowledge: Any) -> np.ndarray:
    """Mask of the points not dominated in (loss, knowledge), both minimised.

    A point is dominated when another is <= in both and < in one; NaN points never count.
    """
    x = np.asarray(loss, dtype=np.float64)
    y = np.asarray(knowledge, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    mask = np.zeros(x.shape, dtype=bool)
    idx = np.flatnonzero(ok)
    for i in idx:
        dominated = (x[idx] <= x[i]) & (y[idx] <= y[i]) & ((x[idx] < x[i]) | (y[idx] < y[i]))
        mask[i] = not dominated.any()
    return mask


def hypervolume(loss: Any, knowledge: Any, reference: tuple[float, float]) -> float:
    """Area dominated by the points and bounded by ``reference`` (both objectives minimised)."""
    x = np.asarray(loss, dtype=np.float64).ravel()
    y = np.asarray(knowledge, dtype=np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y) & (x < reference[0]) & (y < reference[1])
    x, y = x[keep], y[keep]
    if x.size == 0:
        return 0.0
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    area, best_y = 0.0, reference[1]
    xs = np.append(x, reference[0])
    for i in range(x.size):
        best_y = min(best_y, y[i])
        area += (xs[i + 1] - x[i]) * (reference[1] - best_y)
    return float(area)


def reference_point(results: SweepResults) -> tuple[float, float]:
    """The worst point of the space (worst median loss, worst median knowledge): the largest
    median loss and the largest median knowledge of any architecture. It bounds every
    architecture's point, unlike the nadir of the Pareto front (the worst values on the front)."""
    _check_results(results)
    gold = results.gold.drop_duplicates("arch")
    return float(np.nanmax(gold["loss"])), float(np.nanmax(gold["knowledge"]))


def front_table(results: SweepResults) -> pd.DataFrame:
    """Every architecture's median loss and knowledge, and whether it is on the front."""
    _check_results(results)
    gold = results.gold.drop_duplicates("arch")[["arch", "arch_name", "loss", "knowledge"]].copy()
    gold["on_front"] = pareto_front(gold["loss"], gold["knowledge"])
    return gold.reset_index(drop=True)


def hypervolumes(results: SweepResults, level: float = 0.95) -> pd.DataFrame:
    """Per controller: the hypervolume its lambda sweep reaches.

    For run index r the set is {recommended arch of run r at every lambda} (one point
    per lambda); the table gives the mean over runs with its CI, the hypervolume of the
    union of every run's recommendations, and both as fractions of the true front's.
    """
    _check_fraction(level, "level", "0.95 for 95% intervals")
    ref = reference_point(results)
    front = front_table(results)
    on = front[front["on_front"]]
    front_hv = hypervolume(on["loss"], on["knowledge"], ref)
    rec = recommended(results)
    rows = []
    for label in results.labels:
        mine = rec[rec["controller"] == label]
        if mine.empty:
            continue
        per_run = [hypervolume(g["loss"], g["knowledge"], ref) for _, g in mine.groupby("run")]
        mean, lo, hi = mean_ci(per_run, level)
        union = hypervolume(mine["loss"], mine["knowledge"], ref)
        rows.append(
            {
                "controller": label,
                "runs": len(per_run),
                "lambdas": int(mine["lam"].nunique()),
                "hv_mean": mean,
                "hv_lo": lo,
                "hv_hi": hi,
                "hv_union": union,
                "hv_front": front_hv,
                "fraction_mean": mean / front_hv if front_hv > 0 else math.nan,
                "fraction_union": union / front_hv if front_hv > 0 else math.nan,
                "ref_loss": ref[0],
                "ref_knowledge": ref[1],
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- per-step curves
def band(per_run: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs (axis 0) and the 95% band mean +- t SD / sqrt(n), t with n - 1 degrees
    of freedom for the n runs at that step (NaN for one run)."""
    n = np.isfinite(per_run).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(per_run, axis=0) if per_run.size else np.array([])
        sd = np.nanstd(per_run, axis=0, ddof=1) if per_run.shape[0] > 1 else np.full_like(mean, np.nan)
        t = stats.t.ppf(0.975, np.maximum(n - 1, 1))
        half = t * sd / np.sqrt(np.maximum(n, 1))
    return mean, mean - half, mean + half


def per_step(
    results: SweepResults, label: str, lam: float, field: str, window: int = SMA_WINDOW
) -> pd.DataFrame:
    """Per-episode ``field`` (e.g. loss) averaged over runs: SMA per run, then mean and band.

    Each run's per-episode value is the mean over the architectures of that episode;
    steps outside a run's GPU-seconds budget are left out.
    """
    cell = _checked_cell(results, label, lam)
    _check_choice(field, "field", sorted(cell.steps), "recorded per step")
    per_run = np.where(cell.within_budget, cell.steps[field].mean(axis=2), np.nan)
    smooth = sma(per_run, window, axis=1)
    mean, lo, hi = band(smooth)
    return pd.DataFrame(
        {
            "controller": label,
            "lam": lam,
            "episode": np.arange(1, per_run.shape[1] + 1),
            "mean": mean,
            "lo": lo,
            "hi": hi,
        }
    )


def policy_curves(results: SweepResults, label: str, lam: float, window: int = SMA_WINDOW) -> pd.DataFrame:
    """Per layer and choice: the choice probability over episodes, averaged over runs, SMA;
    episodes outside a run's GPU-seconds budget are left out (as in :func:`per_step`)."""
    cell = _checked_cell(results, label, lam)
    # checked here as well as in sma: a controller without a policy never reaches sma
    _check_count(window, "window", "the moving average's length in steps")
    space_layers = layer_choices(results)
    frames = []
    for layer, probs in cell.policy.items():
        inside = np.where(cell.within_budget[:, :, None], probs, np.nan)
        smooth = sma(inside, window, axis=1)
        mean, lo, hi = band(smooth)
        names = space_layers.get(layer, [str(i) for i in range(probs.shape[2])])
        for c in range(probs.shape[2]):
            frames.append(
                pd.DataFrame(
                    {
                        "controller": label,
                        "lam": lam,
                        "layer": layer,
                        "choice": names[c],
                        "episode": np.arange(1, probs.shape[1] + 1),
                        "mean": mean[:, c],
                        "lo": lo[:, c],
                        "hi": hi[:, c],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def layer_choices(results: SweepResults) -> dict[str, list[str]]:
    """Choice names per layer of the sweep's space (recorded in sweep.json)."""
    _check_results(results)
    layers = results.meta.get("space", {}).get("layers", [])
    return {layer["name"]: list(layer["choices"]) for layer in layers}
