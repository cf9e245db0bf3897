"""Sweeps: config validation, seeds, determinism across schedulers, resume, results."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import ctrl_c, group_gone
from toy_controllers import SoftmaxPolicy

import bionas_bench as bb
from bionas_bench import controllers
from bionas_bench.cli import main
from bionas_bench.controllers.base import Controller, check
from bionas_bench.errors import ManifestError, SweepError
from bionas_bench.manifests import parse_manifest
from bionas_bench.sweep import (
    RUNS_PER_TASK,
    _check_written,
    cell_path,
    is_done,
    load_results,
    load_sweep_config,
    parse_sweep_config,
    part_path,
    plan_sweep,
    plan_tasks,
    read_cell,
    run_seeds,
    run_sweep,
    run_task,
)

TOY_CONFIG = """
[sweep]
name = "toy"
seed = 7
lambdas = [0.01, 1.0, 100.0]
runs = 4

[budget]
episodes = 12
archs_per_episode = 3

[store]
source = "path"
path = "{store}"

[[controllers]]
name = "toy-policy"
params = {{ lr = 0.5 }}

[[controllers]]
name = "toy-random"
"""


# ---------------------------------------------------------------------- stand-ins
@dataclasses.dataclass(frozen=True)
class ToyParams:
    lr: float = 0.3

    def __post_init__(self):
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")


class ToyPolicy(SoftmaxPolicy):
    """A tiny softmax-per-layer policy (numpy REINFORCE): a stand-in policy controller."""

    name = "toy-policy"
    Params = ToyParams

    def _tell(self, ids, rewards, info):
        mean = float(rewards.mean())
        self.baseline = mean if self.baseline is None else 0.8 * self.baseline + 0.2 * mean
        digits = self.space.decode(ids)
        for arch_digits, reward in zip(digits, rewards, strict=True):
            for layer, d in enumerate(arch_digits):
                p = self.policy()[layer]
                grad = -p
                grad[d] += 1.0
                self.logits[layer] += self.params.lr * (reward - self.baseline) * grad


class ToyRandom(Controller):
    """Uniform random search with the best observed mean reward as incumbent."""

    name = "toy-random"

    def __init__(self, space, seed=0, **hp):
        super().__init__(space, seed, **hp)
        self.sums: dict[int, list[float]] = {}

    def _ask(self, n):
        return self.rng.integers(0, self.space.size, size=n)

    def _tell(self, ids, rewards, info):
        assert "cost" in info
        for a, r in zip(ids.tolist(), rewards.tolist(), strict=True):
            self.sums.setdefault(a, []).append(r)

    def recommend(self):
        if not self.sums:
            return 0
        return max(sorted(self.sums), key=lambda a: np.mean(self.sums[a]))


@pytest.fixture
def toy_controllers(monkeypatch):
    monkeypatch.setitem(controllers.BUILTIN, "toy-policy", f"{__name__}:ToyPolicy")
    monkeypatch.setitem(controllers.BUILTIN, "toy-random", f"{__name__}:ToyRandom")


def make_store(path: Path, replicates: int = 5, seed: int = 0, done: np.ndarray | None = None) -> Path:
    """A synthetic 216-arch store with a loss/knowledge trade-off driven by layer 0
    (``done``: the done mask, default all)."""
    from bionas_bench.space import get_space
    from bionas_bench.store import Store

    space = get_space("bionas-conv1d")
    rng = np.random.default_rng(seed)
    digits = space.enumerate()
    shape = (space.size, replicates)
    base_loss = 0.2 + 0.04 * digits[:, 0] + 0.02 * digits[:, 2] + 0.01 * digits[:, 3]
    base_k = 1.2 - 0.15 * digits[:, 0] + 0.03 * digits[:, 1]
    loss = base_loss[:, None] + rng.normal(0, 0.02, shape)
    know = base_k[:, None] + rng.normal(0, 0.02, shape)
    store = Store.create(
        path,
        space=space,
        num_replicates=replicates,
        metrics=["val_loss", "accuracy", "train_seconds"],
        knowledge_sets=["motif"],
    )
    store.write_block(
        metrics={"val_loss": loss, "accuracy": 1 - loss, "train_seconds": rng.uniform(10, 100, shape)},
        knowledge={"motif": know},
        failed=np.zeros(shape, dtype=bool),
        done=np.ones(shape, dtype=bool) if done is None else done,
    )
    return path


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "toy.zarr")


def toy_config(tmp_path: Path, store: Path, text: str = TOY_CONFIG):
    path = tmp_path / "toy.toml"
    path.write_text(text.format(store=store))
    return load_sweep_config(path)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------- config
def test_shipped_configs_load():
    paper = load_sweep_config("paper-fig2")
    assert paper.lambdas == (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    assert paper.runs == 100 and paper.budget.episodes == 200 and paper.budget.archs_per_episode == 3
    assert [c.name for c in paper.controllers] == ["ppo", "random"]
    demo = load_sweep_config("demo")
    assert demo.runs * demo.budget.samples * len(demo.lambdas) <= 50_000
    pub = load_sweep_config("paper-fig2-pub")
    assert pub.store.source == "bionas-pub" and pub.lambdas == paper.lambdas


def test_quick_paper_config_runs_are_the_first_runs_of_the_paper_config():
    """paper-fig2-quick = paper-fig2 with 20 runs: the same protocol and the same first 20
    runs (seeds), so its figures are paper-fig2's on fewer runs."""
    paper, quick = load_sweep_config("paper-fig2"), load_sweep_config("paper-fig2-quick")
    assert quick.runs == 20 and quick.seed == paper.seed and quick.lambdas == paper.lambdas
    assert quick.budget == paper.budget and quick.controllers == paper.controllers
    assert quick.oracle == paper.oracle and quick.store == paper.store
    for cell_q, cell_p in zip(quick.cells(), paper.cells(), strict=True):
        seeds_q, seeds_p = run_seeds(quick, cell_q), run_seeds(paper, cell_p)
        assert seeds_q[0] == seeds_p[0][:20] and seeds_q[1] == seeds_p[1][:20]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("runs = 4", "runs = 4\nrunz = 3"), "unknown key"),
        (("lambdas = [0.01, 1.0, 100.0]", "lambdas = [0.01, -1.0]"), "lambdas"),
        (("lambdas = [0.01, 1.0, 100.0]", "lambdas = [1.0, 1.0]"), "duplicates"),
        (("episodes = 12", "episodes = 0"), "episodes"),
        (('source = "path"', 'source = "cloud"'), "source"),
        (('name = "toy-random"', 'name = "toy-policy"'), "labels must be unique"),
        (("runs = 4", "runs = 4.5"), "'runs' must be int"),
        (("seed = 7", "seed = -7"), r"\[sweep\].seed must be an integer >= 0"),
        (("[0.01, 1.0, 100.0]", "[1e308, 1.0]"), r"\[sweep\].lambdas must be numbers from 0 to 1e\+12"),
        (("[0.01, 1.0, 100.0]", "[1.0, nan]"), r"\[sweep\].lambdas must be numbers from 0 to 1e\+12"),
        (('name = "toy-random"', 'name = "toy-random"\n[report]\npolicy_lambdas = ["a"]'), "policy_lambdas"),
        (('name = "toy-random"', 'name = "toy-random"\n[report]\npolicy_lambdas = [[1]]'), "policy_lambdas"),
    ],
)
def test_config_errors_name_the_key(tmp_path, edit, message):
    text = TOY_CONFIG.format(store=tmp_path).replace(*edit)
    with pytest.raises(ManifestError, match=message):
        parse_sweep_config(parse_manifest("sweeps", text, tmp_path / "bad.toml"))


