"""Results store: create/open round trip, done-last semantics, validation, xarray view, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SYNTHETIC_EPOCHS, SYNTHETIC_REPLICATES, make_synthetic_store, synthetic_values

from bionas_bench import cli
from bionas_bench.errors import BionasError, OracleError, StoreError
from bionas_bench.space import get_space
from bionas_bench.store import Store, open_store


def _small_store(path: Path, **kwargs) -> Store:
    args = dict(
        space="bionas-conv1d",
        num_replicates=3,
        metrics=["val_loss", "train_seconds"],
        knowledge_sets=["myc"],
    )
    args.update(kwargs)
    return Store.create(path, **args)


def _unit(n: int = 3, loss: float = 0.2) -> dict:
    return {
        "metrics": {"val_loss": np.full(n, loss), "train_seconds": np.arange(n, dtype=float)},
        "knowledge": {"myc": np.full(n, 0.5)},
    }


def test_round_trip_known_numbers(synthetic_store: Store) -> None:
    values = synthetic_values()
    assert synthetic_store.num_archs == 216
    assert synthetic_store.num_replicates == SYNTHETIC_REPLICATES
    for name, expected in values["metrics"].items():
        np.testing.assert_array_equal(synthetic_store.metric(name), expected)
    for name, expected in values["knowledge"].items():
        np.testing.assert_array_equal(synthetic_store.knowledge(name), expected)
    np.testing.assert_array_equal(synthetic_store.curve("val_loss"), values["curves"]["val_loss"])
    np.testing.assert_array_equal(synthetic_store.failed, values["failed"])
    assert synthetic_store.done.all()
    assert synthetic_store.missing_units().size == 0
    assert synthetic_store.replicate_seeds == [101, 102, 103, 104, 105]
    assert synthetic_store.default_knowledge_set == "myc"
    assert synthetic_store.attrs["provenance"]["source"] == "synthetic"
    synthetic_store.validate()


def test_create_refuses_existing_path(tmp_path: Path) -> None:
    _small_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="already exists"):
        _small_store(tmp_path / "s.zarr")
    fresh = _small_store(tmp_path / "s.zarr", overwrite=True)
    assert not fresh.done.any()


def test_overwrite_replaces_only_a_store(tmp_path: Path) -> None:
    """overwrite=True never deletes a folder or a file that is not a store."""
    folder = tmp_path / "my-folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    a_file = tmp_path / "a-file"
    a_file.write_text("precious")
    for path in (folder, a_file):
        with pytest.raises(
            StoreError, match="exists and is not a bionas_bench store; overwriting replaces only"
        ):
            _small_store(path, overwrite=True)
    assert (folder / "notes.txt").read_text() == "precious" and a_file.read_text() == "precious"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_new_store_is_empty_and_valid(tmp_path: Path) -> None:
    store = _small_store(tmp_path / "s.zarr")
    store.validate()
    assert not store.done.any()
    assert store.missing_units().size == 216
    reopened = Store.open(tmp_path / "s.zarr")
    assert not reopened.done.any()
    assert np.isnan(reopened.metric("val_loss")).all()


def test_write_unit_and_partial_replicates(tmp_path: Path) -> None:
    store = _small_store(tmp_path / "s.zarr")
    store.write_unit(5, **_unit(), failed=[False, True, False])
    store.write_unit(6, **_unit(2, loss=0.3), replicates=[0, 2])
    reopened = Store.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(reopened.done[5], [True, True, True])
    np.testing.assert_array_equal(reopened.done[6], [True, False, True])
    np.testing.assert_array_equal(reopened.failed[5], [False, True, False])
    np.testing.assert_array_equal(reopened.metric("val_loss")[6], [0.3, np.nan, 0.3])
    assert 5 not in reopened.missing_units() and 6 in reopened.missing_units()
    # the writer's own view is current too
    np.testing.assert_array_equal(store.done[6], [True, False, True])


def test_half_written_unit_is_not_done(tmp_path: Path) -> None:
    """A worker killed after writing metrics but before ``done`` leaves an unfinished unit."""
    store = _small_store(tmp_path / "s.zarr")
    group = store._group
    group["metrics/val_loss"][7, :] = 0.25
    group["knowledge/myc"][7, :] = 0.5
    reopened = Store.open(tmp_path / "s.zarr")
    assert not reopened.done[7].any()
    assert 7 in reopened.missing_units()
    assert reopened.summary().trainings_done == 0


def test_write_unit_bad_inputs(tmp_path: Path) -> None:
    store = _small_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="missing \\['train_seconds'\\]"):
        store.write_unit(0, metrics={"val_loss": np.zeros(3)}, knowledge={"myc": np.zeros(3)})
    with pytest.raises(StoreError, match="unknown \\['auroc'\\]"):
        unit = _unit()
        unit["metrics"]["auroc"] = np.zeros(3)
        store.write_unit(0, **unit)
    with pytest.raises(StoreError, match="shape"):
        store.write_unit(0, **_unit(2))
    with pytest.raises(BionasError, match="out of range"):
        store.write_unit(216, **_unit())
    with pytest.raises(StoreError, match="no filters"):
        store.write_unit(0, **_unit(), filters=np.zeros((3, 3, 8, 4)))
    with pytest.raises(StoreError, match="within 0..2"):
        store.write_unit(0, **_unit(1), replicates=[3])
    assert not store.done.any()
    with pytest.raises(StoreError, match="read-only"):
        Store.open(tmp_path / "s.zarr").write_unit(0, **_unit())


def test_curves_and_filters_are_padded(tmp_path: Path) -> None:
    store = _small_store(tmp_path / "s.zarr", curves=["val_loss"], max_epochs=6, max_filters=3, max_width=20)
    filters = np.random.default_rng(0).normal(size=(3, 3, 8, 4))
    store.write_unit(2, **_unit(), curves={"val_loss": np.ones((3, 4))}, filters=filters)
    reopened = Store.open(tmp_path / "s.zarr")
    curve = reopened.curve("val_loss")
    assert curve.shape == (216, 3, 6) and curve.dtype == np.float32
    np.testing.assert_array_equal(curve[2, :, :4], 1.0)
    assert np.isnan(curve[2, :, 4:]).all()
    got = reopened.filters([2])
    assert got.shape == (1, 3, 3, 20, 4)
    np.testing.assert_allclose(got[0, :, :, :8], filters.astype(np.float32))
    assert np.isnan(got[0, :, :, 8:]).all()
    with pytest.raises(StoreError, match="at most"):
        store.write_unit(3, **_unit(), curves={"val_loss": np.ones((3, 7))})


def test_pack_is_used_and_invalidated(tmp_path: Path) -> None:
    store = _small_store(tmp_path / "s.zarr")
    store.write_unit(0, **_unit())
    store.pack()
    assert Store.open(tmp_path / "s.zarr").attrs["packed"] is True
    writer = Store.open(tmp_path / "s.zarr", mode="r+")
    writer.write_unit(1, **_unit())
    reopened = Store.open(tmp_path / "s.zarr")
    assert reopened.attrs["packed"] is False
    assert reopened.done[:2].all()  # read from the per-arch arrays, not the stale copies


def test_missing_arrays_and_names(synthetic_store: Store) -> None:
    with pytest.raises(StoreError, match="no metric 'auroc'.*val_loss"):
        synthetic_store.metric("auroc")
    with pytest.raises(StoreError, match="no knowledge set 'ctcf'.*myc"):
        synthetic_store.knowledge("ctcf")
    with pytest.raises(StoreError, match="no curve 'train_loss'"):
        synthetic_store.curve("train_loss")


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        Store.open(tmp_path / "absent.zarr")
    with pytest.raises(StoreError, match="mode"):
        Store.open(tmp_path / "absent.zarr", mode="w")
    import zarr

    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="schema_version"):
        Store.open(tmp_path / "foreign.zarr")


def test_open_store_default_explains_how_to_get_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bionas_bench.store as store_module

    monkeypatch.setattr(store_module, "EMBEDDED_STORE_DIR", tmp_path / "stores")
    with pytest.raises(StoreError, match="no embedded default store.*import-bionas-pub"):
        open_store()


def test_open_store_finds_embedded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_store_path: Path
) -> None:
    import shutil

    import bionas_bench.store as store_module

    shutil.copytree(synthetic_store_path, tmp_path / "stores" / "default.zarr")
    monkeypatch.setattr(store_module, "EMBEDDED_STORE_DIR", tmp_path / "stores")
    assert open_store().done.all()


def test_validate_reports_bad_shape(tmp_path: Path) -> None:
    store = _small_store(tmp_path / "s.zarr")
    store._group.create_array("metrics/auroc", shape=(216, 2), chunks=(1, 2), dtype="float64")
    store._group.attrs["metrics"] = ["val_loss", "train_seconds", "auroc"]
    with pytest.raises(StoreError, match="auroc"):
        Store.open(tmp_path / "s.zarr").validate()


def test_summary(synthetic_store: Store) -> None:
    summary = synthetic_store.summary(lam=1.0, top=2)
    assert summary.trainings_done == 216 * 5 and summary.completion == 1.0
    assert summary.trainings_failed == int(synthetic_values()["failed"].sum())
    best_loss = summary.best["loss (val_loss)"]
    assert [b.arch for b in best_loss] == [0, 1]
    assert best_loss[0].value == pytest.approx(0.1 + 0.01 * 2)
    assert summary.best["knowledge (myc)"][0].arch == 215
    assert summary.to_dict()["trainings_total"] == 1080
    assert summary.trainings_chance == 0  # every synthetic val_loss is < 0.69
    assert synthetic_store.summary(top=0).best == {}
    for bad in (-1, float("nan"), "1", True):  # the oracle's rule
        with pytest.raises(StoreError, match=r"lam must be a (finite )?number >= 0"):
            synthetic_store.summary(lam=bad)
    for bad in (-1, 1.5, True):
        with pytest.raises(StoreError, match=rf"top must be a whole number >= 0 .*got {bad!r}"):
            synthetic_store.summary(top=bad)


def test_summary_counts_units_at_chance_level(synthetic_store: Store, monkeypatch) -> None:
    """Done units whose loss metric is above CHANCE_LOSS, shown by ``store info``."""
    from bionas_bench.cli.store import render_summary

    monkeypatch.setattr("bionas_bench.store.CHANCE_LOSS", 0.3)  # inside the synthetic losses' range
    loss = synthetic_values()["metrics"]["val_loss"]
    summary = synthetic_store.summary()
    expected = int((loss > 0.3).sum())
    assert 0 < expected < loss.size and summary.trainings_chance == expected
    assert f"at chance  {expected} done trainings with val_loss > 0.3" in render_summary(summary)


def test_a_higher_is_better_metric_is_refused_as_the_loss(synthetic_store: Store) -> None:
    """Ranked as a loss, accuracy would make the worst architecture the best one."""
    from bionas_bench.oracle import BootstrapOracle

    with pytest.raises(StoreError, match="loss 'accuracy' is a metric where higher is better"):
        synthetic_store.summary(loss="accuracy")
    with pytest.raises(OracleError, match="loss 'accuracy' is a metric where higher is better"):
        BootstrapOracle(synthetic_store, loss="accuracy")


def test_to_xarray(synthetic_store: Store) -> None:
    ds = synthetic_store.to_xarray()
    assert dict(ds.sizes) == {
        "arch": 216,
        "replicate": 5,
        "epoch": SYNTHETIC_EPOCHS,
        "filter": 3,
        "width": 20,
        "base": 4,
    }
    assert ds["arch_name"].sel(arch=46).item() == "conv1d_f3_k14 / identity / sfc / dense_u10"
    assert ds["layer_pool"].sel(arch=93).item() == "maxpool"
    assert ds["seed"].values.tolist() == [101, 102, 103, 104, 105]
    assert list(ds["base"].values) == ["A", "C", "G", "T"]
    np.testing.assert_array_equal(ds["val_loss"].values, synthetic_store.metric("val_loss"))
    np.testing.assert_array_equal(ds["knowledge_myc"].values, synthetic_store.knowledge("myc"))
    assert ds["curve_val_loss"].dims == ("arch", "replicate", "epoch")
    np.testing.assert_array_equal(
        ds["curve_val_loss"].sel(arch=3).values, synthetic_store.curve("val_loss")[3]
    )
    assert ds["done"].all() and ds["failed"].dtype == bool
    maxpool = ds.where(ds["layer_pool"] == "maxpool", drop=True)
    assert maxpool.sizes["arch"] == 72


def test_cli_info_and_validate(synthetic_store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["store", "info", str(synthetic_store_path), "--lam", "0.5", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "1,080/1,080 trainings" in out and "best by median objective (lam=0.5)" in out
    assert cli.main(["store", "info", str(synthetic_store_path), "--json"]) == 0
    assert '"trainings_done": 1080' in capsys.readouterr().out
    assert cli.main(["store", "validate", str(synthetic_store_path)]) == 0
    assert "valid" in capsys.readouterr().out
    for flags, message in [
        (["--lam", "-1"], "--lam must be a finite number >= 0, got -1"),
        (["--lam", "nan"], "--lam must be a finite number >= 0, got nan"),
        (["--top", "-3"], "--top must be >= 0"),
        (["--loss", "auc"], "--loss auc: store"),
        (["--knowledge", "ctcf"], "--knowledge ctcf: store"),
    ]:  # each names its option
        assert cli.main(["store", "info", str(synthetic_store_path), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"store info: error: {message}" in err, err


def test_choice_summary_known_numbers(synthetic_store: Store, tmp_path: Path, capsys) -> None:
    """Per layer choice: medians over the done trainings of the architectures making it (checked
    against the names of the architectures), at-chance counts, only done trainings, CLI and JSON."""
    import json

    values = synthetic_values()
    names = [synthetic_store.space.arch_name(a).split(" / ") for a in range(216)]
    rows = synthetic_store.choice_summary()
    assert len(rows) == sum(len(la.choices) for la in synthetic_store.space.layers) == 16
    for index, layer in enumerate(synthetic_store.space.layers):
        for row in (r for r in rows if r.layer == layer.name):
            archs = [a for a in range(216) if names[a][index] == row.choice]
            assert row.archs == len(archs) and row.trainings_done == 5 * len(archs)
            assert row.trainings_chance == 0
            assert row.median_loss == pytest.approx(np.median(values["metrics"]["val_loss"][archs]))
            assert row.median_knowledge == pytest.approx(np.median(values["knowledge"]["myc"][archs]))
    store = _small_store(tmp_path / "s.zarr")
    store.write_unit(0, **_unit(loss=0.9))  # conv1d_f3_k8: 3 units at chance
    store.write_unit(1, **_unit(2, loss=0.2), replicates=[0, 1])
    store.write_unit(40, **_unit(loss=0.3))  # conv1d_f3_k14
    first = {r.choice: r for r in store.choice_summary() if r.layer == "conv"}
    assert (first["conv1d_f3_k8"].trainings_done, first["conv1d_f3_k8"].trainings_chance) == (5, 3)
    assert first["conv1d_f3_k8"].median_loss == pytest.approx(0.9)
    assert (first["conv1d_f3_k14"].trainings_done, first["conv1d_f3_k14"].trainings_chance) == (3, 0)
    assert first["regconv2d_f3_k8"].trainings_done == 0 and np.isnan(first["regconv2d_f3_k8"].median_loss)
    assert cli.main(["store", "info", str(tmp_path / "s.zarr"), "--by-choice"]) == 0
    text = capsys.readouterr().out
    assert "by layer choice" in text and re.search(r"conv\s+conv1d_f3_k8\s+36\s+5\s+60%\s+0\.9000", text)
    assert cli.main(["store", "info", str(tmp_path / "s.zarr"), "--by-choice", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["by_choice"][0] == {
        "layer": "conv",
        "choice": "conv1d_f3_k8",
        "archs": 36,
        "trainings_done": 5,
        "trainings_chance": 3,
        "median_loss": pytest.approx(0.9),
        "median_knowledge": pytest.approx(0.5),
    }


def test_cli_info_json_is_strict_json_for_an_empty_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty store's medians are NaN: --json writes null, which any JSON parser reads."""
    import json

    _small_store(tmp_path / "empty.zarr")
    assert cli.main(["store", "info", str(tmp_path / "empty.zarr"), "--json"]) == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    info = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert info["trainings_done"] == 0 and info["metric_medians"] == {"val_loss": None, "train_seconds": None}


