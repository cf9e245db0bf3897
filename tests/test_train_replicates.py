"""Replicate subsets of the farm: parsing, planning, incremental training, honest completion, Ctrl-C."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ctrl_c, group_gone, smoke3_farm, synthetic_values

from bionas_bench.cli import main
from bionas_bench.errors import StoreError, TrainingError
from bionas_bench.ids import format_ids, parse_ids
from bionas_bench.store import Store
from bionas_bench.train.config import load_training_config
from bionas_bench.train.farm import Unit, parse_replicates, plan_units, run_farm

SMOKE = Path(__file__).parents[1] / "data_manifests/training/smoke.toml"


# ---------------------------------------------------------------------- parsing


def test_ids_round_trip_and_errors():
    ids = parse_ids(" 7, 0-3 ,2,", 10, option="--x", what="thing", hint="fix it", error=TrainingError)
    assert ids.tolist() == [0, 1, 2, 3, 7] and format_ids(ids) == "0-3,7"
    assert format_ids([]) == "" and format_ids([5]) == "5" and format_ids([4, 3]) == "3-4"
    config = load_training_config(SMOKE)
    assert parse_replicates("1", config).tolist() == [1]
    for text, message in [
        (
            "0-2",
            r"--replicates: replicate index 2 is out of range; use 0..1 \(training manifest 'smoke' has 2",
        ),
        ("a", "--replicates 'a': cannot read 'a'"),
        ("-1", "cannot read '-1'"),
        ("1-0", "range '1-0' ends before it starts; write 0-1"),
        (",", "names no replicate index"),
    ]:
        with pytest.raises(TrainingError, match=message):
            parse_replicates(text, config)


def test_plan_is_one_unit_per_arch_with_its_missing_selected_replicates():
    done = np.zeros((4, 3), dtype=bool)
    done[0] = True
    done[1, 1] = True
    done[2, [0, 2]] = True
    archs = np.arange(4)
    assert list(plan_units(done, archs, np.arange(3))) == [Unit(1, (0, 2)), Unit(2, (1,)), Unit(3, (0, 1, 2))]
    assert list(plan_units(done, archs, np.array([0, 2]))) == [Unit(1, (0, 2)), Unit(3, (0, 2))]
    assert list(plan_units(done, np.array([0]), np.arange(3))) == []


# ---------------------------------------------------------------------- training


def test_subset_then_the_rest_trains_only_what_is_missing(
    tiny_train_dataset: Path, smoke3: Path, tmp_path: Path, smoke3_together: Store
):
    out = tmp_path / "inc.zarr"
    first = smoke3_farm(tiny_train_dataset, smoke3, out, replicates="1")
    assert first.trained == (0, 1, 2, 3) and first.runs == 4 and first.replicates == (1,)
    store = Store.open(out)
    assert store.done[:4].tolist() == [[False, True, False]] * 4 and not store.done[4:].any()
    assert np.isnan(store.metric("val_loss")[:4, [0, 2]]).all()
    replicate1 = store.metric("val_loss")[:4, 1].copy()
    assert not store.attrs.get("packed")

    rest = smoke3_farm(tiny_train_dataset, smoke3, out, replicates=[0, 2, 1])
    assert rest.trained == (0, 1, 2, 3) and rest.runs == 8 and rest.skipped == 0
    store = Store.open(out)
    assert store.done[:4].all() and not store.done[4:].any()
    np.testing.assert_array_equal(store.metric("val_loss")[:4, 1], replicate1)  # written once, kept
    again = smoke3_farm(tiny_train_dataset, smoke3, out)
    assert again.trained == () and again.runs == 0 and again.skipped == 4

    # Trained in pieces = trained at once, up to the rounding of batched kernels.
    ids = np.arange(4)
    np.testing.assert_array_equal(store.metric("epochs")[ids], smoke3_together.metric("epochs")[ids])
    for name in ("val_loss", "test_loss", "auroc", "accuracy"):
        np.testing.assert_allclose(
            store.metric(name)[ids], smoke3_together.metric(name)[ids], rtol=1e-4, atol=1e-6, err_msg=name
        )
    np.testing.assert_allclose(store.filters(ids), smoke3_together.filters(ids), rtol=1e-3, atol=1e-5)


def test_a_half_written_replicate_is_not_done_and_is_retrained(
    tiny_train_dataset: Path, smoke3: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A write that dies before its ``done`` cells leaves the earlier replicates intact."""
    out = tmp_path / "crash.zarr"
    run_farm(
        "bionas-conv1d", tiny_train_dataset, smoke3, out, device="cpu", archs="5", replicates="0", threads=1
    )
    before = Store.open(out)
    kept = before.metric("val_loss")[5].copy()

    def crash_before_done(self, name, arch, reps, value):
        if name == "done":
            raise OSError("disk full (simulated)")
        return original(self, name, arch, reps, value)

    original = Store._write_cell
    monkeypatch.setattr(Store, "_write_cell", crash_before_done)
    with pytest.raises(OSError, match="simulated"):
        run_farm("bionas-conv1d", tiny_train_dataset, smoke3, out, device="cpu", archs="5", threads=1)
    monkeypatch.undo()

    crashed = Store.open(out)
    assert crashed.done[5].tolist() == [True, False, False]
    assert np.isfinite(crashed.metric("val_loss")[5, 1:]).all()  # values written, yet not done
    assert crashed.summary().trainings_done == 1
    np.testing.assert_array_equal(crashed.metric("val_loss")[5, 0], kept[0])
    resumed = run_farm("bionas-conv1d", tiny_train_dataset, smoke3, out, device="cpu", archs="5", threads=1)
    assert resumed.runs == 2 and Store.open(out).done[5].all()


