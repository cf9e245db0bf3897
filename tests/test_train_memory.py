"""Units too large for memory: estimated, trained a group of replicates at a time, or left
for a machine with more memory (never a crash that loses the other units)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMOKE3_ARCHS, smoke3_farm

from bionas_bench.cli import _out_of_memory_message, main
from bionas_bench.errors import is_out_of_memory
from bionas_bench.space import get_space
from bionas_bench.store import Store
from bionas_bench.train import farm, memory
from bionas_bench.train.batched import TrainData
from bionas_bench.train.config import load_training_config
from bionas_bench.train.farm import run_farm

SMOKE = Path(__file__).parents[1] / "data_manifests/training/smoke.toml"
COMPARED = ("val_loss", "test_loss", "auroc", "accuracy")


def _assert_close(store: Store, reference: Store) -> None:
    """Equal up to the rounding of batched kernels (as ``--replicates`` subsets)."""
    ids = np.arange(4)
    assert store.done[ids].all()
    np.testing.assert_array_equal(store.metric("epochs")[ids], reference.metric("epochs")[ids])
    for name in COMPARED:
        np.testing.assert_allclose(
            store.metric(name)[ids], reference.metric(name)[ids], rtol=1e-4, atol=1e-6, err_msg=name
        )
    np.testing.assert_allclose(store.filters(ids), reference.filters(ids), rtol=1e-3, atol=1e-5)


def _memory(monkeypatch, per_replicate, free: int) -> None:
    """Pretend each replicate needs ``per_replicate(arch)`` bytes and ``free`` bytes are free."""
    monkeypatch.setattr(memory, "replicate_bytes", lambda space, arch, data, config: per_replicate(arch))
    monkeypatch.setattr(memory, "free_bytes", lambda device: free)


def test_the_estimate_follows_batch_size_layer_width_and_precision(tmp_path: Path):
    space = get_space("bionas-conv1d")
    data32 = TrainData.from_arrays(
        np.zeros((1000, 200), np.uint8), np.zeros(1000), onehot_value=1.0, device=torch.device("cpu"),
        dtype=torch.float32,
    )  # fmt: skip
    data64 = dataclasses.replace(data32, dtype=torch.float64)
    config = dataclasses.replace(load_training_config("bionas-pub-myc"), eval_batch_size=100)
    small = memory.replicate_bytes(space, 0, data32, config)
    # the largest tensor of one sample of conv1d_f3_k8 / identity / ...: its 4 x 200 input
    assert small == pytest.approx(memory.TRAIN_FACTOR * 500 * 4 * 200 * 4, rel=0.01)
    assert memory.replicate_bytes(space, 0, data64, config) == pytest.approx(2 * small, rel=0.01)
    bigger_batch = dataclasses.replace(config, batch_size=1000)
    assert memory.replicate_bytes(space, 0, data32, bigger_batch) == pytest.approx(2 * small, rel=0.1)
    wide = get_space(_widened(tmp_path))
    # with 300 filters: their 300 x 193 output
    assert memory.replicate_bytes(wide, 0, data32, config) == pytest.approx(
        memory.TRAIN_FACTOR * 500 * 300 * 193 * 4, rel=0.05
    )


def _widened(folder: Path) -> Path:
    """``bionas-conv1d`` with 300 filters instead of 3 in every first layer."""
    source = Path(__file__).parents[1] / "data_manifests/spaces/bionas-conv1d.toml"
    path = folder / "wide.toml"
    text = source.read_text().replace('name = "bionas-conv1d"', 'name = "wide"')
    path.write_text(text.replace("filters = 3,", "filters = 300,"))
    return path


def test_the_plan_groups_replicates_to_fit_and_says_when_none_fits(monkeypatch):
    space = get_space("bionas-conv1d")
    data = TrainData.from_arrays(
        np.zeros((100, 50), np.uint8), np.zeros(100), onehot_value=1.0, device=torch.device("cpu"),
        dtype=torch.float32,
    )  # fmt: skip
    config = load_training_config(SMOKE)
    need = memory.replicate_bytes(space, 0, data, config)
    for free, group in [(need * 100, 2), (int(need * 1.3 / memory.USABLE), 1), (need, 0)]:
        monkeypatch.setattr(memory, "free_bytes", lambda device, free=free: free)
        assert memory.plan_memory(space, 0, data, config, 2).group == group, free
    why = memory.MemoryPlan(3 * 2**30, 2**30, 0).why_not(space, 0, config, torch.device("cpu"))
    assert why.startswith("architecture 0 (conv1d_f3_k8 / identity / flatten / dense_u3) needs about 3.0 GiB")
    assert "batch size 64" in why and "0.8 GiB usable of the 1.0 GiB free on cpu" in why


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_a_gpu_unit_plans_with_the_gpus_free_memory():
    """On a GPU the farm plans with its free memory (tools/gpu_session.sh runs this there);
    a replicate that cannot fit in it is refused before anything is allocated."""
    device = torch.device("cuda")
    _free, total = torch.cuda.mem_get_info(device)
    assert 0 < memory.free_bytes(device) <= total
    data = TrainData.from_arrays(
        np.zeros((100, 50), np.uint8), np.zeros(100), onehot_value=1.0, device=device, dtype=torch.float32
    )
    config = load_training_config(SMOKE)
    plan = memory.plan_memory(get_space("bionas-conv1d"), 0, data, config, 2)
    assert plan.group == 2 and plan.free <= total
    huge = dataclasses.replace(config, batch_size=10**12)
    assert memory.plan_memory(get_space("bionas-conv1d"), 0, data, huge, 2).group == 0


def test_units_that_do_not_fit_together_train_a_group_at_a_time(
    tiny_train_dataset: Path, smoke3: Path, tmp_path: Path, monkeypatch, smoke3_together: Store
):
    _memory(monkeypatch, lambda arch: 1000, int(2.5 * 1000 / memory.USABLE))  # 2 of 3 fit
    events = []
    report = smoke3_farm(tiny_train_dataset, smoke3, tmp_path / "groups.zarr", progress=events.append)
    assert report.trained == (0, 1, 2, 3) and report.runs == 12 and report.unfit == ()
    assert [e.group for e in events[1:]] == [2, 2, 2, 2]
    _assert_close(Store.open(tmp_path / "groups.zarr"), smoke3_together)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB."),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 6176000000 bytes."),
    ],
    ids=["gpu", "cpu"],
)
def test_a_failed_allocation_halves_the_group_and_retries(
    tiny_train_dataset: Path, smoke3: Path, tmp_path: Path, monkeypatch, smoke3_together: Store, error
):
    sizes = []
    real = farm.train_unit

    def train_unit(space, arch, data, plan, config, seeds):
        sizes.append(len(seeds))
        if len(seeds) > 1:
            raise error
        return real(space, arch, data, plan, config, seeds)

    monkeypatch.setattr(farm, "train_unit", train_unit)
    events = []
    report = smoke3_farm(tiny_train_dataset, smoke3, tmp_path / "halved.zarr", progress=events.append)
    assert sizes == [3, 1, 1, 1] * 4  # 3 fails, then 1 (half of 3), and 1 for the rest
    assert report.unfit == () and [e.group for e in events[1:]] == [1, 1, 1, 1]
    _assert_close(Store.open(tmp_path / "halved.zarr"), smoke3_together)


def test_other_errors_are_not_taken_for_memory(tiny_train_dataset: Path, smoke3: Path, tmp_path, monkeypatch):
    def train_unit(*args, **kwargs):
        raise RuntimeError("something else broke")

    monkeypatch.setattr(farm, "train_unit", train_unit)
    with pytest.raises(RuntimeError, match="something else broke"):
        smoke3_farm(tiny_train_dataset, smoke3, tmp_path / "other.zarr")
    assert not is_out_of_memory(RuntimeError("something else broke"))
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(torch.OutOfMemoryError("x"))


def test_a_unit_that_never_fits_is_left_for_later_and_the_rest_is_trained(
    tiny_train_dataset: Path, tmp_path: Path, monkeypatch, capsys
):
    out = tmp_path / "unfit.zarr"
    _memory(monkeypatch, lambda arch: 10**15 if arch == 1 else 1, 10**9)
    cmd = ["train", "--dataset", str(tiny_train_dataset), "--training", "smoke", "--out", str(out)]
    cmd += ["--archs", SMOKE3_ARCHS, "--device", "cpu", "--scheduler", "none", "--quiet"]
    assert main(cmd) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(
        "bionas-bench train: error: 1 architecture(s) do not fit in memory on cpu and were not trained: 1 "
        "(e.g. architecture 1 (conv1d_f3_k8 / identity / flatten / dense_u10) needs about 931322.6 GiB"
    ), err
    assert "run the same command where more memory is free: it trains only what is missing" in err
    assert "trained 3 architecture(s)" in captured.out and "(6 replicate(s) trained" in captured.out
    assert Store.open(out).done[:4].all(axis=1).tolist() == [True, False, True, True]

    monkeypatch.undo()  # more memory: the same command trains what is missing, and only that
    assert main(cmd) == 0
    assert "trained 1 architecture(s), 3 already done" in capsys.readouterr().out
    assert Store.open(out).done[:4].all()


def test_a_unit_that_runs_out_of_memory_with_one_replicate_is_left_for_later(
    tiny_train_dataset: Path, tmp_path: Path, monkeypatch
):
    def train_unit(space, arch, *args):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(farm, "train_unit", train_unit)
    out = tmp_path / "s.zarr"
    report = run_farm("bionas-conv1d", tiny_train_dataset, "smoke", out, device="cpu", archs="0")
    assert report.unfit == (0,) and report.trained == () and report.runs == 0
    assert not Store.open(out).done.any()


def test_the_cpu_allocator_failure_is_one_line_with_its_size():
    error = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 6176000000 bytes. Error code 12 (Cannot allocate memory)"
    )
    assert _out_of_memory_message(error).startswith("out of memory (an allocation of 5.8 GiB failed); ")


def test_a_dry_run_forecasts_the_memory_of_the_units_here(
    tiny_train_dataset: Path, tmp_path: Path, monkeypatch, capsys
):
    out = tmp_path / "plan.zarr"
    cmd = ["train", "--dataset", str(tiny_train_dataset), "--training", "smoke", "--out", str(out)]
    cmd += ["--archs", SMOKE3_ARCHS, "--device", "cpu", "--dry-run"]

    def memory_line(*extra: str) -> str:
        assert main([*cmd, *extra]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("memory")]
        return lines[0] if lines else ""

    assert memory_line().startswith("memory     every unit fits at once (largest ~0.00 GiB; ")
    # arch 1 needs more than 0.8 x 1 GB for one replicate, arch 2 for two of them
    need = {1: 10**9, 2: 6 * 10**8}
    monkeypatch.setattr(farm, "replicate_bytes", lambda space, arch, data, config: need.get(arch, 1000))
    monkeypatch.setattr(farm, "free_bytes", lambda device: 10**9)
    line = memory_line("--scheduler", "none")
    assert line.startswith(
        "memory     1 would train a few replicates at a time: 2; 1 would not fit even alone: 1 "
        "(0.9 GiB free a process on cpu now; an estimate"
    ), line
    assert memory_line("--scheduler", "tcp://127.0.0.1:8786") == ""  # its workers' memory is not ours
    assert not out.exists()
    plan = farm.plan_farm("bionas-conv1d", tiny_train_dataset, "smoke", out, archs=SMOKE3_ARCHS, processes=1)
    assert plan.memory.unfit == (1,) and plan.memory.grouped == (2,) and plan.memory.estimated == 4
    assert plan.memory.largest == 2 * need[1]
    assert farm.plan_farm("bionas-conv1d", tiny_train_dataset, "smoke", out, archs="0").memory is None
