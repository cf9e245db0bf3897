"""Batched replicate training equals training each replicate alone; early stopping, splits, metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from bionas_bench.errors import TrainingError
from bionas_bench.space import get_space
from bionas_bench.train import batched
from bionas_bench.train.batched import TrainData, make_splits, resolve_device, train_unit
from bionas_bench.train.config import load_training_config
from bionas_bench.train.farm import determinism
from bionas_bench.train.metrics import accuracy, auroc, average_precision

SPACE = get_space("bionas-conv1d")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


N, L = 200, 50
SPLITS = {"train": np.arange(0, 120), "validation": np.arange(120, 160), "test": np.arange(160, 200)}
ARCHS = {
    "conv1d": SPACE.id_of("conv1d_f3_k8 / maxpool / flatten / dense_u3"),
    "regconv2d+sfc": SPACE.id_of("regconv2d_f3_k8 / identity / sfc / dense_u10"),
}
#: float64: replicate-batched and single runs agree to rounding; float32 to float32 rounding.
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


#: the GPU too, where there is one (a GPU session: tools/gpu_session.sh)
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")),
]


def _toy(dtype: torch.dtype, device: str = "cpu") -> TrainData:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(N, L)).astype(np.uint8)
    labels = rng.integers(0, 2, size=(N, 1)).astype(np.uint8)
    codes[labels[:, 0] == 1, 20:26] = [1, 0, 1, 3, 2, 1]  # CACGTG in positives
    codes[5, 3] = 4  # an N
    return TrainData.from_arrays(codes, labels, onehot_value=1.0, device=torch.device(device), dtype=dtype)


def _config(dtype: str, **changes):
    base = load_training_config("smoke")
    return dataclasses.replace(base, **{"dtype": dtype, "max_epochs": 3, "batch_size": 32, **changes})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", sorted(ARCHS))
def test_batched_equals_each_replicate_alone(kind: str, dtype: str, device: str):
    config = _config(dtype)
    data = _toy(getattr(torch, dtype), device)
    seeds = [11, 12, 13]

    def train(unit_seeds):
        with determinism(True, torch.device(device)):
            plan = make_splits(SPLITS, N, config, unit_seeds)
            return train_unit(SPACE, ARCHS[kind], data, plan, config, unit_seeds)

    together = train(seeds)
    for i, seed in enumerate(seeds):
        alone = train([seed])
        for name in ("val_loss", "test_loss", "auroc", "aupr", "accuracy", "epochs", "n_params"):
            np.testing.assert_allclose(
                alone.metrics[name][0], together.metrics[name][i], rtol=0, atol=TOLERANCE[dtype], err_msg=name
            )
        for name, curve in alone.curves.items():
            np.testing.assert_allclose(
                curve[0], together.curves[name][i], atol=TOLERANCE[dtype], err_msg=name
            )
        np.testing.assert_allclose(alone.filters[0], together.filters[i], atol=TOLERANCE[dtype])
    assert not np.allclose(together.filters[0], together.filters[1])  # replicates differ


def test_early_stopping_is_per_replicate_and_restores_the_best():
    config = _config("float64", max_epochs=12, patience=1, lr=0.05)
    data = _toy(torch.float64)
    seeds = [0, 1, 2, 3]
    res = train_unit(SPACE, ARCHS["conv1d"], data, make_splits(SPLITS, N, config, seeds), config, seeds)
    epochs = res.metrics["epochs"]
    assert len(set(epochs.tolist())) > 1, "replicates should stop at different epochs"
    for i in range(len(seeds)):
        ran = int(epochs[i])
        curve = res.curves["val_loss"][i]
        assert np.isfinite(curve[:ran]).all() and np.isnan(curve[ran:]).all()
        # restored best weights: the final validation loss is the best of the curve
        assert res.metrics["val_loss"][i] == pytest.approx(np.nanmin(curve), abs=1e-12)
    assert not res.failed.any()


def test_non_finite_training_is_recorded_as_failure():
    data = _toy(torch.float64)
    data.labels[:] = float("nan")
    config = _config("float64")
    res = train_unit(SPACE, ARCHS["conv1d"], data, make_splits(SPLITS, N, config, [0, 1]), config, [0, 1])
    assert res.failed.all()
    assert np.isnan(res.metrics["val_loss"]).all() and np.isnan(res.filters).all()
    assert (res.metrics["epochs"] == 1).all()


def test_divergence_after_a_finite_epoch_keeps_the_best_weights(monkeypatch):
    """A replicate that diverges in its third epoch is a failure evaluated at its best
    epoch (restored weights, as the original's best-weights checkpoint); the others are
    untouched."""
    data = _toy(torch.float64)
    config = _config("float64", max_epochs=6, patience=10)
    seeds = [0, 1, 2]
    plan = make_splits(SPLITS, N, config, seeds)
    clean = train_unit(SPACE, ARCHS["conv1d"], data, plan, config, seeds)

    epochs_done = []
    project = batched._project_masked

    def poison(net, params, active):  # after two epochs, replicate 1's weights turn NaN
        project(net, params, active)
        if len(epochs_done) == 2:
            with torch.no_grad():
                params[0][1].fill_(float("nan"))

    monkeypatch.setattr(batched, "_project_masked", poison)
    res = train_unit(
        SPACE, ARCHS["conv1d"], data, plan, config, seeds, on_epoch=lambda e, n: epochs_done.append(e)
    )
    assert res.failed.tolist() == [False, True, False]
    assert res.metrics["epochs"][1] == 3
    curve = res.curves["val_loss"][1]
    assert np.isfinite(curve[:2]).all() and np.isnan(curve[2])
    assert res.metrics["val_loss"][1] == pytest.approx(np.nanmin(curve[:2]), abs=1e-12)
    assert np.isfinite(res.filters[1]).all()
    for name in ("val_loss", "auroc", "accuracy"):
        np.testing.assert_array_equal(res.metrics[name][[0, 2]], clean.metrics[name][[0, 2]])


def test_resplit_per_replicate_is_seeded_disjoint_and_keeps_test_out():
    config = dataclasses.replace(load_training_config("bionas-pub-myc"), n_train=100, n_val=40)
    splits = {"all": np.arange(N)}
    plan = make_splits(splits, N, config, [1, 2])
    assert plan.train.shape == (2, 100) and plan.val.shape == (2, 40) and plan.test is None
    for r in range(2):
        assert not set(plan.train[r]) & set(plan.val[r])
    assert not np.array_equal(plan.train[0], plan.train[1])
    again = make_splits(splits, N, config, [2])
    np.testing.assert_array_equal(again.train[0], plan.train[1])
    with_test = make_splits({"all": np.arange(N), "test": np.arange(180, 200)}, N, config, [1])
    assert with_test.train.max() < 180 and with_test.val.max() < 180
    with pytest.raises(TrainingError, match="n_train"):
        make_splits(splits, N, dataclasses.replace(config, n_train=190), [1])
    with pytest.raises(TrainingError, match="no 'train' split"):
        make_splits(splits, N, load_training_config("smoke"), [1])


def test_onehot_encoding_value_and_n():
    data = TrainData.from_arrays(
        np.array([[0, 1, 2, 3, 4]], dtype=np.uint8),
        np.zeros((1, 1)),
        onehot_value=2.0,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    x, _ = data.batch(torch.zeros(1, 1, dtype=torch.long))
    expected = torch.zeros(4, 5)
    expected[[0, 1, 2, 3], [0, 1, 2, 3]] = 2.0
    assert torch.equal(x[0, 0], expected)


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=(2, 80, 2))
    probs = np.round(rng.random((2, 80, 2)), 1)  # ties
    for r in range(2):
        auc = np.mean([roc_auc_score(labels[r, :, t], probs[r, :, t]) for t in range(2)])
        ap = np.mean([average_precision_score(labels[r, :, t], probs[r, :, t]) for t in range(2)])
        assert auroc(probs, labels)[r] == pytest.approx(auc)
        assert average_precision(probs, labels)[r] == pytest.approx(ap)
        assert accuracy(probs, labels)[r] == pytest.approx(np.mean((probs[r] > 0.5) == labels[r]))
    assert np.isnan(auroc(probs, np.zeros_like(labels))).all()
    diverged = probs.copy()
    diverged[1, 5, 0] = np.nan  # one replicate with a non-finite prediction: NaN from every metric
    for metric in (auroc, average_precision, accuracy):
        got = metric(diverged, labels)
        assert got[0] == pytest.approx(metric(probs, labels)[0]) and np.isnan(got[1]), metric.__name__


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA"):
            resolve_device("cuda")