def test_bad_replicates_are_refused_before_anything_is_written(tiny_train_dataset: Path, tmp_path: Path):
    for replicates, message in [
        ([], "non-empty list"),
        ([0, 2], "replicate index 2 is out of range"),
        ([-1], "replicate index -1 is out of range"),
        ([0.5], "integer indices"),
        ("0-9", "--replicates: replicate index 2"),
    ]:
        with pytest.raises(TrainingError, match=message):
            run_farm("bionas-conv1d", tiny_train_dataset, "smoke", tmp_path / "x.zarr", replicates=replicates)
    assert not (tmp_path / "x.zarr").exists()


def test_cli_bad_replicates_is_one_line_and_writes_nothing(tiny_train_dataset: Path, tmp_path: Path, capsys):
    base = ["train", "--dataset", str(tiny_train_dataset), "--training", "smoke", "--device", "cpu"]
    for value, message in [("0-2", "out of range"), ("x", "cannot read"), ("", "names no replicate")]:
        assert main([*base, "--out", str(tmp_path / "r.zarr"), "--replicates", value]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--replicates" in err and message in err, err
    assert main([*base, "--out", str(tmp_path / "r.zarr"), "--scheduler", " "]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- store info


def test_store_info_shows_partial_replicates_honestly(synthetic_store_factory, tmp_path: Path, capsys):
    store = synthetic_store_factory(tmp_path / "partial.zarr", complete=False)
    values = synthetic_values()
    done = np.zeros((216, 5), dtype=bool)
    done[:, :2] = True
    done[:10, 2] = True
    store.write_block(
        metrics=values["metrics"], knowledge=values["knowledge"], failed=values["failed"], done=done
    )
    summary = Store.open(tmp_path / "partial.zarr").summary()
    assert summary.replicate_counts == {3: 10, 2: 206}
    assert summary.replicates_complete == (0, 1)
    assert summary.trainings_done == 216 * 2 + 10 and summary.archs_complete == 0
    assert main(["store", "info", str(tmp_path / "partial.zarr")]) == 0
    out = capsys.readouterr().out
    assert "replicates 10 archs x 3 of 5, 206 archs x 2 of 5 done; replicates 0-1 done for every" in out
    assert "442/1,080 trainings" in out


def test_store_writes_reject_bad_replicates(synthetic_store_factory, tmp_path: Path):
    store = synthetic_store_factory(tmp_path / "w.zarr", complete=False)
    nan = {name: np.full(1, np.nan) for name in store.metric_names}
    knowledge = {name: np.full(1, np.nan) for name in store.knowledge_sets}
    with pytest.raises(StoreError, match="within 0..4"):
        store.write_unit(0, metrics=nan, knowledge=knowledge, replicates=[5])
    assert not Store.open(tmp_path / "w.zarr").done.any()


# ---------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_on_the_local_cluster_stops_promptly_and_resumes(tiny_train_dataset: Path, tmp_path: Path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it."""
    out = tmp_path / "int.zarr"
    cmd = [sys.executable, "-m", "bionas_bench", "train", "--dataset", str(tiny_train_dataset)]
    cmd += ["--training", "smoke", "--out", str(out), "--archs", "0-99", "--device", "cpu"]
    cmd += ["--workers", "2", "--threads", "1", "--quiet"]
    stop = ctrl_c(cmd, ready=lambda: _some_done(out))
    assert stop.returncode == 130, stop.stderr
    assert stop.stderr.strip() == (  # no worker tracebacks
        f"bionas-bench train: interrupted; finished units are kept in {out}: the same command trains the rest"
    )
    assert stop.seconds < 15, f"took {stop.seconds:.1f} s to stop"
    assert group_gone(stop.pgid, wait=10), "worker processes outlived the interrupted farm"
    partial = Store.open(out).done
    assert (partial.all(axis=1) == partial.any(axis=1)).all()  # no arch half done
    assert 1 <= partial.all(axis=1).sum() < 100
    report = run_farm("bionas-conv1d", tiny_train_dataset, "smoke", out, device="cpu", archs="0-3", threads=1)
    assert report.skipped == int(partial[:4].all(axis=1).sum())
    assert Store.open(out).done[:4].all()


def _some_done(out: Path) -> bool:
    try:
        return bool(Store.open(out).done.any())
    except StoreError:
        return False
