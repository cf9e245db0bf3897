"""Progress bars written to a log (stderr not a terminal): plain lines, no carriage returns."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from bionas_bench.cli import main
from bionas_bench.cli.progress import LOG_INTERVAL, LogLines, make_bar, skip_ahead


def test_log_lines_turn_redraws_into_lines():
    out = io.StringIO()
    log = LogLines(out)
    log.write("\rtraining:   0%|   | 0/3")
    log.write("\rtraining:  33%|#  | 1/3   ")
    log.write("\rtraining:  33%|#  | 1/3")  # the same state drawn again
    log.write("\r" + " " * 30 + "\r")  # a bar erasing itself
    log.write("\n")
    assert out.getvalue() == "training:   0%|   | 0/3\ntraining:  33%|#  | 1/3\n"


def test_the_same_count_again_within_a_second_is_not_written():
    """A bar's last update and its close show the same count with another rate: one line.
    The same count after a longer pause is written (a heartbeat of a stalled bar)."""
    now = [0.0]
    out = io.StringIO()
    log = LogLines(out, clock=lambda: now[0])
    log.write("\rtraining: 100%|###| 3/3 [01:57<00:00, 39.19s/arch]")
    now[0] = 0.2
    log.write("\rtraining: 100%|###| 3/3 [01:57<00:00, 39.22s/arch]\n")
    log.write("\rsweep:  50%|#  | 1/2 [00:30<00:30, 30.0s/run]")
    now[0] = 31.0
    log.write("\rsweep:  50%|#  | 1/2 [01:01<01:01, 61.0s/run]")
    assert out.getvalue().splitlines() == [
        "training: 100%|###| 3/3 [01:57<00:00, 39.19s/arch]",
        "sweep:  50%|#  | 1/2 [00:30<00:30, 30.0s/run]",
        "sweep:  50%|#  | 1/2 [01:01<01:01, 61.0s/run]",
    ]


def test_a_bar_in_a_log_is_not_forced_to_redraw_within_the_log_interval():
    """tqdm's monitor thread redraws a bar that was not drawn for ``maxinterval`` seconds
    (10 by default): in a log that would be a line every 10 s, not every 30 s."""
    bar = make_bar(4, "run", "sweep")
    try:
        assert bar.mininterval == bar.maxinterval == LOG_INTERVAL
    finally:
        bar.close()


def test_a_bar_in_a_log_writes_its_start_and_its_end(capsys: pytest.CaptureFixture[str]):
    bar = make_bar(4, "run", "sweep")
    for _ in range(4):
        bar.update(1)  # within the log interval: no line of its own
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("sweep:   0%") and "0/4" in lines[0]
    assert lines[1].startswith("sweep: 100%") and "4/4" in lines[1]


def test_runs_done_before_count_but_not_in_the_rate(capsys: pytest.CaptureFixture[str]):
    """A resumed sweep: 1,000 runs done before, then one run in ~50 ms. The bar stands at
    1,001 and its rate is that one run's (~20 runs/s), not 1,001 runs in a few ms."""
    bar = make_bar(1010, "run", "sweep")
    skip_ahead(bar, 1000, "cell__lam00 (done before)")
    time.sleep(0.05)
    bar.update(1)
    state = bar.format_dict
    bar.close()
    assert state["n"] == 1001 and state["initial"] == 1000
    shown = state["rate"] or (state["n"] - state["initial"]) / state["elapsed"]  # as tqdm's meter
    assert 0 < shown < 30, shown
    assert "1001/1010" in capsys.readouterr().err


def test_quiet_bar_writes_nothing(capsys: pytest.CaptureFixture[str]):
    bar = make_bar(2, "run", "sweep", quiet=True)
    skip_ahead(bar, 1, "cell__lam00 (done before)")  # a resumed sweep with --quiet
    bar.update(2)
    bar.close()
    assert capsys.readouterr().err == ""


def test_data_build_error_in_a_log_stands_on_its_own_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A FASTA error after the first stages: the stages are lines and the error is the last
    line, whole (it used to follow a run of carriage-return redraws on one line)."""
    (tmp_path / "pos.fa").write_text(">a\nACGTACGT\n>b\nACGTQQGT\n")
    (tmp_path / "neg.fa").write_text(">c\nACGTACGT\n")
    manifest = tmp_path / "bad.toml"
    manifest.write_text(
        'description = "a bad record"\ntype = "fasta"\nseed = 0\n'
        '[fasta]\npositives = "pos.fa"\nnegatives = "neg.fa"\n[splits]\nmode = "per_replicate"\n'
    )
    assert main(["data", "build", str(manifest), "--out", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("building: ")
    assert lines[-1].startswith("bionas-bench data build: error: FASTA file") and "'Q'" in lines[-1]


def test_the_sweep_bar_prices_each_controllers_runs_at_their_own_cost():
    """ppo's runs cost 100x random's: the time left prices each at its own seconds per run;
    a controller without a finished task is not priced, and the text says it is a bound."""
    from bionas_bench.cli.sweep import RemainingTime
    from bionas_bench.sweep import TaskProgress, load_sweep_config

    config = load_sweep_config("demo")  # ppo and random, 3 lambdas x 20 runs
    eta = RemainingTime(config)
    eta.began = 0.0
    assert eta.estimate(now=1.0) is None
    eta.add(TaskProgress("ppo__lam00", 1, 12, False, 100.0, runs=10))  # 10 s a run
    assert eta.estimate(now=50.0) == (pytest.approx(50 * 10.0 / 2.0), ["random"])  # a lower bound
    eta.add(TaskProgress("random__lam00", 2, 12, True, 0.0, runs=20))  # done before: no cost
    eta.add(TaskProgress("random__lam01", 3, 12, False, 2.0, runs=20))  # 0.1 s a run
    # 102 s of work in 51 s of wall time: 2 workers; left: 50 ppo runs, 20 random runs
    assert eta.estimate(now=51.0) == (pytest.approx((50 * 10.0 + 20 * 0.1) / 2), [])
    eta.add(TaskProgress("ppo__lam01", 4, 12, False, 200.0, runs=20))
    eta.add(TaskProgress("random__lam02", 5, 12, False, 2.0, runs=20))
    assert eta.estimate(now=160.0) == (pytest.approx(30 * 10.0 / (304.0 / 160.0)), [])  # ppo: 30 left
    eta.add(TaskProgress("ppo__lam00", 6, 12, False, 100.0, runs=10))
    eta.add(TaskProgress("ppo__lam02", 7, 12, False, 200.0, runs=20))
    assert eta.estimate(now=210.0) == (pytest.approx(0.0), [])


def test_the_bar_text_says_when_the_time_left_is_a_bound():
    from bionas_bench.cli.sweep import RemainingTime
    from bionas_bench.sweep import TaskProgress, load_sweep_config

    eta = RemainingTime(load_sweep_config("demo"))
    eta.began = time.perf_counter() - 10.0
    assert eta.text() == "left: estimating"
    eta.add(TaskProgress("ppo__lam00", 1, 12, False, 20.0, runs=20))
    assert re.fullmatch(r"left >= \d+:\d\d \(\+ random: not started\)", eta.text()), eta.text()
    for lam in ("00", "01", "02"):
        eta.add(TaskProgress(f"random__lam{lam}", 2, 12, False, 0.1, runs=20))
    assert re.fullmatch(r"left ~\d+:\d\d", eta.text()), eta.text()
