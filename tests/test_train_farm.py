"""The training farm: store contents, resume, refusal of other manifests, SIGKILL + resume, Dask, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import bionas_bench
from bionas_bench.cli import main
from bionas_bench.data.datasets import build_dataset
from bionas_bench.errors import TrainingError
from bionas_bench.knowledge import knowledge_dissimilarity
from bionas_bench.space import get_space
from bionas_bench.store import Store
from bionas_bench.train import farm
from bionas_bench.train.config import load_training_config
from bionas_bench.train.farm import RUN_ENDED, _store_lock, parse_archs, plan_farm, run_farm, train_and_write
from bionas_bench.train.ops import OPS, Identity, check_space_ops

ARCHS = "0-23"  # 24 units: conv1d k8 x all pooling / flatten / dense choices
COMPARED = ("val_loss", "test_loss", "auroc", "aupr", "accuracy", "epochs", "n_params")


def _farm(dataset: Path, out: Path, archs: str = ARCHS, **kw):
    return run_farm("bionas-conv1d", dataset, "smoke", out, device="cpu", archs=archs, threads=1, **kw)


@pytest.fixture(scope="module")
def reference(tiny_train_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """An uninterrupted in-process run of the test architectures."""
    out = tmp_path_factory.mktemp("farm") / "ref.zarr"
    events = []
    report = _farm(tiny_train_dataset, out, progress=events.append)
    assert len(report.trained) == 24 and report.skipped == 0
    assert [e.done for e in events] == list(range(25))  # a start event, then one per unit
    return Store.open(out)


def _assert_same(a: Store, b: Store, ids: np.ndarray) -> None:
    assert np.array_equal(a.done[ids], b.done[ids])
    for name in COMPARED:
        np.testing.assert_array_equal(a.metric(name)[ids], b.metric(name)[ids], err_msg=name)
    np.testing.assert_array_equal(a.knowledge("myc")[ids], b.knowledge("myc")[ids])
    np.testing.assert_array_equal(a.curve("val_loss")[ids], b.curve("val_loss")[ids])
    np.testing.assert_array_equal(a.filters(ids), b.filters(ids))


def test_store_holds_every_result(reference: Store):
    ids = parse_archs(ARCHS, 216)
    assert reference.done[ids].all() and not reference.done.sum() > len(ids) * 2
    assert reference.attrs["provenance"]["source"] == "farm"
    assert reference.attrs["training"]["name"] == "smoke"
    assert reference.replicate_seeds == [0, 1]
    for name in COMPARED:
        assert np.isfinite(reference.metric(name)[ids]).all(), name
    assert np.isfinite(reference.knowledge("myc")[ids]).all()
    assert (reference.metric("train_seconds")[ids] > 0).all()
    filters = reference.filters(ids)
    assert filters.shape == (24, 2, 3, 20, 4)
    assert np.isfinite(filters[:, :, :, :8]).all() and np.isnan(filters[:, :, :, 8:]).all()  # k8, NaN-padded
    assert np.isfinite(reference.curve("train_loss")[ids][:, :, 0]).all()


def test_resume_trains_nothing_and_other_manifests_are_refused(tiny_train_dataset: Path, tmp_path: Path):
    out = tmp_path / "s.zarr"
    _farm(tiny_train_dataset, out, archs="0,1")
    again = _farm(tiny_train_dataset, out, archs="0-2")
    assert again.trained == (2,) and again.skipped == 2
    other = tmp_path / "other.toml"
    other.write_text(
        (Path(__file__).parents[1] / "data_manifests/training/smoke.toml")
        .read_text()
        .replace("lr = 0.01", "lr = 0.02")
    )
    before = Store.open(out).done.copy()
    with pytest.raises(TrainingError, match="training manifest|training 'smoke'"):
        run_farm("bionas-conv1d", tiny_train_dataset, other, out, device="cpu", archs="3")
    assert np.array_equal(Store.open(out).done, before)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_dry_run_shows_what_is_left_and_writes_nothing(tiny_train_dataset: Path, tmp_path: Path, capsys):
    """plan_farm / train --dry-run: the units run_farm would train, nothing written."""
    out = tmp_path / "s.zarr"
    fresh = plan_farm("bionas-conv1d", tiny_train_dataset, "smoke", out, archs="0-2")
    assert not fresh.resumed and fresh.runs == fresh.asked == 6 and not out.exists()
    _farm(tiny_train_dataset, out, archs="0,1", replicates="0")
    plan = plan_farm("bionas-conv1d", tiny_train_dataset, "smoke", out, archs="0-2")
    assert plan.resumed and [(u.arch_id, u.replicates) for u in plan.units] == [
        (0, (1,)),
        (1, (1,)),
        (2, (0, 1)),
    ]
    before = _files(out)
    argv = ["train", "--dataset", str(tiny_train_dataset), "--training", "smoke", "--out", str(out)]
    assert main([*argv, "--archs", "0-2", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "3 architecture(s) x replicates 0-1 (all) = 6 replicate trainings, 2 of them done" in text
    assert "4 replicate trainings in 3 unit(s), one per architecture: 0-2" in text
    assert main([*argv, "--archs", "0-2", "--replicates", "0-1", "--dry-run"]) == 0
    assert "x replicates 0-1 = 6" in capsys.readouterr().out  # (all) only when no subset was asked
    assert main([*argv, "--archs", "0-1", "--replicates", "0", "--dry-run"]) == 0
    assert "to train   nothing" in capsys.readouterr().out
    assert _files(out) == before
    report = _farm(tiny_train_dataset, out, archs="0-2")
    assert report.runs == plan.runs and report.trained == tuple(u.arch_id for u in plan.units)
    other = tmp_path / "other.toml"
    other.write_text(
        (Path(__file__).parents[1] / "data_manifests/training/smoke.toml")
        .read_text()
        .replace("lr = 0.01", "lr = 0.02")
    )
    with pytest.raises(TrainingError, match="training 'smoke'"):
        plan_farm("bionas-conv1d", tiny_train_dataset, other, out)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('op = "maxpool1d"', 'op = "maxpool"', "no child-network op 'maxpool'; did you mean 'maxpool1d'?"),
        ("kernel_size = 8,", "kernel_siz = 8,", "op 'conv1d' does not take parameters"),
        (
            "filters = 3, kernel_size = 8,",
            "filters = -3, kernel_size = 8,",
            "layer 0 ('conv'), choice 'conv1d_f3_k8': op 'conv1d': filters = -3 must be a whole number >= 1",
        ),
        ("kernel_size = 14,", "kernel_size = 0,", "op 'conv1d': kernel_size = 0 must be a whole number >= 1"),
        (
            'activation = "relu"',
            'activation = "swishy"',
            "activation = 'swishy' must be one of 'linear', 'relu', 'sigmoid', 'tanh'",
        ),
        ("stride = 8 }", "stride = 0 }", "choice 'maxpool': op 'maxpool1d': stride = 0 must be"),
        (
            "symmetric = true",
            'symmetric = "no"',
            "choice 'sfc': op 'sfc': symmetric = 'no' must be true or false",
        ),
    ],
)
def test_a_misspelt_op_or_parameter_fails_before_training(
    tiny_train_dataset, tmp_path, capsys, old, new, message
):
    """A space manifest misspelling an op or a parameter, or giving a value no input allows
    (a negative size, an unknown activation), is bad input (exit 2), for the dry run as for
    training in-process or on the default local cluster, before the store exists (which the
    corrected manifest could not resume); an op that is simply not implemented here
    (bionas-eclip's dropout) stays a per-architecture failure, as documented."""
    text = (Path(__file__).parents[1] / "data_manifests/spaces/bionas-conv1d.toml").read_text()
    assert old in text
    space = tmp_path / "my-space.toml"
    space.write_text(text.replace(old, new, 1))
    out = tmp_path / "s.zarr"
    argv = ["train", "--space", str(space), "--dataset", str(tiny_train_dataset), "--training", "smoke"]
    for extra in (["--dry-run"], ["--scheduler", "none"], []):
        assert main([*argv, "--out", str(out), "--archs", "0", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "fix the space manifest" in err.lower()
    assert not out.exists() and not list(tmp_path.glob("s.zarr*")) and not list(tmp_path.glob(".s.zarr*"))
    plan_farm("bionas-eclip", tiny_train_dataset, "smoke", out, archs="0")  # unimplemented ops pass


def test_ids_that_are_not_whole_numbers_are_refused_not_truncated(tiny_train_dataset: Path, tmp_path: Path):
    """archs=[1.7] used to plan architecture 1, and [True] architecture 1 too."""
    out = tmp_path / "s.zarr"
    for bad in ([1.7], [True]):
        with pytest.raises(TrainingError, match="architecture ids must be integers"):
            plan_farm("bionas-conv1d", tiny_train_dataset, "smoke", out, archs=bad)
    assert plan_farm("bionas-conv1d", tiny_train_dataset, "smoke", out, archs=[2.0]).archs == (2,)


def test_sigkill_then_resume_equals_an_uninterrupted_run(
    tiny_train_dataset: Path, tmp_path: Path, reference: Store
):
    out = tmp_path / "killed.zarr"
    cmd = [
        sys.executable,
        "-m",
        "bionas_bench",
        "train",
        "--dataset",
        str(tiny_train_dataset),
        "--training",
        "smoke",
        "--out",
        str(out),
        "--archs",
        ARCHS,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--scheduler",
        "none",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = 0
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            done = int(Store.open(out).done.all(axis=1).sum())
        except Exception:  # noqa: BLE001 - the store may not exist yet
            done = 0
        if done >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.skip("the farm finished before it could be killed (machine too fast for this test)")
    partial = Store.open(out).done.all(axis=1).sum()
    assert 2 <= partial < 24
    report = _farm(tiny_train_dataset, out)
    assert len(report.trained) + report.skipped == 24 and report.skipped == partial
    _assert_same(Store.open(out), reference, parse_archs(ARCHS, 216))


def test_two_dask_workers_writing_concurrently_lose_nothing(
    tiny_train_dataset: Path, tmp_path: Path, reference: Store
):
    """Two workers of a Dask cluster, reached by its address (threads keep the test fast;
    ``--scheduler local`` starts the same cluster with worker processes). Units are
    submitted two per worker thread at a time, not all at once: the scheduler never holds
    more than those 4, the one just finished and the 3 shared inputs (space, dataset,
    training config)."""
    from dask.distributed import LocalCluster

    out = tmp_path / "dask.zarr"
    events, held = [], []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:

        def progress(event):
            events.append(event)
            held.append(len(cluster.scheduler.tasks))

        report = _farm(
            tiny_train_dataset, out, archs="0-9", scheduler=cluster.scheduler_address, progress=progress
        )
    assert sorted(report.trained) == list(range(10)) and len(events) == 11
    assert 3 < max(held) <= 4 + 1 + 3, held
    _assert_same(Store.open(out), reference, np.arange(10))


def test_cli_bad_input_is_one_line_and_writes_nothing(tiny_train_dataset: Path, tmp_path: Path, capsys):
    a_file = tmp_path / "file.zarr"
    a_file.write_text("not a store")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("precious")
    base = ["train", "--dataset", str(tiny_train_dataset), "--training", "smoke", "--device", "cpu"]
    cases = [
        (base + ["--out", str(a_file), "--archs", "0"], "is a file"),
        (base + ["--out", str(tmp_path / "a.zarr"), "--archs", "0-216"], "out of range"),
        (base + ["--out", str(tmp_path / "b.zarr"), "--archs", "x"], "cannot read"),
        (["train", "--dataset", "no-such-data", "--out", str(tmp_path / "c.zarr")], "no-such-data"),
        (base + ["--out", str(tmp_path / "d.zarr"), "--training", "no-such-training"], "no-such-training"),
        (base + ["--out", str(tmp_path / "e.zarr"), "--space", "no-such-space"], "no-such-space"),
        (base + ["--out", str(tmp_path / "f.zarr"), "--threads", "0"], "--threads must be >= 1, got 0"),
        (
            base + ["--out", str(tmp_path / "folder"), "--archs", "0"],
            "is a folder that is not a bionas_bench store",
        ),
        (
            base + ["--out", str(tmp_path / "folder"), "--dry-run"],
            "is a folder that is not a bionas_bench store",
        ),
        (base + ["--out", str(tmp_path / "g.zarr"), "--workers", "0"], "--workers must be >= 1, got 0"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.zarr", "folder"]
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["notes.txt"]


def test_unreachable_scheduler_leaves_no_store(tiny_train_dataset: Path, tmp_path: Path, monkeypatch):
    """A scheduler address is tried before the store is made: a wrong one creates nothing."""
    from bionas_bench import cluster

    def refuse(address, timeout):
        raise OSError(f"connection to {address} refused")

    monkeypatch.setattr(cluster, "Client", refuse)
    with pytest.raises(TrainingError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'"):
        _farm(tiny_train_dataset, tmp_path / "s.zarr", archs="0", scheduler="tcp://127.0.0.1:1")
    assert not (tmp_path / "s.zarr").exists()


def test_a_scheduler_name_that_is_no_address_is_one_line(tiny_train_dataset: Path, tmp_path: Path, capsys):
    argv = ["train", "--dataset", str(tiny_train_dataset), "--training", "smoke", "--archs", "0"]
    for extra in ([], ["--dry-run"]):  # the dry run checks it too
        assert main([*argv, "--out", str(tmp_path / "s.zarr"), "--scheduler", "threads", *extra]) == 2
        err = capsys.readouterr().err
        assert "--scheduler 'threads' is neither" in err and "none (in this process)" in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("scheduler", ["none", "tcp://127.0.0.1:1"])
def test_workers_need_a_local_cluster(tiny_train_dataset: Path, tmp_path: Path, capsys, scheduler):
    """--workers chooses a local cluster's processes: with any other scheduler it would be
    silently ignored, so it is refused (before any scheduler is reached or store made)."""
    argv = ["train", "--dataset", str(tiny_train_dataset), "--training", "smoke", "--archs", "0"]
    argv += ["--out", str(tmp_path / "s.zarr"), "--scheduler", scheduler, "--workers", "3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--workers 3 applies to --scheduler local only; --scheduler {scheduler} trains" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "s.zarr").exists()
    assert main([*argv, "--dry-run"]) == 2
    assert "--workers 3 applies to --scheduler local only" in capsys.readouterr().err


def test_a_store_resumed_elsewhere_records_where(tiny_train_dataset: Path, tmp_path: Path, monkeypatch):
    """Resuming with another device, torch or bionas-bench records it in the provenance
    (once), so mixed replicates can be told apart; resuming where it was made records nothing."""
    out = tmp_path / "s.zarr"
    _farm(tiny_train_dataset, out, archs="0", replicates="0", scheduler="none")
    _farm(tiny_train_dataset, out, archs="1", replicates="0", scheduler="none")
    assert "also_trained_on" not in Store.open(out).attrs["provenance"]
    monkeypatch.setattr(farm.torch, "__version__", "9.9.9")
    _farm(tiny_train_dataset, out, archs="2", replicates="0", scheduler="none")
    _farm(tiny_train_dataset, out, archs="3", replicates="0", scheduler="none")
    monkeypatch.setattr(bionas_bench, "__version__", "8.8.8")
    _farm(tiny_train_dataset, out, archs="4", replicates="0", scheduler="none")
    store = Store.open(out)
    also = store.attrs["provenance"]["also_trained_on"]
    created = store.attrs["provenance"]["package_version"]
    assert [(a["device"], a["torch_version"], a["package_version"]) for a in also] == [
        ("cpu", "9.9.9", created),
        ("cpu", "9.9.9", "8.8.8"),
    ]
    assert store.summary().made_from["also trained on"] == (
        f"cpu (torch 9.9.9, bionas-bench {created}), cpu (torch 9.9.9, bionas-bench 8.8.8)"
    )


def test_a_second_run_on_the_same_store_is_refused(tiny_train_dataset: Path, tmp_path: Path):
    """Two runs on one store (e.g. other replicates of the same architectures) would
    overwrite each other's shared chunks: a live run's lock refuses the second, which
    writes nothing; a lock whose process has ended is taken over; none is left behind."""
    import socket

    out = tmp_path / "s.zarr"
    lock = tmp_path / "s.zarr.lock"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            lock.write_text(f"{other.pid} {socket.gethostname()}\n")
            with pytest.raises(TrainingError, match="is being trained by another run"):
                _farm(tiny_train_dataset, out, archs="0", replicates="0", scheduler="none")
            assert not out.exists()
        finally:
            other.kill()
    other.wait()
    _farm(tiny_train_dataset, out, archs="0", replicates="0", scheduler="none")
    assert Store.open(out).done[0, 0] and not lock.exists()


def test_a_create_cut_short_leaves_nothing_to_refuse(tiny_train_dataset: Path, tmp_path: Path, monkeypatch):
    """The store is made beside --out and renamed in: a create interrupted half-way leaves
    no half-made store at --out, and the next run removes the leftover and trains."""
    out = tmp_path / "s.zarr"
    real = Store.create

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "create", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _farm(tiny_train_dataset, out, archs="0", replicates="0", scheduler="none")
    assert not out.exists() and len(list(tmp_path.glob(".s.zarr.creating-*"))) == 1
    with pytest.raises(TrainingError, match="not a URL"):
        _farm(tiny_train_dataset, "memory://s.zarr", archs="0", scheduler="none")
    monkeypatch.setattr(Store, "create", real)
    _farm(tiny_train_dataset, out, archs="0", replicates="0", scheduler="none")
    assert Store.open(out).done[0, 0] and not list(tmp_path.glob(".s.zarr.creating-*"))


def test_cli_trains_and_reports(tiny_train_dataset: Path, tmp_path: Path, capsys):
    """The default local Dask cluster trains one replicate; in-process training adds the other."""
    out = tmp_path / "cli.zarr"
    argv = ["train", "--dataset", str(tiny_train_dataset), "--training", "smoke", "--out", str(out)]
    argv += ["--archs", "46", "--device", "cpu", "--threads", "1"]
    assert main([*argv, "--replicates", "1", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "trained 1 architecture(s), 0 already done, on cpu (1 replicate(s) trained" in captured.out
    assert "1/1" in captured.err  # the progress bar
    assert Store.open(out).done[46].tolist() == [False, True]
    assert main(["store", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "1 arch x 1 of 2, 215 archs x 0 of 2 done" in info
    assert f"source     farm: dataset {tiny_train_dataset.stem}, training smoke, device cpu, torch " in info
    assert main([*argv, "--scheduler", "none"]) == 0
    assert (
        "trained 1 architecture(s), 0 already done, on cpu (1 replicate(s) trained" in capsys.readouterr().out
    )
    assert main([*argv, "--scheduler", "none"]) == 0
    captured = capsys.readouterr()
    assert "trained 0 architecture(s), 1 already done" in captured.out
    assert "training" not in captured.err  # nothing to train: no empty bar ("0arch [00:00, ?arch/s]")
    assert Store.open(out).done[46].all()


def _two_arch_space(folder: Path) -> Path:
    """A space of two architectures (conv1d, then identity or max pooling, then flatten)."""
    space = folder / "two.toml"
    space.write_text(
        '[space]\nname = "two"\n'
        '[[layers]]\nname = "conv"\n[[layers.choices]]\nname = "conv1d_f3_k8"\nop = "conv1d"\n'
        'params = { filters = 3, kernel_size = 8, activation = "relu", init = "glorot_uniform", '
        'padding = "valid" }\n'
        '[[layers]]\nname = "pool"\n[[layers.choices]]\nname = "identity"\nop = "identity"\n'
        '[[layers.choices]]\nname = "maxpool"\nop = "maxpool1d"\nparams = { pool_size = 8, stride = 8 }\n'
        '[[layers]]\nname = "flatten"\n[[layers.choices]]\nname = "flatten"\nop = "flatten"\n'
    )
    return space


def test_an_architecture_that_cannot_be_built_is_recorded_failed(
    tiny_train_dataset: Path, tmp_path: Path, capsys
):
    """Two max-poolings of 8 do not fit 50-bp sequences: that unit is written done and
    failed (NaN values), the others train, the command says which and why, and a rerun
    has nothing left to do."""
    space = tmp_path / "pools.toml"
    pool = (
        '[[layers.choices]]\nname = "identity"\nop = "identity"\n'
        '[[layers.choices]]\nname = "maxpool"\nop = "maxpool1d"\nparams = { pool_size = 8, stride = 8 }\n'
    )
    space.write_text(
        _two_arch_space(tmp_path).read_text().replace('name = "two"', 'name = "pools"')
        + '[[layers]]\nname = "pool2"\n'
        + pool
    )
    text = space.read_text()  # move the flatten layer last
    flatten = '[[layers]]\nname = "flatten"\n[[layers.choices]]\nname = "flatten"\nop = "flatten"\n'
    space.write_text(text.replace(flatten, "") + flatten)
    out = tmp_path / "pools.zarr"
    argv = ["train", "--space", str(space), "--dataset", str(tiny_train_dataset), "--training", "smoke"]
    argv += ["--out", str(out), "--device", "cpu", "--scheduler", "none", "--threads", "1", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "note: 1 architecture(s) cannot be built for the dataset's sequences" in printed
    assert "were recorded as failed: 3 (e.g. 3: " in printed
    assert "layer 2 (maxpool): pooling of size 8 needs an input of at least that length, got 5)" in printed
    store = Store.open(out)
    assert store.done.all() and store.failed[3].all() and not store.failed[:3].any()
    assert np.isnan(store.metric("val_loss")[3]).all() and np.isfinite(store.metric("val_loss")[:3]).all()
    assert main(argv) == 0
    assert "trained 0 architecture(s), 4 already done" in capsys.readouterr().out


def test_a_ctrl_c_while_the_farm_sends_its_data_waits_for_the_sending():
    """A Ctrl-C during the broadcast scatter used to cut this process's wait only: the
    scheduler's broadcast went on and failed in the teardown, printing "Task exception was
    never retrieved". Now the scatter returns first, and no unit is submitted after it."""
    calls = []

    class Client:
        def scatter(self, data, broadcast):
            signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, mid-scatter
            calls.append("scattered")
            return data

        def submit(self, *args, **kwargs):
            calls.append("submitted")

    units = farm.plan_units(np.zeros((2, 1), dtype=bool), np.arange(2), np.arange(1))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, not `pytest &`
    try:
        with pytest.raises(KeyboardInterrupt):
            farm._run_dask(Client(), (None, None, None, "out", "run"), units, "cpu", 1, None)
    finally:
        signal.signal(signal.SIGINT, before)
    assert calls == ["scattered"]


def _trim(in_shape, replicates, *, by):
    """A registered op that checks nothing: torch refuses its input when it is shorter than ``by``."""
    torch.empty(in_shape.channels, in_shape.length - by)
    return Identity(in_shape, replicates)


def test_an_op_that_fails_in_torch_on_short_sequences_is_unbuildable(tmp_path: Path, monkeypatch):
    """A registered op without its own checks fails inside torch (a negative size) where the
    sequences are too short: that architecture cannot be built here (recorded failed, with
    torch's reason), it does not crash the farm."""
    monkeypatch.setitem(OPS, "trim", _trim)
    space = tmp_path / "trim.toml"
    space.write_text(
        _two_arch_space(tmp_path)
        .read_text()
        .replace('name = "two"', 'name = "trim"')
        .replace(
            'op = "maxpool1d"\nparams = { pool_size = 8, stride = 8 }', 'op = "trim"\nparams = { by = 60 }'
        )
    )
    space = get_space(space)
    check_space_ops(space)  # nothing wrong whatever the input
    data = SimpleNamespace(seq_len=50, n_labels=1)
    assert farm._unbuildable(space, 0, data) == ""
    reason = farm._unbuildable(space, 1, data)
    assert "architecture 1 (" in reason and "cannot be built for sequences of length 50" in reason
    assert "negative dimension" in reason


def test_complete_store_is_packed_partial_is_not(tiny_train_dataset: Path, tmp_path: Path):
    """The farm packs the store once its last unit is done (fast opening), not before."""
    space = _two_arch_space(tmp_path)
    out = tmp_path / "two.zarr"
    run_farm(space, tiny_train_dataset, "smoke", out, device="cpu", archs="0", threads=1)
    assert not Store.open(out).attrs.get("packed")
    run_farm(space, tiny_train_dataset, "smoke", out, device="cpu", threads=1)
    packed = Store.open(out)
    assert packed.attrs.get("packed") is True
    assert packed.done.all()


def test_a_worker_handle_lives_for_one_run(tiny_train_dataset: Path, tmp_path: Path):
    """A long-lived Dask worker keeps no store handle from an earlier run: its writes in a
    later run mark the packed copies (made when the earlier run completed) stale."""
    space_path = _two_arch_space(tmp_path)
    space, dataset = get_space(space_path), build_dataset(tiny_train_dataset)
    config = load_training_config("smoke")
    out = tmp_path / "two.zarr"
    run_farm(space_path, tiny_train_dataset, "smoke", out, device="cpu", archs="0", threads=1)
    # a worker of the first run trains the last unit through its own handle; the run packs
    with _store_lock(out, "first"):
        train_and_write(space, dataset, config, str(out), "first", 1, "cpu", 1)
        Store.open(out, mode="r+").pack()
    assert Store.open(out).attrs.get("packed") is True
    # the same worker, in a later run, retrains a replicate
    with _store_lock(out, "second"):
        train_and_write(space, dataset, config, str(out), "second", 1, "cpu", 1, [0])
    reopened = Store.open(out)
    assert reopened.attrs.get("packed") is False
    assert reopened.done.all()


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_unit_of_an_ended_run_writes_nothing(tiny_train_dataset: Path, tmp_path: Path):
    """A unit still running on a remote worker after its run stopped (Ctrl-C: the client
    cancels only what has not started, then the lock goes) must not write: a resumed run
    may hold the lock by then and train the same architecture. A unit checks that its
    run still holds the lock before it trains and before it writes."""
    space_path = _two_arch_space(tmp_path)
    space, dataset = get_space(space_path), build_dataset(tiny_train_dataset)
    config = load_training_config("smoke")
    out = tmp_path / "two.zarr"
    run_farm(space_path, tiny_train_dataset, "smoke", out, device="cpu", archs="0", threads=1)
    before = _digest(out)
    # the run that asked for the unit has ended: no lock at all
    assert train_and_write(space, dataset, config, str(out), "ended", 1, "cpu", 1)[3] == RUN_ENDED
    # a later run holds the lock now
    with _store_lock(out, "resumed"):
        assert train_and_write(space, dataset, config, str(out), "ended", 1, "cpu", 1)[3] == RUN_ENDED
    assert _digest(out) == before
    assert not Store.open(out).done[1].any()


def test_knowledge_rescored_from_the_stored_filters(reference: Store):
    """The store's filters (NaN-padded to the widest kernel) re-score to the stored K with
    the motifs and settings of its attributes: K can be computed for new motifs later."""
    ids = parse_archs(ARCHS, 216)
    knowledge = reference.attrs["knowledge"]
    motifs = [np.asarray(m["pwm"]) for m in knowledge["motif_sets"]["myc"]]
    filters = reference.filters(ids).astype(np.float64)  # (24, R, 3, 20, 4), NaN past width 8
    scored = knowledge_dissimilarity(filters.reshape(-1, *filters.shape[2:]), motifs, **knowledge["settings"])
    np.testing.assert_allclose(scored.reshape(filters.shape[:2]), reference.knowledge("myc")[ids], rtol=1e-12)


def test_threads_in_process_leave_the_callers_torch_threads(tiny_train_dataset: Path, tmp_path: Path):
    """threads=1 trains on one thread; the calling process keeps its own setting after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _farm(tiny_train_dataset, tmp_path / "s.zarr", archs="0", replicates="0")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_resuming_on_other_data_of_the_same_manifest_says_the_data_changed(tiny_train_dataset, tmp_path):
    """An edited input file behind an unchanged dataset manifest (other sequences, the same
    manifest hash): resuming is refused naming the data, not "the same manifests"."""
    import dataclasses

    dataset = build_dataset(tiny_train_dataset)
    out = tmp_path / "s.zarr"
    run_farm("bionas-conv1d", dataset, "smoke", out, device="cpu", archs="0", replicates="0", threads=1)
    codes = dataset.codes.copy()
    codes[0, 0] = (codes[0, 0] + 1) % 4
    edited = dataclasses.replace(dataset, codes=codes)
    assert edited.manifest_sha256 == dataset.manifest_sha256 and edited.sha256 != dataset.sha256
    with pytest.raises(TrainingError, match="trained on other data of dataset .*its manifest is the same"):
        run_farm("bionas-conv1d", edited, "smoke", out, device="cpu", archs="1", replicates="0", threads=1)
