"""``bionas-bench demo``: which store it runs on, and its clear failure without one."""

from __future__ import annotations

import pytest

from bionas_bench.cli import demo
from bionas_bench.cli import main as cli_main
from bionas_bench.errors import StoreError, SweepError
from bionas_bench.sweep import imported_bionas_pub, load_sweep_config

DEMO = load_sweep_config("demo")


def _no_embedded(*args, **kwargs):
    raise StoreError("no embedded default store")


def test_demo_without_any_store_fails_clearly(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("bionas_bench.store.open_store", _no_embedded)
    monkeypatch.setattr("bionas_bench.sweep.find_bionas_pub", lambda path=None: None)
    with pytest.raises(SweepError, match="BIONAS_PUB_DIR"):
        demo.demo_store(None, DEMO)
    assert cli_main(["demo", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--store PATH" in err and err.count("\n") == 1


def test_demo_falls_back_to_the_original_table(monkeypatch, bionas_pub_dir, tmp_path):
    monkeypatch.setattr("bionas_bench.store.open_store", _no_embedded)
    monkeypatch.setenv("BIONAS_BENCH_CACHE", str(tmp_path / "cache"))
    location, which = demo.demo_store(None, DEMO)
    assert "original BioNAS table" in which and location.startswith(str(tmp_path / "cache"))
    again, _ = demo.demo_store(None, DEMO)  # cached: the same store, not imported twice
    assert again == location


def test_demo_store_explicit_missing_path(tmp_path):
    with pytest.raises(SweepError, match="does not exist"):
        demo.demo_store(tmp_path / "nope.zarr", DEMO)


def test_demo_config_runs_on_its_own_store_and_says_so(tmp_path, capsys):
    """demo --config with a config on another store runs there, and its header names that
    store (it said "the embedded default store" whatever the config's store was)."""
    from bionas_bench.store import open_store

    embedded = open_store().location
    text = DEMO.text.replace('source = "embedded"', f'source = "path"\npath = "{embedded}"')
    text = text.replace("runs = 20", "runs = 2").replace("episodes = 60", "episodes = 5")
    config = tmp_path / "mine.toml"
    config.write_text(text)
    assert cli_main(["demo", "--config", str(config), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"oracle serves store {embedded} (the sweep config's)" in out
    assert "bionas-bench demo: space bionas-conv1d, 216 architectures" in out


def test_demo_runs_on_the_embedded_store_and_writes_its_report(tmp_path, capsys):
    """What a new user runs first: a sweep with a progress bar, a rank table, a report."""
    out = tmp_path / "demo"
    assert cli_main(["demo", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "oracle serves the embedded default store" in captured.out
    assert "mean gold-standard ranks" in captured.out and f"report: {out / 'report.md'}" in captured.out
    assert "demo: 100%" in captured.err and "120/120" in captured.err  # the bar, over 2 x 3 x 20 runs
    assert (out / "report.md").is_file() and len(list(out.glob("*.png"))) >= 6
    # rerun quietly: the finished sweep is kept, the report written again, nothing on stderr
    assert cli_main(["demo", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("marker", ["zarr.json", "sweep.json"])
def test_demo_refuses_a_store_or_results_folder_before_running(tmp_path, capsys, marker):
    """The demo writes its results inside --out: a store or a sweep's results folder is
    refused before the sweep runs, and nothing is added to it."""
    out = tmp_path / "taken"
    out.mkdir()
    (out / marker).write_text("{}")
    assert cli_main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass another folder for the report" in err
    assert [p.name for p in out.iterdir()] == [marker]


def test_the_first_compilation_is_explained_before_the_bar(monkeypatch, capsys):
    """A sweep with a policy-gradient controller compiles its update before the first
    task, and says so when that takes over a second (the first use after installing)."""
    import time

    from bionas_bench.cli.sweep import prepare_compiled_update
    from bionas_bench.controllers import pg_kernel, policy_gradient
    from bionas_bench.sweep import load_sweep_config

    policy_gradient.prepare_update()  # the real one: compiled or loaded, in this process
    assert pg_kernel.update_run.signatures
    calls = []
    monkeypatch.setattr(policy_gradient, "prepare_update", lambda: (calls.append(1), time.sleep(1.5)))
    demo_config, regress_config = load_sweep_config("demo"), load_sweep_config("regress")
    prepare_compiled_update(demo_config, "local", quiet=False)
    err = capsys.readouterr().err
    assert calls == [1] and "preparing the policy-gradient controllers' compiled update" in err
    assert "ready in 2 s" in err or "ready in 1 s" in err
    prepare_compiled_update(demo_config, "sync", quiet=True)  # prepared, nothing said
    prepare_compiled_update(demo_config, "tcp://host:8786", quiet=False)  # the workers' job
    prepare_compiled_update(regress_config, "local", quiet=False)  # no policy-gradient controller
    assert calls == [1, 1] and capsys.readouterr().err == ""


def test_a_wrong_bionas_pub_dir_is_not_silently_replaced(monkeypatch, tmp_path, capsys):
    """$BIONAS_PUB_DIR, when set, is where the data is looked for, by sweeps as by datasets:
    a wrong value is an error naming it, not a quiet fallback to ../shared."""
    monkeypatch.setenv("BIONAS_PUB_DIR", str(tmp_path / "nope"))
    monkeypatch.setenv("BIONAS_BENCH_CACHE", str(tmp_path / "cache"))
    assert cli_main(["sweep", "paper-fig2-pub", "--out", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"$BIONAS_PUB_DIR={tmp_path / 'nope'}" in err and err.count("\n") == 1
    assert cli_main(["data", "build", "bionas-pub-myc", "--out", str(tmp_path / "d")]) == 2
    assert f"$BIONAS_PUB_DIR={tmp_path / 'nope'}" in capsys.readouterr().err


def test_a_cache_that_cannot_be_written_names_bionas_bench_cache(
    monkeypatch, bionas_pub_dir, tmp_path, capsys
):
    """$BIONAS_BENCH_CACHE naming a file, or a folder one may not write in: one line naming
    the variable and the fix (it was a bare "File exists" or "Permission denied")."""
    import tempfile

    a_file = tmp_path / "a-file"
    a_file.write_text("kept")
    monkeypatch.setenv("BIONAS_BENCH_CACHE", str(a_file))
    assert cli_main(["sweep", "paper-fig2-pub", "--out", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the cache of imported stores {a_file} (it is a file)" in err
    assert "set BIONAS_BENCH_CACHE to a folder you can write in" in err and err.count("\n") == 1
    assert a_file.read_text() == "kept"

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setenv("BIONAS_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(SweepError, match=r"cache .* \(Permission denied\); set BIONAS_BENCH_CACHE"):
        imported_bionas_pub(bionas_pub_dir)
