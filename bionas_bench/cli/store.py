"""``bionas-bench store``: inspect, validate and import results stores."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import TYPE_CHECKING

import numpy as np

from bionas_bench.cli import HelpFormatter
from bionas_bench.errors import StoreError
from bionas_bench.ids import format_ids, parse_ids

if TYPE_CHECKING:
    from bionas_bench.agreement import Agreement
    from bionas_bench.store import ChoiceStats, Store, StoreSummary

EXAMPLES = """\
examples:
  bionas-bench store import-bionas-pub ../shared/bionas_pub --out stores/bionas-pub.zarr
  bionas-bench store info                        # the embedded default store
  bionas-bench store info stores/bionas-pub.zarr --lam 0.1
  bionas-bench store info stores/bionas-pub.zarr --json
  bionas-bench store info stores/bionas-pub.zarr --by-choice   # per layer choice
  bionas-bench store validate stores/bionas-pub.zarr
  bionas-bench store compare runs/pub-myc.zarr stores/bionas-pub.zarr
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "store",
        help="inspect, validate, compare and import results stores",
        description=(
            "Results stores hold every replicate of every architecture (Zarr v3). 'info' shows "
            "completion, failures, medians and the best architectures; 'validate' checks shapes, "
            "attributes and stored chunks; 'import-bionas-pub' converts the original BioNAS table "
            "into a store; "
            "'compare' measures how two stores of one space agree (Spearman of per-architecture medians)."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    cmds = parser.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)

    imp = cmds.add_parser(
        "import-bionas-pub",
        help="convert the original BioNAS 20-replicate table into a store",
        description=(
            "Read mock_black_box/tmp_{1..20}/train_history.csv of the data published with the "
            "original BioNAS code (zj-zhang/BioNAS-pub, GPL-3.0), check every row's layers against "
            "the bionas-conv1d space, and write a store with val_loss, accuracy, knowledge set "
            "'myc' and failed = val_loss > 0.69. The write is atomic: an interrupted import "
            "leaves nothing, and a second import to the same STORE is refused while one runs."
        ),
        epilog="example:\n  bionas-bench store import-bionas-pub ../shared/bionas_pub --out bionas-pub.zarr",
        formatter_class=HelpFormatter,
    )
    imp.add_argument("dir", metavar="DIR", help="the bionas_pub folder (or its mock_black_box folder)")
    imp.add_argument("--out", required=True, metavar="STORE", help="path of the store to write")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    imp.set_defaults(func=run_import)

    info = cmds.add_parser(
        "info",
        help="completion, failures, medians and best architectures of a store",
        description="Summarise a store: completion, failures, medians of each metric, best architectures.",
        epilog=(
            "examples:\n  bionas-bench store info bionas-pub.zarr --lam 0.1 --top 5\n"
            "  bionas-bench store info --by-choice   # the embedded store, per layer choice"
        ),
        formatter_class=HelpFormatter,
    )
    info.add_argument(
        "store",
        metavar="STORE",
        nargs="?",
        default=None,
        help="store path or fsspec URL (default: the embedded store)",
    )
    info.add_argument("--lam", type=float, default=1.0, help="knowledge weight of the objective (default 1)")
    info.add_argument("--top", type=int, default=3, help="how many best architectures to list (default 3)")
    info.add_argument(
        "--loss", default=None, help="metric used as loss (default: val_loss if the store has it, else none)"
    )
    info.add_argument("--knowledge", default=None, help="knowledge set (default: the store's default set)")
    info.add_argument(
        "--by-choice",
        action="store_true",
        help="also a table per layer choice: trainings, share at chance, median loss and knowledge "
        "over the architectures that make it",
    )
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=run_info)

    val = cmds.add_parser(
        "validate",
        help="check a store's shapes, attributes and stored chunks",
        description=(
            "Check that every array and attribute of a store is consistent, that no chunk a done "
            "unit needs is missing (zarr would read it as its fill value), and that every done "
            "training not marked failed has a finite loss and, where it has first-layer filters, knowledge; "
            "exit 2 otherwise."
        ),
        epilog="examples:\n  bionas-bench store validate              # the embedded store\n"
        "  bionas-bench store validate my-store.zarr",
        formatter_class=HelpFormatter,
    )
    val.add_argument(
        "store",
        metavar="STORE",
        nargs="?",
        default=None,
        help="store path or fsspec URL (default: the embedded store)",
    )
    val.set_defaults(func=run_validate)

    cmp = cmds.add_parser(
        "compare",
        help="how two stores of one space agree: Spearman of per-architecture median loss and knowledge",
        description=(
            "Rank correlation (Spearman) of the per-architecture medians of STORE_A and STORE_B, "
            "for the loss and, when both stores have one, the knowledge; and where each store's "
            "best architecture ranks in the other. Only architectures with a median in both "
            "stores count, so a partly trained store can be compared."
        ),
        epilog=(
            "examples:\n"
            "  # our rebuild of the original table against the authors' own\n"
            "  bionas-bench store import-bionas-pub ../shared/bionas_pub --out bionas-pub.zarr\n"
            "  bionas-bench train --dataset bionas-pub-myc --training bionas-pub-myc --out pub-myc.zarr \\\n"
            "      --replicates 0 --device cpu --scheduler none --threads 1   # one replicate: ~1.5 CPU-h\n"
            "  bionas-bench store compare pub-myc.zarr bionas-pub.zarr\n"
            "  # the ceiling for a one-replicate rebuild: one replicate of a table vs the rest of it\n"
            "  bionas-bench store compare bionas-pub.zarr bionas-pub.zarr \\\n"
            "      --replicates-a 0 --replicates-b 1-19"
        ),
        formatter_class=HelpFormatter,
    )
    cmp.add_argument("store_a", metavar="STORE_A", help="store path or fsspec URL")
    cmp.add_argument("store_b", metavar="STORE_B", help="store path or fsspec URL")
    cmp.add_argument("--loss", default="val_loss", help="loss metric of STORE_A (default val_loss)")
    cmp.add_argument("--loss-b", default=None, help="loss metric of STORE_B (default: as --loss)")
    cmp.add_argument("--knowledge", default=None, help="knowledge set of STORE_A (default: the store's)")
    cmp.add_argument(
        "--knowledge-b", default=None, help="knowledge set of STORE_B (default: as --knowledge, else its own)"
    )
    for side in ("a", "b"):
        cmp.add_argument(
            f"--replicates-{side}",
            default=None,
            metavar="IDS",
            help=f"only these replicates of STORE_{side.upper()} (e.g. 0 or 0-4,7; default all)",
        )
    cmp.add_argument("--json", action="store_true", help="print the comparison as JSON")
    cmp.set_defaults(func=run_compare)


