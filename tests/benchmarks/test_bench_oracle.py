"""Oracle and store speed (pytest-benchmark; run with ``tox -e bench``).

Targets (issue 4): a batched query of 10^6 ids <= 50 ms (>= 2e7 ids/s on one core), a
single-id query <= 5 us, opening the 216 x 20 store and building the gold standard
<= 0.2 s. The naive pandas lookup of the original oracle's kind (filter the table by
architecture, sample one row) is timed in the same run; ``extra_info`` reports the
speed-up of the oracle over it. Benchmarks are disabled by default (``addopts``
has ``--benchmark-disable``): then each body runs once, as a smoke test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bionas_bench import BootstrapOracle
from bionas_bench.store import Store

N_BATCH = 1_000_000
N_NAIVE = 200
_TIMES: dict[str, float] = {}  # seconds per id, filled by the benchmarks that ran


@pytest.fixture(scope="module")
def oracle(bench_store_path: Path) -> BootstrapOracle:
    return BootstrapOracle(Store.open(bench_store_path), lam=1.0, seed=0)


def _per_id(benchmark, name: str, n: int) -> float | None:
    stats = getattr(benchmark, "stats", None)
    if not stats:
        return None
    seconds = stats.stats.min / n
    _TIMES[name] = seconds
    return seconds


def test_bench_batched_query(benchmark, oracle: BootstrapOracle) -> None:
    ids = np.random.default_rng(1).integers(0, 216, N_BATCH)
    result = benchmark(oracle.query, ids)
    assert result.reward.shape == (N_BATCH,)
    per_id = _per_id(benchmark, "batched", N_BATCH)
    benchmark.extra_info.update(n_ids=N_BATCH, target_ms=50.0)
    if per_id is not None:
        benchmark.extra_info["ids_per_second"] = round(1.0 / per_id)


def test_bench_single_query(benchmark, oracle: BootstrapOracle) -> None:
    result = benchmark(oracle.query, 46)
    assert result.arch == 46
    _per_id(benchmark, "single", 1)
    benchmark.extra_info.update(target_us=5.0)


def test_bench_open_and_gold_standard(benchmark, bench_store_path: Path) -> None:
    def open_and_gold():
        return BootstrapOracle(Store.open(bench_store_path), lam=1.0).gold_standard()

    gold = benchmark(open_and_gold)
    assert len(gold) == 216
    benchmark.extra_info.update(target_s=0.2)


def test_bench_naive_pandas_lookup(benchmark, bench_store_path: Path) -> None:
    """The original's kind of lookup: filter a row table by architecture, sample one row."""
    store = Store.open(bench_store_path)
    arch, rep = np.meshgrid(np.arange(216), np.arange(store.num_replicates), indexing="ij")
    import pandas as pd

    table = pd.DataFrame(
        {
            "arch": arch.ravel(),
            "replicate": rep.ravel(),
            "loss": store.metric("val_loss").ravel(),
            "knowledge": store.knowledge("myc").ravel(),
            "accuracy": store.metric("accuracy").ravel(),
        }
    )
    ids = np.random.default_rng(2).integers(0, 216, N_NAIVE)
    rng = np.random.default_rng(0)

    def naive() -> list[float]:
        rewards = []
        for a in ids:
            row = table[table["arch"] == a].sample(n=1, random_state=rng).iloc[0]
            rewards.append(-(row["loss"] + row["knowledge"]))
        return rewards

    assert len(benchmark(naive)) == N_NAIVE
    per_id = _per_id(benchmark, "naive", N_NAIVE)
    benchmark.extra_info["n_ids"] = N_NAIVE
    if per_id is not None:
        benchmark.extra_info["naive_us_per_id"] = round(per_id * 1e6, 2)
        for name in ("batched", "single"):
            if name in _TIMES:
                benchmark.extra_info[f"speedup_vs_{name}"] = round(per_id / _TIMES[name], 1)
