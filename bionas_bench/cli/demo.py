"""``bionas-bench demo``: a first look at the benchmark in a few seconds."""

from __future__ import annotations

import argparse

import numpy as np

from bionas_bench.data.motifs import Motif
from bionas_bench.knowledge import decode_filters, knowledge_dissimilarity
from bionas_bench.space import get_space


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="show the benchmark's model space and score an example architecture",
        description=(
            "A first look at bionas_bench: prints the bionas-conv1d model space, decodes one "
            "architecture id, and scores a first layer against a motif with the knowledge "
            "dissimilarity K of BioNAS (paper Eq. 1-4)."
        ),
    )
    parser.add_argument("--space", default="bionas-conv1d", help="space name or manifest path")
    parser.add_argument("--arch", type=int, default=46, help="architecture id to decode (default 46)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the example filters")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    space = get_space(args.space)
    print(f"space {space.name}: {space.size:,} architectures, {space.num_layers} layers")
    for layer in space.layers:
        print(f"  {layer.name:<12} {len(layer.choices)} choices: {', '.join(layer.choice_names)}")
    print(f"\narchitecture {args.arch}: {space.arch_name(args.arch)}")
    print(f"  choice indices {space.decode(args.arch)}")

    # An illustrative motif and two first layers: one that learnt it, one random.
    rng = np.random.default_rng(args.seed)
    consensus = "CCACGTGG"
    pwm = np.full((len(consensus), 4), 0.02)
    for i, base in enumerate(consensus):
        pwm[i, "ACGT".index(base)] = 0.94
    motif = Motif("example_Ebox", pwm, source="demo")
    random_filters = rng.normal(0.0, 0.5, size=(3, 14, 4))
    learnt = random_filters.copy()
    learnt[0, 3:11] = 0.1 * np.log(pwm)  # filter 0 holds the motif (temperature 0.1)
    k_random = knowledge_dissimilarity(random_filters, [motif])
    k_learnt = knowledge_dissimilarity(learnt, [motif])
    decoded = decode_filters(learnt)[0, 3:11]
    print(f"\nknowledge dissimilarity K against motif {motif.name} ({consensus}):")
    print(f"  random first layer:           K = {k_random:.3f}")
    print(f"  first layer holding the motif: K = {k_learnt:.3f}   (lower is closer to knowledge)")
    print("  decoded consensus of that filter: " + "".join("ACGT"[i] for i in decoded.argmax(axis=1)))
    return 0
