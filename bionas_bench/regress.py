"""Regression testing of search behaviour: baselines and their statistical comparison.

A user who puts this benchmark in CI wants to know, before a change merges, whether it
made their controller search *worse*. :func:`record` runs a (small) sweep and stores,
per controller x lambda **cell**, every run's score and a summary of its distribution;
:func:`check` reruns the sweep and compares each cell with the baseline.

Metrics per run (lower is better for every one of them):

=================  ==========================================================  =======
``objective_rank``  gold-standard rank of the recommended architecture's        gated
                    objective median(loss) + lambda * median(K) (1 = best)
``anytime_auc``     area under the best-so-far objective-rank curve over the    gated
                    run's samples, divided by their number (the mean
                    best-so-far rank: low when a run finds good archs early)
``final_objective`` the gold median objective of the recommended arch           info
``loss_rank``       gold rank of its median loss                                info
``knowledge_rank``  gold rank of its median knowledge K                         info
=================  ==========================================================  =======

Only the *gated* metrics can fail a check. ``final_objective`` is a monotone function
of ``objective_rank`` within a cell, so a rank test on it gives the same p-value and
gating it too would only cost power; ``loss_rank`` and ``knowledge_rank`` trade off
against each other at a fixed lambda (a search that gives up loss rank for knowledge
rank at a mid lambda is not worse), so they are reported, not gated.

The test (why each piece): runs are independent and their scores are discrete,
skewed and often tied (many runs converge to the same architecture), so each cell and
gated metric gets a **one-sided Mann-Whitney U test** of "now is stochastically larger
(worse) than the baseline"; the p-values of all cells and gated metrics are **Holm**
corrected together (``statsmodels.stats.multitest.multipletests``), so the chance that
an unchanged controller fails the whole check stays <= alpha. The **effect size** is the
common-language effect ``P(now worse than baseline)`` (0.5 = no change, ties count
half). The **power** is stated as the minimum detectable effect: the shift of the
metric that the test detects with probability 0.8 at the Holm threshold of a single
regressed test (alpha / m), from ``statsmodels.stats.power.NormalIndPower`` with the
runs discounted by the asymptotic relative efficiency of the U test (3 / pi), in units
of the baseline's standard deviation.

Besides the statistics, a check fails when:

* the **inputs** changed (config text, store manifests and provenance, the gold
  standard the oracle serves, the space) -- the comparison would not be like for like;
  ``allow_input_change`` compares anyway;
* ``exact`` is set and a cell's results are not **bit-identical** to the baseline's for
  the same seeds (the determinism check), or rerunning a cell in the same process gives
  different results (nondeterminism, e.g. a controller that ignores its seed);
* ``deterministic`` is set (without ``exact``) and rerunning a cell in the same process
  gives different results: the portable half of ``exact``, for controllers whose
  compiled float32 kernels round differently on CPUs of other vector widths, so that
  their bits match the baseline only on the machine that recorded it (``ppo``,
  ``reinforce``, ``diverse_pg``: see ``regress-ppo.toml``);
* every run of a cell asked the same first architectures while the baseline's runs
  differed: the controller ignores its seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bionas_bench.errors import RegressError
from bionas_bench.manifests import parse_manifest

BASELINE_FORMAT = "bionas-bench-regress-baseline/1"
#: metrics that can fail a check (lower is better for all)
GATED_METRICS = ("objective_rank", "anytime_auc")
#: metrics that are recorded and reported but never fail a check
INFO_METRICS = ("final_objective", "loss_rank", "knowledge_rank")
METRICS = (*GATED_METRICS, *INFO_METRICS)
METRIC_DESCRIPTIONS = {
    "objective_rank": "gold rank of the recommended arch's objective (1 = best)",
    "anytime_auc": "mean best-so-far objective rank over the run's samples",
    "final_objective": "gold median objective of the recommended arch",
    "loss_rank": "gold rank of the recommended arch's median loss",
    "knowledge_rank": "gold rank of the recommended arch's median knowledge",
}
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: power at which the minimum detectable effect is stated
POWER = 0.8
#: asymptotic relative efficiency of the Mann-Whitney U test to the t test (normal data)
MWU_ARE = 3.0 / math.pi


# ---------------------------------------------------------------------- scores
@dataclass(frozen=True)
class CellScores:
    """Per-run scores of one cell and the fingerprints used by the exact checks.

    ``digest`` is the sha256 of every array the cell recorded (steps, incumbents,
    budget mask, policy, per-run fields); ``first_ask_distinct`` counts the distinct
    first-episode asks over runs (1 = every run asked the same: the seed is ignored).
    """

    key: str
    label: str
    controller: str
    lam: float
    values: dict[str, np.ndarray]
    digest: str
    first_ask_distinct: int

    @property
    def runs(self) -> int:
        return len(self.values["objective_rank"])


@dataclass(frozen=True)
class SweepScores:
    """Scores of one sweep run: per cell, plus the inputs it ran on."""

    cells: dict[str, CellScores]
    inputs: dict[str, Any]
    config_text: str
    config_name: str


def cell_digest(data: Any) -> str:
    """sha256 of every array of a cell (name, dtype, shape and bytes), in a fixed order."""
    digest = hashlib.sha256()
    groups = {
        "steps": data.steps,
        "policy": data.policy,
        "runs": data.runs,
        "top": {"incumbent": data.incumbent, "within_budget": data.within_budget},
    }
    for group in sorted(groups):
        for name in sorted(groups[group]):
            value = np.ascontiguousarray(groups[group][name])
            digest.update(f"{group}/{name}:{value.dtype.str}:{value.shape}".encode())
            digest.update(value.tobytes())
    return digest.hexdigest()


def run_values(data: Any, gold: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` per run of one cell (``gold`` indexed by arch)."""
    from bionas_bench.scoring import best_so_far

    _, best_rank = best_so_far(data, gold)
    inside = np.isfinite(best_rank)
    counts = inside.sum(axis=1)
    auc = np.where(counts > 0, np.where(inside, best_rank, 0.0).sum(axis=1) / np.maximum(counts, 1), np.nan)
    return {
        "objective_rank": np.asarray(data.runs["objective_rank"], dtype=np.float64),
        "anytime_auc": auc.astype(np.float64),
        "final_objective": np.asarray(data.runs["objective"], dtype=np.float64),
        "loss_rank": np.asarray(data.runs["loss_rank"], dtype=np.float64),
        "knowledge_rank": np.asarray(data.runs["knowledge_rank"], dtype=np.float64),
    }


