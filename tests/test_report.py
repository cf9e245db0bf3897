"""Reports: files written, a CSV behind every figure, notes kept, CLI commands."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from test_sweep import TOY_CONFIG, make_store, toy_config  # noqa: F401 - shared stand-ins

from bionas_bench import controllers, scoring
from bionas_bench.cli import main
from bionas_bench.errors import SweepError
from bionas_bench.report import (
    REPORT_FORMAT,
    REPORT_MARKER,
    _Builder,
    _report_files,
    figures,
    sampling_note,
    write_report,
)
from bionas_bench.sweep import BudgetSpec, ControllerSpec, run_sweep

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="module")
def budget_run(toy_run):
    """The toy sweep with random search, under a GPU-seconds budget that ends every run
    early, at different episodes (each sample costs 10-100 s)."""
    tmp, _ = toy_run
    text = TOY_CONFIG.replace("archs_per_episode = 3", "archs_per_episode = 2\ngpu_seconds = 400.0")
    text = text.replace("[0.01, 1.0, 100.0]", "[0.01, 100.0]").replace(
        'name = "toy-random"', 'name = "random"'
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(controllers.BUILTIN, "toy-policy", "test_sweep:ToyPolicy")
        folder = tmp / "budget"
        folder.mkdir()
        run = run_sweep(toy_config(folder, tmp / "store.zarr", text), folder / "out", scheduler="sync")
    return run, write_report(run.out, folder / "rep")


def _keeping_figures(mp: pytest.MonkeyPatch) -> dict:
    """Make the report's figures, by file name, kept as drawn, to inspect what they show."""
    figs = {}
    save = figures._save

    def keep(fig, path):
        fig.canvas.draw()  # lays the figure out and keeps the renderer (closing drops the canvas)
        fig.kept_renderer = fig.canvas.get_renderer()
        figs[path.name] = fig
        return save(fig, path)

    mp.setattr(figures, "_save", keep)
    return figs


@pytest.fixture
def drawn(monkeypatch):
    """The figures drawn in a test, by file name."""
    return _keeping_figures(monkeypatch)


@pytest.fixture(scope="module")
def toy_report(toy_run, tmp_path_factory):
    """The toy sweep's report and its figures as drawn."""
    _, run = toy_run
    with pytest.MonkeyPatch.context() as mp:
        figs = _keeping_figures(mp)
        written = write_report(run.out, tmp_path_factory.mktemp("toy-report") / "rep")
    return written, figs


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
    assert code == 0 and "4 already done (" in out and "report:" in out and "toy-policy" in out
    assert re.search(r"4 already done \((\d+) of \1 runs, finished slices included\)", out), out
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
    out, err = capsys.readouterr()
    assert err.strip().count("\n") == 0 and "no sweep.json" in err
    assert "writing the report" not in out  # the notice comes after the results are read
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
    marker = json.loads((out / REPORT_MARKER).read_text())
    (out / REPORT_MARKER).write_text(json.dumps({**marker, "files": [*marker["files"], "policy_gone.png"]}))
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


