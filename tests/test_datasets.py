"""Datasets from manifests: parsing, determinism, splits, cache, FASTA datasets, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bionas_bench.cli import main
from bionas_bench.data.datasets import build_dataset, find_bionas_pub_dir, list_datasets, load_dataset
from bionas_bench.data.fasta import write_fasta
from bionas_bench.errors import DataError, ManifestError

SIMULATED = """
description = "tiny test set"
type = "simulated"
seed = {seed}

[simulation]
length = 60
n_positive = 150
n_negative = 100
task = "multitask"

[[simulation.embed]]
motif = "MYC"
min = 0
max = 2
mean = 1.0

[[simulation.embed]]
motif = "CTCF"
min = 1
max = 1

[splits]
train = 0.6
validation = 0.2
test = 0.2

[motifs.MYC]
source = "jaspar"
id = "MA0147.3"

[motifs.CTCF]
source = "jaspar"
id = "MA0139.1"
release = "JASPAR2024"

[motif_sets]
myc = ["MYC"]
all = ["MYC", "CTCF"]
"""


def manifest(tmp_path: Path, text: str, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_simulated_dataset(tmp_path: Path):
    ds = build_dataset(manifest(tmp_path, SIMULATED.format(seed=1)))
    assert ds.name == "tiny"
    assert ds.codes.shape == (250, 60) and ds.codes.dtype == np.uint8
    assert ds.labels.shape == (250, 2) and ds.label_names == ("MYC", "CTCF")
    assert ds.labels[:150, 1].all() and not ds.labels[150:].any()
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sizes == {"train": 150, "validation": 50, "test": 50}
    assert np.array_equal(np.sort(np.concatenate(list(ds.splits.values()))), np.arange(250))
    assert [m.name for m in ds.motif_sets["all"]] == ["MYC", "CTCF"]
    assert ds.motif_sets["myc"][0].length == 12
    assert set(ds.ground_truth["motif"]) == {"MYC", "CTCF"}
    x = ds.onehot(ds.splits["test"], value=2.0)
    assert x.shape == (50, 60, 4) and set(np.unique(x)) <= {0.0, 2.0}
    with pytest.raises(ValueError):
        ds.codes[0, 0] = 1  # read-only, so the hash stays true


def test_deterministic_build_and_seed(tmp_path: Path):
    a = build_dataset(manifest(tmp_path, SIMULATED.format(seed=1), "a"))
    b = build_dataset(manifest(tmp_path, SIMULATED.format(seed=1), "b"))
    c = build_dataset(manifest(tmp_path, SIMULATED.format(seed=2), "c"))
    assert a.codes.tobytes() == b.codes.tobytes() and a.sha256 == b.sha256
    assert a.manifest_sha256 == b.manifest_sha256
    assert a.sha256 != c.sha256


def test_cache_roundtrip_is_atomic_and_verified(tmp_path: Path):
    path = manifest(tmp_path, SIMULATED.format(seed=1))
    ds = build_dataset(path, cache_dir=tmp_path / "cache")
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert files == ["tiny.json", "tiny.npz"]  # no temporary files left behind
    again = load_dataset(tmp_path / "cache" / "tiny.json")
    assert again.sha256 == ds.sha256
    assert again.ground_truth.equals(ds.ground_truth)
    assert np.array_equal(again.motif_sets["all"][1].pwm, ds.motif_sets["all"][1].pwm)
    meta = json.loads((tmp_path / "cache" / "tiny.json").read_text())
    meta["sha256"] = "0" * 64
    (tmp_path / "cache" / "tiny.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="sha256"):
        load_dataset(tmp_path / "cache" / "tiny.json")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('task = "multitask"', 'task = "multitask"\ncolour = 3', "unknown key"),
        ("length = 60", 'length = "long"', "'length' must be int"),
        ("train = 0.6", "train = 0.7", "sum to 1"),
        ('type = "simulated"', 'type = "magic"', "'type' must be one of"),
        ('myc = ["MYC"]', 'myc = ["MAX"]', "unknown motif"),
        ('motif = "CTCF"', 'motif = "IRF"', "not defined under"),
        ("max = 1\n", "max = 1\nfoo = 1\n", "unknown key"),
        ('id = "MA0139.1"', 'ids = ["MA0139.1", "MA0147.3"]', "exactly one"),
        ("length = 60", "length = 20", "lengthen"),
        ("seed = 1", "seed = -1", "'seed' must be an integer >= 0"),
    ],
)
def test_malformed_manifest(tmp_path: Path, old: str, new: str, message: str):
    text = SIMULATED.format(seed=1)
    assert old in text
    with pytest.raises(ManifestError, match=message):
        build_dataset(manifest(tmp_path, text.replace(old, new, 1)))


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["data", "show", "{bad}"], "dataset"),
        (["data", "build", "{bad}", "--out", "{tmp}/cache"], "dataset"),
        (["train", "--dataset", "{bad}", "--out", "{tmp}/s.zarr", "--dry-run"], "dataset"),
        (
            ["train", "--dataset", "myc-mini", "--training", "{bad}", "--out", "{tmp}/s.zarr", "--dry-run"],
            "training",
        ),
        (
            ["train", "--dataset", "myc-mini", "--space", "{bad}", "--out", "{tmp}/s.zarr", "--dry-run"],
            "space",
        ),
        (["sweep", "{bad}", "--out", "{tmp}/sweep"], "sweep"),
    ],
)
def test_a_manifest_that_is_not_utf8_is_one_line(tmp_path: Path, capsys, argv: list[str], kind: str):
    """A manifest that is not UTF-8 text raised UnicodeDecodeError with a traceback."""
    bad = tmp_path / "b.toml"
    bad.write_bytes(b"\xff\xfe")
    assert main([a.format(bad=bad, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.endswith(
        f"error: {kind} manifest {bad} is not UTF-8 text (byte 0 cannot be decoded); save it as UTF-8\n"
    )
    assert err.count("\n") == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["b.toml"]


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("n_positive = 150", "n_positive = -5", "non-negative counts"),
        ('task = "multitask"', 'task = "multitask"\nbackground = [-0.3, 0.5, 0.5, 0.3]', "summing to 1"),
        ("min = 0\nmax = 2", "min = 3\nmax = 2", "need 0 <= min (3) <= max (2)"),
        ("mean = 1.0", "mean = 1.0\nzero_prob = 1.5", "zero_prob must be in [0, 1], got 1.5"),
        ('task = "multitask"', 'task = "ternary"', "unknown task 'ternary'"),
        ("length = 60", "length = 5", "lengthen the sequences"),
    ],
)
def test_cli_show_refuses_what_build_refuses(tmp_path: Path, capsys, old: str, new: str, message: str):
    """``data show`` used to print (exit 0) a simulation that ``data build`` and ``train``
    refuse; now it refuses it with the same one line, before printing anything."""
    text = SIMULATED.format(seed=1)
    assert old in text
    path = manifest(tmp_path, text.replace(old, new, 1))
    assert main(["data", "show", str(path)]) == 2
    shown = capsys.readouterr()
    assert shown.out == "" and shown.err.count("\n") == 1 and message in shown.err
    assert main(["data", "build", str(path), "--out", str(tmp_path / "cache"), "--quiet"]) == 2
    built = capsys.readouterr().err
    assert shown.err.replace("data show", "data build") == built
    assert built.startswith(f"bionas-bench data build: error: dataset manifest {path}: ")


def fasta_manifest(tmp_path: Path, extra: str = "") -> Path:
    return manifest(
        tmp_path,
        f"""
