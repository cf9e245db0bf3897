"""``bionas-bench report``: Markdown + PNG figures + CSVs from a sweep's results."""

from __future__ import annotations

import argparse
from pathlib import Path

from bionas_bench.cli import HelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="write the report (Markdown, PNG figures, CSVs) of a sweep's results",
        description=(
            "Score a sweep's results against the gold standard and write report.md with the "
            "paper's Figure 2, choice probabilities, controller comparison (rank distributions, "
            "pairwise tests, anytime curves, Pareto front) and the CSV behind every figure."
        ),
        epilog=(
            "examples:\n"
            "  bionas-bench sweep demo --out results/demo\n"
            "  bionas-bench report results/demo --out my-reports/demo --title 'my demo'\n"
            "  bionas-bench sweep paper-fig2-quick --out results/quick --report my-reports/quick"
            "  # both in one"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("results", type=Path, help="results folder written by 'bionas-bench sweep'")
    parser.add_argument("--out", required=True, type=Path, help="report folder, e.g. reports/NAME")
    parser.add_argument("--title", default=None, help="report title (default: from the sweep config)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    render(args.results, args.out, args.title)
    return 0


def render(results: Path, out: Path, title: str | None = None, flag: str = "--out") -> None:
    """Write the report and print where it is and the mean-rank table (``flag``: the
    option that named ``out``, for the messages)."""
    from bionas_bench.report import check_report_folder, write_report
    from bionas_bench.sweep import load_results

    # a bad --out, then a bad results folder: one line, before the notice
    check_report_folder(out, flag, results)
    loaded = load_results(results)
    print(f"writing the report (figures take a few seconds) into {out} ...", flush=True)
    written = write_report(loaded, out, title=title, flag=flag)
    print(f"report: {written.markdown} ({len(written.figures)} figures, {len(written.tables)} CSV tables)")
    if written.missing:
        print(
            f"note: {len(written.missing)} cell(s) not finished, left out of the report: "
            f"{', '.join(written.missing)}; rerun the sweep with the same --out to finish them"
        )
    if written.summary is not None:
        print(rank_table(written.summary))


def rank_table(summary) -> str:
    """A short plain-text table of mean ranks per lambda and controller."""
    lines = [f"{'lambda':>8}  {'controller':<14}{'loss rank':>10}{'K rank':>8}{'obj rank':>10}"]
    for _, r in summary.sort_values(["lam"], kind="stable").iterrows():
        lines.append(
            f"{r['lam']:>8g}  {r['controller']:<14}{r['loss_rank']:>10.1f}{r['knowledge_rank']:>8.1f}"
            f"{r['objective_rank']:>10.1f}"
        )
    return "\n".join(lines)
