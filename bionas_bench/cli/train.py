"""``bionas-bench train``: the exhaustive training farm (every architecture x replicates -> store)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bionas_bench.cli import EXIT_BAD_INPUT, HelpFormatter, add_quiet_option
from bionas_bench.manifests import available
from bionas_bench.space import get_space


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train every architecture of a space many times into a Zarr store (resumable)",
        description=(
            "Train every architecture of a model space (or the --archs subset) with the replicates\n"
            "of a training manifest (or the --replicates subset), each architecture's replicates as\n"
            "one batched computation, on a Dask cluster (a local one by default), and write the\n"
            "results into a Zarr store. Restarting the same command, or one asking for more\n"
            "replicates, trains only what is missing; a store made from other manifests is refused.\n"
            "An architecture whose replicates do not fit in memory together trains a few at a time;\n"
            "one of which not even one replicate fits is left untrained (the command says which and\n"
            "exits 2 once the others are done)."
        ),
        epilog=(
            "examples:\n"
            "  bionas-bench train --space bionas-conv1d --dataset myc-single --training smoke "
            "--out runs/smoke.zarr --archs 0-5\n"
            "  # the `default` manifest (100 epochs, 20 replicates) over all 216 architectures of\n"
            "  # myc-single is a GPU job: ~20 CPU-hours on a 2-core CPU\n"
            "  # 5 of the manifest's replicates now, the rest later (only the missing ones train)\n"
            "  bionas-bench train --dataset myc-single --out runs/s.zarr --replicates 0-4\n"
            "  bionas-bench train --dataset myc-single --out runs/s.zarr\n"
            "  bionas-bench train --dataset myc-single --out runs/s.zarr --dry-run   # what is left\n"
            "  # debugging: in this process, no Dask\n"
            "  bionas-bench train --dataset myc-single --out runs/s.zarr --archs 46 --scheduler none"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--space",
        default="bionas-conv1d",
        help=f"space name ({', '.join(available('spaces'))}) or manifest path (default: %(default)s)",
    )
    parser.add_argument(
        "--dataset", required=True, help=f"dataset name ({', '.join(available('datasets'))}) or manifest path"
    )
    parser.add_argument(
        "--training",
        default="default",
        help=f"training manifest name ({', '.join(available('training'))}) or path (default: default)",
    )
    parser.add_argument("--out", required=True, help="store directory (created, or resumed)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="where to train (default: the training manifest's; auto = cuda when available)",
    )
    parser.add_argument(
        "--archs", default=None, help="architecture ids and ranges, e.g. 0-9,46 (default: all)"
    )
    parser.add_argument(
        "--replicates",
        default=None,
        help="replicate indices into the training manifest's seeds, same syntax, e.g. 0-4 "
        "(default: all); a later run with more trains only the missing ones",
    )
    parser.add_argument(
        "--scheduler",
        default="local",
        help="'local' (default: a local Dask cluster of --workers processes), a Dask scheduler "
        "address (tcp://host:port), or 'none' to train in this process without Dask (for "
        "debugging: plain tracebacks, pdb, no worker processes)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes of --scheduler local (default 2; local only)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per process (default: cpu_count/workers for --scheduler local, "
        "torch's otherwise)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be trained (and what --out already holds), then stop: nothing is "
        "trained or written",
    )
    add_quiet_option(parser)
    parser.set_defaults(
        func=run, interrupt_hint="finished units are kept in {out}: the same command trains the rest"
    )


def run(args: argparse.Namespace) -> int:
    from bionas_bench.cli.progress import make_bar
    from bionas_bench.ids import format_ids
    from bionas_bench.train.farm import FarmProgress, check_scheduler, parse_archs, run_farm

    space = get_space(args.space)
    archs = parse_archs(args.archs, space.size) if args.archs is not None else None
    check_scheduler(args.scheduler, args.workers)  # a dry run makes the same checks
    if args.dry_run:
        return dry_run(args, archs)
    bar: list[Any] = []
    unbuildable: list[FarmProgress] = []
    grouped: list[FarmProgress] = []
    unfit: list[FarmProgress] = []

    def progress(event: FarmProgress) -> None:
        if event.unbuildable:
            unbuildable.append(event)
        if event.group:
            grouped.append(event)
        if event.unfit:
            unfit.append(event)
        if args.quiet:
            return
        if event.done == 0:
            if event.total:  # nothing left to train: no bar (the summary line says so)
                bar.append(make_bar(event.total, "arch", "training"))
            return
        bar[0].set_postfix(arch=event.arch_id, failed=event.failed, refresh=False)
        bar[0].update(1)
        if event.done == event.total:  # final now: stopping the workers is not training time
            bar[0].close()

    try:
        report = run_farm(
            space,
            args.dataset,
            args.training,
            args.out,
            device=args.device,
            archs=archs,
            replicates=args.replicates,
            scheduler=args.scheduler,
            workers=args.workers,
            threads=args.threads,
            progress=progress,
        )
    finally:
        for b in bar:
            b.close()
    asked = format_ids(report.replicates) + (" (all)" if args.replicates is None else "")
    print(
        f"store {report.store}: trained {len(report.trained)} architecture(s), "
        f"{report.skipped} already done, on {report.device} "
        f"({report.runs} replicate(s) trained; replicates {asked} asked for)"
    )
    if unbuildable:
        first = unbuildable[0]
        print(
            f"note: {len(unbuildable)} architecture(s) cannot be built for the dataset's sequences and "
            f"were recorded as failed: {format_ids(sorted(e.arch_id for e in unbuildable))} "
            f"(e.g. {first.arch_id}: {first.unbuildable})"
        )
    if grouped:
        smallest = min(grouped, key=lambda e: e.group)
        print(
            f"note: {len(grouped)} architecture(s) were trained a few replicates at a time to fit in "
            f"memory: {format_ids(sorted(e.arch_id for e in grouped))} (down to {smallest.group} at once "
            f"for {smallest.arch_id}); their values equal one batch's up to floating-point rounding"
        )
    if report.unfit:
        print(
            f"bionas-bench train: error: {len(report.unfit)} architecture(s) do not fit in memory on "
            f"{report.device} and were not trained: {format_ids(report.unfit)} (e.g. {unfit[0].unfit}); "
            "the rest is written. Lower batch_size or eval_batch_size in the training manifest (that makes "
            "a new store) or the space's layer sizes, or run the same command where more memory is free: "
            "it trains only what is missing",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return 0


def dry_run(args: argparse.Namespace, archs: object) -> int:
    """Print what ``train`` would train (:func:`~bionas_bench.train.farm.plan_farm`)."""
    from bionas_bench.ids import format_ids
    from bionas_bench.train.farm import check_scheduler, plan_farm

    scheduler, workers = check_scheduler(args.scheduler, args.workers)
    plan = plan_farm(
        args.space,
        args.dataset,
        args.training,
        args.out,
        archs=archs,
        replicates=args.replicates,
        device=args.device,
        threads=args.threads,
        # a remote scheduler's workers run elsewhere: their memory is not this machine's
        processes={None: 1, "local": workers}.get(scheduler),
    )
    state = "resumed: a store of the same manifests" if plan.resumed else "new"
    trained = plan.units.archs.tolist()
    print(f"space      {plan.space.name} ({plan.space.size:,} architectures)")
    print(f"dataset    {plan.dataset}")
    print(f"training   {plan.config.name}: {plan.config.description}")
    print(f"store      {plan.store} ({state})")
    print(
        f"asked      {len(plan.archs):,} architecture(s) x replicates {format_ids(plan.replicates)}"
        f"{' (all)' if args.replicates is None else ''} "
        f"= {plan.asked:,} replicate trainings, {plan.asked - plan.runs:,} of them done"
    )
    if not plan.units:
        print("to train   nothing")
        return 0
    print(
        f"to train   {plan.runs:,} replicate trainings in {len(plan.units):,} unit(s), one per "
        f"architecture: {format_ids(trained)}"
    )
    if plan.memory is not None:
        print(f"memory     {memory_line(plan.memory, len(plan.units))}")
    return 0


def memory_line(forecast: Any, units: int) -> str:
    """The dry run's memory forecast (:class:`~bionas_bench.train.farm.MemoryForecast`) in a line."""
    from bionas_bench.ids import format_ids

    where = f"{forecast.free / 2**30:.1f} GiB free a process on {forecast.device} now"
    if forecast.estimated < units:
        where += f"; the first {forecast.estimated:,} units estimated"
    if not (forecast.grouped or forecast.unfit):
        return f"every unit fits at once (largest ~{forecast.largest / 2**30:.2f} GiB; {where})"
    parts = []
    if forecast.grouped:
        grouped = format_ids(forecast.grouped)
        parts.append(f"{len(forecast.grouped)} would train a few replicates at a time: {grouped}")
    if forecast.unfit:
        parts.append(f"{len(forecast.unfit)} would not fit even alone: {format_ids(forecast.unfit)}")
    return f"{'; '.join(parts)} ({where}; an estimate, see the README's 'Units larger than memory')"
