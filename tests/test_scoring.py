"""Scoring: ranks, anytime curves, statistics, Pareto front and hypervolume."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_sweep import TOY_CONFIG, make_store, toy_config  # noqa: F401 - shared stand-ins

from bionas_bench import controllers, scoring
from bionas_bench.errors import SweepError
from bionas_bench.sweep import load_results, run_sweep

#: the toy sweep of these tests: 6 runs of 12 episodes x 2 architectures
SCORING_CONFIG = TOY_CONFIG.replace("runs = 4", "runs = 6").replace(
    "archs_per_episode = 3", "archs_per_episode = 2"
)


def _toy_results(tmp_path_factory, text: str):
    """The results of a toy sweep of ``text`` on a fresh toy store."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(controllers.BUILTIN, "toy-policy", "test_sweep:ToyPolicy")
        mp.setitem(controllers.BUILTIN, "toy-random", "test_sweep:ToyRandom")
        tmp = tmp_path_factory.mktemp("scoring")
        config = toy_config(tmp, make_store(tmp / "store.zarr"), text)
        return load_results(run_sweep(config, tmp / "out", scheduler="sync").out)


def _with_budget(text: str, gpu_seconds: float) -> str:
    return text.replace("archs_per_episode = 2", f"archs_per_episode = 2\ngpu_seconds = {gpu_seconds!r}")


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory):
    return _toy_results(tmp_path_factory, SCORING_CONFIG)


@pytest.fixture(scope="module")
def budget_results(tmp_path_factory):
    """The toy sweep under a GPU-seconds budget that ends every run early, at different
    episodes (each sample costs 10-100 s)."""
    return _toy_results(tmp_path_factory, _with_budget(SCORING_CONFIG, 400.0))


def test_sma_and_mean_ci():
    x = np.arange(12, dtype=float)
    out = scoring.sma(x, 10)
    # the first 9 points: the mean so far (the original's figure code), then a window of 10
    np.testing.assert_allclose(out[:9], [k / 2 for k in range(9)])
    np.testing.assert_allclose(out[9:], [4.5, 5.5, 6.5])
    stacked = scoring.sma(np.stack([x, 2 * x]), 3, axis=1)
    np.testing.assert_allclose(stacked[1], [0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0])
    ended = scoring.sma(np.concatenate([x[:5], [np.nan] * 3]), 10)  # a run whose budget ended
    np.testing.assert_allclose(ended[:5], [0.0, 0.5, 1.0, 1.5, 2.0])
    assert np.isnan(ended[5:]).all()
    mean, lo, hi = scoring.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and 1.0 <= lo < 2.0 < hi <= 3.0
    assert scoring.mean_ci([1.0, 2.0, 3.0]) == (mean, lo, hi)  # seeded: the same interval
    assert np.isnan(scoring.mean_ci([5.0])[1]) and np.isnan(scoring.mean_ci([np.nan])[0])


def test_mean_ci_stays_within_the_ranks_and_covers_the_mean():
    """A skewed sample of bounded ranks: the t interval reaches below rank 1, the
    bootstrap interval does not; with many runs the two agree."""
    skewed = np.array([1.0] * 18 + [100.0, 200.0])
    mean, lo, hi = scoring.mean_ci(skewed)
    half_t = 2.093 * skewed.std(ddof=1) / np.sqrt(skewed.size)
    assert mean - half_t < 1.0 <= lo < mean < hi <= skewed.max()
    rng = np.random.default_rng(1)
    normal = rng.normal(50.0, 10.0, 400)
    m, lo, hi = scoring.mean_ci(normal)
    half_t = 1.966 * normal.std(ddof=1) / np.sqrt(normal.size)
    np.testing.assert_allclose([lo, hi], [m - half_t, m + half_t], rtol=0.01)
    columns = np.column_stack([normal, normal[::-1], np.full(400, np.nan)])
    means, los, his = scoring.mean_ci_columns(columns)
    np.testing.assert_allclose(means[:2], [m, m])
    assert np.isnan([means[2], los[2], his[2]]).all()


def test_trend_check_tests_both_ends(toy_results, monkeypatch):
    """Directions from the mean ranks, significance from a paired signed-rank test."""
    rec = scoring.recommended(toy_results)
    checks = {c.controller: c for c in scoring.trend_check(toy_results)}
    for label, check in checks.items():
        small = rec[(rec["controller"] == label) & (rec["lam"] == check.small_lam)]
        diff = (small["loss_rank"] - small["knowledge_rank"]).to_numpy()
        assert check.small_ok == (diff.mean() < 0)
        if np.any(diff):
            assert check.small_p == pytest.approx(stats.wilcoxon(diff).pvalue)
        assert check.reproduced == (check.small_ok and check.large_ok and check.significant)
    same = scoring.TrendCheck("c", 0.001, 1000.0, True, True, 0.01, 0.2)
    assert same.verdict == "same direction, not significant" and not same.reproduced
    assert scoring.TrendCheck("c", 0.001, 1000.0, True, True, 0.01, 0.02).verdict == "reproduced"
    assert scoring.TrendCheck("c", 0.001, 1000.0, False, True, 0.01, 0.02).verdict == "not reproduced"