def run_import(args: argparse.Namespace) -> int:
    from bionas_bench.importers import import_bionas_pub

    store = import_bionas_pub(args.dir, args.out, overwrite=args.overwrite)
    print(f"wrote {store.location}: {store.num_archs} architectures x {store.num_replicates} replicates")
    print(render_summary(store.summary()))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from bionas_bench.store import open_store

    if not (math.isfinite(args.lam) and args.lam >= 0):
        raise StoreError(f"--lam must be a finite number >= 0, got {args.lam:g}")
    if args.top < 0:
        raise StoreError(f"--top must be >= 0 (0: no lists of best architectures), got {args.top}")
    store = open_store(args.store)
    store.validate()  # a damaged array (one info does not read, say a curve) is reported, not passed over
    if args.loss is not None and args.loss not in store.metric_names:
        raise StoreError(
            f"--loss {args.loss}: store {store.location} has no such metric; it has {store.metric_names}"
        )
    if args.knowledge is not None and args.knowledge not in store.knowledge_sets:
        raise StoreError(
            f"--knowledge {args.knowledge}: store {store.location} has no such knowledge set; "
            f"it has {store.knowledge_sets}"
        )
    summary = store.summary(lam=args.lam, top=args.top, loss=args.loss, knowledge=args.knowledge)
    choices = store.choice_summary(loss=args.loss, knowledge=args.knowledge) if args.by_choice else None
    if args.json:
        out = summary.to_dict()
        if choices is not None:
            out["by_choice"] = [dataclasses.asdict(c) for c in choices]
        print(_strict_json(out))
        return 0
    print(render_summary(summary))
    if choices is not None:
        print(render_choices(choices, summary.loss, summary.knowledge))
    return 0


def render_choices(rows: list[ChoiceStats], loss: str | None, knowledge: str | None) -> str:
    """The ``--by-choice`` table: one line per layer choice."""
    from bionas_bench.store import CHANCE_LOSS

    width = max(len(r.choice) for r in rows)
    lines = [
        f"by layer choice (medians over done trainings; at chance: {loss} > {CHANCE_LOSS}):",
        f"  {'layer':<8} {'choice':<{width}} {'archs':>5} {'trainings':>9} {'at chance':>9} "
        f"{'loss':>7} {'K ' + (knowledge or ''):>9}",
    ]
    for r in rows:
        chance = (
            "-"
            if r.trainings_chance is None or not r.trainings_done
            else f"{100 * r.trainings_chance / r.trainings_done:.0f}%"
        )
        lines.append(
            f"  {r.layer:<8} {r.choice:<{width}} {r.archs:>5} {r.trainings_done:>9} {chance:>9} "
            f"{r.median_loss:>7.4f} {r.median_knowledge:>9.4f}"
        )
    return "\n".join(lines)