def first_ask_distinct(data: Any) -> int:
    """Number of distinct first-episode asks over the runs of a cell."""
    first = np.asarray(data.steps["arch"])[:, 0, :]
    return len({tuple(row) for row in first.tolist()})


def score_results(results: Any) -> SweepScores:
    """Scores of every finished cell of a results folder read by ``load_results``."""
    from bionas_bench.scoring import gold_at

    cells = {}
    for key, (attrs, data) in results.cells.items():
        lam = float(attrs["lam"])
        cells[key] = CellScores(
            key=key,
            label=str(attrs["label"]),
            controller=str(attrs["controller"]),
            lam=lam,
            values=run_values(data, gold_at(results, lam)),
            digest=cell_digest(data),
            first_ask_distinct=first_ask_distinct(data),
        )
    return SweepScores(
        cells=cells,
        inputs=input_hashes(results),
        config_text=results.config.text,
        config_name=results.config.name,
    )


def input_hashes(results: Any) -> dict[str, Any]:
    """What a sweep ran on: config text, store hashes, space, and the gold standard served.

    The gold standard's hash covers the numbers the oracle's ranks come from, so a
    store whose data changed is caught even when its manifests did not.
    """
    meta = results.meta
    gold_csv = results.gold.to_csv(index=False, float_format="%.17g")
    return {
        "config_sha256": meta["config"]["sha256"],
        "store": meta["store"]["hashes"],
        "space_sha256": meta["space"]["sha256"],
        "gold_sha256": hashlib.sha256(gold_csv.encode()).hexdigest(),
    }


# ---------------------------------------------------------------------- running
def with_seed(config: Any, seed: int) -> Any:
    """The sweep config with ``[sweep].seed`` replaced (text rewritten, so hashes follow)."""
    from bionas_bench.sweep import parse_sweep_config

    match = re.search(r"(?ms)^\[sweep\]\s*$.*?^(\s*seed\s*=\s*)(\d+)", config.text)
    if match is None:
        raise RegressError(
            f"sweep config {config.path or config.name}: no 'seed = N' line under [sweep] to vary; "
            "write the seed on its own line"
        )
    text = config.text[: match.start(2)] + str(int(seed)) + config.text[match.end(2) :]
    path = Path(config.path) if config.path else Path(f"{config.name}.toml")
    return parse_sweep_config(parse_manifest("sweeps", text, path))