def test_pareto_front_and_hypervolume():
    loss = np.array([1.0, 2.0, 3.0, 2.5, np.nan])
    know = np.array([3.0, 2.0, 1.0, 2.5, 0.0])
    np.testing.assert_array_equal(scoring.pareto_front(loss, know), [True, True, True, False, False])
    # staircase (1,3), (2,2), (3,1) against reference (4,4): strips 1*(4-3) + 1*(4-2) + 1*(4-1) = 6
    assert scoring.hypervolume(loss[:3], know[:3], (4.0, 4.0)) == pytest.approx(6.0)
    assert scoring.hypervolume([5.0], [5.0], (4.0, 4.0)) == 0.0
    # a dominated point adds nothing
    assert scoring.hypervolume(loss[:4], know[:4], (4.0, 4.0)) == scoring.hypervolume(
        loss[:3], know[:3], (4.0, 4.0)
    )


def test_running_argmin():
    v = np.array([[3.0, 1.0, 2.0, 1.0, 0.5]])
    np.testing.assert_array_equal(scoring._running_argmin(v), [[0, 1, 1, 1, 4]])


def test_recommended_and_summary(toy_results):
    rec = scoring.recommended(toy_results)
    assert len(rec) == 2 * 3 * 6
    gold = scoring.gold_at(toy_results, 1.0)
    at = rec[rec["lam"] == 1.0]
    np.testing.assert_allclose(at["objective_rank"], gold.loc[at["arch"], "objective_rank"])
    s = scoring.summary(toy_results)
    assert set(s["controller"]) == {"toy-policy", "toy-random"} and (s["n"] == 6).all()
    assert (s["loss_rank_lo"] <= s["loss_rank"]).all() and (s["loss_rank"] <= s["loss_rank_hi"]).all()
    checks = scoring.trend_check(toy_results)
    assert {c.controller for c in checks} == {"toy-policy", "toy-random"}


def test_anytime_is_monotone_and_regret_nonnegative(toy_results):
    curves = scoring.anytime(toy_results, "samples")
    for _, g in curves.groupby(["controller", "lam"]):
        assert np.all(np.diff(g["rank"].to_numpy()) <= 1e-12)
        assert (g["regret"] >= 0).all() and (g["regret_norm"] <= 1).all()
    assert curves["x"].max() == 24
    gpu = scoring.anytime(toy_results, "gpu_seconds", points=10)
    assert len(gpu) == 2 * 3 * 10 and (gpu["x"] > 0).all()
    runs = toy_results.cell("toy-random", toy_results.lambdas[0]).incumbent.shape[0]
    fine = scoring.anytime(toy_results, "gpu_seconds")  # 60 points: some before a run's first sample
    assert (fine["n"] == runs).all()  # every point a mean over all runs: no rise as runs join
    for _, g in fine.groupby(["controller", "lam"]):
        assert np.all(np.diff(g["rank"].to_numpy()) <= 1e-12)


def test_carry_last_inside_keeps_a_stopped_runs_last_value():
    values = np.array([[3.0, 2.0, np.nan, np.nan], [5.0, 4.0, 1.0, 0.5], [np.nan] * 4])
    inside = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(
        scoring.carry_last_inside(values, inside), [[3.0, 2.0, 2.0, 2.0], [5.0, 4.0, 1.0, 0.5], [np.nan] * 4]
    )


def test_anytime_under_a_gpu_budget_averages_every_run(budget_results):
    """A run whose budget ended keeps its last in-budget best-so-far value on both axes:
    every point is a mean over all runs and the mean best-so-far rank never rises (it was
    a mean over the shrinking set of runs still inside, which could rise, and ended in
    NaN); the GPU-seconds axis ends at the median in-budget total."""
    cell = budget_results.cell("toy-policy", 0.01)
    episodes = cell.within_budget.sum(axis=1)
    assert episodes.max() < 12 and episodes.min() < episodes.max()  # binding, at different episodes
    runs = episodes.size
    for axis in scoring.ANYTIME_AXES:
        curves = scoring.anytime(budget_results, axis)
        assert (curves["n"] == runs).all(), axis
        assert curves.drop(columns=["controller"]).notna().all().all(), axis
        for _, g in curves.groupby(["controller", "lam"]):
            assert np.all(np.diff(g["rank"].to_numpy()) <= 1e-12), axis
    spent = (cell.steps["cost"].sum(axis=2) * cell.within_budget).sum(axis=1)
    gpu = scoring.anytime(budget_results, "gpu_seconds")
    mine = gpu[(gpu["controller"] == "toy-policy") & (gpu["lam"] == 0.01)]
    assert mine["x"].iloc[-1] == pytest.approx(np.median(spent))
    samples = scoring.anytime(budget_results, "samples")
    mine = samples[(samples["controller"] == "toy-policy") & (samples["lam"] == 0.01)]
    assert mine["x"].iloc[-1] == 2 * episodes.max()  # the most samples a run took inside
    _, best_rank = scoring.best_so_far(cell, scoring.gold_at(budget_results, 0.01))
    last = best_rank[np.arange(runs), 2 * episodes - 1]  # each run's last in-budget value
    assert mine["rank"].iloc[-1] == pytest.approx(last.mean())


