"""Speed of the policy-gradient controllers (pytest-benchmark; run with ``tox -e bench``).

Target (issue 5): the paper's protocol for one lambda -- 100 ``ppo`` runs x 200 episodes
x 3 architectures against the bootstrap oracle -- in <= 10 s batched on the 2-core CPU
machine, and >= 20x faster than the same runs one after another unbatched. The
unbatched side times ``UNBATCHED_SUBSET`` of the 100 runs and scales linearly (runs are
independent, so their cost adds); ``extra_info`` records both and the ratio. The store
is the imported original table when ``../shared/bionas_pub`` exists, else a random one.
Only collected with ``--benchmark-enable`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import find_bionas_pub

import bionas_bench as bb
from bionas_bench import BootstrapOracle, controllers
from bionas_bench.store import Store

RUNS, EPISODES, PER_EPISODE = 100, 200, 3
UNBATCHED_SUBSET = 5


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench_pg") / "pg.zarr"
    pub = find_bionas_pub()
    if pub is not None:
        from bionas_bench.importers import import_bionas_pub

        import_bionas_pub(pub, out)
        return out
    rng = np.random.default_rng(0)
    store = Store.create(
        out,
        space="bionas-conv1d",
        num_replicates=20,
        metrics=["val_loss", "accuracy"],
        knowledge_sets=["myc"],
    )
    loss = rng.uniform(0.05, 0.7, (216, 20))
    store.write_block(
        metrics={"val_loss": loss, "accuracy": 1 - loss},
        knowledge={"myc": rng.uniform(0.04, 1.0, (216, 20))},
        failed=loss > 0.69,
        done=np.ones((216, 20), dtype=bool),
    )
    store.pack(refresh=False)
    return out


def _protocol(store_path: Path, seeds: list[int], batched: bool, **hp) -> np.ndarray:
    """Run ``len(seeds)`` ppo runs of the paper's protocol at lambda = 1; recommendations."""
    space = bb.get_space("bionas-conv1d")
    oracle = BootstrapOracle(Store.open(store_path), lam=1.0, seed=0)
    if batched:
        runs = controllers.create_runs("ppo", space, seeds, **hp)
    else:
        runs = controllers.LoopedRuns([controllers.create("ppo", space, seed=s, **hp) for s in seeds])
    if not batched:  # one run after another, each to the end
        for ctrl in runs.controllers:
            for _ in range(EPISODES):
                ids = ctrl.ask(PER_EPISODE)
                ctrl.tell(ids, oracle.query(ids).reward)
        return runs.recommend()
    for _ in range(EPISODES):
        ids = runs.ask(PER_EPISODE)
        runs.tell(ids, oracle.query(ids).reward)
    return runs.recommend()


def test_bench_ppo_protocol_batched(benchmark, store_path):
    seeds = list(range(RUNS))
    rec = benchmark.pedantic(_protocol, args=(store_path, seeds, True), rounds=1, iterations=1)
    assert rec.shape == (RUNS,)
    start = time.perf_counter()
    _protocol(store_path, seeds[:UNBATCHED_SUBSET], False)
    unbatched = (time.perf_counter() - start) * RUNS / UNBATCHED_SUBSET
    batched = benchmark.stats.stats.min if benchmark.stats else float("nan")
    benchmark.extra_info.update(
        {
            "unbatched_seconds_scaled": unbatched,
            "unbatched_subset": UNBATCHED_SUBSET,
            "speedup": unbatched / batched,
        }
    )
