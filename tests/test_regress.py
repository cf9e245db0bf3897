"""Regression checks: baselines, the statistical check, exact mode, and planted regressions.

The planted regressions are code changes behind an unchanged config: the registry name
``toy-pg`` is pointed (monkeypatch of ``controllers.BUILTIN``) at a broken subclass of
a small numpy REINFORCE controller -- learning rate zero, reward sign flipped, seed
ignored -- and ``regress check`` must fail on each with a clear message, while the
unchanged controller at other seeds passes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from toy_controllers import SoftmaxPolicy

from bionas_bench import controllers
from bionas_bench.cli import main
from bionas_bench.controllers.base import check
from bionas_bench.errors import RegressError
from bionas_bench.regress import (
    GATED_METRICS,
    METRICS,
    compare,
    detectable_d,
    exact_differences,
    false_alarm_rate,
    mann_whitney_worse,
    power_at,
    read_baseline,
    record,
    run_scores,
    simulate_scores,
    with_seed,
)
from bionas_bench.regress import check as regress_check
from bionas_bench.sweep import load_sweep_config

CONFIG = """
[sweep]
name = "regress-toy"
seed = {seed}
lambdas = [0.1, 10]
runs = 30

[budget]
episodes = 12
archs_per_episode = 3

[store]
source = "path"
path = "{store}"

