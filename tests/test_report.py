"""Reports: files written, a CSV behind every figure, notes kept, CLI commands."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import pytest
from test_sweep import TOY_CONFIG, make_store, toy_config  # noqa: F401 - shared stand-ins

from bionas_bench import controllers
from bionas_bench.cli import main
from bionas_bench.errors import SweepError
from bionas_bench.report import sampling_note, write_report
from bionas_bench.sweep import BudgetSpec, ControllerSpec, run_sweep


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(controllers.BUILTIN, "toy-policy", "test_sweep:ToyPolicy")
    mp.setitem(controllers.BUILTIN, "toy-random", "test_sweep:ToyRandom")
    tmp = tmp_path_factory.mktemp("report")
    store = make_store(tmp / "store.zarr")
    text = TOY_CONFIG.replace("archs_per_episode = 3", "archs_per_episode = 2")
    config = toy_config(tmp, store, text.replace("[0.01, 1.0, 100.0]", "[0.01, 100.0]"))
    run = run_sweep(config, tmp / "out", scheduler="sync")
    yield tmp, run
    mp.undo()


def test_report_files_and_sections(toy_run):
    tmp, run = toy_run
    out = tmp / "rep"
    out.mkdir(exist_ok=True)
    (out / "NOTES.md").write_text("Hand-written: differs from the paper because of X.\n")
    written = write_report(run.out, out)
    text = written.markdown.read_text()
    for heading in (
        "## Inputs",
        "## The paper's qualitative result",
        "## Ranks of the recommended architectures",
        "## Figure 2 of the paper",
        "## Choice probabilities over training steps",
        "## Controller comparison",
        "## Pareto front and hypervolume",
        "## Notes",
    ):
        assert heading in text, heading
    assert "Hand-written: differs from the paper" in text
    # every figure is a PNG, linked from the report, with a CSV link right after it
    for fig in written.figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({fig.name})" in text
    for csv in re.findall(r"Data: \[`([^`]+)`\]", text):
        assert (out / csv).is_file(), csv
    names = {f.name for f in written.figures}
    assert {"fig2a_values.png", "fig2b_ranks.png", "fig2cd_per_step.png", "pareto_front.png"} <= names
    assert "policy_toy-policy.png" in names and "policy_toy-random.png" not in names


def test_inputs_skip_empty_hashes(toy_run, tmp_path):
    """An imported table records no dataset hashes: they are left out, not shown empty."""
    tmp, run = toy_run
    results = tmp_path / "results"
    shutil.copytree(run.out, results)
    meta = json.loads((results / "sweep.json").read_text())
    meta["store"]["hashes"]["dataset"] = {"name": "imported-set", "data_sha256": "", "manifest_sha256": ""}
    (results / "sweep.json").write_text(json.dumps(meta))
    text = write_report(results, tmp_path / "rep").markdown.read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| dataset |")]
    assert row == "| dataset | name `imported-set` |"


def test_report_of_an_unfinished_sweep_says_what_is_missing(toy_run, tmp_path, capsys):
    """Cells not finished are named in the inputs, the CLI's note and the trend check."""
    _, run = toy_run
    results = tmp_path / "results"
    shutil.copytree(run.out, results)
    shutil.rmtree(results / "cells" / "toy-random__lam00.zarr")
    written = write_report(results, tmp_path / "rep")
    assert written.missing == ["toy-random__lam00"]
    text = written.markdown.read_text()
    assert "| cells | 3 of 4 finished; not finished: toy-random__lam00 (rerun the sweep" in text
    assert "- `toy-random`: **not checked** (its cell at λ = 0.01 is not finished)" in text
    assert "- `toy-policy`: **" in text and "- `toy-policy`: **not checked" not in text
    assert main(["report", str(results), "--out", str(tmp_path / "rep2")]) == 0
    assert (
        "note: 1 cell(s) not finished, left out of the report: toy-random__lam00" in capsys.readouterr().out
    )
    full = write_report(run.out, tmp_path / "rep3")
    assert full.missing == [] and "| cells | 4 of 4 finished |" in full.markdown.read_text()