def test_seeds_depend_on_content_not_position(tmp_path, toy_store):
    config = toy_config(tmp_path, toy_store)
    cells = config.cells()
    seeds = {c.key: run_seeds(config, c) for c in cells}
    flat = [s for cs, os_ in seeds.values() for s in cs + os_]
    assert len(set(flat)) == len(flat)
    # dropping a lambda and a controller leaves the remaining cells' seeds unchanged
    smaller = toy_config(
        tmp_path,
        toy_store,
        TOY_CONFIG.replace("[0.01, 1.0, 100.0]", "[1.0]").replace(
            '\n[[controllers]]\nname = "toy-random"\n', ""
        ),
    )
    (only,) = smaller.cells()
    assert run_seeds(smaller, only) == run_seeds(
        config, next(c for c in cells if c.lam == 1.0 and c.controller.label == "toy-policy")
    )


# ---------------------------------------------------------------------- running
def test_recorded_ppo_policy_is_what_recommend_smooths(tmp_path, toy_store):
    """The policy a sweep records per step is the one the step's architectures were drawn
    from (policy() after the ask), so the recommended architecture of every run is the
    per-layer argmax of the mean of its last 10 recorded steps -- the original's rule,
    applied to what the report plots."""
    text = (
        TOY_CONFIG.replace("[0.01, 1.0, 100.0]", "[1.0]")
        .replace(
            'name = "toy-policy"\nparams = {{ lr = 0.5 }}', 'name = "ppo"\nparams = {{ warmup_episodes = 2 }}'
        )
        .replace('\n[[controllers]]\nname = "toy-random"\n', "")
    )
    config = toy_config(tmp_path, toy_store, text)
    res = load_results(run_sweep(config, tmp_path / "out", scheduler="sync").out)
    cell = res.cell("ppo", 1.0)
    layers = list(cell.policy.values())
    assert len(layers) == 4 and layers[0].shape[:2] == (4, 12)
    smoothed = np.stack([probs[:, -10:].mean(axis=1).argmax(axis=-1) for probs in layers], axis=-1)
    np.testing.assert_array_equal(cell.runs["recommended"], bb.get_space("bionas-conv1d").encode(smoothed))