[[controllers]]
name = "toy-pg"
params = {{ lr = 0.4 }}
"""


# ---------------------------------------------------------------------- controllers
@dataclasses.dataclass(frozen=True)
class PGParams:
    lr: float = 0.4

    def __post_init__(self):
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")


class ToyPG(SoftmaxPolicy):
    """Softmax policy per layer trained by REINFORCE with a moving-average baseline."""

    name = "toy-pg"
    Params = PGParams

    def step_size(self) -> float:
        return self.params.lr

    def transform(self, rewards: np.ndarray) -> np.ndarray:
        return rewards

    def _tell(self, ids, rewards, info):
        rewards = self.transform(rewards)
        mean = float(rewards.mean())
        self.baseline = mean if self.baseline is None else 0.8 * self.baseline + 0.2 * mean
        scale = max(float(np.abs(rewards - self.baseline).max()), 1e-12)
        probs = self.policy()
        for digits, reward in zip(self.space.decode(ids), rewards, strict=True):
            for layer, d in enumerate(digits):
                grad = -probs[layer]
                grad[d] += 1.0
                self.logits[layer] += self.step_size() * (reward - self.baseline) / scale * grad


class ZeroLR(ToyPG):
    """Planted: the learning rate is effectively zero (the policy never moves)."""

    def step_size(self) -> float:
        return 0.0


class FlippedReward(ToyPG):
    """Planted: the reward sign is flipped (it climbs towards the worst architectures)."""

    def transform(self, rewards: np.ndarray) -> np.ndarray:
        return -rewards


class Unseeded(ToyPG):
    """Planted: ignores its seed and draws from fresh OS entropy (nondeterministic)."""

    def __init__(self, space, seed=0, **hp):
        super().__init__(space, seed, **hp)
        self.rng = np.random.default_rng()


class FixedSeed(ToyPG):
    """Planted: ignores its seed and always uses seed 0 (deterministic, runs identical)."""

    def __init__(self, space, seed=0, **hp):
        super().__init__(space, 0, **hp)


def use(monkeypatch, cls: type) -> None:
    monkeypatch.setitem(controllers.BUILTIN, "toy-pg", f"{__name__}:{cls.__name__}")


# ---------------------------------------------------------------------- fixtures
def write_config(folder: Path, store: Path, seed: int = 7) -> Path:
    path = folder / f"regress-toy-{seed}.toml"
    path.write_text(CONFIG.format(store=store, seed=seed))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synthetic_store_path):
    """The toy config (seed 7) and its baseline, recorded once with the unchanged ToyPG."""
    folder = tmp_path_factory.mktemp("regress")
    config = write_config(folder, synthetic_store_path)
    mp = pytest.MonkeyPatch()
    use(mp, ToyPG)
    try:
        record(config, folder / "baseline.json")
    finally:
        mp.undo()
    return config, folder / "baseline.json"


@pytest.fixture
def toy(monkeypatch):
    use(monkeypatch, ToyPG)


@pytest.fixture(scope="module")
def rerun(setup):
    """The unchanged sweep rerun once (scores and loaded results), shared by several tests."""
    mp = pytest.MonkeyPatch()
    use(mp, ToyPG)
    try:
        return run_scores(setup[0])
    finally:
        mp.undo()


# ---------------------------------------------------------------------- baselines
def test_baseline_holds_per_run_values_summaries_and_hashes(setup, toy, tmp_path):
    config, baseline = setup
    doc = read_baseline(baseline)
    assert doc["config"]["name"] == "regress-toy"
    assert doc["config"]["text"] == Path(config).read_text()
    assert set(doc["inputs"]) >= {"config_sha256", "store", "space_sha256", "gold_sha256"}
    assert doc["package_version"]
    assert [c["key"] for c in doc["cells"]] == ["toy-pg__lam00", "toy-pg__lam01"]
    for cell in doc["cells"]:
        assert cell["runs"] == 30 and len(cell["digest"]) == 64
        for metric in METRICS:
            summary = cell["metrics"][metric]
            assert len(summary["values"]) == 30
            assert summary["q05"] <= summary["median"] <= summary["q95"]
            assert summary["mean"] == pytest.approx(np.mean(summary["values"]))
    assert {m for m, info in doc["metrics"].items() if info["gated"]} == set(GATED_METRICS)
    # deterministic: recording again (through the CLI) gives the same bytes
    assert main(["regress", "record", str(config), "--out", str(tmp_path / "again.json")]) == 0
    assert (tmp_path / "again.json").read_bytes() == Path(baseline).read_bytes()


def test_in_memory_scores_equal_the_sweep_results(setup, rerun, toy):
    """false-alarm's in-memory cells are bit-identical to the sweep's written and read cells."""
    fast = simulate_scores(setup[0])
    for key, cell in rerun[0].cells.items():
        assert fast.cells[key].digest == cell.digest
        for metric in METRICS:
            np.testing.assert_array_equal(fast.cells[key].values[metric], cell.values[metric])


def test_anytime_auc_is_mean_best_so_far_rank(rerun):
    scores, results = rerun
    attrs, cell = results.cells["toy-pg__lam01"]
    gold = results.gold[results.gold["lam"] == 10.0].set_index("arch").sort_index()
    ranks = gold["objective_rank"].to_numpy()[cell.steps["arch"].reshape(30, -1)]
    expected = np.minimum.accumulate(ranks, axis=1).mean(axis=1)  # rank is monotone in objective
    np.testing.assert_allclose(scores.cells["toy-pg__lam01"].values["anytime_auc"], expected)


# ---------------------------------------------------------------------- unchanged passes
def test_unchanged_controller_passes_exact(setup, toy):
    config, baseline = setup
    report = regress_check(config, baseline, exact=True)
    assert report.passed, report.failures()
    table = report.table()
    assert list(table.columns) == [
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
    assert report.tests == 2 * len(GATED_METRICS)
    assert sorted(set(table["lam"])) == sorted(load_sweep_config(config).lambdas)
    assert set(table["verdict"]) == {"ok", "info"}
    assert (table["delta"] == 0).all()


def test_unchanged_controller_with_other_seed_passes(setup, toy, synthetic_store_path, tmp_path):
    _, baseline = setup
    other = write_config(tmp_path, synthetic_store_path, seed=8)
    report = regress_check(other, baseline, allow_input_change=True)
    assert report.passed, report.failures()
    assert report.input_changes and report.input_changes[0].startswith("config_sha256")
    assert not (report.table()["delta"] == 0).all()  # really other runs


# ---------------------------------------------------------------------- planted regressions
@pytest.mark.parametrize("planted", [ZeroLR, FlippedReward])
def test_planted_regression_fails_check(setup, monkeypatch, planted):
    config, baseline = setup
    use(monkeypatch, planted)
    report = regress_check(config, baseline)
    assert not report.passed
    assert report.regressions
    assert any(line.startswith("regression in toy-pg__lam") for line in report.failures())
    assert not report.input_changes  # same config and store: a real behaviour change


def test_seed_ignoring_nondeterministic_controller_fails_exact(setup, monkeypatch):
    config, baseline = setup
    use(monkeypatch, Unseeded)
    report = regress_check(config, baseline, exact=True)
    assert not report.passed
    text = "\n".join(report.failures())
    assert "nondeterministic" in text and "ignores its seed" in text
    assert "not bit-identical" in text


def test_seed_ignoring_fixed_seed_controller_fails_without_exact(setup, monkeypatch):
    config, baseline = setup
    use(monkeypatch, FixedSeed)
    report = regress_check(config, baseline)
    assert not report.passed
    assert any("every run asked the same first architectures" in line for line in report.failures())


def test_cli_check_exit_codes_and_messages(setup, monkeypatch, capsys):
    config, baseline = setup
    use(monkeypatch, ToyPG)
    assert main(["regress", "check", str(config), "--baseline", str(baseline), "--exact"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "toy-pg__lam01" in out and "p_adj" in out and "power 0.8" in out
    use(monkeypatch, FlippedReward)
    assert main(["regress", "check", str(config), "--baseline", str(baseline)]) == 1
    captured = capsys.readouterr()
    assert "REGRESSION" in captured.out and "FAIL" in captured.out
    assert "FAIL: regression in toy-pg__lam" in captured.err
    assert "regress-toy: 100%" in captured.err  # the progress bar of the rerun
    # bad input: its one line, no progress bar
    assert main(["regress", "check", str(config), "--baseline", str(baseline), "--alpha", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "alpha must be in (0, 1)" in err
    keep = baseline.with_name("a-file")
    keep.write_text("")
    assert main(["regress", "check", str(config), "--baseline", str(baseline), "--keep", str(keep)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--keep {keep} is a file; give a folder" in err
    assert main(["regress", "check", str(config), "--baseline", str(baseline), "--quiet"]) == 1
    assert "regress-toy:" not in capsys.readouterr().err


# ---------------------------------------------------------------------- inputs
def test_input_change_fails_unless_allowed(setup, rerun):
    doc = read_baseline(setup[1])
    doc["inputs"]["gold_sha256"] = "0" * 64
    scores, _ = rerun
    report = compare(doc, scores)
    assert not report.passed
    assert "inputs changed since the baseline: gold_sha256 (000000000000 ->" in report.failures()[0]
    assert "--allow-input-change" in report.failures()[0] and len(report.failures()) == 1
    assert compare(doc, scores, allow_input_change=True).passed


def test_cli_names_changed_config(setup, toy, synthetic_store_path, tmp_path, capsys):
    _, baseline = setup
    other = write_config(tmp_path, synthetic_store_path, seed=9)
    assert main(["regress", "check", str(other), "--baseline", str(baseline)]) == 1
    captured = capsys.readouterr()
    assert "config_sha256" in captured.err
    # cells of another config are not compared: one FAIL line, no table, no verdict
    assert captured.err.count("FAIL:") == 1 and "significant regression" not in captured.out
    # found before any rerun: no progress bar; both configs named
    assert "regress-toy:" not in captured.err
    assert "the baseline was recorded from config 'regress-toy', this is 'regress-toy' (edited since)" in (
        captured.err
    )


def test_cli_misspelt_controller_is_bad_input_not_a_changed_config(
    setup, toy, synthetic_store_path, tmp_path, capsys
):
    """An edited config with an unknown controller name is a config error (exit 2, the name
    and the available ones), not "inputs changed since the baseline" (exit 1)."""
    _, baseline = setup
    path = tmp_path / "misspelt.toml"
    path.write_text(CONFIG.format(store=synthetic_store_path, seed=7).replace('"toy-pg"', '"toy-pgg"'))
    assert main(["regress", "check", str(path), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown controller 'toy-pgg'" in err and "config_sha256" not in err


def test_a_baseline_with_none_of_the_configs_cells_is_bad_input(
    setup, toy, synthetic_store_path, tmp_path, capsys
):
    """With --allow-input-change, a baseline of another config whose cells are all other
    ones: one line naming both sets of cells, exit 2, before any rerun (it used to end in
    a KeyError traceback on the empty comparison table)."""
    _, baseline = setup
    path = tmp_path / "relabelled.toml"
    path.write_text(
        CONFIG.format(store=synthetic_store_path, seed=7).replace('"toy-pg"', '"toy-pg"\nlabel = "pg"')
    )
    args = ["regress", "check", str(path), "--baseline", str(baseline), "--allow-input-change"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has none of the cells of config 'regress-toy'" in err, err
    assert "toy-pg__lam00, toy-pg__lam01" in err and "(pg__lam00, pg__lam01)" in err


def test_missing_cells_fail(setup, rerun):
    doc = read_baseline(setup[1])
    doc["cells"] = doc["cells"][:1]
    report = compare(doc, rerun[0])
    assert any("cells not in the baseline: toy-pg__lam01" in line for line in report.failures())


def test_bad_baseline_and_alpha(tmp_path, setup, toy):
    config, baseline = setup
    with pytest.raises(RegressError, match="does not exist; record one"):
        read_baseline(tmp_path / "nope.json")
    with pytest.raises(RegressError, match="is a folder; pass the baseline JSON"):
        read_baseline(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(RegressError, match="expected 'bionas-bench-regress-baseline/1'"):
        read_baseline(tmp_path / "bad.json")
    with pytest.raises(RegressError, match="alpha must be in"):
        regress_check(config, baseline, alpha=1.5)
    assert main(["regress", "check", str(config), "--baseline", str(tmp_path / "nope.json")]) == 2
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(RegressError, match="is a folder; give the path of the baseline JSON file"):
        record(config, folder)
    assert list(tmp_path.glob("folder*")) == [folder] and not list(folder.iterdir())


def test_record_replaces_a_baseline_but_no_other_file(setup, toy, tmp_path, capsys):
    """``regress record --out`` used to overwrite any file; now only a baseline (recorded again
    after an intended change, even a damaged one), checked before the sweep runs."""
    config, baseline = setup
    precious = tmp_path / "precious.txt"
    other = tmp_path / "other.json"
    for path, text in ((precious, "notes\n"), (other, json.dumps({"format": "other"}))):
        path.write_text(text)
        assert main(["regress", "record", str(config), "--out", str(path), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"--out {path} exists and is not a baseline written by 'regress record'" in err
        assert "give a new path" in err and path.read_text() == text
    assert sorted(tmp_path.iterdir()) == [other, precious]  # no .tmp left either
    damaged = tmp_path / "damaged.json"
    doc = read_baseline(baseline)
    doc["cells"][0]["runs"] = "x"
    damaged.write_text(json.dumps(doc))
    record(config, damaged)
    assert read_baseline(damaged) == read_baseline(baseline)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("cells"), "no cells"),
        (lambda d: d.update(cells={}), "no cells"),
        (lambda d: d["config"].pop("sha256"), "no config name and sha256"),
        (lambda d: d["cells"][0].pop("runs"), "cells[0].runs is missing or not a int"),
        (lambda d: d["cells"][0]["metrics"].pop("loss_rank"), "loss_rank: expected 30 per-run values"),
        (lambda d: d["cells"][0]["metrics"]["loss_rank"]["values"].pop(), "expected 30 per-run values"),
        (lambda d: d["cells"][0]["metrics"]["loss_rank"]["values"].__setitem__(0, "x"), "is not a number"),
        (lambda d: d["cells"][0]["metrics"]["loss_rank"]["values"].__setitem__(0, 99.0), "summary does not"),
    ],
)
def test_a_damaged_baseline_is_refused_before_the_rerun(setup, tmp_path, edit, message):
    doc = read_baseline(setup[1])
    edit(doc)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RegressError, match="is damaged or was edited: .*" + re.escape(message)):
        read_baseline(path)


def test_exact_compares_the_values_as_well_as_the_digest(setup, rerun):
    """A baseline whose per-run values (and their summary) differ while its digests match
    is not bit-identical."""
    doc = read_baseline(setup[1])
    assert not exact_differences(doc, rerun[0])
    cell = doc["cells"][0]
    cell["metrics"]["objective_rank"]["values"][3] += 20.0
    differences = exact_differences(doc, rerun[0])
    assert len(differences) == 1 and "1 runs differ in objective_rank, first run 3" in differences[0]


def test_deterministic_reruns_cells_without_comparing_bits(setup, toy, capsys):
    """--deterministic: a baseline recorded elsewhere (same statistics, other bits) passes,
    where --exact fails on it; the in-process rerun still runs."""
    config, baseline = setup
    doc = read_baseline(baseline)
    doc["cells"][0]["digest"] = "0" * 64  # the trajectories of another CPU's rounding
    report = regress_check(config, doc, deterministic=True)
    assert report.passed and report.deterministic and not report.exact and not report.exact_failures
    assert not regress_check(config, doc, exact=True).passed
    assert main(["regress", "check", str(config), "--baseline", str(baseline), "--deterministic"]) == 0
    assert "PASS (deterministic): 0 significant regression(s)" in capsys.readouterr().out


def test_deterministic_fails_a_nondeterministic_controller(setup, monkeypatch):
    config, baseline = setup
    use(monkeypatch, Unseeded)
    report = regress_check(config, baseline, deterministic=True)
    text = "\n".join(report.failures())
    assert not report.passed
    assert "nondeterministic" in text and "not bit-identical" not in text


def test_keep_folder_errors_name_the_folder_not_the_sweeps_flag(setup, toy, tmp_path, capsys):
    """The rerun's results go to --keep: its errors name that folder, not the sweep's --out."""
    config, baseline = setup
    (tmp_path / "file").write_text("x")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("x")
    for keep, message in [("file", "is a file"), ("used", "is not a sweep's results")]:
        argv = ["regress", "check", str(config), "--baseline", str(baseline), "--keep", str(tmp_path / keep)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and str(tmp_path / keep) in err and "--out" not in err


# ---------------------------------------------------------------------- statistics
def test_mann_whitney_direction_and_ties():
    base = np.arange(30, dtype=float)
    assert mann_whitney_worse(base + 20, base)[1] < 1e-3
    assert mann_whitney_worse(base - 20, base)[1] > 0.99
    assert mann_whitney_worse(np.ones(30), np.ones(30)) == (0.5, 1.0)
    effect, _ = mann_whitney_worse(base + 100, base)
    assert effect == 1.0


def test_stated_power_matches_simulation():
    """At the stated minimum detectable effect the simulated power is about 0.8."""
    d = detectable_d(30, 30, 0.05 / 12)
    assert 0.7 < d < 1.2
    power = power_at([d], runs=30, tests=12, sims=300, seed=1)[d]
    assert 0.65 <= power <= 0.95


def test_with_seed_rewrites_only_the_sweep_seed(setup):
    config, _ = setup
    loaded = load_sweep_config(config)
    other = with_seed(loaded, 123)
    assert other.seed == 123 and other.runs == loaded.runs and other.sha256 != loaded.sha256
    assert "seed = 123" in other.text


def test_false_alarm_rate_runs(setup, toy, capsys):
    config, _ = setup
    seen = []
    report = false_alarm_rate(config, trials=1, progress=lambda i, alarm: seen.append(i))
    assert seen == [1] and report.trials == 1 and report.seeds == [8]
    assert 0 <= report.alarms <= 1 and 0 <= report.ci_low <= report.ci_high <= 1
    assert set(report.alarm_cells) == {"toy-pg__lam00", "toy-pg__lam01"}
    code = main(["regress", "false-alarm", str(config), "--trials", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert f"{report.alarms}/1" in out and "false-alarm rate of unchanged regress-toy" in out
    assert code == (1 if report.alarms else 0)
    for trials in ("0", "-5"):  # one line, no progress bar drawn before it
        assert main(["regress", "false-alarm", str(config), "--trials", trials]) == 2
        err = capsys.readouterr().err
        assert err == f"bionas-bench regress false-alarm: error: --trials must be >= 1, got {trials}\n"


@pytest.mark.parametrize("name", ["regress", "regress-ppo"])
def test_shipped_regress_configs_are_small_and_match_their_baselines(name):
    config = load_sweep_config(name)
    cells = len(config.cells())
    assert 4 <= cells <= 8 and 20 <= config.runs <= 50
    assert cells * config.runs * config.budget.samples <= 35_000
    assert config.store.source == "embedded"
    # an edited config without a re-recorded baseline fails here, before CI's long rerun
    baseline = read_baseline(Path(__file__).parents[1] / "reports" / "baselines" / f"{name}.json")
    assert baseline["config"]["sha256"] == config.sha256
    assert {cell["key"] for cell in baseline["cells"]} == {cell.key for cell in config.cells()}