def test_a_budget_that_does_not_bind_leaves_the_anytime_curves_as_they_are(toy_results, tmp_path_factory):
    """The curves of a sweep whose GPU-seconds budget ends no run equal, value for value,
    those of the same sweep without a budget."""
    loose = _toy_results(tmp_path_factory, _with_budget(SCORING_CONFIG, 1e12))
    assert all(loose.cell(label, lam).within_budget.all() for label, lam, _ in scoring._cells(loose))
    for axis in scoring.ANYTIME_AXES:
        pd.testing.assert_frame_equal(scoring.anytime(loose, axis), scoring.anytime(toy_results, axis))


def test_a_tie_for_the_most_frequent_recommendation_is_kept(toy_results):
    """modal_archs lists every architecture tied for most frequent (modal_arch was the
    smallest id of a tie, passed off as the one most frequent)."""
    res = copy.deepcopy(toy_results)
    res.cell("toy-random", 1.0).runs["recommended"][:] = [196, 190, 196, 190, 5, 6]
    res.cell("toy-policy", 1.0).runs["recommended"][:] = [7, 7, 7, 5, 6, 8]
    s = scoring.summary(res).set_index(["controller", "lam"])
    tie = s.loc[("toy-random", 1.0)]
    assert tie["modal_archs"] == "190 196" and tie["modal_arch"] == 190
    assert tie["modal_share"] == pytest.approx(1 / 3)
    one = s.loc[("toy-policy", 1.0)]
    assert one["modal_archs"] == "7" and one["modal_arch"] == 7 and one["modal_share"] == pytest.approx(0.5)


def test_reference_point_is_the_worst_point_of_the_space(toy_results):
    """Not the nadir of the front: the worst median loss and knowledge of any architecture."""
    front = scoring.front_table(toy_results)
    worst = (front["loss"].max(), front["knowledge"].max())
    assert scoring.reference_point(toy_results) == worst
    on = front[front["on_front"]]
    assert worst != (on["loss"].max(), on["knowledge"].max())  # the front's nadir differs
    assert "nadir of the space" not in (scoring.__doc__ + scoring.reference_point.__doc__)


def test_compare_uses_holm(toy_results):
    table = scoring.compare(toy_results)
    assert len(table) == 3
    assert (table["p_holm"] >= table["p"] - 1e-15).all()
    assert table["p_a_better"].between(0, 1).all()


def test_runs_without_gold_value_are_counted_and_left_out(toy_results):
    """A run whose recommended architecture has no gold value (NaN ranks) is counted as
    unranked; the means and the test use the other runs (the pair is not lost)."""
    res = copy.deepcopy(toy_results)
    ranks = res.cell("toy-random", 1.0).runs["objective_rank"]
    ranks[0] = np.nan
    row = scoring.summary(res).set_index(["controller", "lam"]).loc[("toy-random", 1.0)]
    assert row["n"] == 6 and row["unranked"] == 1
    assert row["objective_rank"] == pytest.approx(np.mean(ranks[1:]))
    table = scoring.compare(res)
    pair = table[(table["lam"] == 1.0)].iloc[0]
    sizes = {pair["a"]: pair["n_a"], pair["b"]: pair["n_b"]}
    assert sizes == {"toy-random": 5, "toy-policy": 6} and np.isfinite(pair["p"])
    assert (scoring.summary(toy_results)["unranked"] == 0).all()


def test_compare_all_ties_gives_p_one():
    u, p = scoring._mann_whitney(np.ones(5), np.ones(4))
    assert p == 1.0 and u == 10.0


def test_hypervolumes_fraction_bounded(toy_results):
    hv = scoring.hypervolumes(toy_results)
    assert set(hv["controller"]) == {"toy-policy", "toy-random"}
    assert ((hv["fraction_union"] > 0) & (hv["fraction_union"] <= 1 + 1e-12)).all()
    assert (hv["fraction_mean"] <= hv["fraction_union"] + 1e-12).all()