def test_sweep_results_complete_and_consistent(tmp_path, toy_store, toy_controllers):
    config = toy_config(tmp_path, toy_store)
    events = []
    run = run_sweep(config, tmp_path / "out", scheduler="sync", progress=events.append)
    assert [e.done for e in events] == list(range(7)) and not run.skipped
    assert (events[0].key, events[0].runs, events[0].total) == ("", 0, 6)  # before any task: checks passed
    res = load_results(run.out)
    assert set(res.cells) == {c.key for c in config.cells()}
    cell = res.cell("toy-policy", 1.0)
    assert cell.steps["arch"].shape == (4, 12, 3)
    assert {"arch", "replicate", "loss", "knowledge", "reward", "cost", "failed"} <= set(cell.steps)
    np.testing.assert_allclose(
        cell.steps["reward"], -(cell.steps["loss"] + 1.0 * cell.steps["knowledge"]), rtol=1e-12
    )
    assert set(cell.policy) == {"conv", "pool", "flatten", "dense"} or len(cell.policy) == 4
    for probs in cell.policy.values():
        np.testing.assert_allclose(probs.sum(axis=2), 1.0)
    assert "toy-random" in {c[0]["label"] for c in res.cells.values()}
    assert not res.cell("toy-random", 1.0).policy
    gold = res.gold[res.gold["lam"] == 1.0].set_index("arch")
    runs = cell.runs
    np.testing.assert_array_equal(runs["recommended"], cell.incumbent[:, -1])
    assert (cell.incumbent[:, :-1] == -1).all()  # recommend() only after the last episode by default
    np.testing.assert_allclose(runs["objective_rank"], gold.loc[runs["recommended"], "objective_rank"])
    assert res.meta["config"]["sha256"] == config.sha256
    assert res.meta["space"]["name"] == "bionas-conv1d"


def test_deterministic_across_schedulers_and_resumable(tmp_path, toy_store, toy_controllers):
    config = toy_config(tmp_path, toy_store)
    sync = run_sweep(config, tmp_path / "sync", scheduler="sync")
    threads = run_sweep(config, tmp_path / "threads", scheduler="threads")
    assert tree_digest(sync.out) == tree_digest(threads.out)
    # resume: a finished cell is not rerun; a removed one is
    victim = next((sync.out / "cells").glob("toy-random__lam01.zarr"))
    shutil.rmtree(victim)
    again = run_sweep(config, sync.out, scheduler="sync")
    assert len(again.skipped) == 5 and "toy-random__lam01" not in again.skipped
    assert tree_digest(sync.out) == tree_digest(threads.out)