def test_cli_bad_inputs(
    tmp_path: Path, synthetic_store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["store", "info", str(tmp_path / "absent.zarr")]) == 2
    assert "no store at" in capsys.readouterr().err
    assert cli.main(["store", "info", str(synthetic_store_path), "--lam", "-1"]) == 2
    assert "lam" in capsys.readouterr().err
    assert cli.main(["store", "info", str(synthetic_store_path), "--loss", "auroc"]) == 2
    assert "--loss auroc: store" in capsys.readouterr().err


def test_cli_info_and_validate_default_to_the_embedded_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["store", "info"]) == 0
    out = capsys.readouterr().out
    assert "myc-mini.zarr" in out and "216 architectures complete" in out
    assert cli.main(["store", "validate"]) == 0
    assert "valid (216 x 5, 1080 done)" in capsys.readouterr().out


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_cli_output_into_a_closed_pipe_stops_quietly(buffered: bool) -> None:
    """``bionas-bench store info | head -0``: no traceback, the SIGPIPE exit status."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "bionas_bench", "store", "info"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the command writes a byte
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == cli.EXIT_BROKEN_PIPE, err
    assert err == ""


def test_a_damaged_chunk_is_a_store_error(tmp_path: Path) -> None:
    """A chunk that cannot be decoded (disk damage, a truncated copy) is one StoreError
    naming the array, not a codec's traceback."""
    store = _small_store(tmp_path / "s.zarr")
    store.write_unit(0, **_unit())
    chunk = next(
        p for p in (tmp_path / "s.zarr" / "done").rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    chunk.write_bytes(bytes(range(64)))
    with pytest.raises(StoreError, match="is damaged: array 'done' cannot be read"):
        Store.open(tmp_path / "s.zarr")


def test_a_damaged_curve_chunk_is_a_store_error(tmp_path: Path) -> None:
    """Curves are read on first use; a damaged chunk there is the same StoreError."""
    store = _small_store(tmp_path / "s.zarr", curves=["val_loss"], max_epochs=4)
    store.write_unit(0, **_unit(), curves={"val_loss": np.ones((3, 4))})
    (tmp_path / "s.zarr" / "curves" / "val_loss" / "c" / "0" / "0" / "0").write_bytes(b"xyz")
    with pytest.raises(StoreError, match="is damaged: array 'curves/val_loss' cannot be read"):
        Store.open(tmp_path / "s.zarr").curve("val_loss")


@pytest.mark.parametrize("array", ["metrics/val_loss", "curves/val_loss", "done"])
def test_damaged_array_metadata_is_one_line_from_store_validate(tmp_path: Path, capsys, array) -> None:
    """An array whose ``zarr.json`` is not JSON (a truncated copy): ``store validate`` and
    ``store info`` name the array, exit 2, and print no traceback; reading the array from Python
    raises the same StoreError."""
    from bionas_bench.cli import main

    store = _small_store(tmp_path / "s.zarr", curves=["val_loss"], max_epochs=4)
    store.write_unit(0, **_unit(), curves={"val_loss": np.ones((3, 4))})
    (tmp_path / "s.zarr" / array / "zarr.json").write_text("{not json")
    for command in ("validate", "info"):  # info checks what it does not read, the curves
        assert main(["store", command, str(tmp_path / "s.zarr")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"is damaged: the metadata of array {array!r} cannot be read (JSONDecodeError" in err
    read = {
        "metrics/val_loss": lambda s: s.metric("val_loss"),
        "curves/val_loss": lambda s: s.curve("val_loss"),
    }
    with pytest.raises(StoreError, match=f"metadata of array {array!r}"):
        read.get(array, lambda s: s.done)(Store.open(tmp_path / "s.zarr"))


def test_a_damaged_chunk_prints_one_line_and_no_asyncio_noise(tmp_path: Path) -> None:
    """``store info`` on a store with one damaged chunk prints the one-line error and
    exits 2. zarr reads the other chunks of the array concurrently; left pending when the
    damaged one failed, they were destroyed at exit with hundreds of lines of asyncio
    tracebacks. One read at a time (zarr's ``async.concurrency``) keeps them pending long
    enough that the noise came every run instead of in about half of them."""
    import os
    import subprocess
    import sys

    store = make_synthetic_store(tmp_path / "s.zarr", complete=False)
    values = synthetic_values()
    done = np.ones(values["failed"].shape, dtype=bool)  # every chunk written, not packed
    store.write_block(
        metrics=values["metrics"], knowledge=values["knowledge"], failed=values["failed"], done=done
    )
    (tmp_path / "s.zarr" / "done" / "c" / "0" / "0").write_bytes(b"xyz")
    env = {**os.environ, "ZARR_ASYNC__CONCURRENCY": "1"}
    cmd = [sys.executable, "-m", "bionas_bench", "store", "info", str(tmp_path / "s.zarr")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[:2000]
    assert lines[0].startswith(
        f"bionas-bench store info: error: store {tmp_path / 's.zarr'} is damaged: array 'done'"
    )


def test_a_large_space_opens_reading_only_the_written_architectures(tmp_path: Path) -> None:
    """A store of the 1,166,400-architecture eclip space with a few units written opens in
    seconds: only the written architectures' chunks are read (one chunk lookup per
    architecture of the space took ~40 minutes), and the others read as not done / NaN."""
    store = Store.create(
        tmp_path / "big.zarr", space="bionas-eclip", num_replicates=2, metrics=["val_loss"],
        knowledge_sets=["motif"],
    )  # fmt: skip
    empty = Store.open(tmp_path / "big.zarr")
    assert not empty.done.any() and empty.done.shape == (1_166_400, 2)
    ids = [5, 700_001]
    for arch in ids:
        store.write_unit(arch, metrics={"val_loss": [0.5, arch / 1e6]}, knowledge={"motif": [1.0, 2.0]})
    opened = Store.open(tmp_path / "big.zarr")
    assert opened._written_archs().tolist() == ids
    assert np.flatnonzero(opened.done.any(axis=1)).tolist() == ids
    np.testing.assert_array_equal(opened.metric("val_loss")[ids], [[0.5, 5e-6], [0.5, 0.700001]])
    assert np.isnan(np.delete(opened.metric("val_loss"), ids, axis=0)).all()
    assert not opened.failed.any()


def test_a_handle_that_only_writes_holds_no_value_arrays(tmp_path: Path) -> None:
    """A farm worker's handle on a large space reads and holds only ``done`` (1 byte per
    architecture and replicate), not the float arrays (8 bytes each, one per metric and
    knowledge set: ~56 MB here, GBs at 20 replicates); a reader gets them on first use."""
    import tracemalloc

    path = tmp_path / "big.zarr"
    Store.create(
        path, space="bionas-eclip", num_replicates=2, metrics=["val_loss", "auroc"], knowledge_sets=["motif"]
    )
    tracemalloc.start()
    try:
        writer = Store.open(path, mode="r+")
        writer.write_unit(
            9, metrics={"val_loss": [0.5, 0.6], "auroc": [0.7, 0.8]}, knowledge={"motif": [1.0, 2.0]}
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6, peak  # done is 2.3 MB; the three float arrays would add 56 MB
    assert writer.done[9].all() and writer.done.sum() == 2
    np.testing.assert_array_equal(writer.metric("auroc")[9], [0.7, 0.8])  # read on first use
    reader = Store.open(path)
    np.testing.assert_array_equal(reader.knowledge("motif")[9], [1.0, 2.0])
    assert np.isnan(reader.metric("val_loss")[:9]).all()


def test_arrays_handed_out_are_read_only(synthetic_store: Store) -> None:
    """The oracle and the gold standard read the handle's cache: a caller editing an array
    it was given in place would silently change what they serve."""
    from bionas_bench.oracle import BootstrapOracle

    before = BootstrapOracle(synthetic_store, lam=0, seed=0).query(np.array([4])).loss
    arrays = [synthetic_store.metric("val_loss"), synthetic_store.knowledge("myc")]
    arrays += [synthetic_store.done, synthetic_store.failed]
    for array in arrays:
        with pytest.raises(ValueError, match="read-only"):
            array[0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        arrays[0] -= 1.0
    after = BootstrapOracle(synthetic_store, lam=0, seed=0).query(np.array([4])).loss
    np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------------- missing chunks
EMBEDDED = Path(__file__).resolve().parent.parent / "bionas_bench" / "stores" / "myc-mini.zarr"


def _copy_of_embedded(tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(EMBEDDED, tmp_path / "s.zarr")
    return tmp_path / "s.zarr"


def _validate_fails(path: Path, capsys: pytest.CaptureFixture[str], message: str) -> None:
    """``store validate`` and ``store info`` refuse ``path`` in one line matching ``message``."""
    for command in ("validate", "info"):
        assert cli.main(["store", command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err), err


@pytest.mark.parametrize("array", ["metrics/val_loss", "knowledge/myc", "done"])
def test_a_lost_chunk_of_a_packed_copy_is_reported_and_not_served(tmp_path: Path, capsys, array) -> None:
    """A packed copy's missing chunk read as its fill value (val_loss 0, nothing done) and the
    store was still 'valid'. Now validation names it, and reading falls back to the
    per-architecture arrays."""
    path = _copy_of_embedded(tmp_path)
    original = Store.open(EMBEDDED)
    (path / "packed" / array / "c" / "0" / "0").unlink()
    _validate_fails(
        path, capsys, f"is damaged: the chunk of the packed copy packed/{array} is missing; re-pack"
    )
    reopened = Store.open(path)
    assert reopened.done.all()
    np.testing.assert_array_equal(reopened.metric("val_loss"), original.metric("val_loss"))
    np.testing.assert_array_equal(reopened.knowledge("myc"), original.knowledge("myc"))


def test_a_copy_an_older_pack_left_unwritten_is_valid() -> None:
    """An older ``pack`` stored no chunk of a copy holding only its fill value: the embedded
    store's failed copy (nothing failed). Its per-architecture array stores none either,
    so nothing is lost."""
    assert not (EMBEDDED / "packed" / "failed" / "c").exists()
    Store.open(EMBEDDED).validate()


def test_a_lost_failed_chunk_of_a_packed_copy_is_reported(tmp_path: Path, capsys) -> None:
    """A packed failed copy whose per-architecture array records failures must have its chunk."""
    store = _small_store(tmp_path / "s.zarr")
    store.write_unit(5, **_unit(), failed=[False, True, False])
    store.pack()
    (tmp_path / "s.zarr" / "packed" / "failed" / "c" / "0" / "0").unlink()
    np.testing.assert_array_equal(Store.open(tmp_path / "s.zarr").failed[5], [False, True, False])
    _validate_fails(tmp_path / "s.zarr", capsys, "the chunk of the packed copy packed/failed is missing")


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("array", ["metrics/val_loss", "metrics/train_seconds", "knowledge/myc", "done"])
def test_a_lost_chunk_of_a_done_architecture_is_reported(tmp_path: Path, capsys, array, packed) -> None:
    store = _small_store(tmp_path / "s.zarr")
    for arch in (2, 3, 4):
        store.write_unit(arch, **_unit())
    if packed:
        store.pack()
    Store.open(tmp_path / "s.zarr").validate()
    (tmp_path / "s.zarr" / array / "c" / "3" / "0").unlink()
    if array == "done" and not packed:  # an architecture not done: nothing says it was
        Store.open(tmp_path / "s.zarr").validate()
        return
    reads = "not done" if array == "done" else "NaN"
    message = f"array '{array}' lacks the chunks of 1 architecture\\(s\\) with done replicates \\(3\\), "
    _validate_fails(tmp_path / "s.zarr", capsys, message + f"which would read as {reads}; re-create")


def test_chunks_that_hold_only_nan_need_not_be_stored(tmp_path: Path) -> None:
    """zarr stores no chunk of NaN: an architecture written done with every replicate failed
    and NaN values (one that cannot be built) is valid without chunks."""
    store = _small_store(tmp_path / "s.zarr")
    nan = np.full(3, np.nan)
    store.write_unit(
        8, metrics={"val_loss": nan, "train_seconds": nan}, knowledge={"myc": nan}, failed=[True] * 3
    )
    store.write_unit(9, **_unit(), failed=[False, True, False])
    assert not (tmp_path / "s.zarr" / "metrics" / "val_loss" / "c" / "8").exists()
    Store.open(tmp_path / "s.zarr").validate()
    store.pack()
    Store.open(tmp_path / "s.zarr").validate()


SPACE_WITH_IDENTITY = """
[space]
name = "conv-or-identity"
[[layers]]
name = "first"
[[layers.choices]]
name = "conv"
op = "conv1d"
params = { filters = 3, kernel_size = 8, activation = "relu", init = "glorot_uniform", padding = "valid" }
[[layers.choices]]
name = "identity"
op = "identity"
[[layers]]
name = "out"
[[layers.choices]]
name = "dense"
op = "dense"
params = { units = 3, activation = "relu" }
"""


def test_knowledge_of_an_architecture_without_filters_may_be_nan(tmp_path: Path) -> None:
    """Knowledge is scored on first-layer filters: an architecture without any has NaN
    knowledge (and no chunk) when it trained; one with filters must have a finite value."""
    (tmp_path / "space.toml").write_text(SPACE_WITH_IDENTITY)
    store = _small_store(tmp_path / "s.zarr", space=get_space(tmp_path / "space.toml"))
    assert store.space.arch_name(1) == "identity / dense"
    unit = _unit()
    unit["knowledge"]["myc"] = np.full(3, np.nan)
    store.write_unit(1, **unit)
    Store.open(tmp_path / "s.zarr").validate()
    unit["knowledge"]["myc"] = np.array([0.5, np.nan, 0.5])
    store.write_unit(0, **unit)
    message = (
        "is damaged: 1 done replicate\\(s\\) not marked failed have no finite knowledge myc \\(the first: "
        "architecture 0, replicate 1\\); a trained model has one"
    )
    with pytest.raises(StoreError, match=message):
        Store.open(tmp_path / "s.zarr").validate()


def test_a_trained_replicate_without_a_finite_loss_is_reported(tmp_path: Path, capsys) -> None:
    store = _small_store(tmp_path / "s.zarr")
    store.write_unit(
        4,
        metrics={"val_loss": [0.2, np.nan, 0.3], "train_seconds": [1, 2, 3]},
        knowledge=_unit()["knowledge"],
    )
    message = (
        "1 done replicate\\(s\\) not marked failed have no finite val_loss "
        "\\(the first: architecture 4, replicate 1\\)"
    )
    _validate_fails(tmp_path / "s.zarr", capsys, message)
    store.write_unit(
        4,
        metrics={"val_loss": [0.2, np.nan, 0.3], "train_seconds": [1, 2, 3]},
        knowledge=_unit()["knowledge"],
        failed=[False, True, False],
    )
    Store.open(tmp_path / "s.zarr").validate()  # marked failed: a NaN loss is allowed


def test_pack_writes_every_chunk_with_a_nan_fill(tmp_path: Path) -> None:
    """Packed float copies share the per-architecture arrays' NaN fill, and every copy's chunk
    is written even when it holds only the fill value (nothing failed, nothing done)."""
    import zarr

    store = _small_store(tmp_path / "s.zarr")
    store.pack()
    packed = zarr.open_group(str(tmp_path / "s.zarr" / "packed"), mode="r")
    for name in ("metrics/val_loss", "knowledge/myc", "failed", "done"):
        assert (tmp_path / "s.zarr" / "packed" / name / "c" / "0" / "0").is_file(), name
    assert np.isnan(packed["metrics/val_loss"].fill_value) and np.isnan(packed["knowledge/myc"].fill_value)
    Store.open(tmp_path / "s.zarr").validate()


def test_opening_the_embedded_store_reads_no_per_architecture_chunk(monkeypatch) -> None:
    """The fall-back to the per-architecture arrays costs a listing only where a packed copy
    reads as all fill (the embedded store's failed copy); it reads none of their chunks."""
    import bionas_bench.store as store_module

    calls = []
    real = store_module._read_rows
    monkeypatch.setattr(
        store_module, "_read_rows", lambda array, rows: calls.append(rows) or real(array, rows)
    )
    store = open_store()
    assert store.done.all() and not store.failed.any()
    assert all(rows is None or rows.size == 0 for rows in calls)


# ---------------------------------------------------------------------- attributes
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("knowledge", 5, "root attribute 'knowledge' must be a table \\(a JSON object\\), got 5"),
        ("provenance", "x", "root attribute 'provenance' must be a table \\(a JSON object\\), got 'x'"),
        ("dataset", [], "root attribute 'dataset' must be a table"),
        ("training", 1, "root attribute 'training' must be a table \\(a JSON object\\) or null, got 1"),
        (
            "metrics",
            "val_loss",
            "root attribute 'metrics' must be a list of metric names \\(strings\\), got 'val_loss'",
        ),
        ("knowledge_sets", [1], "root attribute 'knowledge_sets' must be a list of knowledge set names"),
        ("curves", ["../x"], "root attribute 'curves': curve name '../x' is invalid"),
        (
            "replicate_seeds",
            "12",
            "root attribute 'replicate_seeds' must be a list of whole numbers, got '12'",
        ),
    ],
)
def test_a_root_attribute_of_the_wrong_type_is_one_store_error(
    tmp_path: Path, capsys, key, value, message
) -> None:
    """A number where a table belongs raised AttributeError in ``store info`` and passed
    ``store validate``; a string of metrics was read letter by letter as arrays."""
    import json

    path = _copy_of_embedded(tmp_path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"][key] = value
    (path / "zarr.json").write_text(json.dumps(meta))
    fix = f"; correct it in {path}/zarr.json, or re-create or re-import the store"
    _validate_fails(path, capsys, f"store {path} is damaged: {message}.*{re.escape(fix)}")
    with pytest.raises(StoreError, match=message):
        Store.open(path)
    assert not _small_store(path, overwrite=True).done.any()  # the fix the message gives works


def test_create_refuses_attributes_of_the_wrong_type_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot create store .*root attribute 'knowledge' must be a table"):
        _small_store(tmp_path / "s.zarr", attrs={"knowledge": 5})
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize(
    ("inside", "why"),
    [("metrics", "its zarr.json has no schema_version"), ("metrics/val_loss", "it is an array")],
)
def test_a_folder_inside_a_store_is_not_a_store(tmp_path: Path, capsys, inside, why) -> None:
    """``store info S.zarr/metrics`` said 'schema_version None ... re-import the store'."""
    path = _copy_of_embedded(tmp_path)
    message = (
        f"{path / inside} is not the root of a bionas_bench store \\({why}\\); it lies inside the store "
        f"{path}: pass that folder"
    )
    _validate_fails(path / inside, capsys, message)


def test_a_group_that_is_no_store_says_what_to_pass(tmp_path: Path, capsys) -> None:
    """A sweep's cell (a Zarr group of its own) or another program's group."""
    import zarr

    zarr.open_group(str(tmp_path / "cells" / "random-lam0.zarr"), mode="w", zarr_format=3)
    message = (
        "random-lam0.zarr is not the root of a bionas_bench store .*; pass the folder of a store written by"
    )
    _validate_fails(tmp_path / "cells" / "random-lam0.zarr", capsys, message)