def load_config(config: Any) -> Any:
    """A :class:`~bionas_bench.sweep.SweepConfig` from a config, shipped name or path."""
    from bionas_bench.sweep import SweepConfig, load_sweep_config

    return config if isinstance(config, SweepConfig) else load_sweep_config(config)


def run_scores(
    config: Any,
    store: str | Path | None = None,
    scheduler: str = "sync",
    keep: str | Path | None = None,
    progress: Callable[[Any], None] | None = None,
) -> tuple[SweepScores, Any]:
    """Run the sweep ``config`` (into ``keep`` or a temporary folder) and score it;
    ``progress`` is :func:`~bionas_bench.sweep.run_sweep`'s.

    Returns the scores and the loaded results (their arrays are in memory, so a
    temporary folder is removed before returning).
    """
    from bionas_bench.sweep import load_results, run_sweep

    config = load_config(config)
    out = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="bionas-regress-"))
    try:
        run_sweep(config, out, scheduler=scheduler, store=store, progress=progress)
        results = load_results(out)
        return score_results(results), results
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)


def simulate_scores(config: Any, store: str | Path | None = None) -> SweepScores:
    """Scores of ``config`` computed in memory, cell by cell, without a results folder.

    The same cells and seeds as :func:`run_scores` (it calls the sweep's own
    ``simulate_cell``), minus the Zarr round trip: used for the many reruns of
    :func:`false_alarm_rate`. Its ``inputs`` hold only the config hash.
    """
    from bionas_bench.sweep import gold_table, make_oracle, open_cached_store, resolve_store, simulate_cell

    config = load_config(config)
    location = str(store) if store is not None else resolve_store(config.store)
    opened = open_cached_store(location)
    golds: dict[float, pd.DataFrame] = {}
    cells = {}
    for cell in config.cells():
        if cell.lam not in golds:
            golds[cell.lam] = gold_table(make_oracle(opened, cell.lam, 0, config.oracle)).set_index("arch")
        data = simulate_cell(config, cell, opened)
        cells[cell.key] = CellScores(
            key=cell.key,
            label=cell.controller.label,
            controller=cell.controller.name,
            lam=cell.lam,
            values=run_values(data, golds[cell.lam]),
            digest=cell_digest(data),
            first_ask_distinct=first_ask_distinct(data),
        )
    return SweepScores(
        cells=cells,
        inputs={"config_sha256": config.sha256},
        config_text=config.text,
        config_name=config.name,
    )


# ---------------------------------------------------------------------- baselines
def summarize(values: np.ndarray) -> dict[str, Any]:
    """Distribution summary of one metric's per-run values (NaNs dropped)."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return {"n": 0}
    quantiles = np.quantile(finite, QUANTILES)
    out: dict[str, Any] = {
        "n": int(finite.size),
        "mean": float(finite.mean()),
        "sd": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "median": float(np.median(finite)),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }
    out.update({f"q{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)})
    return out


def baseline_document(scores: SweepScores) -> dict[str, Any]:
    """The JSON baseline of a scored sweep (no timestamps: the same run gives the same file)."""
    from bionas_bench import __version__

    cells = []
    for key in sorted(scores.cells):
        cell = scores.cells[key]
        cells.append(
            {
                "key": key,
                "label": cell.label,
                "controller": cell.controller,
                "lam": cell.lam,
                "runs": cell.runs,
                "digest": cell.digest,
                "first_ask_distinct": cell.first_ask_distinct,
                "metrics": {
                    m: {"values": [float(v) for v in cell.values[m]], **summarize(cell.values[m])}
                    for m in METRICS
                },
            }
        )
    return {
        "format": BASELINE_FORMAT,
        "package_version": __version__,
        "config": {
            "name": scores.config_name,
            "sha256": scores.inputs["config_sha256"],
            "text": scores.config_text,
        },
        "inputs": scores.inputs,
        "metrics": {
            m: {"gated": m in GATED_METRICS, "better": "lower", "what": METRIC_DESCRIPTIONS[m]}
            for m in METRICS
        },
        "cells": cells,
    }


def record(
    config: Any,
    out: str | Path,
    store: str | Path | None = None,
    scheduler: str = "sync",
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run ``config``, write its baseline JSON to ``out`` and return the document
    (``progress``: see :func:`run_scores`). An existing ``out`` is replaced only when it is a
    baseline (re-recording after an intended behaviour change); any other file is refused."""
    _check_record_out(Path(out))  # before the sweep runs, not after
    scores, _ = run_scores(config, store=store, scheduler=scheduler, progress=progress)
    document = baseline_document(scores)
    write_baseline(out, document)
    return document


