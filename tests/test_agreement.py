"""Agreement of two stores: Spearman of per-architecture medians (``store compare``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import synthetic_values

from bionas_bench.agreement import compare_stores
from bionas_bench.cli import main
from bionas_bench.errors import StoreError
from bionas_bench.store import Store


def _store(path, loss, myc, done=None, space="bionas-conv1d"):
    """A store of ``loss`` / knowledge ``myc`` ``[arch, replicate]``, done where ``done``."""
    store = Store.create(
        path,
        space=space,
        num_replicates=loss.shape[1],
        metrics=["val_loss"],
        knowledge_sets=["myc"],
        curves=[],
        max_epochs=1,
        max_filters=3,
        max_width=20,
    )
    done = np.ones(loss.shape, dtype=bool) if done is None else done
    store.write_block(
        metrics={"val_loss": loss}, knowledge={"myc": myc}, failed=np.zeros(loss.shape, bool), done=done
    )
    return Store.open(path)


@pytest.fixture
def base():
    values = synthetic_values()
    return values["metrics"]["val_loss"], values["knowledge"]["myc"]


def test_a_store_agrees_with_a_monotone_transform_of_itself(tmp_path, synthetic_store, base):
    loss, myc = base
    other = _store(tmp_path / "b.zarr", np.log(loss) * 3 + 1, np.exp(myc))
    loss_row, knowledge_row = compare_stores(synthetic_store, other)
    assert loss_row.quantity == "loss" and knowledge_row.quantity == "knowledge"
    assert loss_row.n == knowledge_row.n == 216
    assert loss_row.rho == pytest.approx(1.0) and knowledge_row.rho == pytest.approx(1.0)
    assert loss_row.best_a == loss_row.best_b == 0  # loss grows with the arch id
    assert knowledge_row.best_a == knowledge_row.best_b == 215  # knowledge falls with it
    assert loss_row.best_a_rank_in_b == loss_row.best_b_rank_in_a == 1.0


def test_reversed_order_and_known_ranks(tmp_path, synthetic_store, base):
    loss, myc = base
    other = _store(tmp_path / "b.zarr", -loss, -myc)
    loss_row, knowledge_row = compare_stores(synthetic_store, other)
    assert loss_row.rho == pytest.approx(-1.0) and knowledge_row.rho == pytest.approx(-1.0)
    assert loss_row.best_b == 215 and loss_row.best_a_rank_in_b == 216.0
    assert loss_row.p_value < 1e-12


def test_medians_over_done_replicates_only(tmp_path, synthetic_store, base):
    """Undone replicates never count: one wild replicate left undone changes nothing."""
    loss, myc = base
    wild = loss.copy()
    wild[:, -1] = np.random.default_rng(0).permutation(216)[:, None].ravel() * 100.0
    done = np.ones(loss.shape, dtype=bool)
    done[:, -1] = False
    other = _store(tmp_path / "b.zarr", wild, myc, done=done)
    assert compare_stores(synthetic_store, other)[0].rho == pytest.approx(1.0)


def test_only_architectures_done_in_both_count(tmp_path, synthetic_store, base):
    loss, myc = base
    done = np.zeros(loss.shape, dtype=bool)
    done[10:20, :2] = True  # 10 architectures, 2 replicates each
    other = _store(tmp_path / "b.zarr", loss, myc, done=done)
    row = compare_stores(synthetic_store, other)[0]
    assert row.n == 10 and row.best_a == row.best_b == 10


@pytest.mark.parametrize(("archs", "expected"), [(3, 1 / 3), (4, 1 / 12), (5, 1 / 60)])
def test_few_architectures_get_the_exact_p_value(tmp_path, synthetic_store, base, archs, expected):
    """A perfect correlation of n architectures is reached by 2 of the n! pairings (rho = +-1):
    p = 2 / n!, not the t-approximation's 0."""
    loss, myc = base
    done = np.zeros(loss.shape, dtype=bool)
    done[:archs] = True
    other = _store(tmp_path / "b.zarr", loss, myc, done=done)
    row = compare_stores(synthetic_store, other)[0]
    assert row.n == archs and row.rho == pytest.approx(1.0)
    assert row.p_value == pytest.approx(expected)


