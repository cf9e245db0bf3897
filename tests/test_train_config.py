"""Training manifests: the shipped ones load; unknown keys and bad values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bionas_bench.errors import ManifestError
from bionas_bench.train.config import load_training_config

SMOKE = (Path(__file__).parents[1] / "data_manifests/training/smoke.toml").read_text()


def test_shipped_manifests():
    pub = load_training_config("bionas-pub-myc")
    assert (pub.lr, pub.batch_size, pub.max_epochs, pub.patience, pub.replicates) == (1e-3, 500, 100, 5, 20)
    assert pub.resplit_per_replicate and (pub.n_train, pub.n_val) == (18000, 2000)
    assert pub.onehot_value == 2.0 and pub.per_filter_penalty == 0.01 and pub.device == "auto"
    assert len(set(pub.replicate_seeds)) == 20 and len(pub.manifest_sha256) == 64
    default = load_training_config("default")
    assert not default.resplit_per_replicate and default.onehot_value == 1.0 and default.evaluate_test
    assert load_training_config("smoke").replicates == 2


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("lr = 0.01", "lr = 0.01\nmomentum = 0.9", "unknown key"),
        ("lr = 0.01", "lr = -1.0", "lr must be > 0"),
        ("max_epochs = 2", "max_epochs = 0", "max_epochs must be >= 1"),
        ("count = 2", "count = 2\nseeds = [1, 1]", "distinct"),
        ('device = "cpu"', 'device = "tpu"', "device must be one of"),
        ("resplit_per_replicate = false", "resplit_per_replicate = true", "n_train"),
        ("onehot_value = 1.0", 'onehot_value = "one"', "onehot_value"),
        (
            "max_epochs = 2",
            "max_epoch = 2",
            "missing required key 'max_epochs' \\(it has 'max_epoch': misspelt\\?\\)",
        ),
    ],
)
def test_bad_manifests(tmp_path: Path, old: str, new: str, message: str):
    assert old in SMOKE
    path = tmp_path / "bad.toml"
    path.write_text(SMOKE.replace(old, new))
    with pytest.raises(ManifestError, match=message):
        load_training_config(path)


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ManifestError, match="bionas-pub-myc"):
        load_training_config("nope")