def test_cli_sweep_and_report(toy_run, tmp_path, capsys, monkeypatch):
    tmp, run = toy_run
    monkeypatch.setitem(controllers.BUILTIN, "toy-policy", "test_sweep:ToyPolicy")
    monkeypatch.setitem(controllers.BUILTIN, "toy-random", "test_sweep:ToyRandom")
    config = tmp / "toy.toml"
    # resuming the finished results folder reruns nothing and writes the report
    code = main(["sweep", str(config), "--out", str(run.out), "--scheduler", "sync", "--no-progress",
                 "--report", str(tmp_path / "r")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "4 already done" in out and "report:" in out and "toy-policy" in out
    # the report written by the CLI has the same CSV tables as the library's
    first = tmp / "rep"
    if not (first / "report.md").is_file():
        write_report(run.out, first)
    csvs = sorted(p.name for p in (tmp_path / "r").glob("*.csv"))
    assert csvs and csvs == sorted(p.name for p in first.glob("*.csv"))
    for name in csvs:
        assert (tmp_path / "r" / name).read_bytes() == (first / name).read_bytes(), name


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no sweep.json" in err
    assert main(["sweep", "no-such-sweep", "--out", str(tmp_path / "o")]) == 2
    assert "unknown sweep manifest" in capsys.readouterr().err


def test_cli_out_a_file_is_one_line(toy_run, tmp_path, capsys):
    """--out naming a file, or a folder the system refuses to make, is one line and exit 2."""
    toy_tmp, run = toy_run
    a_file = tmp_path / "a-file"
    a_file.write_text("kept")
    cases = [
        (
            ["report", str(run.out), "--out", str(a_file)],
            f"--out {a_file} is a file; pass a folder for the report",
        ),
        (["demo", "--out", str(a_file)], f"{a_file} is a file; give a folder for the demo's results"),
        (["report", str(run.out), "--out", str(a_file / "sub")], f"{a_file} is a file, not a folder"),
        (  # checked before the sweep runs
            ["sweep", str(toy_tmp / "toy.toml"), "--out", str(tmp_path / "r"), "--report", str(a_file)],
            f"--report {a_file} is a file; pass a folder for the report",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and message in captured.err, captured.err
        assert captured.out == ""
    assert a_file.read_text() == "kept" and sorted(tmp_path.iterdir()) == [a_file]


def test_rewriting_a_report_replaces_its_files_and_keeps_the_rest(toy_run, tmp_path, monkeypatch):
    """An earlier report's files (a figure the new one lacks included) are replaced as a
    whole; NOTES.md and other folders stay; an interrupted rewrite leaves the earlier
    report as it was; a store or a results folder is refused as --out."""
    _, run = toy_run
    out = tmp_path / "rep"
    first = write_report(run.out, out)
    (out / "policy_gone.png").write_bytes(b"stale figure of an earlier report")
    (out / "NOTES.md").write_text("kept notes\n")
    (out / "results").mkdir()
    (out / "results" / "x.txt").write_text("kept")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bionas_bench.report.figures.pareto", interrupted)  # late in the report
    with pytest.raises(KeyboardInterrupt):
        write_report(run.out, out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no work folder left
    monkeypatch.undo()
    second = write_report(run.out, out)
    assert not (out / "policy_gone.png").exists() and (out / "results" / "x.txt").read_text() == "kept"
    assert "kept notes" in second.markdown.read_text()
    assert {p.name for p in first.figures} == {p.name for p in second.figures}
    for folder in (run.out, next(run.out.glob("cells/*.zarr"))):
        with pytest.raises(SweepError, match="pass another folder for the report"):
            write_report(run.out, folder)


def test_an_output_where_one_may_not_write_is_refused_first(toy_run, tmp_path, capsys, monkeypatch):
    """--out / --report in a folder without write permission: one line before any work
    (the permission is what os.access says; tests run as root, so it is stubbed)."""
    toy_tmp, run = toy_run
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode)
    )
    cases = [
        (["report", str(run.out), "--out", str(locked / "rep")], "--out"),
        (
            ["sweep", str(toy_tmp / "toy.toml"), "--out", str(tmp_path / "r"), "--report", str(locked)],
            "--report",
        ),
        (["data", "build", "myc-mini", "--out", str(locked / "cache" / "deeper")], "--out"),
    ]
    for argv, flag in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"no permission to write in {locked}; choose another {flag}" in err and err.count("\n") == 1
    assert list(locked.iterdir()) == [] and not (tmp_path / "r").exists()


def test_report_into_the_current_folder(toy_run, tmp_path, monkeypatch):
    """--out . (a path with no name to put a work folder beside) works."""
    _, run = toy_run
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    written = write_report(run.out, ".")
    assert (here / "report.md").is_file() and written.markdown.resolve() == here / "report.md"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]


def test_a_damaged_results_cell_is_one_line_naming_the_fix(toy_run, tmp_path, capsys):
    """A cell whose chunk cannot be decoded: one error line naming the cell and how to
    recompute it, exit 2 (it was a raw codec traceback)."""
    toy_tmp, run = toy_run
    results = tmp_path / "results"
    shutil.copytree(run.out, results)
    cell = sorted((results / "cells").glob("*.zarr"))[0]
    chunk = next(p for p in sorted((cell / "steps" / "loss").rglob("*")) if p.is_file() and "c" in p.parts)
    chunk.write_bytes(chunk.read_bytes()[:3])
    assert main(["report", str(results), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"results cell {cell} is damaged and cannot be read" in err
    assert "run the sweep again with the same --out" in err


def test_captions_say_what_is_computed(toy_run, tmp_path):
    """The ranks table names its percentile-bootstrap interval (was: a t-interval), and the
    anytime caption states this sweep's budget and space (was: always 600 of 216)."""
    _, run = toy_run
    text = write_report(run.out, tmp_path / "rep").markdown.read_text()
    assert "t-interval" not in text and "600 of 216" not in text
    assert "Mean over runs [95% percentile-bootstrap confidence interval of the mean: 2000 resamples" in text
    n_archs = run.load().gold["arch"].nunique()
    assert f"Each run samples 24 architectures (12 episodes x 2) of the {n_archs} in the space." in text
    assert "Random search" not in text  # the toy sweep has no `random` controller


@pytest.mark.parametrize(
    ("budget", "params", "says"),
    [
        (BudgetSpec(200, 3), (), "draws without replacement, so its full 600 samples cover all 216"),
        (
            BudgetSpec(20, 3),
            (),
            "draws without replacement: its full 60 samples include the best "
            "architecture with probability 28%",
        ),
        (
            BudgetSpec(20, 3),
            (("unique", False),),
            "draws independently: its full 60 samples include the best architecture with probability 24%",
        ),
        (
            BudgetSpec(20, 3, gpu_seconds=5.0),
            (),
            "60 architectures (20 episodes x 3; fewer where the GPU-seconds budget ends a run) of the 216",
        ),
    ],
)
def test_sampling_note_follows_budget_space_and_random_search(toy_run, budget, params, says):
    """What random search covers is derived from the budget, the space size and its params."""
    _, run = toy_run
    spec = ControllerSpec("random", "rs", params)
    config = dataclasses.replace(run.load().config, budget=budget, controllers=(spec,))
    assert says in sampling_note(config, ["rs"], 216)
    assert "Random search" not in sampling_note(config, ["other"], 216)  # not reported: not mentioned


def test_a_sweep_shorter_than_the_moving_average_still_has_curves(toy_run, tmp_path):
    """4 episodes < the paper's 10-step moving average: the per-step and policy curves use
    a 4-step average (the captions say so) instead of coming out empty."""
    import pandas as pd

    tmp, _ = toy_run
    text = TOY_CONFIG.replace("episodes = 12", "episodes = 4").replace("[0.01, 1.0, 100.0]", "[0.01, 100.0]")
    config = toy_config(tmp_path, tmp / "store.zarr", text)
    run = run_sweep(config, tmp_path / "out", scheduler="sync")
    written = write_report(run.out, tmp_path / "rep")
    steps = pd.read_csv(tmp_path / "rep" / "fig2cd_per_step.csv")
    assert steps["mean"].notna().any() and steps.loc[steps["episode"] == 4, "mean"].notna().all()
    policy = pd.read_csv(tmp_path / "rep" / "policy_toy-policy.csv")
    assert policy["mean"].notna().any()
    markdown = written.markdown.read_text()
    assert "moving average of 4 steps (the paper's 10, shortened to this sweep's 4 episodes)" in markdown
