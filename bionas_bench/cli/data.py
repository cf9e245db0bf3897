"""``bionas-bench data``: list, build and show the datasets of the benchmark."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bionas_bench.cli import HelpFormatter, add_quiet_option

if TYPE_CHECKING:  # the commands import what they use: `--help` stays fast
    from bionas_bench.data.datasets import Dataset

_EPILOG = """examples:
  bionas-bench data list
  bionas-bench data show myc-single
  bionas-bench data build myc-single --out cache/
  bionas-bench data build path/to/my-dataset.toml --out cache/ --force
  BIONAS_PUB_DIR=/data/bionas_pub bionas-bench data build bionas-pub-myc --out cache/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list, build and show datasets",
        description="Datasets from manifests in data_manifests/datasets/ (simulated or FASTA).",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p_list = sub.add_parser(
        "list",
        help="shipped dataset manifests with one-line descriptions",
        description="List the dataset manifests shipped in data_manifests/datasets/, one line each.",
        epilog="examples:\n  bionas-bench data list\n"
        "  bionas-bench data show myc-single   # one of them in full",
        formatter_class=HelpFormatter,
    )
    p_list.set_defaults(func=_cmd_list)

    p_build = sub.add_parser(
        "build",
        help="build a dataset and write its cache (NAME.npz + NAME.json) to --out",
        description=(
            "Build a dataset from a shipped manifest name or a .toml path, print a summary "
            "(sizes, label balance, splits, sha256) and write the cache atomically to --out. "
            "An existing cache built from the same manifest text is reused unless --force."
        ),
        epilog="example:\n  bionas-bench data build ctcf-irf-myc-multitask --out cache/",
        formatter_class=HelpFormatter,
    )
    p_build.add_argument("name", metavar="NAME_OR_PATH", help="dataset manifest name or path to a .toml file")
    p_build.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the cache files")
    p_build.add_argument("--force", action="store_true", help="rebuild even if a matching cache exists")
    add_quiet_option(p_build)
    p_build.set_defaults(func=_cmd_build)

    p_show = sub.add_parser(
        "show",
        help="show a dataset manifest's settings and knowledge motifs (without building)",
        description="Show a dataset manifest's settings and knowledge motifs without building the dataset.",
        epilog="example:\n  bionas-bench data show ctcf-irf-myc-multitask",
        formatter_class=HelpFormatter,
    )
    p_show.add_argument("name", metavar="NAME_OR_PATH", help="dataset manifest name or path to a .toml file")
    p_show.set_defaults(func=_cmd_show)


def _cmd_list(args: argparse.Namespace) -> int:
    from bionas_bench.data.datasets import list_datasets

    rows = list_datasets()
    width = max((len(n) for n, _ in rows), default=0)
    for name, description in rows:
        print(f"{name:<{width}}  {description}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from bionas_bench.cli.progress import make_bar
    from bionas_bench.data.datasets import build_dataset

    out: Path = args.out
    start = time.perf_counter()
    bar: Any = None
    stages = 0  # none: build_dataset reused the cache

    def progress(stage: str) -> None:  # the bar appears with the first stage, after the checks
        nonlocal bar, stages
        stages += 1
        if args.quiet:
            return
        if bar is None:
            bar = make_bar(None, "stage", f"building: {stage}", leave=False, bar_format="{desc} [{elapsed}]")
        else:
            bar.set_description_str(f"building: {stage}")

    try:
        dataset = build_dataset(args.name, cache_dir=out, progress=progress, force=args.force)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    _print_summary(dataset)
    note = "" if stages else "; reused: built before from the same manifest and files (--force rebuilds)"
    print(f"cache:     {out / (dataset.name + '.json')} (+ .npz)  [{seconds:.2f} s{note}]")
    return 0


def _print_summary(dataset: Dataset) -> None:
    s = dataset.summary()
    print(f"dataset:   {s['name']}  {dataset.description}")
    print(f"sequences: {s['sequences']:,} x {s['length']} bp")
    balance = ", ".join(f"{k} {v:.3f}" for k, v in s["labels"].items())
    print(f"labels:    fraction positive per label: {balance}")
    print("splits:    " + ", ".join(f"{k} {v:,}" for k, v in s["splits"].items()))
    if s["instances"] is not None:
        print(f"instances: {s['instances']:,} embedded motif instances (ground truth)")
    print("motifs:    " + "; ".join(f"{k} = {', '.join(v)}" for k, v in s["motif_sets"].items()))
    print(f"sha256:    {s['sha256']}")
    print(f"manifest:  sha256 {s['manifest_sha256']}")


def _cmd_show(args: argparse.Namespace) -> int:
    """The manifest's settings, after the checks that building it makes without reading
    its sequences: it loads its motifs, and a simulation's counts, background, task and
    embeddings are checked as ``data build`` checks them (before anything is printed)."""
    from bionas_bench.data.datasets import load_spec_motifs, parse_dataset_manifest, simulation_config
    from bionas_bench.manifests import load_manifest

    manifest = load_manifest("datasets", args.name)
    spec = parse_dataset_manifest(manifest)
    motifs = load_spec_motifs(spec)
    if spec.simulation is not None:
        simulation_config(spec, motifs)
    print(f"dataset:   {spec.name}  ({manifest.path})")
    print(f"about:     {spec.description}")
    print(f"type:      {spec.type}, seed {spec.seed}, manifest sha256 {manifest.sha256}")
    if spec.simulation is not None:
        sim = spec.simulation
        print(
            f"simulate:  {sim.n_positive:,} positives + {sim.n_negative:,} negatives, {sim.length} bp, "
            f"background {list(sim.background)}, task {sim.task}"
        )
        for e in sim.embed:
            print(
                f"  embed {e.motif}: count in [{e.min_count}, {e.max_count}], "
                f"mean {e.mean}, zero_prob {e.zero_prob}"
            )
    if spec.fasta is not None:
        print(f"positives: {spec.fasta.positives}")
        print(f"negatives: {spec.fasta.negatives}")
        mixed = "padded on the right with N" if spec.fasta.allow_mixed_lengths else "all of one length"
        print(f"label:     {spec.fasta.label!r} (1 for positives, 0 for negatives); records {mixed}")
    if spec.splits.fractions:
        print("splits:    " + ", ".join(f"{n} {f}" for n, f in spec.splits.fractions))
    else:
        print(f"splits:    {spec.splits.mode} (the training manifest draws each replicate's split)")
    for key, motif in motifs.items():
        print(f"  motif {key}: {motif.length} bp, consensus {motif.consensus}, from {motif.source}")
    for set_name, members in spec.motif_sets.items():
        print(f"  motif set {set_name}: {', '.join(members)}")
    return 0
