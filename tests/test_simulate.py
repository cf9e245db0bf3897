"""The simulator: determinism, ground truth, counts, background composition."""

from __future__ import annotations

import numpy as np
import pytest

from bionas_bench.data.fasta import decode
from bionas_bench.data.motifs import Motif
from bionas_bench.data.simulate import Embedding, SimulationConfig, place_instances, simulate
from bionas_bench.errors import DataError


def sharp(name: str, consensus: str, eps: float = 1e-9) -> Motif:
    """A near-deterministic PWM: every sample equals the consensus."""
    pwm = np.full((len(consensus), 4), eps)
    pwm[np.arange(len(consensus)), ["ACGT".index(c) for c in consensus]] = 1.0
    return Motif(name, pwm)


def revcomp(s: str) -> str:
    return s[::-1].translate(str.maketrans("ACGT", "TGCA"))


A = sharp("A", "GGGCCCATTTAG")
B = sharp("B", "CCACGTGG")


def config(seed: int = 3, **kw) -> SimulationConfig:
    base = dict(
        length=100,
        n_positive=400,
        n_negative=300,
        embeddings=(Embedding(A, 0, 3, 1.0, 0.1), Embedding(B, 1, 2, 1.5)),
        task="multitask",
        seed=seed,
    )
    base.update(kw)
    return SimulationConfig(**base)


def test_deterministic_and_seed_sensitive():
    a, b, c = simulate(config(1)), simulate(config(1)), simulate(config(2))
    assert a.codes.tobytes() == b.codes.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.ground_truth.equals(b.ground_truth)
    assert a.codes.tobytes() != c.codes.tobytes()


def test_ground_truth_matches_sequences():
    sim = simulate(config())
    assert sim.codes.dtype == np.uint8 and sim.codes.shape == (700, 100)
    motifs = {"A": A.consensus, "B": B.consensus}
    gt = sim.ground_truth
    assert set(gt["strand"]) == {"+", "-"}
    for row in gt.itertuples():
        text = decode(sim.codes[row.sequence, row.start : row.end])
        expected = motifs[row.motif] if row.strand == "+" else revcomp(motifs[row.motif])
        assert text == expected
    # non-overlapping within a sequence, inside the sequence
    g = gt.sort_values(["sequence", "start"])
    same = g["sequence"].to_numpy()[1:] == g["sequence"].to_numpy()[:-1]
    assert not np.any(same & (g["start"].to_numpy()[1:] < g["end"].to_numpy()[:-1]))
    assert gt["start"].min() >= 0 and gt["end"].max() <= 100
    # only positives hold instances
    assert gt["sequence"].max() < 400


def test_counts_respect_bounds_and_labels():
    sim = simulate(config())
    gt = sim.ground_truth
    counts = gt.groupby(["sequence", "motif"], observed=False).size().unstack(fill_value=0)
    counts = counts.reindex(range(400), fill_value=0)
    assert counts["A"].between(0, 3).all() and counts["B"].between(1, 2).all()
    np.testing.assert_array_equal(sim.labels[:400], (counts[["A", "B"]].to_numpy() > 0).astype(np.uint8))
    assert not sim.labels[400:].any()
    assert sim.label_names == ("A", "B")


def test_count_distribution():
    e = Embedding(A, 0, 3, 1.0, 0.2)
    p = e.count_probabilities()
    assert p.shape == (4,) and np.isclose(p.sum(), 1)
    assert np.isclose(p[0], 0.2 + 0.8 * 1 / (1 + 1 + 0.5 + 1 / 6))
    assert np.array_equal(Embedding(A, 2, 2, 0.3).count_probabilities(), [0, 0, 1])


def test_background_composition():
    cfg = config(n_positive=0, n_negative=2000, length=200, background=(0.1, 0.4, 0.3, 0.2))
    sim = simulate(cfg)
    freq = np.bincount(sim.codes.ravel(), minlength=4) / sim.codes.size
    np.testing.assert_allclose(freq, [0.1, 0.4, 0.3, 0.2], atol=0.005)
    assert len(sim.ground_truth) == 0


def test_binary_task_labels():
    sim = simulate(config(task="binary", n_positive=5, n_negative=7))
    assert sim.label_names == ("positive",)
    assert sim.labels[:, 0].tolist() == [1] * 5 + [0] * 7


def test_placement_fills_exactly():
    # two 50 bp motifs in 100 bp: only the two tilings are possible
    rng = np.random.default_rng(0)
    seq, motif, start = place_instances(rng, np.ones((200, 2), dtype=np.int64), np.array([50, 50]), 100)
    assert set(zip(motif.tolist(), start.tolist(), strict=True)) == {(0, 0), (1, 50), (1, 0), (0, 50)}


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(length=20), "lengthen"),
        (dict(background=(0.5, 0.5, 0.5, 0.5)), "summing to 1"),
        (dict(task="regression"), "unknown task"),
    ],
)
def test_invalid_config(kw, message):
    with pytest.raises(DataError, match=message):
        config(**kw)


def test_invalid_embedding():
    with pytest.raises(DataError, match="min"):
        Embedding(A, 3, 1)


def test_large_build_is_fast():
    import time

    motifs = (Embedding(A, 0, 3, 1.0), Embedding(B, 0, 3, 1.0))
    cfg = SimulationConfig(200, 50_000, 50_000, motifs, task="multitask", seed=0)
    t = time.perf_counter()
    sim = simulate(cfg)
    assert time.perf_counter() - t < 5
    assert sim.codes.shape == (100_000, 200)