def _check_record_out(out: Path) -> None:
    """Refuse an ``--out`` that is a folder, or a file other than a baseline: recording
    would replace it, and a file this command did not write may be someone's work."""
    if out.is_dir():
        raise RegressError(f"--out {out} is a folder; give the path of the baseline JSON file to write")
    if out.exists() and not _is_baseline(out):
        raise RegressError(
            f"--out {out} exists and is not a baseline written by 'regress record', which would "
            "replace it; give a new path for the baseline, or move the file away first"
        )


def _is_baseline(path: Path) -> bool:
    """Whether ``path`` is a JSON document with a baseline's ``format`` (any version, so that an
    old baseline can be recorded again; its contents are not checked: a damaged one may be)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # not JSON, or not text
        return False
    kind = BASELINE_FORMAT.rsplit("/", 1)[0] + "/"
    return isinstance(document, dict) and str(document.get("format", "")).startswith(kind)


def write_baseline(path: str | Path, document: Mapping[str, Any]) -> None:
    """Write a baseline atomically (sorted keys, one trailing newline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_baseline(path: str | Path) -> dict[str, Any]:
    """Read and validate a baseline JSON written by :func:`record`."""
    path = Path(path)
    if path.is_dir():
        raise RegressError(
            f"baseline {path} is a folder; pass the baseline JSON file written by 'regress record'"
        )
    if not path.is_file():
        raise RegressError(
            f"baseline {path} does not exist; record one with "
            f"'bionas-bench regress record CONFIG --out {path}'"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RegressError(f"baseline {path} is not valid JSON ({exc}); record it again") from None
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise RegressError(
            f"baseline {path} has format {document.get('format') if isinstance(document, dict) else None!r}, "
            f"expected {BASELINE_FORMAT!r}; record it again with 'bionas-bench regress record'"
        )
    problem = _baseline_problem(document)
    if problem:
        raise RegressError(
            f"baseline {path} is damaged or was edited: {problem}; record it again with "
            "'bionas-bench regress record'"
        )
    return document


def _baseline_problem(document: Mapping[str, Any]) -> str | None:
    """What makes a baseline document unusable (None when nothing does): a missing or
    mistyped field, a metric without one value per run, or a summary that its values do
    not give (the values are what the check compares; the summary is what people read)."""
    config = document.get("config")
    if not isinstance(config, Mapping) or not all(isinstance(config.get(k), str) for k in ("name", "sha256")):
        return "no config name and sha256"
    if not isinstance(document.get("inputs"), Mapping):
        return "no input hashes"
    cells = document.get("cells")
    if not isinstance(cells, list) or not cells:
        return "no cells"
    fields = {"key": str, "label": str, "controller": str, "digest": str, "runs": int}
    fields.update(first_ask_distinct=int, lam=float)
    for i, cell in enumerate(cells):
        if not isinstance(cell, Mapping):
            return f"cells[{i}] is not an object"
        for name, kind in fields.items():
            value = cell.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float if kind is float else kind):
                return f"cells[{i}].{name} is missing or not a {kind.__name__}"
        where = f"cell {cell['key']}"
        metrics = cell.get("metrics")
        for metric in METRICS:
            entry = metrics.get(metric) if isinstance(metrics, Mapping) else None
            values = entry.get("values") if isinstance(entry, Mapping) else None
            if not isinstance(values, list) or len(values) != cell["runs"]:
                return f"{where}, {metric}: expected {cell['runs']} per-run values"
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                return f"{where}, {metric}: a per-run value is not a number"
            summary = {k: v for k, v in entry.items() if k != "values"}
            if summary != summarize(np.asarray(values, dtype=np.float64)):
                return f"{where}, {metric}: its summary does not match its per-run values"
    return None


# ---------------------------------------------------------------------- statistics
def mann_whitney_worse(now: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """One-sided Mann-Whitney U: p of "now is stochastically larger (worse) than base".

    Returns ``(effect, p)`` with ``effect = P(now > base) + 0.5 P(tie)``. With every
    value tied (or an empty sample) there is no evidence: ``(0.5, 1.0)``.
    """
    from scipy import stats

    a = np.asarray(now, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0 or np.unique(np.concatenate([a, b])).size < 2:
        return 0.5, 1.0
    res = stats.mannwhitneyu(a, b, alternative="greater")
    return float(res.statistic) / (a.size * b.size), float(res.pvalue)


def detectable_d(runs_now: int, runs_base: int, alpha: float, power: float = POWER) -> float:
    """Cohen's d the one-sided U test detects with ``power`` at level ``alpha``.

    From :class:`statsmodels.stats.power.NormalIndPower` with both sample sizes
    discounted by the U test's asymptotic relative efficiency (3 / pi).
    """
    from statsmodels.stats.power import NormalIndPower

    if runs_now < 2 or runs_base < 2:
        return math.inf
    n1 = runs_base * MWU_ARE
    ratio = runs_now / runs_base
    return float(
        NormalIndPower().solve_power(
            effect_size=None, nobs1=n1, alpha=alpha, power=power, ratio=ratio, alternative="larger"
        )
    )


@dataclass(frozen=True)
class Comparison:
    """One row of a check: a cell's metric, baseline vs now, and the verdict."""

    cell: str
    label: str
    lam: float
    metric: str
    gated: bool
    runs_base: int
    runs_now: int
    base_mean: float
    base_median: float
    now_mean: float
    now_median: float
    effect: float  # P(now worse than baseline), 0.5 = none
    delta: float  # now_mean - base_mean (positive = worse)
    mde: float  # shift detectable with POWER at alpha / m, in metric units
    p: float
    p_adj: float = math.nan
    regression: bool = False

    @property
    def verdict(self) -> str:
        if not self.gated:
            return "info"
        return "REGRESSION" if self.regression else "ok"


@dataclass
class CheckReport:
    """Everything a check found; :attr:`passed` is the CI verdict."""

    config_name: str
    alpha: float
    comparisons: list[Comparison]
    tests: int  # gated tests Holm-corrected together
    detectable_d: float  # Cohen's d detectable with POWER at alpha / tests
    input_changes: list[str] = field(default_factory=list)
    inputs_allowed: bool = False
    exact_failures: list[str] = field(default_factory=list)
    nondeterminism: list[str] = field(default_factory=list)
    seed_ignored: list[str] = field(default_factory=list)
    structure: list[str] = field(default_factory=list)
    exact: bool = False
    deterministic: bool = False

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regression]

    @property
    def input_failure(self) -> bool:
        return bool(self.input_changes) and not self.inputs_allowed

    @property
    def passed(self) -> bool:
        return not (
            self.regressions
            or self.input_failure
            or self.exact_failures
            or self.nondeterminism
            or self.seed_ignored
            or self.structure
        )

    def table(self) -> pd.DataFrame:
        """The comparison table: cell, its lambda, metric, baseline, now, effect size, adjusted
        p, verdict."""
        columns = [
            "cell",
            "lam",
            "metric",
            "baseline",
            "now",
            "delta",
            "effect",
            "mde",
            "p",
            "p_adj",
            "verdict",
        ]
        rows = [
            (
                c.cell,
                c.lam,
                c.metric,
                c.base_mean,
                c.now_mean,
                c.delta,
                c.effect,
                c.mde,
                c.p,
                c.p_adj,
                c.verdict,
            )
            for c in self.comparisons
        ]
        return pd.DataFrame(rows, columns=columns)  # the columns also when nothing was compared

    def failures(self) -> list[str]:
        """One line per reason the check failed (empty when it passed). Changed inputs are
        the only reason given when not allowed: the cells were not compared like for like."""
        if self.input_failure:
            return [
                "inputs changed since the baseline: "
                + "; ".join(self.input_changes)
                + ". The comparison would not be like for like: re-record the baseline "
                "('bionas-bench regress record'), or pass --allow-input-change to compare anyway"
            ]
        out = list(self.structure)
        for c in self.regressions:
            out.append(
                f"regression in {c.cell} ({c.label}, lambda={c.lam:g}) on {c.metric}: "
                f"mean {c.base_mean:.4g} -> {c.now_mean:.4g} (lower is better), "
                f"P(now worse)={c.effect:.2f}, Holm-adjusted p={c.p_adj:.2g} < alpha={self.alpha:g}"
            )
        out.extend(self.seed_ignored)
        out.extend(self.nondeterminism)
        out.extend(self.exact_failures)
        return out


def compare(
    baseline: Mapping[str, Any],
    scores: SweepScores,
    alpha: float = 0.05,
    allow_input_change: bool = False,
) -> CheckReport:
    """Compare scores with a baseline: input hashes, structure, per-cell tests, seed use."""
    _check_alpha(alpha)
    base_cells = {c["key"]: c for c in baseline["cells"]}
    structure = _structure_problems(base_cells, scores)
    shared = [k for k in sorted(base_cells) if k in scores.cells]
    tests = len(shared) * len(GATED_METRICS)
    d = detectable_d(
        min((scores.cells[k].runs for k in shared), default=0),
        min((base_cells[k]["runs"] for k in shared), default=0),
        alpha / max(tests, 1),
    )
    rows = [_compare_metric(base_cells[k], scores.cells[k], m, d) for k in shared for m in METRICS]
    rows = _holm(rows, alpha)
    report = CheckReport(
        config_name=scores.config_name,
        alpha=alpha,
        comparisons=rows,
        tests=tests,
        detectable_d=d,
        input_changes=input_changes(baseline.get("inputs", {}), scores.inputs),
        inputs_allowed=allow_input_change,
        structure=structure,
    )
    report.seed_ignored = [
        f"{k}: every run asked the same first architectures (baseline: {base_cells[k]['first_ask_distinct']} "
        "distinct first asks); the controller ignores its seed -- derive its random draws from "
        "the seed it is given"
        for k in shared
        if scores.cells[k].first_ask_distinct == 1 and base_cells[k]["first_ask_distinct"] > 1
    ]
    return report


def _check_shared_cells(document: Mapping[str, Any], config: Any) -> None:
    """Refuse a baseline that has none of the config's cells (a baseline of another config,
    compared with ``allow_input_change``): there would be nothing to compare."""
    base = sorted(c["key"] for c in document["cells"])
    now = sorted(cell.key for cell in config.cells())
    if not set(base) & set(now):
        raise RegressError(
            f"the baseline (config {document['config']['name']!r}; cells {', '.join(base)}) has none of the "
            f"cells of config {config.name!r} ({', '.join(now)}): nothing to compare; record a baseline of "
            f"this config with 'bionas-bench regress record {config.name} --out BASELINE.json'"
        )


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise RegressError(f"alpha must be in (0, 1), got {alpha!r}; e.g. --alpha 0.05")


def _structure_problems(base_cells: Mapping[str, Any], scores: SweepScores) -> list[str]:
    out = []
    missing = sorted(set(base_cells) - set(scores.cells))
    extra = sorted(set(scores.cells) - set(base_cells))
    if missing:
        out.append(
            f"cells of the baseline missing from this run: {', '.join(missing)}; re-record the baseline"
        )
    if extra:
        out.append(f"cells not in the baseline: {', '.join(extra)}; re-record the baseline to include them")
    return out


def _compare_metric(base: Mapping[str, Any], now: CellScores, metric: str, d: float) -> Comparison:
    base_values = np.asarray(base["metrics"][metric]["values"], dtype=np.float64)
    now_values = now.values[metric]
    effect, p = mann_whitney_worse(now_values, base_values)
    sd = float(np.nanstd(base_values, ddof=1)) if np.isfinite(base_values).sum() > 1 else math.nan
    return Comparison(
        cell=now.key,
        label=now.label,
        lam=now.lam,
        metric=metric,
        gated=metric in GATED_METRICS,
        runs_base=int(np.isfinite(base_values).sum()),
        runs_now=int(np.isfinite(now_values).sum()),
        base_mean=float(np.nanmean(base_values)),
        base_median=float(np.nanmedian(base_values)),
        now_mean=float(np.nanmean(now_values)),
        now_median=float(np.nanmedian(now_values)),
        effect=effect,
        delta=float(np.nanmean(now_values) - np.nanmean(base_values)),
        mde=d * sd,
        p=p,
    )


def _holm(rows: list[Comparison], alpha: float) -> list[Comparison]:
    """Holm-correct the gated rows' p-values together; info rows keep p_adj = NaN."""
    from statsmodels.stats.multitest import multipletests

    gated = [i for i, r in enumerate(rows) if r.gated]
    if not gated:
        return rows
    reject, p_adj, _, _ = multipletests([rows[i].p for i in gated], alpha=alpha, method="holm")
    out = list(rows)
    for i, rej, pa in zip(gated, reject, p_adj, strict=True):
        out[i] = dataclasses.replace(rows[i], p_adj=float(pa), regression=bool(rej))
    return out


def input_changes(base: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Human-readable differences of two input-hash trees (leaving out what differs between
    copies of one store: :data:`~bionas_bench.sweep.STORE_COPY_KEYS`)."""
    from bionas_bench.sweep import STORE_COPY_KEYS

    base_flat, now_flat = _flatten(base), _flatten(now)
    out = []
    for key in sorted(set(base_flat) | set(now_flat)):
        if key.split(".")[-1] in STORE_COPY_KEYS:
            continue
        b, n = base_flat.get(key, "<absent>"), now_flat.get(key, "<absent>")
        if b != n:
            out.append(f"{key} ({_short(b)} -> {_short(n)})")
    return out


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if re.fullmatch(r"[0-9a-f]{64}", text) else text


# ---------------------------------------------------------------------- exact mode
def exact_differences(baseline: Mapping[str, Any], scores: SweepScores) -> list[str]:
    """Cells whose results are not bit-identical to the baseline's (same seeds): the digest
    of their trajectories, or any per-run score, differs."""
    out = []
    for cell in baseline["cells"]:
        now = scores.cells.get(cell["key"])
        if now is None:
            continue
        detail = _first_value_difference(cell, now)
        if detail is None and now.digest == cell["digest"]:
            continue
        detail = detail or "per-run scores equal, but the recorded trajectories differ"
        out.append(
            f"{cell['key']}: results are not bit-identical to the baseline for the same seeds ({detail}); "
            "if the change is intended, re-record the baseline with 'bionas-bench regress record'"
        )
    return out


def _first_value_difference(base: Mapping[str, Any], now: CellScores) -> str | None:
    for metric in METRICS:
        b = np.asarray(base["metrics"][metric]["values"], dtype=np.float64)
        n = now.values[metric]
        if b.shape != n.shape:
            return f"{metric}: {b.size} runs in the baseline, {n.size} now"
        differ = np.flatnonzero(~((b == n) | (np.isnan(b) & np.isnan(n))))
        if differ.size:
            r = int(differ[0])
            return f"{differ.size} runs differ in {metric}, first run {r}: {float(b[r])!r} -> {float(n[r])!r}"
    return None


def repeat_differences(config: Any, results: Any, store: str | Path | None = None) -> list[str]:
    """Rerun each controller's first cell in this process and compare bit for bit.

    Two runs of the same seeds must give the same arrays; a difference means the
    controller (or something it calls) draws from an unseeded source.
    """
    from bionas_bench.sweep import open_cached_store, resolve_store, simulate_cell

    config = load_config(config)
    location = str(store) if store is not None else resolve_store(config.store)
    opened = open_cached_store(location)
    out = []
    seen: set[str] = set()
    for cell in config.cells():
        if cell.controller.label in seen or cell.key not in results.cells:
            continue
        seen.add(cell.controller.label)
        again = cell_digest(simulate_cell(config, cell, opened))
        if again != cell_digest(results.cells[cell.key][1]):
            out.append(
                f"{cell.key}: rerunning the cell with the same seeds gave different results: the controller "
                f"{cell.controller.name!r} is nondeterministic (it ignores its seed or uses global random "
                "state); draw every random choice from the Generator built from its seed"
            )
    return out


# ---------------------------------------------------------------------- the check
def check(
    config: Any,
    baseline: str | Path | Mapping[str, Any],
    *,
    exact: bool = False,
    deterministic: bool = False,
    allow_input_change: bool = False,
    alpha: float = 0.05,
    store: str | Path | None = None,
    scheduler: str = "sync",
    keep: str | Path | None = None,
    progress: Callable[[Any], None] | None = None,
) -> CheckReport:
    """Rerun the sweep ``config`` and compare it with ``baseline`` (a path or document).

    ``exact``: also require bit-identical results (and ``deterministic``);
    ``deterministic``: rerun one cell per controller in this process and require the same
    bits; ``progress``: see :func:`run_scores`.
    """
    from bionas_bench.sweep import check_controllers

    _check_alpha(alpha)
    document = baseline if isinstance(baseline, Mapping) else read_baseline(baseline)
    config = load_config(config)
    check_controllers(config)  # a misspelt controller is a config error, not a changed input
    recorded = document["config"]
    if recorded["sha256"] != config.sha256 and not allow_input_change:  # no rerun to compare
        change = (
            f"config_sha256 ({_short(recorded['sha256'])} -> {_short(config.sha256)}): the baseline "
            f"was recorded from config {recorded['name']!r}, this is {config.name!r}"
            + (" (edited since)" if recorded["name"] == config.name else "")
        )
        return CheckReport(config.name, alpha, [], 0, math.nan, input_changes=[change])
    _check_shared_cells(document, config)
    scores, results = run_scores(config, store=store, scheduler=scheduler, keep=keep, progress=progress)
    report = compare(document, scores, alpha=alpha, allow_input_change=allow_input_change)
    if exact or deterministic:
        report.deterministic = True
        report.nondeterminism = repeat_differences(config, results, store=store)
    if exact:
        report.exact = True
        report.exact_failures = exact_differences(document, scores)
    return report


# ---------------------------------------------------------------------- false alarms
@dataclass(frozen=True)
class FalseAlarmReport:
    """How often an unchanged sweep fails the statistical check against its baseline."""

    config_name: str
    trials: int
    alarms: int
    alpha: float
    seeds: list[int]
    alarm_cells: dict[str, int]
    min_p_adj: list[float]
    ci_low: float
    ci_high: float

    @property
    def rate(self) -> float:
        return self.alarms / self.trials if self.trials else math.nan


def false_alarm_rate(
    config: Any,
    trials: int = 100,
    alpha: float = 0.05,
    store: str | Path | None = None,
    progress: Callable[[int, bool], None] | None = None,
) -> FalseAlarmReport:
    """Record a baseline at the config's seed, then check ``trials`` reruns at other seeds.

    Cells are simulated in memory (:func:`simulate_scores`: the sweep's own cells,
    without the results folder). Each trial reruns the unchanged sweep with
    ``[sweep].seed`` = config seed + trial (all its controller and oracle seeds change)
    and counts a false alarm when the statistical check flags any cell. Exact and input
    checks are not part of it (the seeds differ on purpose; the inputs are the same). The 95% interval is
    Clopper-Pearson (``statsmodels.stats.proportion.proportion_confint``).
    """
    from statsmodels.stats.proportion import proportion_confint

    if trials < 1:
        raise RegressError(f"--trials must be >= 1, got {trials}")
    _check_alpha(alpha)
    config = load_config(config)
    base_scores = simulate_scores(config, store=store)
    baseline = baseline_document(base_scores)
    seeds = [config.seed + t for t in range(1, trials + 1)]
    alarms, cells, min_p = 0, dict.fromkeys(base_scores.cells, 0), []
    for i, seed in enumerate(seeds):
        scores = simulate_scores(with_seed(config, seed), store=store)
        report = compare(baseline, scores, alpha=alpha, allow_input_change=True)
        alarm = bool(report.regressions)
        alarms += alarm
        for c in report.regressions:
            cells[c.cell] += 1
        min_p.append(min((c.p_adj for c in report.comparisons if c.gated), default=math.nan))
        if progress is not None:
            progress(i + 1, alarm)
    low, high = proportion_confint(alarms, trials, alpha=0.05, method="beta")
    return FalseAlarmReport(config.name, trials, alarms, alpha, seeds, cells, min_p, float(low), float(high))


def power_at(
    shift_sd: Iterable[float], runs: int, tests: int, alpha: float = 0.05, sims: int = 400, seed: int = 0
) -> dict[float, float]:
    """Simulated power of the one-sided U test at level alpha / tests for normal shifts.

    Used to validate the stated minimum detectable effect: at ``detectable_d`` the
    power should be about :data:`POWER`.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for shift in shift_sd:
        hits = 0
        for _ in range(sims):
            base = rng.normal(0.0, 1.0, runs)
            now = rng.normal(float(shift), 1.0, runs)
            hits += mann_whitney_worse(now, base)[1] < alpha / tests
        out[float(shift)] = hits / sims
    return out