def test_a_report_never_removes_files_it_did_not_write(toy_run, tmp_path, capsys):
    """A folder of the user's files is refused, whichever option names it, and kept as it
    was (every CSV and PNG in it was deleted); in a report's folder a rewrite replaces the
    files its marker lists and keeps the user's, and refuses to replace one of them."""
    toy_tmp, run = toy_run
    theirs = tmp_path / "thesis"
    theirs.mkdir()
    (theirs / "thesis.csv").write_text("id,v\n")
    (theirs / "fig.png").write_bytes(b"their figure")
    message = "is not empty and is not a bionas-bench report; choose a new folder"
    for argv, flag in (
        (["report", str(run.out), "--out", str(theirs)], "--out"),
        (
            ["sweep", str(toy_tmp / "toy.toml"), "--out", str(tmp_path / "r"), "--report", str(theirs)],
            "--report",
        ),
        (["demo", "--out", str(theirs)], "--out"),
    ):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and f"{flag} {theirs} {message}" in captured.err, captured.err
        assert "writing the report" not in captured.out
    with pytest.raises(SweepError, match=message):
        write_report(run.out, theirs)
    assert sorted(p.name for p in theirs.iterdir()) == ["fig.png", "thesis.csv"]
    assert not (tmp_path / "r").exists()

    out = tmp_path / "rep"
    (out / "results").mkdir(
        parents=True
    )  # NOTES.md alone, or the reported results, are no files of the user's
    (out / "NOTES.md").write_text("notes\n")
    shutil.copytree(run.out, out / "results", dirs_exist_ok=True)
    first = write_report(out / "results", out)
    listed = json.loads((out / REPORT_MARKER).read_text())["files"]
    assert sorted(listed) == sorted(p.name for p in [first.markdown, *first.figures, *first.tables])
    (out / "thesis.csv").write_text("id,v\n")
    write_report(out / "results", out)
    assert (out / "thesis.csv").read_text() == "id,v\n" and (out / "NOTES.md").read_text() == "notes\n"
    # a file the new report writes that the earlier one did not: the user's, not replaced
    (out / REPORT_MARKER).write_text(json.dumps({"format": REPORT_FORMAT, "files": ["report.md"]}))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(SweepError, match=r"holds .*summary_ranks\.csv, not written by its earlier report"):
        write_report(out / "results", out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_report_written_before_the_marker_is_rewritten(toy_run, tmp_path):
    """A report folder from before the marker (the committed reports), or with a damaged
    marker, is recognised by its report.md: a rewrite replaces report.md and the files it
    links, nothing else."""
    _, run = toy_run
    out = tmp_path / "rep"
    write_report(run.out, out)
    (out / REPORT_MARKER).unlink()
    (out / "fig2a_values.png").unlink()  # a linked file gone: not listed, written again
    (out / "thesis.csv").write_text("id,v\n")
    assert sorted(_report_files(out)) == sorted(p.name for p in out.iterdir() if p.name != "thesis.csv")
    written = write_report(run.out, out)
    assert (out / "thesis.csv").read_text() == "id,v\n" and (out / "fig2a_values.png").is_file()
    assert "thesis.csv" not in json.loads((out / REPORT_MARKER).read_text())["files"]
    assert written.markdown.is_file()
    (out / REPORT_MARKER).write_text("{")  # a damaged marker: the same as none
    write_report(run.out, out)
    assert (out / "thesis.csv").read_text() == "id,v\n"
    assert json.loads((out / REPORT_MARKER).read_text())["format"] == REPORT_FORMAT
    for committed in ("paper-fig2", "paper-fig2-bionas-pub"):  # as they were before their markers
        listed = json.loads((ROOT / "reports" / committed / REPORT_MARKER).read_text())["files"]
        present = {p.name for p in (ROOT / "reports" / committed).iterdir()} - {"NOTES.md", REPORT_MARKER}
        assert sorted(listed) == sorted(present), committed  # the marker lists the report's files
        folder = tmp_path / committed
        shutil.copytree(ROOT / "reports" / committed, folder)
        (folder / REPORT_MARKER).unlink()
        assert sorted(_report_files(folder)) == sorted(
            p.name for p in folder.iterdir() if p.is_file() and p.name != "NOTES.md"
        ), committed


def test_the_report_of_a_sweep_is_not_put_in_its_results(toy_run, tmp_path, capsys):
    """sweep --report equal to or inside --out is refused before the sweep runs, naming
    --report (the sweep ran, then failed naming --out; or the report went into the results)."""
    toy_tmp, _ = toy_run
    out = tmp_path / "o"
    for report, relation in ((out, "is"), (out / "rep", "is inside")):
        argv = ["sweep", str(toy_tmp / "toy.toml"), "--out", str(out), "--report", str(report)]
        assert main([*argv, "--scheduler", "sync"]) == 2
        err = capsys.readouterr().err
        assert f"--report {report} {relation} the results folder --out {out}; choose" in err
        assert err.count("\n") == 1 and not out.exists()


def _edit_meta(results, edit):
    meta = json.loads((results / "sweep.json").read_text())
    edit(meta)
    (results / "sweep.json").write_text(json.dumps(meta))


def _replace_config_text(meta, text):
    meta["config"].update(text=text, sha256=hashlib.sha256(text.encode()).hexdigest(), file="slow.toml")


DAMAGES = {
    "sweep.json cut": (
        lambda r: (r / "sweep.json").write_text('{"cells": ['),
        "sweep.json is not valid JSON",
    ),
    "no config": (lambda r: _edit_meta(r, lambda m: m.pop("config")), "sweep.json lacks its 'config' entry"),
    "gold.csv cut": (
        lambda r: (r / "gold.csv").write_bytes((r / "gold.csv").read_bytes()[:300]),
        "gold.csv is cut short",
    ),
    "gold.csv cut at a row": (
        lambda r: (r / "gold.csv").write_text("".join((r / "gold.csv").read_text().splitlines(True)[:-1])),
        "gold.csv holds 431 rows, not 432 (2 lambdas x 216 architectures)",
    ),
    "no gold.csv": (lambda r: (r / "gold.csv").unlink(), "gold.csv is missing"),
    "config edited": (
        lambda r: _edit_meta(r, lambda m: m["config"].update(text=m["config"]["text"].replace("4", "5"))),
        "the config text in sweep.json does not match its sha256",
    ),
    "config not toml": (
        lambda r: _edit_meta(r, lambda m: _replace_config_text(m, m["config"]["text"] + "\n[[[")),
        "is not a valid sweep config (sweep manifest slow.toml is not valid TOML",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_results_folder_is_one_line(toy_run, tmp_path, capsys, damage):
    """sweep.json or gold.csv cut short, edited or missing: one line saying the results
    folder is damaged, before the report's notice (tracebacks, a config error blamed on
    its file, or an edited config read silently)."""
    _, run = toy_run
    results = tmp_path / "results"
    shutil.copytree(run.out, results)
    edit, says = DAMAGES[damage]
    edit(results)
    assert main(["report", str(results), "--out", str(tmp_path / "rep")]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and f"results folder {results} is damaged: " in err and says in err, err
    assert "rerun the sweep into a new folder" in err and out == "" and not (tmp_path / "rep").exists()


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
    ("budget", "params", "episodes", "says"),
    [
        (
            BudgetSpec(200, 3),
            (),
            [200] * 3,
            "draws without replacement, so its full 600 samples cover all 216",
        ),
        (
            BudgetSpec(20, 3),
            (),
            [20] * 3,
            "draws without replacement: its full 60 samples include the best "
            "architecture with probability 28%",
        ),
        (
            BudgetSpec(20, 3),
            (("unique", False),),
            [20] * 3,
            "draws independently: its full 60 samples include the best architecture with probability 24%",
        ),
        (
            BudgetSpec(20, 3, gpu_seconds=5.0),
            (),
            [20] * 3,
            "60 architectures (20 episodes x 3; the GPU-seconds budget ended no run early) of the 216",
        ),
        (
            BudgetSpec(200, 3, gpu_seconds=5.0),
            (),
            [24, 33, 30],
            "Each run sampled 72-99 architectures (24-33 episodes x 3: the GPU-seconds budget of 5 s ended "
            "every run before the 200 episodes) of the 216 in the space. Random search (`rs`) draws without "
            "replacement: its 72-99 in-budget samples include the best architecture with probability "
            "33%-46%.",
        ),
        (
            BudgetSpec(200, 3, gpu_seconds=5.0),
            (("unique", False),),
            [24, 200],
            "Each run sampled 72-600 architectures (24-200 episodes x 3: the GPU-seconds budget of 5 s ended "
            "1 of 2 runs before the 200 episodes) of the 216 in the space. Random search (`rs`) draws "
            "independently: its 72-600 in-budget samples include the best architecture with probability "
            "28%-94%.",
        ),
    ],
)
def test_sampling_note_follows_budget_space_and_random_search(toy_run, budget, params, episodes, says):
    """What the runs sampled, and what random search covers, are derived from the budget, the
    runs' in-budget episodes (was: the full budget's, also where a GPU-seconds budget ended
    runs early), the space size and random search's params."""
    _, run = toy_run
    spec = ControllerSpec("random", "rs", params)
    config = dataclasses.replace(run.load().config, budget=budget, controllers=(spec,))
    assert says in sampling_note(config, {"rs": np.array(episodes)}, 216)
    # not reported: not mentioned
    assert "Random search" not in sampling_note(config, {"other": np.array(episodes)}, 216)


def test_report_under_a_gpu_budget_says_what_the_runs_sampled(budget_run):
    """Under a binding GPU-seconds budget the sampling note gives the runs' in-budget sample
    counts and random search's chance from them, the anytime captions say how stopped runs
    count, and every point of the anytime curves is a mean over all runs."""
    run, written = budget_run
    res = run.load()
    episodes = {
        label: np.concatenate([res.cell(label, lam).runs["episodes"] for lam in res.lambdas])
        for label in res.labels
    }
    every = np.concatenate(list(episodes.values()))
    assert every.max() < 12 and every.min() < every.max()  # the budget binds, at different episodes
    text = written.markdown.read_text()
    lo, hi = every.min(), every.max()
    assert (
        f"Each run sampled {2 * lo}-{2 * hi} architectures ({lo}-{hi} episodes x 2: the GPU-seconds " in text
    )
    rs = episodes["random"]
    chance = f"{2 * rs.min() / 216:.0%}-{2 * rs.max() / 216:.0%}"
    assert f"its {2 * rs.min()}-{2 * rs.max()} in-budget samples include the best architecture" in text
    assert f"with probability {chance}." in text
    assert "fewer where the GPU-seconds budget ends a run" not in text and "full 24 samples" not in text
    assert (
        text.count("a run whose GPU-seconds budget has ended keeps its last in-budget best-so-far value") == 2
    )
    assert "to the runs' median in-budget total" in text
    for name in ("anytime_samples", "anytime_gpu_seconds"):
        curves = pd.read_csv(written.out / f"{name}.csv")
        assert (curves["n"] == 4).all() and curves["rank"].notna().all(), name


def test_per_step_curves_of_runs_shorter_than_the_window(budget_run):
    """A GPU-seconds budget that ends every run before 10 episodes: the curves have a point
    at every episode some run reached (the moving average's head is the mean so far)."""
    run, written = budget_run
    res = run.load()
    longest = max(int(res.cell(lab, lam).runs["episodes"].max()) for lab in res.labels for lam in res.lambdas)
    assert longest < 10
    for name in ("fig2cd_per_step", "policy_toy-policy"):
        curves = pd.read_csv(written.out / f"{name}.csv")
        for (label, lam), curve in curves.groupby(["controller", "lam"]):
            reached = int(res.cell(label, lam).runs["episodes"].max())
            drawn = curve.loc[curve["mean"].notna(), "episode"]
            assert set(drawn) == set(range(1, reached + 1)), (name, label, lam)


def test_csv_floats_read_back_exactly(toy_run, toy_report):
    """The CSVs hold every float in full (was %.6g: the GPU-seconds grid's x lost digits)."""
    _, run = toy_run
    written, _ = toy_report
    curves = scoring.anytime(run.load(), "gpu_seconds")
    back = pd.read_csv(written.out / "anytime_gpu_seconds.csv")
    for column in ("x", "rank", "regret_lo", "regret_norm"):
        np.testing.assert_array_equal(back[column].to_numpy(), curves[column].to_numpy())


def test_report_text_names_the_reference_point_and_the_policy_quantity(toy_report):
    """The hypervolume's reference point is the worst point of the space, not 'the nadir';
    the policy caption says which probabilities are plotted."""
    text = toy_report[0].markdown.read_text()
    assert "nadir" not in text
    assert (
        "reference point = the worst point of the space (worst median loss, worst median knowledge: " in text
    )
    assert (
        "per step, the mean over the step's sampled architectures of the probabilities they were drawn "
        "from (what `recommend()` smooths), averaged over runs, moving average of 10 steps (before "
        "step 10: the mean of the steps so far, as the original's figure code)." in text
    )


def test_a_tie_for_the_most_frequent_architecture_is_shown(toy_run, tmp_path):
    _, run = toy_run
    builder = _Builder(run.load(), tmp_path, tmp_path)
    names = {a: builder.arch_name(a) for a in (5, 190, 196)}
    assert builder.modal_text("190", 0.5) == f"190 `{names[190]}` (50%)"
    assert builder.modal_text("190 196", 0.12) == f"190 `{names[190]}`, 196 `{names[196]}` (12% each)"
    assert builder.modal_text("5 190 196 200", 0.25) == f"5 `{names[5]}`, one of 4 tied (25% each)"


def _inside_figure(fig, artist) -> bool:
    box = artist.get_window_extent(fig.kept_renderer)
    return fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1


def test_figures_fit_their_labels_and_tick_whole_episodes(toy_report):
    """Every y label, and the Pareto legend, lies inside its figure (the knowledge labels and
    the legend's long entries were cut off), steps are ticked at whole episodes (was 10.5),
    and PNG titles hold no Markdown backticks."""
    _, drawn = toy_report
    for name in ("fig2a_values.png", "fig2cd_per_step.png", "policy_toy-policy.png", "pareto_front.png"):
        fig = drawn[name]
        for ax in fig.axes:
            assert _inside_figure(fig, ax.yaxis.label), (name, ax.get_ylabel())
    assert _inside_figure(drawn["pareto_front.png"], drawn["pareto_front.png"].legends[0])  # was cut off
    for name in ("fig2cd_per_step.png", "policy_toy-policy.png"):
        for ax in drawn[name].axes:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
    per_step = drawn["fig2cd_per_step.png"].axes
    for row in (per_step[:2], per_step[2:]):  # loss, knowledge: one y scale across the lambdas
        assert row[0].get_ylim() == row[1].get_ylim() and row[0].get_ylabel() and not row[1].get_ylabel()
    titles = [fig.get_suptitle() for fig in drawn.values()]
    titles += [ax.get_title() for ax in drawn["policy_toy-policy.png"].axes]
    assert "Choice probabilities of toy-policy per layer" in titles
    assert not any("`" in title for title in titles)


def test_a_median_on_the_box_edge_shows(tmp_path, drawn):
    """Most runs at rank 1: the median line lies on the box's edge and must stand out from it
    (was an orange line as thin as the black edge)."""
    table = pd.DataFrame({"controller": "rs", "lam": 1.0, "objective_rank": [1.0] * 14 + list(range(2, 8))})
    figures.rank_boxes(table, "objective_rank", "ranks", tmp_path / "box.png", ["rs"])
    ax = drawn["box.png"].axes[0]
    (box,) = ax.patches
    at_one = [line for line in ax.lines if len(line.get_ydata()) == 2 and set(line.get_ydata()) == {1.0}]
    median = max(at_one, key=lambda line: line.get_linewidth())
    assert median.get_linewidth() > box.get_linewidth()
    assert to_rgb(median.get_color()) != to_rgb(box.get_edgecolor())


def test_a_sweep_shorter_than_the_moving_average_still_has_curves(toy_run, tmp_path):
    """4 episodes < the paper's 10-step moving average: the per-step and policy curves have
    a point at every episode (the mean so far) instead of coming out empty."""
    import pandas as pd

    tmp, _ = toy_run
    text = TOY_CONFIG.replace("episodes = 12", "episodes = 4").replace("[0.01, 1.0, 100.0]", "[0.01, 100.0]")
    config = toy_config(tmp_path, tmp / "store.zarr", text)
    run = run_sweep(config, tmp_path / "out", scheduler="sync")
    written = write_report(run.out, tmp_path / "rep")
    steps = pd.read_csv(tmp_path / "rep" / "fig2cd_per_step.csv")
    assert steps["mean"].notna().all()
    policy = pd.read_csv(tmp_path / "rep" / "policy_toy-policy.csv")
    assert policy["mean"].notna().all()
    markdown = written.markdown.read_text()
    assert "moving average of 10 steps (before step 10: the mean of the steps so far" in markdown