def test_a_damaged_cell_is_refused_by_the_report_and_recomputed_by_a_resume(
    tmp_path, toy_store, toy_controllers
):
    """A finished cell that lost a chunk (read as zeros before) or an array (skipped with
    a warning) is an error naming the fix when read, and not done: the dry run counts it
    to run, and a resume recomputes it into the bytes of an intact run. Every chunk is
    written, an all-False one too, so that a missing chunk always means a lost one."""
    config = toy_config(tmp_path, toy_store)
    intact = run_sweep(config, tmp_path / "intact", scheduler="sync").out
    first = cell_path(intact, config.cells()[0])
    assert not read_cell(first)[1].steps["failed"].any()
    assert [p for p in (first / "steps" / "failed" / "c").rglob("*") if p.is_file()]
    out = tmp_path / "damaged"
    shutil.copytree(intact, out)
    lost_chunk, lost_array = (
        out / "cells" / "toy-policy__lam01.zarr",
        out / "cells" / "toy-random__lam02.zarr",
    )
    shutil.rmtree(lost_chunk / "runs" / "objective_rank" / "c")
    (lost_array / "steps" / "loss" / "zarr.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ZarrUserWarning about the missing array
        for cell, what in ((lost_chunk, "array runs/objective_rank lacks 1 of its 1 chunk"),
                           (lost_array, "array steps/loss is missing")):  # fmt: skip
            with pytest.raises(SweepError, match=rf"results cell {re.escape(str(cell))} is damaged .*{what}"):
                read_cell(cell)
            assert not is_done(cell)
    with pytest.raises(SweepError, match="toy-policy__lam01.zarr is damaged and cannot be read"):
        load_results(out)
    plan = plan_sweep(config, out)
    assert {c.cell.key for c in plan.cells if c.tasks_to_run} == {"toy-policy__lam01", "toy-random__lam02"}
    again = run_sweep(config, out, scheduler="sync")
    assert len(again.skipped) == 4 and tree_digest(out) == tree_digest(intact)


SLICED_CONFIG = """
[sweep]
name = "sliced"
seed = 5
lambdas = [0.1, 10.0]
runs = 5

[budget]
episodes = 18
archs_per_episode = 3

[store]
source = "path"
path = "{store}"

[[controllers]]
name = "ppo"
params = {{ warmup_episodes = 3, max_epochs = 3 }}

[[controllers]]
name = "random"

[[controllers]]
name = "evolution"

[[controllers]]
name = "toy-policy"
"""


def test_slices_of_runs_give_the_same_bytes_as_whole_cells(tmp_path, toy_store, toy_controllers):
    """Cells cut into tasks of 2 + 2 + 1 runs, in order or on threads, are joined into the
    same files as whole cells (batched and looped controllers alike); no slice is left."""
    config = toy_config(tmp_path, toy_store, SLICED_CONFIG)
    assert [(t.lo, t.hi) for t in plan_tasks(config, 2)[:3]] == [(0, 2), (2, 4), (4, 5)]
    whole = run_sweep(config, tmp_path / "whole", scheduler="sync", runs_per_task=0)
    events = []
    sliced = run_sweep(config, tmp_path / "sliced", scheduler="sync", runs_per_task=2, progress=events.append)
    threads = run_sweep(config, tmp_path / "threads", scheduler="threads", runs_per_task=2)
    assert tree_digest(sliced.out) == tree_digest(whole.out) == tree_digest(threads.out)
    # a scheduler reached by its address (its workers are threads here, to share the toy controllers)
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote = run_sweep(config, tmp_path / "remote", scheduler=cluster.scheduler_address)
    assert tree_digest(remote.out) == tree_digest(whole.out)
    assert not list((sliced.out / "cells").glob("*.parts"))
    assert len(events) == 1 + 3 * len(config.cells()) and sum(e.runs for e in events) == 5 * len(
        config.cells()
    )
    assert sum(e.cell_done for e in events) == len(config.cells())
    assert set(sliced.cell_seconds) == {c.key for c in config.cells()}


def test_finished_slices_are_kept_on_resume(tmp_path, toy_store, toy_controllers):
    """A cell of which one slice was written and another cut short (its ``.partial``), as a
    killed worker leaves them: the resumed sweep runs only the missing slices and joins
    the same cell as a whole-cell run."""
    config = toy_config(tmp_path, toy_store, SLICED_CONFIG)
    whole = run_sweep(config, tmp_path / "whole", scheduler="sync", runs_per_task=0)
    out = run_sweep(config, tmp_path / "resumed", scheduler="sync", runs_per_task=2).out
    first, second, _ = plan_tasks(config, 2)[:3]
    shutil.rmtree(out / "cells" / f"{first.cell.key}.zarr")
    run_task(config, first, str(toy_store), str(out))
    part_path(out, second).with_name(f"{second.name}.zarr.partial").mkdir()
    events = []
    again = run_sweep(config, out, scheduler="sync", runs_per_task=2, progress=events.append)
    assert first.cell.key not in again.skipped and len(again.skipped) == len(config.cells()) - 1
    mine = [(e.runs, e.skipped) for e in events if e.key == first.cell.key]
    assert mine == [(2, True), (2, False), (1, False)]
    assert tree_digest(out) == tree_digest(whole.out)
    # every slice written but the cell not joined (a stop right after the last slice)
    shutil.rmtree(out / "cells" / f"{first.cell.key}.zarr")
    for task in plan_tasks(config, 2)[:3]:
        run_task(config, task, str(toy_store), str(out))
    again = run_sweep(config, out, scheduler="sync", runs_per_task=2)
    assert first.cell.key not in again.skipped and again.cell_cpu_seconds[first.cell.key] == 0.0
    assert tree_digest(out) == tree_digest(whole.out)


def test_the_cli_counts_finished_slices_as_done_before(tmp_path, toy_store, toy_controllers, capsys):
    """Resuming a folder with 7 whole cells and one finished slice of the eighth: the
    summary counts the slice's runs too (it said only "7 already done")."""
    config = toy_config(tmp_path, toy_store, SLICED_CONFIG)  # 8 cells of 5 runs
    out = run_sweep(config, tmp_path / "out", scheduler="sync", runs_per_task=2).out
    first = plan_tasks(config, 2)[0]
    shutil.rmtree(out / "cells" / f"{first.cell.key}.zarr")
    run_task(config, first, str(toy_store), str(out))
    args = ["sweep", str(config.path), "--out", str(out), "--scheduler", "sync", "--runs-per-task", "2"]
    assert main([*args, "--quiet"]) == 0
    assert "7 already done (37 of 40 runs, finished slices included)" in capsys.readouterr().out


def test_dry_run_shows_what_a_sweep_would_run(tmp_path, toy_store, toy_controllers, capsys):
    """plan_sweep / --dry-run: the tasks a sweep would run, counted as the sweep counts
    them (a slice of another split is not a finished task), the same refusals, no writes."""
    config = toy_config(tmp_path, toy_store, SLICED_CONFIG)  # 8 cells of 5 runs
    out = tmp_path / "out"
    fresh = plan_sweep(config, out, runs_per_task=2)
    assert (fresh.tasks, fresh.tasks_to_run, fresh.runs_to_run, fresh.task_runs) == (24, 24, 40, 2)
    assert not out.exists()
    run_sweep(config, out, scheduler="sync", runs_per_task=2)
    assert plan_sweep(config, out, runs_per_task=2).runs_to_run == 0
    first, second, third = plan_tasks(config, 2)[:3]
    shutil.rmtree(out / "cells" / f"{first.cell.key}.zarr")
    run_task(config, second, str(toy_store), str(out))
    before = tree_digest(out)
    plan = plan_sweep(config, out, runs_per_task=2)
    assert [(c.cell.key, c.tasks, c.tasks_to_run, c.runs_to_run) for c in plan.cells if c.tasks_to_run] == [
        (first.cell.key, 3, 2, 3)
    ]
    assert plan_sweep(config, out, runs_per_task=0).runs_to_run == 5  # another split: the cell reruns
    assert plan_sweep(config, out, "sync").workers == 1  # planned for the scheduler's workers
    assert main(["sweep", config.path, "--out", str(out), "--runs-per-task", "2", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "7 of 8 cells done, 1 partly" in text and "3 of 40 runs to run in 2 task(s)" in text
    assert f"{first.cell.key}" in text and "2/5  partly" in text
    assert tree_digest(out) == before and not (out / ".sweep.lock").exists()
    events = []
    run_sweep(config, out, scheduler="sync", runs_per_task=2, progress=events.append)
    assert sum(e.done > 0 and not e.skipped for e in events) == plan.tasks_to_run
    assert sum(e.runs for e in events if not e.skipped) == plan.runs_to_run
    # the refusals of the sweep itself
    other = toy_config(tmp_path, toy_store, SLICED_CONFIG.replace("seed = 5", "seed = 6"))
    with pytest.raises(SweepError, match="another sweep config"):
        plan_sweep(other, out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SweepError, match="is a file"):
        plan_sweep(config, tmp_path / "file")
    bad = toy_config(tmp_path, toy_store, SLICED_CONFIG.replace('name = "random"', 'name = "nope"'))
    assert main(["sweep", bad.path, "--out", str(tmp_path / "new"), "--dry-run"]) != 0
    assert "unknown controller 'nope'" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_automatic_split(tmp_path, toy_store):
    """At most RUNS_PER_TASK runs a task, smaller where a worker would get < 2 tasks."""
    config = toy_config(tmp_path, toy_store, SLICED_CONFIG)  # 8 cells of 5 runs
    for workers in (1, 2, 4):
        assert {(t.lo, t.hi) for t in plan_tasks(config, None, workers)} == {(0, 5)}
    assert [(t.lo, t.hi) for t in plan_tasks(config, None, 8)[:2]] == [(0, 3), (3, 5)]
    assert len(plan_tasks(config, None, 20)) == 8 * 5  # at most one run a task
    assert len(plan_tasks(config, 0, 20)) == 8  # explicit whole cells
    paper = load_sweep_config("paper-fig2")  # 14 cells of 100 runs
    assert {t.hi - t.lo for t in plan_tasks(paper, None, 2)} == {RUNS_PER_TASK}
    assert len(plan_tasks(paper, None, 64)) == 14 * 10  # 128 tasks wanted: 10 slices a cell


def test_cells_under_a_gpu_seconds_budget_stay_whole(tmp_path, toy_store):
    text = SLICED_CONFIG.replace("archs_per_episode = 3", "archs_per_episode = 3\ngpu_seconds = 500.0")
    config = toy_config(tmp_path, toy_store, text)
    assert [(t.lo, t.hi) for t in plan_tasks(config, 2)] == [(0, 5)] * len(config.cells())
    with pytest.raises(SweepError, match="runs per task must be a whole number >= 0"):
        plan_tasks(config, -1)
    argv = ["sweep", config.path, "--out", str(tmp_path / "o"), "--runs-per-task", "-3"]
    assert main(argv) != 0
    assert not (tmp_path / "o").exists()


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path, toy_store, toy_controllers):
    """A live lock (another process of this host) refuses the sweep and writes nothing; a
    lock whose process has ended is taken over; no lock is left behind."""
    import socket
    import subprocess

    config = toy_config(tmp_path, toy_store)
    out = tmp_path / "out"
    out.mkdir()
    host = socket.gethostname()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            (out / ".sweep.lock").write_text(f"{other.pid} {host}\n")
            with pytest.raises(SweepError, match="being written by another sweep"):
                run_sweep(config, out, scheduler="sync")
            assert sorted(p.name for p in out.iterdir()) == [".sweep.lock"]
        finally:
            other.kill()
    other.wait()
    run_sweep(config, out, scheduler="sync")  # the lock's process has ended: taken over
    assert not (out / ".sweep.lock").exists() and load_results(out).cells
    (tmp_path / "file").write_text("x")
    with pytest.raises(SweepError, match="is a file"):
        run_sweep(config, tmp_path / "file", scheduler="sync")


def test_results_of_another_config_are_refused(tmp_path, toy_store, toy_controllers):
    config = toy_config(tmp_path, toy_store)
    run_sweep(config, tmp_path / "out", scheduler="sync")
    other = toy_config(tmp_path, toy_store, TOY_CONFIG.replace("seed = 7", "seed = 8"))
    with pytest.raises(SweepError, match="another sweep config"):
        run_sweep(other, tmp_path / "out", scheduler="sync")


def test_the_library_runs_in_this_process_by_default(tmp_path, toy_store, toy_controllers, monkeypatch):
    """run_sweep without a scheduler runs in the calling process (as run_farm), so a plain
    script needs no main guard; no Dask cluster is started."""
    import bionas_bench.cluster

    def no_cluster(*args, **kwargs):
        raise AssertionError("a Dask cluster was started")

    monkeypatch.setattr(bionas_bench.cluster, "dask_client", no_cluster)
    run = run_sweep(toy_config(tmp_path, toy_store), tmp_path / "out")
    assert not run.skipped and all(is_done(cell_path(run.out, c)) for c in run.config.cells())


def test_api_misuse_is_a_clear_error_and_writes_nothing(tmp_path, toy_store):
    """A config that is not a name or path, and a progress that is not a function: one
    clear error each, before the results folder is made."""
    for bad in ({"sweep": {}}, None, 3):
        with pytest.raises(ManifestError, match="given by a shipped name or the path of a .toml file"):
            load_sweep_config(bad)
    with pytest.raises(SweepError, match="progress must be None or a function"):
        run_sweep(toy_config(tmp_path, toy_store), tmp_path / "out", progress=5)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_a_main_guard_gets_the_fix(tmp_path, toy_store, guarded):
    """A script calling run_sweep(scheduler="local") at module level is imported again by
    every worker process. There the call stops the worker with one line naming the fix
    (no traceback), and the script gets a SweepError with the same advice (not Dask's
    bare "Nanny failed to start"). The same script with the guard runs the sweep."""
    text = TOY_CONFIG.split("[[controllers]]")[0] + '[[controllers]]\nname = "random"\n'
    config = toy_config(tmp_path, toy_store, text)  # a built-in controller: the script registers none
    out = str(tmp_path / "out")
    call = f"bb.run_sweep(bb.load_sweep_config({str(config.path)!r}), {out!r}, scheduler='local')"
    body = f"if __name__ == '__main__':\n    {call}\n    print('finished')\n" if guarded else call + "\n"
    script = tmp_path / "script.py"
    script.write_text("import bionas_bench as bb\n" + body)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    if guarded:
        assert proc.returncode == 0 and proc.stdout.strip() == "finished", proc.stderr
        return
    assert proc.returncode != 0
    worker_lines = [line for line in proc.stderr.splitlines() if "ran in a worker process" in line]
    assert worker_lines and all(
        line.startswith("bionas-bench: run_sweep(scheduler='local')") for line in worker_lines
    )
    assert 'if __name__ == "__main__":' in worker_lines[0]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("bionas_bench.errors.SweepError: the local Dask cluster's worker processes failed")
    assert 'if __name__ == "__main__":' in last
    assert "is being written by another sweep" not in proc.stderr


def test_results_of_another_package_version_are_refused(tmp_path, toy_store, toy_controllers, capsys):
    """Finished cells of an older bionas-bench are not mixed with this version's: refused,
    the folder untouched."""
    config = toy_config(tmp_path, toy_store)
    out = tmp_path / "out"
    run_sweep(config, out, scheduler="sync")
    meta = json.loads((out / "sweep.json").read_text())
    meta["package_version"] = "0.0.1"
    (out / "sweep.json").write_text(json.dumps(meta))
    before = tree_digest(out)
    with pytest.raises(SweepError, match=r"written by bionas-bench 0\.0\.1, this is "):
        run_sweep(config, out, scheduler="sync")
    assert main(["sweep", config.path, "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use a new results folder" in err
    assert tree_digest(out) == before


def test_results_resume_on_a_copy_of_the_store_but_not_on_other_values(tmp_path, toy_store, toy_controllers):
    """A results folder belongs to a store's content, not to where the store lies (an
    imported table's cache moves with $BIONAS_BENCH_CACHE); other values are refused."""
    config = toy_config(tmp_path, toy_store)
    out = tmp_path / "out"
    run_sweep(config, out, scheduler="sync", store=toy_store)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(toy_store, copy)
    again = run_sweep(config, out, scheduler="sync", store=copy)
    assert set(again.skipped) == {c.key for c in config.cells()}
    other = make_store(tmp_path / "other.zarr", seed=1)
    with pytest.raises(SweepError, match="scored against another gold standard"):
        run_sweep(config, out, scheduler="sync", store=other)


def test_a_relative_out_is_made_absolute_and_every_cell_is_checked(
    tmp_path, toy_store, toy_controllers, monkeypatch
):
    """Workers of a scheduler address run in their own folders: they get absolute paths,
    and cells the workers wrote where this machine cannot see them are an error."""
    config = toy_config(tmp_path, toy_store)
    monkeypatch.chdir(tmp_path)
    done = run_sweep(config, "rel", scheduler="sync")
    assert done.out == tmp_path / "rel" and done.out.is_absolute()
    with pytest.raises(SweepError, match="must be on a file system that this machine and every worker share"):
        _check_written(config, tmp_path / "elsewhere", "tcp://host:8786")


def test_unknown_controller_fails_before_work(tmp_path, toy_store, toy_controllers):
    config = toy_config(tmp_path, toy_store, TOY_CONFIG.replace('name = "toy-random"', 'name = "nope"'))
    with pytest.raises(SweepError, match="unknown controller 'nope'"):
        run_sweep(config, tmp_path / "out", scheduler="sync")
    bad = toy_config(tmp_path, toy_store, TOY_CONFIG.replace("lr = 0.5", "lr = -1.0"))
    with pytest.raises(SweepError, match="lr"):
        run_sweep(bad, tmp_path / "out2", scheduler="sync")


@pytest.mark.parametrize(
    ("oracle", "message"),
    [
        ('loss = "val_los"', "no metric 'val_los'"),
        ('knowledge = "ctcf"', "no knowledge set 'ctcf'"),
        ("replicate = 9", "replicate=9 is out of range"),
        ('record = ["accuracy", "nosuch"]', "record names ['nosuch'], which store"),
    ],
)
def test_oracle_settings_the_store_lacks_fail_before_out(
    tmp_path, toy_store, toy_controllers, capsys, oracle, message
):
    """A metric, knowledge set or replicate the store does not have fails, naming the
    config's [oracle] table, before the results folder is made (and, in the CLI, before
    the progress bar)."""
    config = toy_config(tmp_path, toy_store, TOY_CONFIG + f"\n[oracle]\n{oracle}\n")
    for call in (run_sweep, plan_sweep):
        with pytest.raises(SweepError, match=rf"toy.toml \[oracle\]: .*{re.escape(message)}"):
            call(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["sweep", config.path, "--out", str(tmp_path / "out"), "--scheduler", "sync"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "out").exists()


def test_incumbent_every(tmp_path, toy_store, toy_controllers):
    text = TOY_CONFIG.replace("runs = 4", "runs = 2\nincumbent_every = 4").replace(
        "[0.01, 1.0, 100.0]", "[1.0]"
    )
    res = load_results(run_sweep(toy_config(tmp_path, toy_store, text), tmp_path / "o", scheduler="sync").out)
    recorded = res.cell("toy-random", 1.0).incumbent >= 0
    assert recorded.all(axis=0).tolist() == [(e + 1) % 4 == 0 for e in range(12)]


def test_gpu_seconds_budget_cuts_runs(tmp_path, toy_store, toy_controllers):
    text = TOY_CONFIG.replace("archs_per_episode = 3", "archs_per_episode = 3\ngpu_seconds = 600.0")
    config = toy_config(tmp_path, toy_store, text)
    res = load_results(run_sweep(config, tmp_path / "out", scheduler="sync").out)
    cell = res.cell("toy-random", 1.0)
    spent = np.cumsum(cell.steps["cost"].sum(axis=2), axis=1)
    before = np.concatenate([np.zeros((spent.shape[0], 1)), spent[:, :-1]], axis=1)
    np.testing.assert_array_equal(cell.within_budget, before < 600.0)
    last = cell.within_budget.sum(axis=1) - 1
    np.testing.assert_array_equal(cell.runs["recommended"], cell.incumbent[np.arange(4), last])
    # the report's per-episode curves leave out what a run did past its budget
    from bionas_bench import scoring

    policy = res.cell("toy-policy", 0.01)  # its runs leave the budget at different episodes
    inside = policy.within_budget
    mixed = np.flatnonzero(inside.any(axis=0) & ~inside.all(axis=0))
    assert mixed.size, "some episode should have runs on both sides of the budget"
    e = int(mixed[0])
    loss = scoring.per_step(res, "toy-policy", 0.01, "loss", window=1)
    assert loss["mean"].iloc[e] == pytest.approx(policy.steps["loss"].mean(axis=2)[inside[:, e], e].mean())
    layer, probs = next(iter(policy.policy.items()))
    curves = scoring.policy_curves(res, "toy-policy", 0.01, window=1)
    first = curves[(curves["layer"] == layer) & (curves["choice"] == curves["choice"].iloc[0])]
    assert first["mean"].iloc[e] == pytest.approx(probs[inside[:, e], e, 0].mean())


def test_unreachable_scheduler_is_a_sweep_error(tmp_path, toy_store, toy_controllers, monkeypatch):
    def refuse(address, timeout):
        raise OSError(f"connection to {address} refused")

    monkeypatch.setattr("bionas_bench.cluster.Client", refuse)
    config = toy_config(tmp_path, toy_store)
    with pytest.raises(
        SweepError, match=r"cannot reach the Dask scheduler at 'tcp://nowhere:1'.*--scheduler local"
    ):
        run_sweep(config, tmp_path / "out", scheduler="tcp://nowhere:1")
    assert not (tmp_path / "out").exists()  # the address is tried before the results folder is made


def test_a_store_the_oracle_cannot_serve_is_refused_first(tmp_path, toy_controllers, synthetic_store_path):
    """A partial store (a controller may ask for an untrained architecture) and a
    multi-fidelity controller asking for more epochs than the store's curves hold both
    fail before the results folder is made, naming the fix."""
    done = np.ones((216, 5), dtype=bool)
    done[5] = False
    partial = make_store(tmp_path / "partial.zarr", done=done)
    with pytest.raises(
        SweepError, match=r"no usable replicate for 1 of 216 architectures \(e.g. 5,.*bionas-bench train"
    ):
        run_sweep(toy_config(tmp_path, partial), tmp_path / "out", scheduler="sync")
    text = TOY_CONFIG.replace('name = "toy-policy"\nparams = {{ lr = 0.5 }}', 'name = "hyperband"')
    config = toy_config(tmp_path, synthetic_store_path, text)
    with pytest.raises(
        SweepError, match=r"'hyperband' asks for up to 81 .* 10 epochs; set params = \{ max_epochs = 10 \}"
    ):
        run_sweep(config, tmp_path / "out", scheduler="sync")
    assert not (tmp_path / "out").exists()


def test_a_scheduler_name_that_is_no_address_is_one_line(tmp_path, toy_store, toy_controllers, capsys):
    """A mistyped --scheduler (Dask itself raises ValueError on it) is one line naming the
    values there are, exit 2, nothing written; the farm's "none" means "sync" here."""
    config = toy_config(tmp_path, toy_store)
    for extra in ([], ["--dry-run"]):  # the dry run checks it too
        argv = ["sweep", config.path, "--out", str(tmp_path / "out"), "--scheduler", "bogus", *extra]
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert "--scheduler 'bogus' is neither" in captured.err and "local, threads or sync" in captured.err
        assert len(captured.err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
        assert captured.out == ""
    assert main(["demo", "--out", str(tmp_path / "demo"), "--scheduler", "bogus"]) == 2  # before its header
    captured = capsys.readouterr()
    assert captured.out == "" and "--scheduler 'bogus' is neither" in captured.err
    assert main(["sweep", config.path, "--out", str(tmp_path / "out"), "--scheduler", "none", "--quiet"]) == 0


# ---------------------------------------------------------------------- command line
@pytest.mark.parametrize("flag", [None, "--quiet", "--no-progress"])
def test_quiet_hides_the_progress_bar(tmp_path, toy_store, toy_controllers, capsys, flag):
    """``--quiet`` as in ``train``; ``--no-progress`` (its older name) still works."""
    text = TOY_CONFIG.replace("runs = 4", "runs = 1").replace("[0.01, 1.0, 100.0]", "[1.0]")
    config = toy_config(tmp_path, toy_store, text)
    argv = ["sweep", config.path, "--out", str(tmp_path / "out"), "--scheduler", "sync"]
    assert main(argv + ([flag] if flag else [])) == 0
    captured = capsys.readouterr()
    assert "sweep toy: 2 cells" in captured.out
    assert (captured.err == "") == (flag is not None), captured.err


def test_store_option_takes_a_path_or_a_url(tmp_path, toy_store, toy_controllers, capsys):
    """``--store`` overrides the config's store, given as a path or an fsspec URL (the same
    results); a local path that does not exist is refused before anything is written."""
    text = TOY_CONFIG.replace("runs = 4", "runs = 1").replace("[0.01, 1.0, 100.0]", "[1.0]")
    config = toy_config(tmp_path, toy_store, text)
    for name, store in [("path", str(toy_store)), ("url", toy_store.as_uri())]:
        argv = ["sweep", config.path, "--out", str(tmp_path / name), "--scheduler", "sync", "--quiet"]
        assert main([*argv, "--store", store]) == 0
    assert tree_digest(tmp_path / "path" / "cells") == tree_digest(tmp_path / "url" / "cells")
    capsys.readouterr()
    missing = str(tmp_path / "absent.zarr")
    assert main(["sweep", config.path, "--out", str(tmp_path / "x"), "--store", missing]) != 0
    assert f"--store {missing} does not exist" in capsys.readouterr().err and not (tmp_path / "x").exists()
    damaged = tmp_path / "damaged.zarr"  # opens, but its losses cannot be read: --store is named
    shutil.copytree(toy_store, damaged)
    next(p for p in damaged.rglob("zarr.json") if p.parent.name == "val_loss").write_text("{")
    assert main(["sweep", config.path, "--out", str(tmp_path / "x"), "--store", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and f"error: --store {damaged} with sweep config" in err and "is damaged" in err
    )
    assert not (tmp_path / "x").exists()


CTRL_C_CONFIG = """
[sweep]
name = "ctrl-c"
seed = 3
lambdas = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
runs = 60
[budget]
episodes = 200
archs_per_episode = 3
[store]
source = "path"
path = "{store}"
[[controllers]]
name = "random"
"""


@pytest.mark.slow
def test_ctrl_c_on_the_local_cluster_stops_promptly_and_resumes(tmp_path, toy_store):
    """SIGINT to the whole process group mid-sweep, as a terminal's Ctrl-C sends it.

    Cells of a few seconds each (a built-in controller: the worker processes cannot see
    this module's toy controllers), on the default local cluster.
    """
    config = toy_config(tmp_path, toy_store, CTRL_C_CONFIG)
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "bionas_bench", "sweep", config.path, "--out", str(out), "--quiet"]
    stop = ctrl_c(cmd, ready=lambda: bool(_done_cells(out)))
    assert stop.returncode == 130, stop.stderr
    assert stop.stderr.strip() == (  # no worker tracebacks
        f"bionas-bench sweep: interrupted; finished cells are kept in {out}: "
        "the same command goes on from there"
    )
    assert stop.seconds < 15, f"took {stop.seconds:.1f} s to stop"
    assert group_gone(stop.pgid, wait=10), "worker processes outlived the interrupted sweep"
    finished = _done_cells(out)
    assert 1 <= len(finished) < len(config.cells())
    assert {p.stem for p in (out / "cells").glob("*.zarr")} == finished  # no cell half written
    resumed = run_sweep(config, out, scheduler="sync")
    assert set(resumed.skipped) == finished
    whole = run_sweep(config, tmp_path / "whole", scheduler="sync")
    assert tree_digest(out) == tree_digest(whole.out)


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c(tmp_path, toy_store):
    """SIGTERM to the command alone (a cancelled CI job, ``timeout``): one line, exit 143,
    the lock released and the worker processes gone, and the same command resumes."""
    config = toy_config(tmp_path, toy_store, CTRL_C_CONFIG)
    out = tmp_path / "terminated"
    cmd = [sys.executable, "-m", "bionas_bench", "sweep", config.path, "--out", str(out), "--quiet"]
    stop = ctrl_c(cmd, ready=lambda: bool(_done_cells(out)), sig=signal.SIGTERM)
    assert stop.returncode == 143, stop.stderr
    assert stop.stderr.strip() == (
        f"bionas-bench sweep: terminated (SIGTERM); finished cells are kept in {out}: "
        "the same command goes on from there"
    )
    assert not (out / ".sweep.lock").exists()
    assert group_gone(stop.pgid, wait=15), "worker processes outlived the terminated sweep"
    finished = _done_cells(out)
    assert 1 <= len(finished) < len(config.cells())
    assert set(run_sweep(config, out, scheduler="sync").skipped) == finished


def _done_cells(out: Path) -> set[str]:
    """Keys of the cells of ``out`` marked done."""
    return {p.stem for p in (out / "cells").glob("*.zarr") if is_done(p)}
