"""``bionas-bench sweep``: run a sweep config (lambda x runs x controllers) on Dask."""

from __future__ import annotations

import argparse
from pathlib import Path

from bionas_bench.cli import add_quiet_option
from bionas_bench.errors import SweepError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep",
        help="run every controller x lambda x run of a sweep config against the oracle",
        description=(
            "Run a sweep manifest (a name in data_manifests/sweeps, e.g. paper-fig2, or a path to a\n"
            ".toml file): every controller at every lambda for the configured number of runs, cells\n"
            "(one controller at one lambda), or slices of their runs, in parallel on Dask.\n"
            "Results go to a folder; rerunning with the same --out resumes (finished cells and\n"
            "slices are kept)."
        ),
        epilog=(
            "Ctrl-C stops the sweep at once (exit status 130): the local cluster's worker processes\n"
            "are killed, finished cells and slices are kept, and a slice cut short is rerun when the\n"
            "same command is run again. With --scheduler threads the slices running at that moment\n"
            "cannot be killed: Ctrl-C waits for them to finish. A remote scheduler's workers finish\n"
            "the slices they are running (kept); the others are cancelled.\n\n"
            "examples:\n"
            "  bionas-bench sweep demo --out results/demo --report reports/demo\n"
            "  bionas-bench sweep paper-fig2 --out results/fig2 --quiet   # no progress bar\n"
            "  bionas-bench sweep my-sweep.toml --out results/mine --scheduler tcp://host:8786\n"
            "  bionas-bench sweep paper-fig2 --out results/fig2 --scheduler tcp://host:8786 \\\n"
            "      --runs-per-task 5   # 280 tasks of 5 runs, for a cluster of many workers"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config",
        help="sweep manifest name (paper-fig2, paper-fig2-quick, paper-fig2-pub, demo) or .toml path",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="results folder (created; resumed if present)"
    )
    parser.add_argument(
        "--scheduler",
        default="local",
        help="'local' (default: a local Dask cluster, one process per core, at most one per "
        "task), 'threads' (a local cluster of threads of this process), 'sync' (in this "
        "process, in order), or a Dask scheduler address such as tcp://host:8786",
    )
    parser.add_argument(
        "--runs-per-task",
        type=int,
        default=None,
        metavar="N",
        help="split each cell's runs into tasks of N runs (0: whole cells); default: at most 25 "
        "runs a task, fewer where that leaves a worker fewer than two tasks. The results are the "
        "same bytes whatever N",
    )
    parser.add_argument("--store", type=Path, default=None, help="use this store instead of the config's")
    parser.add_argument("--report", type=Path, default=None, help="also write the report into this folder")
    add_quiet_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bionas_bench.sweep import TaskProgress, load_sweep_config, run_sweep

    config = load_sweep_config(args.config)
    if args.store is not None and not args.store.exists():
        raise SweepError(f"--store {args.store} does not exist; pass the path of a bionas_bench store")
    if args.runs_per_task is not None and args.runs_per_task < 0:
        raise SweepError(f"--runs-per-task must be >= 0 (0: whole cells), got {args.runs_per_task}")
    total = len(config.cells())
    bar = tqdm(total=total * config.runs, unit="run", desc=config.name, disable=args.quiet)

    def progress(event: TaskProgress) -> None:
        bar.set_postfix_str(event.key + (" (done before)" if event.skipped else ""), refresh=False)
        bar.update(event.runs)

    try:
        result = run_sweep(
            config,
            args.out,
            scheduler=args.scheduler,
            progress=progress,
            store=args.store,
            runs_per_task=args.runs_per_task,
        )
    finally:
        bar.close()
    skipped = f", {len(result.skipped)} already done" if result.skipped else ""
    print(
        f"sweep {config.name}: {total} cells in {result.seconds:.1f} s wall "
        f"({result.cpu_seconds:.1f} CPU-s in cells){skipped}; results in {result.out}"
    )
    if args.report is not None:
        from bionas_bench.cli.report import render

        render(result.out, args.report)
    return 0
