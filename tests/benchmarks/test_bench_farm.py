"""Benchmark: models trained per second, replicate-batched farm vs one model at a time.

Disabled by default (``--benchmark-disable`` in pytest's addopts); run with
``pytest tests/benchmarks/test_bench_farm.py --benchmark-enable`` (add ``-s`` to see the
per-architecture table). Both sides use the same code path (:func:`train_unit`), the
batched one with R = 20 replicates, the naive one with R = 1 called 20 times, on the
same data, seeds, settings and number of torch threads.

**Architectures.** Four of ``bionas-conv1d``, covering both first-layer ops (``conv1d``
and the constrained ``regconv2d``, three kernel sizes) and every choice of the pooling,
flatten and dense layers, since the ratio differs per architecture.

**Device.** CPU unless ``BIONAS_BENCH_DEVICE=cuda`` (a GPU session, see
``tools/gpu_session.sh``); the data then lives on the GPU for both sides.

**Threads.** The test runs once with one torch thread and once with torch's default
(all cores, what the in-process farm uses). One thread measures the work each side
does per model and is stable on a shared machine. With all cores, every op of the
naive side's many small ones is a parallel region that waits for both cores; when
other processes hold a core each wait costs a scheduler slice, so the naive side and
the ratio swing with the machine's load (the load average is recorded).

``benchmark`` times the batched side over all architectures (pytest-benchmark's
figure, compared by ``tox -e bench``); the naive side is timed by hand in the same
test. ``extra_info`` holds, per architecture and overall (sums), the wall and CPU
seconds of both sides and the ratio naive / batched of wall times, i.e. models per
second batched over naive.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch

from bionas_bench.space import get_space
from bionas_bench.train.batched import TrainData, make_splits, train_unit
from bionas_bench.train.config import TrainingConfig, load_training_config

R = 20
SPACE = get_space("bionas-conv1d")
ARCHS = (
    "conv1d_f3_k14 / maxpool / flatten / dense_u10",
    "regconv2d_f3_k8 / identity / sfc / dense_u10",
    "conv1d_f3_k20 / avgpool / globalmaxpool / dense_u3",
    "regconv2d_f3_k14 / maxpool / globalavgpool / identity",
)
#: one thread, and torch's default (all cores) when that is more
THREADS = sorted({1, torch.get_num_threads()})
N_TRAIN, N_VAL = 2000, 500
DEVICE = torch.device(os.environ.get("BIONAS_BENCH_DEVICE", "cpu"))


def _setup() -> tuple[TrainData, TrainingConfig, int]:
    """Random 200 bp sequences; the original settings (batch 500) scaled to 2 epochs of 4 steps."""
    rng = np.random.default_rng(0)
    n, length = N_TRAIN + N_VAL, 200
    codes = rng.integers(0, 4, size=(n, length)).astype(np.uint8)
    labels = rng.integers(0, 2, size=(n, 1))
    config = dataclasses.replace(
        load_training_config("bionas-pub-myc"), n_train=N_TRAIN, n_val=N_VAL, max_epochs=2, patience=5
    )
    data = TrainData.from_arrays(codes, labels, onehot_value=2.0, device=DEVICE, dtype=torch.float32)
    return data, config, n


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall and process-CPU seconds of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"threads={t}")
def test_bench_farm(benchmark, threads: int):
    data, config, n = _setup()
    splits = {"all": np.arange(n)}
    seeds = list(config.replicate_seeds)[:R]
    arch_ids = {name: SPACE.id_of(name) for name in ARCHS}

    def unit(arch: int, unit_seeds: list[int], unit_config: TrainingConfig = config) -> None:
        plan = make_splits(splits, n, unit_config, unit_seeds)
        train_unit(SPACE, arch, data, plan, unit_config, unit_seeds)

    def one_at_a_time(arch: int) -> None:
        for seed in seeds:
            unit(arch, [seed])

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # warm-up, both sides alike: first oneDNN kernels and the allocator's first growth
        warm = dataclasses.replace(config, n_train=config.batch_size, max_epochs=1)
        unit(arch_ids[ARCHS[0]], seeds, warm)
        unit(arch_ids[ARCHS[0]], seeds[:1], warm)
        load_before = os.getloadavg()[0]
        naive = {name: _timed(functools.partial(one_at_a_time, arch)) for name, arch in arch_ids.items()}
        batched: dict[str, tuple[float, float]] = {}

        def run_batched() -> None:
            for name, arch in arch_ids.items():
                batched[name] = _timed(functools.partial(unit, arch, seeds))

        benchmark.pedantic(run_batched, rounds=1, iterations=1)
        load_after = os.getloadavg()[0]
    finally:
        torch.set_num_threads(before)

    rows = {}
    for name in ARCHS:
        (b_wall, b_cpu), (n_wall, n_cpu) = batched[name], naive[name]
        rows[name] = {
            "batched_s": round(b_wall, 3),
            "naive_s": round(n_wall, 3),
            "ratio": round(n_wall / b_wall, 2),
            "batched_cpu_s": round(b_cpu, 3),
            "naive_cpu_s": round(n_cpu, 3),
        }
    b_total = sum(batched[name][0] for name in ARCHS)
    n_total = sum(naive[name][0] for name in ARCHS)
    overall = {
        "batched_s": round(b_total, 3),
        "naive_s": round(n_total, 3),
        "ratio": round(n_total / b_total, 2),
        "batched_cpu_s": round(sum(batched[name][1] for name in ARCHS), 3),
        "naive_cpu_s": round(sum(naive[name][1] for name in ARCHS), 3),
    }
    benchmark.extra_info.update(
        {
            "replicates": R,
            "device": str(DEVICE),
            "threads": threads,
            "load_average_1min": [round(load_before, 2), round(load_after, 2)],
            "per_architecture": rows,
            "overall": overall,
        }
    )
    print(
        f"\nfarm benchmark on {DEVICE}, {threads} torch thread(s), load {load_before:.1f} -> {load_after:.1f}"
    )
    for name, row in {**rows, "overall (sum)": overall}.items():
        print(
            f"  {name:55s} batched {row['batched_s']:6.2f} s  naive {row['naive_s']:6.2f} s  "
            f"ratio {row['ratio']:5.2f}  (CPU s: {row['batched_cpu_s']:.2f} / {row['naive_cpu_s']:.2f})"
        )