def test_per_step_and_policy_curves(toy_results):
    steps = scoring.per_step(toy_results, "toy-policy", 0.01, "loss")
    assert len(steps) == 12 and steps["mean"].notna().all()
    per_run = toy_results.cell("toy-policy", 0.01).steps["loss"].mean(axis=2)  # (runs, episodes)
    np.testing.assert_allclose(steps["mean"].iloc[0], per_run[:, 0].mean())  # the head: the mean so far
    np.testing.assert_allclose(steps["mean"].iloc[4], per_run[:, :5].mean())
    np.testing.assert_allclose(steps["mean"].iloc[11], per_run[:, 2:12].mean())
    pol = scoring.policy_curves(toy_results, "toy-policy", 1.0)
    assert set(pol["layer"]) == set(scoring.layer_choices(toy_results))
    last = pol[pol["episode"] == 12].groupby("layer")["mean"].sum()
    np.testing.assert_allclose(last.to_numpy(), 1.0)
    assert isinstance(pol, pd.DataFrame)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        pytest.param(
            lambda r: scoring.per_step(r, "nope", 0.01, "loss"),
            ["label 'nope'", "toy-policy, toy-random"],
            id="per_step-label",
        ),
        pytest.param(
            lambda r: scoring.per_step(r, "toy-policy", 123.0, "loss"),
            ["lam 123.0", "0.01, 1, 100"],
            id="per_step-lam",
        ),
        pytest.param(
            lambda r: scoring.per_step(r, "toy-policy", 0.01, "nope"),
            ["field 'nope'", "loss", "knowledge"],
            id="per_step-field",
        ),
        pytest.param(
            lambda r: scoring.per_step(r, "toy-policy", 0.01, "loss", window=0),
            ["window", "got 0"],
            id="per_step-window",
        ),
        pytest.param(
            lambda r: scoring.policy_curves(r, "toy-policy", 123.0),
            ["lam 123.0", "0.01, 1, 100"],
            id="policy_curves-lam",
        ),
        pytest.param(
            lambda r: scoring.policy_curves(r, "toy-policy", 1.0, window=2.5),
            ["window", "got 2.5"],
            id="policy_curves-window",
        ),
        pytest.param(
            lambda r: scoring.compare(r, metric="nope"),
            ["metric 'nope'", "objective_rank", "loss"],
            id="compare-metric",
        ),
        pytest.param(lambda r: scoring.compare(r, alpha=2), ["alpha", "(0, 1)", "got 2"], id="compare-alpha"),
        pytest.param(
            lambda r: scoring.summary(r, level=95), ["level", "(0, 1)", "got 95"], id="summary-level"
        ),
        pytest.param(
            lambda r: scoring.anytime(r, level=1.0), ["level", "(0, 1)", "got 1.0"], id="anytime-level"
        ),
        pytest.param(
            lambda r: scoring.anytime(r, axis="epochs"),
            ["axis 'epochs'", "samples", "gpu_seconds"],
            id="anytime-axis",
        ),
        pytest.param(lambda r: scoring.anytime(r, points=0), ["points", "got 0"], id="anytime-points"),
        pytest.param(
            lambda r: scoring.hypervolumes(r, level=0), ["level", "(0, 1)", "got 0"], id="hypervolumes-level"
        ),
        pytest.param(
            lambda r: scoring.mean_ci([1.0, 2.0], level=float("nan")),
            ["level", "(0, 1)", "got nan"],
            id="mean_ci-level",
        ),
        pytest.param(lambda r: scoring.sma(np.ones(5), window=-1), ["window", "got -1"], id="sma-window"),
    ],
)
def test_a_bad_argument_is_one_error_naming_it_and_the_valid_values(toy_results, call, named):
    """Every public scoring function answers a bad argument with one SweepError that names
    the argument and what it may be (not a bare KeyError / ValueError from numpy or pandas)."""
    with pytest.raises(SweepError) as info:
        call(toy_results)
    for part in named:
        assert part in str(info.value), (part, str(info.value))


@pytest.mark.parametrize(
    "call",
    [
        scoring.recommended,
        scoring.summary,
        scoring.trend_check,
        scoring.anytime,
        scoring.compare,
        scoring.front_table,
        scoring.hypervolumes,
        scoring.layer_choices,
        lambda r: scoring.per_step(r, "toy-policy", 0.01, "loss"),
    ],
    ids=lambda f: getattr(f, "__name__", "per_step").replace("<lambda>", "per_step"),
)
def test_a_results_folder_path_in_place_of_its_results_is_one_error(toy_results, call):
    """A path where the loaded results belong is one SweepError saying how to load them
    (was an AttributeError on a str)."""
    with pytest.raises(SweepError, match=r"results must be .*load_results.*got str"):
        call(str(toy_results.path))
