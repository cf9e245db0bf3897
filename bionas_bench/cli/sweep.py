"""``bionas-bench sweep``: run a sweep config (lambda x runs x controllers) on Dask."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bionas_bench.cli import HelpFormatter, add_quiet_option, add_store_option, checked_store
from bionas_bench.errors import SweepError
from bionas_bench.manifests import available

if TYPE_CHECKING:
    from bionas_bench.sweep import SweepConfig, SweepPlan, TaskProgress


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep",
        help="run every controller x lambda x run of a sweep config against the oracle",
        description=(
            "Run a sweep manifest (a name in data_manifests/sweeps, e.g. paper-fig2, or a path to a\n"
            ".toml file): every controller at every lambda for the configured number of runs, cells\n"
            "(one controller at one lambda), or slices of their runs, in parallel on Dask.\n"
            "Results go to a folder; rerunning with the same --out resumes (finished cells and\n"
            "slices are kept). A folder of another config, store or bionas-bench version is refused."
        ),
        epilog=(
            "Ctrl-C stops the sweep at once (exit status 130): the local cluster's worker processes\n"
            "are killed, finished cells and slices are kept, and a slice cut short is rerun when the\n"
            "same command is run again. With --scheduler threads the slices running at that moment\n"
            "cannot be killed: Ctrl-C waits for them to finish. A remote scheduler's workers finish\n"
            "the slices they are running (kept); the others are cancelled.\n\n"
            "examples:\n"
            "  bionas-bench sweep demo --out results/demo --report my-reports/demo\n"
            "  bionas-bench sweep paper-fig2 --out results/fig2 --dry-run   # what would run, what is done\n"
            "  bionas-bench sweep paper-fig2 --out results/fig2 --quiet   # no progress bar\n"
            "  bionas-bench sweep my-sweep.toml --out results/mine --scheduler tcp://host:8786\n"
            "  bionas-bench sweep paper-fig2 --out results/fig2 --scheduler tcp://host:8786 \\\n"
            "      --runs-per-task 5   # 280 tasks of 5 runs, for a cluster of many workers"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "config",
        help=f"sweep manifest name ({', '.join(available('sweeps'))}) or .toml path",
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
    add_store_option(parser, "use this store instead of the config's")
    parser.add_argument("--report", type=Path, default=None, help="also write the report into this folder")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show the cells, the tasks and what --out already holds, then stop: nothing is run or written",
    )
    add_quiet_option(parser)
    parser.set_defaults(
        func=run, interrupt_hint="finished cells are kept in {out}: the same command goes on from there"
    )


@contextlib.contextmanager
def progress_bar(
    config: SweepConfig, quiet: bool, scheduler: str | None = "local"
) -> Iterator[Callable[[TaskProgress], None]]:
    """The ``progress`` callback of :func:`~bionas_bench.sweep.run_sweep` that shows a bar
    over the sweep's runs (none when ``quiet``). The bar appears with the sweep's first
    event, once its checks have passed, so bad input fails with its one line and no bar;
    the compiled controller update is prepared at that moment too
    (:func:`prepare_compiled_update`)."""
    from bionas_bench.cli.progress import make_bar, skip_ahead

    bars = []
    eta = RemainingTime(config)

    def progress(event: TaskProgress) -> None:
        if not bars:
            prepare_compiled_update(config, scheduler, quiet)
            total = len(config.cells()) * config.runs
            bars.append(make_bar(total, "run", config.name, quiet, bar_format=BAR_FORMAT))
            eta.start()
        if not event.done:
            return
        eta.add(event)
        if event.skipped:
            skip_ahead(bars[0], event.runs, event.key + " (done before)")
        else:
            bars[0].set_postfix_str(f"{event.key}, {eta.text()}", refresh=False)
            bars[0].update(event.runs)
        if bars[0].n >= bars[0].total:  # final now: stopping the workers is not the sweep's time
            bars[0].close()

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


#: the sweep's bar: tqdm's own remaining time (from the run rate) left out, see RemainingTime
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class RemainingTime:
    """The time a sweep has left, from what each controller's runs cost so far.

    A run of ``ppo`` costs hundreds of times one of ``random``, and the cells run one
    controller after another, so a rate over runs (tqdm's estimate) was off by 2-4x: while
    ``ppo`` ran it priced ``random``'s runs at ``ppo``'s cost. Here each controller's runs
    left are priced at that controller's seconds per run so far, divided by the
    parallelism seen so far (seconds of work done per second of wall time). The runs of a
    controller without a finished task yet are not priced: the estimate is then a lower
    bound, and says so.
    """

    def __init__(self, config: SweepConfig):
        self.left = {spec.label: len(config.lambdas) * config.runs for spec in config.controllers}
        self.runs = dict.fromkeys(self.left, 0)
        self.seconds = dict.fromkeys(self.left, 0.0)
        self.began = time.perf_counter()

    def start(self) -> None:
        self.began = time.perf_counter()

    def add(self, event: TaskProgress) -> None:
        label = event.key.rsplit("__lam", 1)[0]
        self.left[label] -= event.runs
        if not event.skipped:
            self.runs[label] += event.runs
            self.seconds[label] += event.seconds

    def estimate(self, now: float | None = None) -> tuple[float, list[str]] | None:
        """Seconds left and the controllers whose runs left are not priced yet (then the
        seconds are a lower bound); None before any task of this run finished."""
        wall = (time.perf_counter() if now is None else now) - self.began
        work = sum(self.seconds.values())
        if wall <= 0 or work <= 0:
            return None
        unpriced = [label for label, left in self.left.items() if left > 0 and not self.runs[label]]
        todo = sum(
            left * self.seconds[label] / self.runs[label]
            for label, left in self.left.items()
            if left > 0 and self.runs[label]
        )
        return todo / (work / wall), unpriced

    def text(self) -> str:
        found = self.estimate()
        if found is None:
            return "left: estimating"
        left, unpriced = found
        minutes, seconds = divmod(round(left), 60)
        if unpriced:
            return f"left >= {minutes}:{seconds:02d} (+ {', '.join(unpriced)}: not started)"
        return f"left ~{minutes}:{seconds:02d}"


def prepare_compiled_update(config: SweepConfig, scheduler: str | None, quiet: bool) -> None:
    """Before the first task of a sweep with a policy-gradient controller on this machine:
    compile (or load) the controllers' update and sampler here, and say so when it takes
    a while.

    numba compiles them on the first use after installing (~18 s on a 2-core machine); a
    progress bar sitting at 0 % meanwhile looks hung. Compiled here, it is cached on disk,
    and the local workers load it. A remote scheduler's workers compile on their own.
    """
    from bionas_bench.controllers import get
    from bionas_bench.controllers.policy_gradient import PolicyGradientController, prepare_update

    if scheduler not in (None, "local", "threads", "sync"):
        return
    if not any(issubclass(get(spec.name), PolicyGradientController) for spec in config.controllers):
        return
    said: list[float] = []

    def notice() -> None:
        said.append(time.perf_counter())
        print(
            "preparing the policy-gradient controllers' compiled update (numba compiles it on the "
            "first use after installing, ~20 s; later runs load it from its cache) ...",
            file=sys.stderr,
            flush=True,
        )

    start = time.perf_counter()
    timer = threading.Timer(1.0, notice)
    if not quiet:
        timer.start()
    try:
        prepare_update()
    finally:
        timer.cancel()
    if said:
        print(f"... ready in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from bionas_bench.report import check_report_folder
    from bionas_bench.sweep import load_sweep_config, run_sweep

    config = load_sweep_config(args.config)
    checked_store(args.store, SweepError)
    if args.report is not None:  # before the sweep, not after it
        check_report_outside(args.report, args.out)
        check_report_folder(args.report, "--report", args.out)
    if args.runs_per_task is not None and args.runs_per_task < 0:
        raise SweepError(f"--runs-per-task must be >= 0 (0: whole cells), got {args.runs_per_task}")
    if args.dry_run:
        return dry_run(args, config)
    total = len(config.cells())
    done_before = [0]  # runs of cells and slices finished by an earlier, interrupted run

    with progress_bar(config, args.quiet, args.scheduler) as show:

        def progress(event: TaskProgress) -> None:
            done_before[0] += event.runs if event.skipped else 0
            show(event)

        result = run_sweep(
            config,
            args.out,
            scheduler=args.scheduler,
            progress=progress,
            store=args.store,
            runs_per_task=args.runs_per_task,
        )
    skipped = (
        f", {len(result.skipped)} already done ({done_before[0]} of {total * config.runs} runs, "
        "finished slices included)"
        if done_before[0]
        else ""
    )
    print(
        f"sweep {config.name}: {total} cells in {result.seconds:.1f} s wall "
        f"({result.cpu_seconds:.1f} CPU-s in cells){skipped}; results in {result.out}"
    )
    if args.report is not None:
        from bionas_bench.cli.report import render

        render(result.out, args.report, flag="--report")
    return 0


def check_report_outside(report: Path, out: Path) -> None:
    """Refuse a ``--report`` that is the results folder ``--out`` or lies inside it: the
    report's files would become part of the results (``report`` refuses such a folder,
    but only once the sweep has run)."""
    where, results = report.resolve(), out.resolve()
    if where == results or results in where.parents:
        relation = "is" if where == results else "is inside"
        raise SweepError(
            f"--report {report} {relation} the results folder --out {out}; choose a report folder outside it"
        )


def dry_run(args: argparse.Namespace, config: SweepConfig) -> int:
    """Print what the sweep would run (:func:`~bionas_bench.sweep.plan_sweep`)."""
    from bionas_bench.sweep import plan_sweep

    plan = plan_sweep(config, args.out, args.scheduler, args.store, args.runs_per_task)
    for line in describe_plan(plan):
        print(line)
    if args.scheduler not in ("local", "threads", "sync") and args.runs_per_task is None:
        print(
            f"note: tasks planned for {plan.workers} workers (this machine's cores); the sweep plans "
            f"them for the threads of {args.scheduler} when it starts"
        )
    return 0


def describe_plan(plan: SweepPlan) -> list[str]:
    """The lines of ``sweep --dry-run``: the config, the split, the state of the results."""
    config, cells = plan.config, plan.cells
    budget = config.budget
    labels = ", ".join(c.label for c in config.controllers)
    lambdas = ", ".join(f"{lam:g}" for lam in config.lambdas)
    samples = f"{budget.episodes} episodes x {budget.archs_per_episode} architectures"
    if budget.gpu_seconds is not None:
        samples += f", at most {budget.gpu_seconds:g} simulated GPU seconds"
    total_runs = len(cells) * config.runs
    about = f": {config.description}" if config.description else ""
    lines = [
        f"sweep      {config.name}{about}",
        f"store      {plan.store}",
        f"cells      {len(cells)} = {len(config.controllers)} controller(s) ({labels}) x "
        f"{len(config.lambdas)} lambda(s) ({lambdas})",
        f"runs       {config.runs} a cell, {samples} a run; {total_runs:,} runs in all",
        f"tasks      {plan.tasks} of at most {plan.task_runs} runs, planned for {plan.workers} worker(s)",
    ]
    if plan.out is None or not (plan.out / "sweep.json").is_file():
        where = f"{plan.out} (new)" if plan.out is not None else "(no --out)"
        lines.append(f"results    {where}: all {total_runs:,} runs to run")
        return lines
    done = sum(1 for c in cells if c.tasks_to_run == 0)
    partly = [c for c in cells if 0 < c.tasks_to_run < c.tasks]
    lines.append(
        f"results    {plan.out}: {done} of {len(cells)} cells done, {len(partly)} partly "
        f"(finished slices); {plan.runs_to_run:,} of {total_runs:,} runs to run in "
        f"{plan.tasks_to_run} task(s)"
    )
    width = max(len(c.cell.key) for c in cells)
    lines.append(f"  {'cell':{width}s}  {'lambda':>8s}  {'runs done':>11s}")
    for c in cells:
        state = "done" if c.tasks_to_run == 0 else ("partly" if c.tasks_to_run < c.tasks else "")
        runs_done = f"{config.runs - c.runs_to_run}/{config.runs}"
        lines.append(f"  {c.cell.key:{width}s}  {c.cell.lam:8g}  {runs_done:>11s}  {state}".rstrip())
    return lines
