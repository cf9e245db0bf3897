"""BootstrapOracle: uniform and paired draws, modes, failed policy, streams, epochs, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SYNTHETIC_REPLICATES, synthetic_values
from scipy import stats

from bionas_bench import BootstrapOracle
from bionas_bench.errors import BionasError, OracleError, StoreError
from bionas_bench.store import Store

VALUES = synthetic_values()
LOSS = VALUES["metrics"]["val_loss"]
MYC = VALUES["knowledge"]["myc"]
FAILED = VALUES["failed"]


def test_draws_are_paired_rows(synthetic_store: Store) -> None:
    oracle = BootstrapOracle(synthetic_store, lam=0.5, seed=1)
    ids = np.random.default_rng(0).integers(0, 216, 20_000)
    res = oracle.query(ids)
    assert res.loss.shape == ids.shape and res.replicate.dtype == np.int64
    np.testing.assert_array_equal(res.arch, ids)
    np.testing.assert_array_equal(res.loss, LOSS[ids, res.replicate])
    np.testing.assert_array_equal(res.knowledge, MYC[ids, res.replicate])
    np.testing.assert_allclose(res.reward, -(res.loss + 0.5 * res.knowledge))
    np.testing.assert_array_equal(res.cost, VALUES["metrics"]["train_seconds"][ids, res.replicate])
    np.testing.assert_array_equal(res["accuracy"], 1.0 - res.loss)
    np.testing.assert_array_equal(res.metrics["n_params"], 100.0 + ids)
    np.testing.assert_array_equal(res.failed, FAILED[ids, res.replicate])
    # every way of reading "failed" gives the same booleans (a sweep records res["failed"])
    assert res["failed"].dtype == bool and res.to_dict()["failed"].dtype == bool
    np.testing.assert_array_equal(res["failed"], res.failed)


def test_draws_are_uniform_over_completed_replicates(synthetic_store: Store) -> None:
    oracle = BootstrapOracle(synthetic_store, seed=123)
    res = oracle.query(np.full(50_000, 10))
    counts = np.bincount(res.replicate, minlength=SYNTHETIC_REPLICATES)
    assert stats.chisquare(counts).pvalue > 0.001
    # pooled over architectures, per-arch replicate index is uniform as well
    res = oracle.query(np.tile(np.arange(216), 200))
    table = np.zeros((216, SYNTHETIC_REPLICATES), dtype=np.int64)
    np.add.at(table, (res.arch, res.replicate), 1)
    assert stats.chisquare(table.sum(axis=0)).pvalue > 0.001
    assert stats.chi2_contingency(table[:50]).pvalue > 0.001


def test_excluded_failed_replicates_never_drawn(synthetic_store: Store) -> None:
    oracle = BootstrapOracle(synthetic_store, seed=5, failed="exclude")
    ids = np.tile(np.arange(0, 216, 7), 500)  # the archs with a failed replicate 4
    res = oracle.query(ids)
    assert not res.failed.any() and not np.any(res.replicate == 4)
    counts = np.bincount(res.replicate, minlength=SYNTHETIC_REPLICATES)[:4]
    assert stats.chisquare(counts).pvalue > 0.001
    assert oracle.gold_standard().loc[0, "n_replicates"] == 4
    included = BootstrapOracle(synthetic_store, seed=5).query(ids)
    assert np.any(included.replicate == 4) and included.failed.any()


def test_same_seed_same_stream_and_scalar_equals_batch(synthetic_store: Store) -> None:
    ids = np.random.default_rng(9).integers(0, 216, 1_000)
    a = BootstrapOracle(synthetic_store, seed=42).query(ids)
    b = BootstrapOracle(synthetic_store, seed=42).query(ids)
    c = BootstrapOracle(synthetic_store, seed=43).query(ids)
    np.testing.assert_array_equal(a.replicate, b.replicate)
    assert np.any(a.replicate != c.replicate)
    scalar = BootstrapOracle(synthetic_store, seed=42)
    reps = [scalar.query(int(i)).replicate for i in ids]
    np.testing.assert_array_equal(reps, a.replicate)


def test_scalar_query_gives_scalars(synthetic_store: Store) -> None:
    oracle = BootstrapOracle(synthetic_store, seed=0)
    for arch in (3, np.int64(3), np.array(3)):
        res = oracle.query(arch)
        assert np.ndim(res.loss) == 0 and np.ndim(res.replicate) == 0 and int(res.arch) == 3
        assert res.loss == LOSS[3, int(res.replicate)]
        assert res["accuracy"] == pytest.approx(1.0 - float(res.loss))
    assert set(oracle.query(5).to_dict()) >= {"arch", "reward", "cost", "val_loss", "failed"}


def test_fixed_mode_reuses_replicate_per_trial(synthetic_store: Store) -> None:
    oracle = BootstrapOracle(synthetic_store, seed=3, replicate="fixed")
    first = oracle.query(np.repeat(np.arange(216), 3)).replicate.reshape(216, 3)
    assert (first == first[:, :1]).all()
    assert len(set(first[:, 0].tolist())) > 1  # archs get different replicates
    oracle.new_trial()
    again = oracle.query(np.arange(216)).replicate
    assert np.any(again != first[:, 0])
    assert int(oracle.query(17).replicate) == again[17]
    children = oracle.spawn(2)
    assert np.any(children[0].query(np.arange(216)).replicate != children[1].query(np.arange(216)).replicate)


def test_given_replicate_and_median_modes(synthetic_store: Store) -> None:
    res = BootstrapOracle(synthetic_store, replicate=2).query(np.arange(216))
    np.testing.assert_array_equal(res.replicate, 2)
    np.testing.assert_array_equal(res.loss, LOSS[:, 2])
    med = BootstrapOracle(synthetic_store, replicate="median", lam=2.0).query(np.array([0, 46]))
    np.testing.assert_array_equal(med.replicate, -1)
    np.testing.assert_allclose(med.loss, np.median(LOSS[[0, 46]], axis=1))
    np.testing.assert_allclose(med.reward, -(med.loss + 2.0 * np.median(MYC[[0, 46]], axis=1)))
    assert float(BootstrapOracle(synthetic_store, replicate="median").query(46).loss) == pytest.approx(
        np.median(LOSS[46])
    )
    with pytest.raises(OracleError, match="replicate 4.*excluded"):
        BootstrapOracle(synthetic_store, replicate=4, failed="exclude").query(np.array([1, 7]))


def test_epoch_queries(synthetic_store: Store) -> None:
    oracle = BootstrapOracle(synthetic_store, seed=0, replicate=1)  # replicate 1 trained 9 epochs
    res = oracle.query(np.array([4, 5]), epoch=3)
    np.testing.assert_allclose(res.loss, LOSS[[4, 5], 1] + 0.01 * (9 - 3), rtol=1e-6)
    np.testing.assert_allclose(res.cost, (10.0 + np.array([4, 5]) + 1) * 3 / 9)
    np.testing.assert_allclose(res.reward, -(res.loss + res.knowledge))
    late = oracle.query(4, epoch=10)  # after early stop: last finite value, cost of 9 epochs
    assert float(late.loss) == pytest.approx(LOSS[4, 1], rel=1e-6)
    assert float(late.cost) == pytest.approx(10.0 + 4 + 1)
    per_id = oracle.query(np.array([4, 4]), epoch=np.array([1, 9]))
    assert per_id.loss[0] > per_id.loss[1]
    fix = r"epochs 1..10 \(a multi-fidelity controller: create it with max_epochs=10 or less\)"
    with pytest.raises(OracleError, match=fix):
        oracle.query(4, epoch=11)
    with pytest.raises(OracleError, match="curve 'train_loss'"):
        BootstrapOracle(synthetic_store, loss_curve="train_loss").query(4, epoch=1)


def test_gold_standard(synthetic_store: Store) -> None:
    gold = BootstrapOracle(synthetic_store, lam=1.0).gold_standard()
    assert gold.index.name == "arch" and len(gold) == 216
    assert gold.loc[0, "loss_rank"] == 1.0 and gold.loc[215, "knowledge_rank"] == 1.0
    np.testing.assert_allclose(gold["loss"], np.median(LOSS, axis=1))
    np.testing.assert_allclose(gold["objective"], np.median(LOSS, axis=1) + np.median(MYC, axis=1))
    # objective = 0.1 + 0.02 + 0.5 + 0.06 - 0.001 a: decreasing in a
    assert gold["objective_rank"].idxmin() == 215
    assert gold.loc[46, "name"] == "conv1d_f3_k14 / identity / sfc / dense_u10"
    assert (gold["n_replicates"] == 5).all()
    assert gold.attrs["knowledge"] == "myc"


def test_gold_standard_ties_are_averaged(tmp_path: Path) -> None:
    store = Store.create(
        tmp_path / "t.zarr",
        space="bionas-conv1d",
        num_replicates=1,
        metrics=["val_loss"],
        knowledge_sets=["k"],
    )
    loss = np.ones((216, 1))
    loss[:2] = 0.5
    store.write_block(
        metrics={"val_loss": loss},
        knowledge={"k": np.zeros((216, 1))},
        failed=np.zeros((216, 1), bool),
        done=np.ones((216, 1), bool),
    )
    gold = BootstrapOracle(store).gold_standard()
    assert gold.loc[0, "loss_rank"] == gold.loc[1, "loss_rank"] == 1.5
    assert (gold["knowledge_rank"] == 108.5).all()


def test_knowledge_choice(synthetic_store: Store) -> None:
    masked = BootstrapOracle(synthetic_store, knowledge="myc_masked", replicate=0).query(np.arange(3))
    np.testing.assert_allclose(masked.knowledge, MYC[:3, 0] + 0.1)
    with pytest.raises(StoreError, match="no knowledge set 'ctcf'.*myc_masked"):
        BootstrapOracle(synthetic_store, knowledge="ctcf")
    with pytest.raises(StoreError, match="no metric 'test_loss'"):
        BootstrapOracle(synthetic_store, loss="test_loss")


@pytest.mark.parametrize("lam", [-0.1, float("nan"), float("inf"), "x", "1", True, None])
def test_bad_lam(synthetic_store: Store, lam: object) -> None:
    with pytest.raises(OracleError, match="lam"):
        BootstrapOracle(synthetic_store, lam=lam)


@pytest.mark.parametrize("seed", [-1, 2.5, "7", None, True])
def test_bad_seed(synthetic_store: Store, seed: object) -> None:
    """An explicit integer seed or a Generator; None (OS entropy) would make runs unrepeatable."""
    with pytest.raises(
        OracleError, match="BootstrapOracle: seed must be an integer >= 0 or a numpy Generator"
    ):
        BootstrapOracle(synthetic_store, seed=seed)


def test_bad_settings_and_ids(synthetic_store: Store) -> None:
    with pytest.raises(OracleError, match="mode"):
        BootstrapOracle(synthetic_store, replicate="best")
    with pytest.raises(OracleError, match="out of range"):
        BootstrapOracle(synthetic_store, replicate=5)
    with pytest.raises(OracleError, match="policy"):
        BootstrapOracle(synthetic_store, failed="drop")
    oracle = BootstrapOracle(synthetic_store)
    for bad in (216, -1, np.array([0, 300]), np.array([-2, 3])):
        with pytest.raises(OracleError, match="out of range.*0..215"):
            oracle.query(bad)
    with pytest.raises(BionasError, match="integers"):
        oracle.query(np.array([0.5]))
    assert oracle.query(np.array([1.0, 2.0])).loss.shape == (2,)
    assert oracle.query(np.array([], dtype=np.int64)).loss.shape == (0,)


def test_empty_store_and_empty_arch(tmp_path: Path) -> None:
    store = Store.create(
        tmp_path / "e.zarr",
        space="bionas-conv1d",
        num_replicates=2,
        metrics=["val_loss"],
        knowledge_sets=["k"],
    )
    with pytest.raises(StoreError, match="no completed trainings"):
        BootstrapOracle(store)
    store.write_unit(3, metrics={"val_loss": [0.1, 0.2]}, knowledge={"k": [1.0, 2.0]}, failed=[True, True])
    oracle = BootstrapOracle(store)
    assert oracle.query(3).loss in (0.1, 0.2)
    assert np.isnan(oracle.query(3).cost)  # no train_seconds in this store
    with pytest.raises(OracleError, match="architecture 4 .*no replicate usable"):
        oracle.query(np.array([3, 4]))
    with pytest.raises(OracleError, match="architecture 4"):
        oracle.query(4)
    excluded = BootstrapOracle(store, failed="exclude")
    with pytest.raises(OracleError, match="architecture 3 .*excluded"):
        excluded.query(3)
    gold = excluded.gold_standard()
    assert gold["loss_rank"].isna().all() and (gold["n_replicates"] == 0).all()
    fixed = BootstrapOracle(store, replicate="fixed")
    with pytest.raises(OracleError, match="architecture 5"):
        fixed.query(5)


def test_epoch_query_serves_the_best_loss_so_far(tmp_path: Path) -> None:
    """A curve that rises after its best epoch (early stopping's patience): epoch e serves
    the lowest loss of epochs 1..e, so the last epoch serves the final (restored) loss."""
    store = Store.create(
        tmp_path / "c.zarr",
        space="bionas-conv1d",
        num_replicates=1,
        metrics=["val_loss", "epochs"],
        knowledge_sets=["k"],
        curves=["val_loss"],
        max_epochs=5,
    )
    curve = np.array([[0.5, 0.3, 0.35, 0.4]])
    store.write_unit(
        0, metrics={"val_loss": [0.3], "epochs": [4]}, knowledge={"k": [1.0]}, curves={"val_loss": curve}
    )
    oracle = BootstrapOracle(store, replicate=0)
    served = [float(oracle.query(0, epoch=e).loss) for e in range(1, 6)]
    np.testing.assert_allclose(served, [0.5, 0.3, 0.3, 0.3, 0.3], rtol=1e-6)
    assert served[-1] == pytest.approx(float(oracle.query(0).loss), rel=1e-6)


def test_replicates_without_values_are_never_served(tmp_path: Path) -> None:
    """A diverged training (failed, NaN metrics) is not served even with failed="include";
    a NaN knowledge only matters when lam > 0; at lam = 0 the reward is -loss."""
    store = Store.create(
        tmp_path / "n.zarr",
        space="bionas-conv1d",
        num_replicates=3,
        metrics=["val_loss"],
        knowledge_sets=["k"],
    )
    nan = float("nan")
    store.write_unit(
        0, metrics={"val_loss": [0.2, nan, 0.4]}, knowledge={"k": [1.0, nan, nan]}, failed=[0, 1, 0]
    )
    store.write_unit(1, metrics={"val_loss": [0.1, 0.1, 0.1]}, knowledge={"k": [1.0, 1.0, 1.0]})
    ids = np.zeros(200, dtype=np.int64)
    res = BootstrapOracle(store, lam=1.0, seed=0).query(ids)
    assert set(res.replicate.tolist()) == {0} and np.isfinite(res.reward).all()
    gold = BootstrapOracle(store, lam=1.0).gold_standard()
    assert gold.loc[0, "n_replicates"] == 1 and gold.loc[0, "objective"] == pytest.approx(1.2)
    at_zero = BootstrapOracle(store, lam=0.0, seed=0)
    res0 = at_zero.query(ids)
    assert set(res0.replicate.tolist()) == {0, 2}
    np.testing.assert_array_equal(res0.reward, -res0.loss)
    assert at_zero.gold_standard().loc[0, "objective"] == pytest.approx(0.3)
    median = BootstrapOracle(store, replicate="median")
    for bad in (2, np.array([1, 2])):
        with pytest.raises(OracleError, match="architecture 2 "):
            median.query(bad)
    np.testing.assert_allclose(median.query(np.array([1, 1], dtype=np.uint8)).loss, [0.1, 0.1])
    np.testing.assert_allclose(BootstrapOracle(store).query(np.array([1], dtype=np.uint16)).loss, [0.1])
