"""Speed of the policy-gradient controllers (pytest-benchmark; run with ``tox -e bench``).

Target (issue 5): the paper's protocol for one lambda -- 100 ``ppo`` runs x 200 episodes
x 3 architectures against the bootstrap oracle -- in <= 10 s batched on the 2-core CPU
machine, and >= 20x faster than the same runs one after another unbatched. The batched
side uses torch's thread count (the runs of an update are spread over that many
threads); the unbatched side times ``UNBATCHED_SUBSET`` of the 100 runs, each its own
controller, one after another, and scales linearly (runs are independent, so their cost
adds); ``extra_info`` records both and the ratio. The compiled update is compiled (or
loaded from numba's cache) before timing. The store is the imported original table
when ``../shared/bionas_pub`` exists, else a random one. Only collected with
``--benchmark-enable`` (see ``tests/conftest.py``).
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

RUNS, EPISODES, PER_EPISODE = 100, 200, 3
UNBATCHED_SUBSET = 5
AUTOGRAD_SUBSET = 2


def _protocol(store_path: Path, seeds: list[int], batched: bool, impl: str = "compiled", **hp) -> np.ndarray:
    """Run ``len(seeds)`` ppo runs of the paper's protocol at lambda = 1; recommendations.

    ``impl``: the update of the unbatched runs, ``"compiled"`` (the default engine) or
    ``"autograd"`` (the torch-autograd reference implementation of the same update).
    """
    space = bb.get_space("bionas-conv1d")
    oracle = BootstrapOracle(Store.open(store_path), lam=1.0, seed=0)
    if batched:
        runs = controllers.create_runs("ppo", space, seeds, **hp)
    else:
        runs = controllers.LoopedRuns([controllers.create("ppo", space, seed=s, **hp) for s in seeds])
    if not batched:  # one run after another, each to the end
        for ctrl in runs.controllers:
            ctrl.engine.impl = impl
            for _ in range(EPISODES):
                ids = ctrl.ask(PER_EPISODE)
                ctrl.tell(ids, oracle.query(ids).reward)
        return runs.recommend()
    for _ in range(EPISODES):
        ids = runs.ask(PER_EPISODE)
        runs.tell(ids, oracle.query(ids).reward)
    return runs.recommend()


def _timed(*args, **kwargs):
    """``_protocol`` plus its wall and CPU (``time.process_time``) seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = _protocol(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def test_bench_ppo_protocol_batched(benchmark, bench_store_path):
    """Batched 100 runs, then ``UNBATCHED_SUBSET`` runs one after another (scaled to 100),
    then ``AUTOGRAD_SUBSET`` runs alone on the torch-autograd reference update (scaled).

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
    assert rec.shape == (RUNS,)
    _, wall, cpu = _timed(bench_store_path, seeds[:UNBATCHED_SUBSET], False)
    unbatched, unbatched_cpu = wall * RUNS / UNBATCHED_SUBSET, cpu * RUNS / UNBATCHED_SUBSET
    _, ref_wall, ref_cpu = _timed(bench_store_path, seeds[:AUTOGRAD_SUBSET], False, impl="autograd")
    reference = ref_wall * RUNS / AUTOGRAD_SUBSET
    batched = benchmark.stats.stats.min if benchmark.stats else float("nan")
    benchmark.extra_info.update(
        {
            "batched_cpu_seconds": batched_cpu,
            "unbatched_seconds_scaled": unbatched,
            "unbatched_cpu_seconds_scaled": unbatched_cpu,
            "unbatched_subset": UNBATCHED_SUBSET,
            "unbatched_scaling": f"seeds 0..{UNBATCHED_SUBSET - 1} alone, x {RUNS / UNBATCHED_SUBSET:g}",
            "speedup": unbatched / batched,
            "speedup_cpu": unbatched_cpu / batched_cpu,
            "autograd_seconds_scaled": reference,
            "autograd_cpu_seconds_scaled": ref_cpu * RUNS / AUTOGRAD_SUBSET,
            "autograd_scaling": f"seeds 0..{AUTOGRAD_SUBSET - 1} alone, x {RUNS / AUTOGRAD_SUBSET:g}",
            "speedup_vs_autograd": reference / batched,
            "threads": torch.get_num_threads(),
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": os.getloadavg()[0],
        }
    )