def run_validate(args: argparse.Namespace) -> int:
    from bionas_bench.store import open_store

    store = open_store(args.store)
    store.validate()
    print(
        f"{store.location}: valid ({store.num_archs} x {store.num_replicates}, {int(store.done.sum())} done)"
    )
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from bionas_bench.agreement import compare_stores
    from bionas_bench.store import open_store

    a, b = open_store(args.store_a), open_store(args.store_b)
    rows = compare_stores(
        a,
        b,
        loss=args.loss,
        loss_b=args.loss_b,
        knowledge=args.knowledge,
        knowledge_b=args.knowledge_b,
        replicates_a=_replicates(args.replicates_a, a, "--replicates-a"),
        replicates_b=_replicates(args.replicates_b, b, "--replicates-b"),
    )
    if args.json:
        print(_strict_json([r.to_dict() for r in rows]))
        return 0
    print(
        render_agreement(
            a.location + _subset_text(args.replicates_a),
            b.location + _subset_text(args.replicates_b),
            rows,
        )
    )
    return 0


def _subset_text(replicates: str | None) -> str:
    """How a store's side of a comparison is restricted, for its header line."""
    return f" (replicates {replicates})" if replicates else " (all done replicates)"


def _strict_json(value: object) -> str:
    """JSON that any parser reads: NaN / infinity (an empty store's medians) become null,
    other non-JSON values their text."""

    def clean(v: object) -> object:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, float | np.floating):
            return float(v) if math.isfinite(v) else None
        if isinstance(v, bool | int | str) or v is None:
            return v
        if isinstance(v, np.integer):
            return int(v)
        return str(v)

    return json.dumps(clean(value), indent=2, allow_nan=False)


def render_summary(s: StoreSummary) -> str:
    """A plain-text rendering of a store summary."""
    from bionas_bench.store import CHANCE_LOSS

    lines = [
        f"store      {s.location}",
        f"space      {s.space} ({s.num_archs:,} architectures), {s.num_replicates} replicates",
        f"source     {s.source}"
        + (": " + ", ".join(f"{k} {v}" for k, v in s.made_from.items()) if s.made_from else ""),
        f"completion {s.trainings_done:,}/{s.trainings_total:,} trainings ({100 * s.completion:.1f}%), "
        f"{s.archs_complete:,} architectures complete, {s.archs_empty:,} empty",
        f"replicates {_replicate_line(s)}",
        f"failures   {s.trainings_failed} done training{'' if s.trainings_failed == 1 else 's'} failed"
        + (f" ({100 * s.trainings_failed / s.trainings_done:.1f}%)" if s.trainings_done else ""),
        *(
            []
            if s.trainings_chance is None
            else [
                f"at chance  {s.trainings_chance} done training{'' if s.trainings_chance == 1 else 's'} with "
                f"{s.loss} > {CHANCE_LOSS}"
                + (f" ({100 * s.trainings_chance / s.trainings_done:.1f}%)" if s.trainings_done else "")
                + f"; a constant guess on balanced labels scores ln 2 = {math.log(2):.4f}"
            ]
        ),
        "medians over done trainings:",
    ]
    for name, value in {
        **s.metric_medians,
        **{f"knowledge {k}": v for k, v in s.knowledge_medians.items()},
    }.items():
        lines.append(f"  {name:<22} {value:.4g}")
    for label, entries in s.best.items():
        lines.append(f"best by median {label}:")
        lines.extend(f"  {e.arch:>6}  {e.value:10.4f}  {e.name}" for e in entries)
    return "\n".join(lines)


def _replicates(text: str | None, store: Store, option: str) -> np.ndarray | None:
    """Replicate indices of ``option`` (``"0-4,7"``), checked against ``store``."""
    if text is None:
        return None
    return parse_ids(
        text,
        store.num_replicates,
        option=option,
        what="replicate index",
        hint="use replicate indices and ranges like 0-4,7",
        error=StoreError,
        context=f" ({store.location} has {store.num_replicates} replicates)",
    )


def render_agreement(location_a: str, location_b: str, rows: list[Agreement]) -> str:
    """A plain-text table of :func:`~bionas_bench.agreement.compare_stores`' rows."""
    lines = [
        f"A  {location_a}",
        f"B  {location_b}",
        f"{'':10} {'measure (A vs B)':<22} {'archs':>5} {'Spearman':>9} {'p':>9}  "
        "best in A (rank in B)  best in B (rank in A)",
    ]
    for r in rows:
        names = r.name_a if r.name_a == r.name_b else f"{r.name_a} vs {r.name_b}"
        best_a = f"{r.best_a} ({r.best_a_rank_in_b:g} of {r.n})"
        best_b = f"{r.best_b} ({r.best_b_rank_in_a:g} of {r.n})"
        lines.append(
            f"{r.quantity:10} {names:<22} {r.n:>5} {r.rho:>9.3f} {r.p_value:>9.2g}  {best_a:<22} {best_b}"
        )
    return "\n".join(lines)


def _replicate_line(s: StoreSummary) -> str:
    """How many replicates each architecture has done, e.g. ``216 archs x 2 of 20 done``."""
    counts = s.replicate_counts.items()
    groups = ", ".join(f"{n:,} arch{'' if n == 1 else 's'} x {k} of {s.num_replicates}" for k, n in counts)
    everywhere = format_ids(s.replicates_complete)
    return f"{groups} done" + (f"; replicates {everywhere} done for every architecture" if everywhere else "")
