"""Speed of the policy-gradient controllers (pytest-benchmark; run with ``tox -e bench``).

Target (issue 5): the paper's protocol for one lambda -- 100 ``ppo`` runs x 200 episodes
x 3 architectures against the bootstrap oracle -- in <= 10 s batched on the 2-core CPU
machine, and >= 20x faster than the same runs one after another unbatched. The batched
side uses torch's thread count (the runs of an update are spread over that many
threads); the unbatched side runs all 100 runs, each its own controller, one after
another (run costs are heavy-tailed -- a run whose KL stop never fires takes 900
optimiser steps per episode -- so a subset would not scale). Each run has its own
oracle on both sides, so both do the same work and recommend the same architectures
(checked). The torch reference (autograd update, torch rollout) is timed against the
compiled update and sampler on the same ``AUTOGRAD_SUBSET`` runs alone. ``extra_info``
records every figure. The compiled code is compiled (or loaded from numba's cache) before
timing. The store is
the imported original table when ``../shared/bionas_pub`` exists, else a random one.
Only collected with ``--benchmark-enable`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

import bionas_bench as bb
from bionas_bench import BootstrapOracle, controllers
from bionas_bench.store import Store
from bionas_bench.sweep import find_bionas_pub

RUNS, EPISODES, PER_EPISODE = 100, 200, 3
AUTOGRAD_SUBSET = 2


def _protocol(store_path: Path, seeds: list[int], batched: bool, impl: str = "compiled", **hp) -> np.ndarray:
    """Run ``len(seeds)`` ppo runs of the paper's protocol at lambda = 1; recommendations.

    Each run queries its own oracle (seeded with the run's seed), as in a sweep, so a run
    sees the same rewards batched or alone: both sides do the same work and must recommend
    the same architectures. ``impl``: the update and sampling of the unbatched runs,
    ``"compiled"`` (the default engine) or ``"autograd"`` (the torch reference of both).
    """
    space = bb.get_space("bionas-conv1d")
    store = Store.open(store_path)
    oracles = [BootstrapOracle(store, lam=1.0, seed=s) for s in seeds]
    if not batched:  # one run after another, each to the end
        recommended = []
        for seed, oracle in zip(seeds, oracles, strict=True):
            ctrl = controllers.create("ppo", space, seed=seed, **hp)
            ctrl.engine.impl = impl
            for _ in range(EPISODES):
                ids = ctrl.ask(PER_EPISODE)
                ctrl.tell(ids, oracle.query(ids).reward)
            recommended.append(ctrl.recommend())
        return np.array(recommended)
    runs = controllers.create_runs("ppo", space, seeds, **hp)
    for _ in range(EPISODES):
        ids = runs.ask(PER_EPISODE)
        runs.tell(ids, np.stack([o.query(row).reward for o, row in zip(oracles, ids, strict=True)]))
    return runs.recommend()


def _timed(*args, **kwargs):
    """``_protocol`` plus its wall and CPU (``time.process_time``) seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = _protocol(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def test_bench_ppo_protocol_batched(benchmark, bench_store_path):
    """Batched 100 runs, the same 100 runs one after another, and the autograd reference.

    The machine is shared: ``extra_info`` records the 1-minute load average before and
    after, and CPU seconds beside wall seconds (CPU time is what a loaded machine does
    not inflate).
    """
    seeds = list(range(RUNS))
    _protocol(bench_store_path, [0, 1], True, warmup_episodes=1, max_epochs=1)  # compile
    _protocol(bench_store_path, [0], False, warmup_episodes=1, max_epochs=1)
    load_before = os.getloadavg()[0]
    rec, _, batched_cpu = benchmark.pedantic(
        _timed, args=(bench_store_path, seeds, True), rounds=1, iterations=1
    )
    alone, unbatched, unbatched_cpu = _timed(bench_store_path, seeds, False)
    np.testing.assert_array_equal(rec, alone)  # the same runs, the same work
    few = seeds[:AUTOGRAD_SUBSET]
    _, compiled_few, _ = _timed(bench_store_path, few, False)
    _, autograd_few, _ = _timed(bench_store_path, few, False, impl="autograd")
    batched = benchmark.stats.stats.min if benchmark.stats else float("nan")
    benchmark.extra_info.update(
        {
            "batched_cpu_seconds": batched_cpu,
            "unbatched_seconds": unbatched,
            "unbatched_cpu_seconds": unbatched_cpu,
            "speedup": unbatched / batched,
            "speedup_cpu": unbatched_cpu / batched_cpu,
            "autograd_runs": f"seeds 0..{AUTOGRAD_SUBSET - 1} alone",
            "autograd_seconds": autograd_few,
            "compiled_seconds_same_runs": compiled_few,
            "compiled_speedup_vs_autograd": autograd_few / compiled_few,
            "threads": torch.get_num_threads(),
            # the figures depend on the table: runs settle (and cost) differently on each
            "store": "the imported original table" if find_bionas_pub() else "a random 216 x 20 table",
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": os.getloadavg()[0],
        }
    )
