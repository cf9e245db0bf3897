"""Benchmark: models trained per second, replicate-batched farm vs one model at a time.

Disabled by default (``--benchmark-disable`` in pytest's addopts); run with
``pytest tests/benchmarks/test_bench_farm.py --benchmark-enable``. Both sides use the
same code path (:func:`train_unit`), the batched one with R = 20 replicates, the naive
one with R = 1 called 20 times, on the same data, seeds and settings.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bionas_bench.space import get_space
from bionas_bench.train.batched import TrainData, make_splits, train_unit
from bionas_bench.train.config import load_training_config

R = 20
SPACE = get_space("bionas-conv1d")
ARCH = SPACE.id_of("conv1d_f3_k14 / maxpool / flatten / dense_u10")


def _setup():
    rng = np.random.default_rng(0)
    n, length = 2500, 200
    codes = rng.integers(0, 4, size=(n, length)).astype(np.uint8)
    labels = rng.integers(0, 2, size=(n, 1))
    config = dataclasses.replace(
        load_training_config("bionas-pub-myc"), n_train=2000, n_val=500, max_epochs=2, patience=5
    )
    data = TrainData.from_arrays(
        codes, labels, onehot_value=2.0, device=torch.device("cpu"), dtype=torch.float32
    )
    return data, config, {"all": np.arange(n)}, n


@pytest.mark.parametrize("mode", ["batched", "naive"])
def test_bench_unit(benchmark, mode: str):
    data, config, splits, n = _setup()
    seeds = list(config.replicate_seeds)

    def batched():
        train_unit(SPACE, ARCH, data, make_splits(splits, n, config, seeds), config, seeds)

    def naive():
        for seed in seeds:
            train_unit(SPACE, ARCH, data, make_splits(splits, n, config, [seed]), config, [seed])

    benchmark.pedantic(batched if mode == "batched" else naive, rounds=1, iterations=1)