type = "fasta"
[fasta]
positives = "pos.fa"
negatives = "neg.fa.gz"
label = "MYC"
{extra}
[splits]
mode = "per_replicate"
""",
        "fa",
    )


def test_fasta_dataset_relative_paths(tmp_path: Path):
    write_fasta(tmp_path / "pos.fa", np.zeros((3, 10), dtype=np.uint8))
    write_fasta(tmp_path / "neg.fa.gz", np.full((2, 10), 4, dtype=np.uint8))
    ds = build_dataset(fasta_manifest(tmp_path))
    assert ds.codes.shape == (5, 10)
    assert ds.labels[:, 0].tolist() == [1, 1, 1, 0, 0] and ds.label_names == ("MYC",)
    assert list(ds.splits) == ["all"] and ds.splits["all"].tolist() == [0, 1, 2, 3, 4]
    assert ds.ground_truth is None and ds.motif_sets == {}
    assert not ds.onehot([3]).any()


def test_cli_show_of_a_fasta_manifest_names_the_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["data", "show", str(fasta_manifest(tmp_path, "allow_mixed_lengths = true"))]) == 0
    out = capsys.readouterr().out
    assert "label:     'MYC' (1 for positives, 0 for negatives); records padded on the right with N" in out


def test_fasta_dataset_errors(tmp_path: Path):
    write_fasta(tmp_path / "pos.fa", np.zeros((3, 10), dtype=np.uint8))
    with pytest.raises(DataError, match=r"neg\.fa\.gz does not exist"):
        build_dataset(fasta_manifest(tmp_path))
    write_fasta(tmp_path / "neg.fa.gz", np.zeros((2, 12), dtype=np.uint8))
    with pytest.raises(DataError, match="allow_mixed_lengths"):
        build_dataset(fasta_manifest(tmp_path))
    ds = build_dataset(fasta_manifest(tmp_path, "allow_mixed_lengths = true"))
    assert ds.codes.shape == (5, 12) and ds.codes[0, 10:].tolist() == [4, 4]


def test_missing_bionas_pub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BIONAS_PUB_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="set BIONAS_PUB_DIR"):
        build_dataset("bionas-pub-myc")


def test_shipped_manifests_parse():
    names = dict(list_datasets())
    assert {"myc-single", "ctcf-irf-myc-multitask", "bionas-pub-myc"} <= set(names)
    assert all(names.values())


def test_bionas_pub_myc():
    if find_bionas_pub_dir() is None:
        pytest.skip("original BioNAS data not found (set BIONAS_PUB_DIR or place ../shared/bionas_pub)")
    ds = build_dataset("bionas-pub-myc")
    assert ds.codes.shape == (20_000, 200)
    assert ds.labels.sum() == 10_000
    assert [m.name for m in ds.motif_sets["myc"]] == ["MYC_known1"]
    assert ds.motif_sets["myc"][0].length == 14


def test_cli_list_build_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["data", "list"]) == 0
    assert "myc-single" in capsys.readouterr().out
    path = manifest(tmp_path, SIMULATED.format(seed=1))
    assert main(["data", "build", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "250 x 60 bp" in out and "sha256" in out
    assert (tmp_path / "out" / "tiny.npz").is_file()
    assert main(["data", "show", str(path)]) == 0
    assert "consensus" in capsys.readouterr().out
    assert main(["data", "build", str(tmp_path / "missing.toml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "building" not in err  # no progress bar for bad input
    (tmp_path / "a-file").write_text("x")
    assert main(["data", "build", str(path), "--out", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err
    assert "a-file is a file; give the path of a folder" in err and err.count("\n") == 1, err


def test_force_rebuilds_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A cache of the same manifest text is reused, unless --force."""
    path = manifest(tmp_path, SIMULATED.format(seed=1))
    cache = tmp_path / "out" / "tiny.json"
    assert main(["data", "build", str(path), "--out", str(tmp_path / "out")]) == 0
    assert "reused" not in capsys.readouterr().out
    cache.write_text(cache.read_text().replace('"description"', '"note": "old", "description"'))
    assert main(["data", "build", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert '"note": "old"' in cache.read_text()  # the cache of the same manifest is reused
    out = capsys.readouterr().out
    assert "reused: built before from the same manifest and files (--force rebuilds)" in out
    assert main(["data", "build", str(path), "--out", str(tmp_path / "out"), "--force", "--quiet"]) == 0
    assert '"note": "old"' not in cache.read_text() and "reused" not in capsys.readouterr().out


def test_an_edited_fasta_file_is_rebuilt_not_served_from_the_cache(tmp_path: Path):
    """The cache is keyed by the manifest's text and by the size and modification time of
    the files it names: a FASTA file edited behind an unchanged manifest is read again."""
    import os

    write_fasta(tmp_path / "pos.fa", np.zeros((3, 10), dtype=np.uint8))
    write_fasta(tmp_path / "neg.fa.gz", np.full((2, 10), 4, dtype=np.uint8))
    path = fasta_manifest(tmp_path)
    first = build_dataset(path, cache_dir=tmp_path / "cache")
    assert build_dataset(path, cache_dir=tmp_path / "cache").sha256 == first.sha256  # reused
    write_fasta(tmp_path / "pos.fa", np.ones((4, 10), dtype=np.uint8))
    os.utime(tmp_path / "pos.fa", ns=(1, 10**18))  # a modification time of its own, whatever the clock
    again = build_dataset(path, cache_dir=tmp_path / "cache")
    assert again.codes.shape == (6, 10) and again.sha256 != first.sha256
    assert load_dataset(tmp_path / "cache" / f"{again.name}.json").sha256 == again.sha256
