"""``bionas-bench regress``: record baselines of search behaviour and check against them.

    bionas-bench regress record regress --out reports/baselines/regress.json
    bionas-bench regress check regress --baseline reports/baselines/regress.json --exact
    bionas-bench regress check regress-ppo --baseline reports/baselines/regress-ppo.json --deterministic
    bionas-bench regress false-alarm regress --trials 100

``check`` exits 1 on a significant regression, a changed input (without
``--allow-input-change``), with ``--exact`` results that are not bit-identical, or with
``--deterministic`` two runs of a cell that differ; 2 on bad input (as every command).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from bionas_bench.cli import HelpFormatter, add_quiet_option, add_store_option, checked_store
from bionas_bench.errors import RegressError

EXIT_REGRESSION = 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "regress",
        help="record a baseline of search behaviour, or check a rerun against it (CI)",
        description=(
            "Regression testing of search controllers: 'record' stores per controller x lambda "
            "the per-run scores of a small sweep; 'check' reruns it and compares every cell with a "
            "one-sided Mann-Whitney U test, Holm-corrected, and exits 1 on a significant regression; "
            "'false-alarm' measures how often an unchanged sweep fails the check."
        ),
        epilog="examples:\n"
        "  bionas-bench regress record regress --out reports/baselines/regress.json\n"
        "  bionas-bench regress check regress --baseline reports/baselines/regress.json --exact\n"
        "  bionas-bench regress false-alarm regress --trials 20",
        formatter_class=HelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _record_parser(actions)
    _check_parser(actions)
    _false_alarm_parser(actions)


def _common(parser: argparse.ArgumentParser, scheduler: bool = True) -> None:
    parser.add_argument("config", help="sweep manifest name (e.g. regress) or path to a .toml file")
    add_store_option(parser, "use this store instead of the config's")
    if not scheduler:
        return
    parser.add_argument(
        "--scheduler",
        default="sync",
        help="'sync' (default: in this process, fastest for small sweeps), 'local', 'threads' "
        "or a Dask scheduler address",
    )


def _record_parser(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "record",
        help="run the sweep and write its baseline JSON",
        description="Run the sweep and write, per controller x lambda, the per-run scores and their "
        "distribution summary plus the config and input hashes.",
        epilog="example:\n  bionas-bench regress record regress --out reports/baselines/regress.json",
        formatter_class=HelpFormatter,
    )
    _common(parser)
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="baseline JSON to write; an existing baseline there is replaced, any other file refused",
    )
    add_quiet_option(parser)
    parser.set_defaults(func=run_record)


def _check_parser(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "check",
        help="rerun the sweep and compare it with a baseline",
        description="Rerun the sweep and compare each cell with the baseline (one-sided Mann-Whitney U "
        "on the per-run objective rank and anytime AUC, Holm-corrected over all cells and both metrics). "
        "Exit 1 on a significant regression, changed inputs, missing cells, a controller that ignores "
        "its seed, (--exact) results that differ from the baseline's or between two runs, or "
        "(--deterministic) results that differ between two runs; exit 2 on "
        "bad input (a missing or damaged baseline, a bad option).",
        epilog="examples:\n"
        "  bionas-bench regress check regress --baseline reports/baselines/regress.json --exact\n"
        "  bionas-bench regress check regress-ppo --baseline reports/baselines/regress-ppo.json "
        "--deterministic",
        formatter_class=HelpFormatter,
    )
    _common(parser)
    parser.add_argument("--baseline", required=True, type=Path, help="baseline JSON from 'regress record'")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="also require bit-identical results for the same seeds, and rerun one cell per "
        "controller to catch nondeterminism",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="rerun one cell per controller and require the same bits, without comparing bits with "
        "the baseline: the part of --exact that holds on any machine (compiled float32 controllers "
        "such as ppo round differently on CPUs of another vector width)",
    )
    parser.add_argument(
        "--allow-input-change",
        action="store_true",
        help="compare even when the config, store or gold standard changed since the baseline",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate (default 0.05)")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the rerun's sweep results in this folder"
    )
    parser.add_argument("--all-metrics", action="store_true", help="also list the informational metrics")
    add_quiet_option(parser)
    parser.set_defaults(func=run_check)


def _false_alarm_parser(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "false-alarm",
        help="measure how often an unchanged sweep fails the check (other seeds)",
        description="Record a baseline at the config's seed, then check TRIALS reruns at seeds "
        "seed+1..seed+TRIALS and report the fraction that fail. Exit 1 when it exceeds alpha.",
        epilog="example:\n  bionas-bench regress false-alarm regress --trials 100   # minutes: 100 reruns",
        formatter_class=HelpFormatter,
    )
    _common(parser, scheduler=False)
    parser.add_argument("--trials", type=int, default=100, help="reruns with other seeds (default 100)")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate (default 0.05)")
    add_quiet_option(parser)
    parser.set_defaults(func=run_false_alarm)


# ---------------------------------------------------------------------- actions
def run_record(args: argparse.Namespace) -> int:
    checked_store(args.store, RegressError)
    from bionas_bench.cli.sweep import progress_bar
    from bionas_bench.regress import load_config, record

    config = load_config(args.config)
    with progress_bar(config, args.quiet, args.scheduler) as progress:
        document = record(config, args.out, store=args.store, scheduler=args.scheduler, progress=progress)
    runs = {c["runs"] for c in document["cells"]}
    print(
        f"regress record {document['config']['name']}: {len(document['cells'])} cells x "
        f"{'/'.join(map(str, sorted(runs)))} runs -> {args.out}"
    )
    return 0


def run_check(args: argparse.Namespace) -> int:
    checked_store(args.store, RegressError)
    from bionas_bench.cli.sweep import progress_bar
    from bionas_bench.regress import check, load_config, read_baseline

    config = load_config(args.config)
    baseline = read_baseline(args.baseline)  # a missing or bad baseline fails before the rerun
    if args.keep is not None and args.keep.is_file():
        raise RegressError(f"--keep {args.keep} is a file; give a folder for the rerun's sweep results")
    with progress_bar(config, args.quiet, args.scheduler) as progress:
        report = check(
            config,
            baseline,
            exact=args.exact,
            deterministic=args.deterministic,
            allow_input_change=args.allow_input_change,
            alpha=args.alpha,
            store=args.store,
            scheduler=args.scheduler,
            keep=args.keep,
            progress=progress,
        )
    if not report.input_failure:  # else the cells are not comparable: no table, no verdict
        print(render_check(report, all_metrics=args.all_metrics))
    failures = report.failures()
    for line in failures:
        print(f"bionas-bench regress check: FAIL: {line}", file=sys.stderr)
    if report.input_changes and report.inputs_allowed:
        print("note: inputs changed (allowed): " + "; ".join(report.input_changes))
    return EXIT_REGRESSION if failures else 0


def run_false_alarm(args: argparse.Namespace) -> int:
    checked_store(args.store, RegressError)
    from bionas_bench.cli.progress import make_bar
    from bionas_bench.regress import false_alarm_rate

    bars = []  # made at the first finished trial: bad input fails with its one line, no bar
    alarms = 0

    def progress(done: int, alarm: bool) -> None:
        nonlocal alarms
        if not bars:
            bars.append(make_bar(args.trials, "trial", "false alarms", args.quiet))
        alarms += alarm
        bars[0].set_postfix_str(f"{alarms} alarms", refresh=False)
        bars[0].update(1)

    try:
        report = false_alarm_rate(
            args.config,
            trials=args.trials,
            alpha=args.alpha,
            store=args.store,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    print(
        f"false-alarm rate of unchanged {report.config_name}: {report.alarms}/{report.trials} = "
        f"{report.rate:.1%} (95% CI {report.ci_low:.1%}-{report.ci_high:.1%}) at alpha={report.alpha:g}; "
        f"seeds {report.seeds[0]}..{report.seeds[-1]}"
    )
    flagged = {k: v for k, v in report.alarm_cells.items() if v}
    if flagged:
        print("alarms per cell: " + ", ".join(f"{k}={v}" for k, v in sorted(flagged.items())))
    return EXIT_REGRESSION if report.rate > report.alpha else 0


# ---------------------------------------------------------------------- rendering
def render_check(report, all_metrics: bool = False) -> str:
    """The check's table and verdict as plain text."""
    table = report.table()
    if not all_metrics:
        table = table[table["verdict"] != "info"]
    header = (
        "cell",
        "lambda",
        "metric",
        "baseline",
        "now",
        "delta",
        "P(worse)",
        "mde",
        "p",
        "p_adj",
        "verdict",
    )
    rows = [header]
    for r in table.itertuples(index=False):
        rows.append(
            (
                r.cell,
                f"{r.lam:g}",
                r.metric,
                _num(r.baseline),
                _num(r.now),
                _signed(r.delta),
                f"{r.effect:.2f}",
                _num(r.mde),
                _p(r.p),
                _p(r.p_adj),
                r.verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    runs = sorted({c.runs_now for c in report.comparisons}) or [0]
    lines.insert(
        0,
        f"regress check {report.config_name}: one-sided Mann-Whitney U per cell (lower is better), "
        f"Holm over {report.tests} tests at alpha={report.alpha:g}; with {'/'.join(map(str, runs))} runs per "
        f"cell a shift of {report.detectable_d:.2f} baseline SD (column mde) is detected with power 0.8",
    )
    verdict = "PASS" if report.passed else "FAIL"
    extra = ""
    if report.passed and report.exact:
        extra = " (exact: bit-identical and deterministic)"
    elif report.passed and report.deterministic:
        extra = " (deterministic)"
    lines.append(f"{verdict}{extra}: {len(report.regressions)} significant regression(s)")
    return "\n".join(lines)


def _num(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.4g}"


def _signed(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.3g}"


def _p(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3g}"
