"""``bionas-bench demo``: a small lambda sweep and its report, in seconds.

Runs the ``demo`` sweep manifest (PPO vs random search at three knowledge weights)
against the embedded default store and writes a report with figures. Until a store is
shipped with the package, the demo falls back to the store imported from the original
BioNAS table when that table is found ($BIONAS_PUB_DIR or ../shared/bionas_pub), and
says so; without either it fails with a message naming both fixes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bionas_bench.cli import HelpFormatter, add_quiet_option, add_store_option, checked_store
from bionas_bench.errors import StoreError, SweepError

if TYPE_CHECKING:
    from bionas_bench.sweep import SweepConfig


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a small sweep (PPO vs random search over lambda) and write its report",
        description=(
            "A first look at bionas_bench: runs the 'demo' sweep (PPO vs random search, 20 runs "
            "at lambda = 0.001, 1, 1000) against the embedded default store through the "
            "bootstrap oracle, then writes a report with the paper's Figure 2 and the "
            "controller comparison, and prints a table of mean ranks. --config runs another "
            "sweep the same way, on its own store (or --store)."
        ),
        epilog=(
            "examples:\n"
            "  bionas-bench demo                                  # report in ./bionas-demo-report\n"
            "  bionas-bench demo --out my-reports/demo --scheduler local\n"
            "  bionas-bench demo --config paper-fig2-quick --out my-reports/quick"
            "   # all of Figure 2, 20 runs a cell"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bionas-demo-report"),
        help="report folder (default ./bionas-demo-report)",
    )
    add_store_option(parser, "use this store instead of the sweep config's")
    parser.add_argument(
        "--config", default="demo", help="sweep manifest name or .toml path to run (default: demo)"
    )
    parser.add_argument(
        "--scheduler",
        default="sync",
        help="sync (default: in this process), local (a local Dask cluster), threads, or a Dask "
        "scheduler address",
    )
    add_quiet_option(parser)
    parser.set_defaults(func=run)


def demo_store(explicit: str | Path | None, config: SweepConfig) -> tuple[str | None, str]:
    """The store location to run on and a sentence saying which it is: ``--store``, else
    the config's store, and for a config on the embedded store (the shipped ``demo``) the
    fallbacks of the module docstring."""
    from bionas_bench.store import open_store
    from bionas_bench.sweep import find_bionas_pub, imported_bionas_pub, resolve_store

    location = checked_store(explicit, SweepError)
    if location is not None:
        return location, f"store {location}"
    configured = resolve_store(config.store)
    if configured is not None:
        return configured, f"store {configured} (the sweep config's)"

    try:
        open_store()
        return None, "the embedded default store"
    except StoreError:
        pass
    if find_bionas_pub() is None:
        raise SweepError(
            "no embedded default store is shipped with this version and the original BioNAS table was not "
            "found; pass --store PATH (a store from 'bionas-bench train' or 'bionas-bench store "
            "import-bionas-pub'), or set BIONAS_PUB_DIR to the folder holding mock_black_box/"
        )
    location = imported_bionas_pub()
    return str(location), (
        "the store imported from the original BioNAS table (no embedded default store is shipped yet); "
        f"cached at {location}"
    )


def run(args: argparse.Namespace) -> int:
    from bionas_bench.cli.report import rank_table
    from bionas_bench.cli.sweep import progress_bar
    from bionas_bench.report import check_report_folder, write_report
    from bionas_bench.store import open_store
    from bionas_bench.sweep import check_folder, check_scheduler, load_sweep_config, run_sweep

    start = time.perf_counter()
    check_scheduler(args.scheduler)  # before the header
    check_folder(args.out, "the demo's results and report")
    results = args.out / "results"
    check_report_folder(args.out, results=results)  # before the sweep writes its results into it
    config = load_sweep_config(args.config)
    location, which = demo_store(args.store, config)
    space = open_store(location).space
    print(f"bionas-bench demo: space {space.name}, {space.size} architectures, {space.num_layers} layers")
    for layer in space.layers:
        print(f"  {layer.name:<10} {', '.join(layer.choice_names)}")
    print(f"oracle serves {which}")
    controllers = " vs ".join(c.label for c in config.controllers)
    lambdas = ", ".join(f"{lam:g}" for lam in config.lambdas)
    print(
        f"sweep {config.name}: {controllers}, lambda in {{{lambdas}}}, {config.runs} runs x "
        f"{config.budget.episodes} episodes x {config.budget.archs_per_episode} architectures"
    )
    with progress_bar(config, args.quiet, args.scheduler) as progress:
        run_sweep(config, results, scheduler=args.scheduler, store=location, progress=progress)
    print(f"writing the report (figures take a few seconds) into {args.out} ...", flush=True)
    written = write_report(results, args.out)
    print(f"\nmean gold-standard ranks of the recommended architectures (1 = best of {space.size}):")
    print(rank_table(written.summary))
    seconds = time.perf_counter() - start
    print(f"\nreport: {written.markdown} ({len(written.figures)} figures), done in {seconds:.0f} s")
    return 0