def test_too_few_common_architectures_is_an_error(tmp_path, synthetic_store, base):
    loss, myc = base
    done = np.zeros(loss.shape, dtype=bool)
    done[:2] = True
    other = _store(tmp_path / "b.zarr", loss, myc, done=done)
    with pytest.raises(StoreError, match=r"2 architectures with a median loss in both stores; at least"):
        compare_stores(synthetic_store, other)


def test_different_spaces_and_unknown_names_are_errors(tmp_path, synthetic_store):
    with pytest.raises(StoreError, match="no metric 'test_loss'"):
        compare_stores(synthetic_store, synthetic_store, loss="test_loss")
    with pytest.raises(StoreError, match="no knowledge set 'ctcf'"):
        compare_stores(synthetic_store, synthetic_store, knowledge="ctcf")
    path = tmp_path / "eclip.zarr"
    eclip = Store.create(path, space="bionas-eclip", num_replicates=1, metrics=["loss"], knowledge_sets=[])
    with pytest.raises(StoreError, match="different model spaces"):
        compare_stores(synthetic_store, eclip)


def test_cli_table_json_and_bad_input(tmp_path, synthetic_store_path, capsys):
    path = str(synthetic_store_path)
    assert main(["store", "compare", path, path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"A  {path} (all done replicates)\n")
    assert "loss       val_loss                 216     1.000" in out
    assert "knowledge  myc" in out
    argv = ["store", "compare", path, path, "--knowledge", "myc", "--knowledge-b", "myc_masked", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["quantity"] for r in rows] == ["loss", "knowledge"]
    assert rows[1]["name_b"] == "myc_masked" and rows[1]["rho"] == pytest.approx(1.0)
    assert main(["store", "compare", path, str(tmp_path / "missing.zarr")]) == 2
    assert "missing.zarr" in capsys.readouterr().err


def test_replicate_subsets_form_the_medians(tmp_path, synthetic_store, base):
    """Replicate 4 is reversed; one replicate vs the others, on either side, sees it."""
    loss, myc = base
    flipped = loss.copy()
    flipped[:, 4] = -flipped[:, 4]
    other = _store(tmp_path / "b.zarr", flipped, myc)
    assert compare_stores(other, synthetic_store, replicates_a=[4])[0].rho == pytest.approx(-1.0)
    assert compare_stores(synthetic_store, other, replicates_b=[0, 1, 2, 3])[0].rho == pytest.approx(1.0)
    with pytest.raises(StoreError, match=r"replicates \[5\] of store .*: give indices in 0..4"):
        compare_stores(synthetic_store, other, replicates_a=[5])
    for bad in ([0.7], [True]):  # not truncated to 0, not read as 1
        with pytest.raises(StoreError, match=r"must be integer indices in 0..4"):
            compare_stores(synthetic_store, other, replicates_a=bad)
    by_path = compare_stores(tmp_path / "b.zarr", synthetic_store.location, replicates_a=[4])
    assert by_path[0].rho == pytest.approx(-1.0)  # paths are opened as the CLI does


def test_cli_replicate_options(synthetic_store_path, capsys):
    path = str(synthetic_store_path)
    assert main(["store", "compare", path, path, "--replicates-a", "0", "--replicates-b", "1-4"]) == 0
    out = capsys.readouterr().out
    assert "val_loss                 216     1.000" in out
    assert f"A  {path} (replicates 0)\nB  {path} (replicates 1-4)\n" in out  # the header says which
    assert main(["store", "compare", path, path, "--replicates-b", "7"]) == 2
    err = capsys.readouterr().err
    assert "--replicates-b" in err and "has 5 replicates" in err
