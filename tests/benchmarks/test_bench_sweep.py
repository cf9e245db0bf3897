"""Sweep speed (pytest-benchmark; run with ``tox -e bench``): one cell, and the CI regress sweep.

A cell is what a sweep worker runs: every run of one controller at one lambda against
its own bootstrap oracle (``bionas_bench.sweep.simulate_cell``), here at the size of the
CI regression sweep (``data_manifests/sweeps/regress.toml``: 30 runs x 20 episodes x 3
architectures) on the synthetic 216 x 5 store. ``test_bench_regress_scores`` times the
scoring a ``regress check`` adds on top of a cell. Collected only with
``--benchmark-enable`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import pytest

from bionas_bench.regress import cell_digest, run_values
from bionas_bench.sweep import gold_table, load_sweep_config, make_oracle, simulate_cell


@pytest.fixture(scope="module")
def regress_config():
    return load_sweep_config("regress")


@pytest.mark.parametrize("label", ["evolution", "random"])
def test_bench_sweep_cell(benchmark, synthetic_store, regress_config, label):
    cell = next(c for c in regress_config.cells() if c.controller.label == label and c.lam == 1.0)
    data = benchmark(simulate_cell, regress_config, cell, synthetic_store)
    runs, episodes = regress_config.runs, regress_config.budget.episodes
    assert data.incumbent.shape == (runs, episodes)
    benchmark.extra_info.update(runs=runs, episodes=episodes, samples=runs * regress_config.budget.samples)


def test_bench_regress_scores(benchmark, synthetic_store, regress_config):
    cell = next(c for c in regress_config.cells() if c.lam == 1.0)
    data = simulate_cell(regress_config, cell, synthetic_store)
    gold = gold_table(make_oracle(synthetic_store, cell.lam, 0, regress_config.oracle)).set_index("arch")

    def score():
        return run_values(data, gold), cell_digest(data)

    values, digest = benchmark(score)
    assert len(values["anytime_auc"]) == regress_config.runs and len(digest) == 64
