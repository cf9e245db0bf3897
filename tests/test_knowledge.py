"""Tests of bionas_bench.knowledge: decoding and knowledge dissimilarity K."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bionas_bench.data.motifs import Motif
from bionas_bench.errors import KnowledgeError
from bionas_bench.knowledge import (
    DEFAULT_TEMPERATURE,
    ORIGINAL_PER_FILTER_PENALTY,
    decode_filters,
    knowledge_dissimilarity,
)

LN2 = math.log(2.0)
LN4 = math.log(4.0)
LN10 = math.log(10.0)
UNIFORM = [0.25, 0.25, 0.25, 0.25]


def logits_for(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Raw filter weights that decode to ``probs`` (rows) at ``temperature``."""
    return temperature * np.log(np.asarray(probs, dtype=np.float64))


def reference_k(
    raw: np.ndarray, pwms: list[np.ndarray], temperature: float = 0.1, per_filter: float = 0.0
) -> float:
    """Literal loop version of the original definition, for one model ``(J, width, 4)``."""
    per_motif = []
    for m in pwms:
        n = m.shape[0]
        pad = math.ceil(n / 2)
        best_filter = math.inf
        for filt in raw:
            e = np.exp(filt / temperature)
            probs = e / e.sum(axis=1, keepdims=True)
            padded = np.vstack([np.full((pad, 4), 0.25), probs, np.full((pad, 4), 0.25)])
            best_window = math.inf
            for w in range(padded.shape[0] - n + 1):
                kl = 0.0
                for i in range(n):
                    for b in range(4):
                        if m[i, b] > 0:
                            kl += m[i, b] * math.log(m[i, b] / padded[w + i, b])
                best_window = min(best_window, kl)
            best_filter = min(best_filter, best_window / n)
        per_motif.append(best_filter)
    return float(np.mean(per_motif)) + per_filter * raw.shape[0]


# ------------------------------------------------------------------------------ decoding


def test_decode_hand_computed_default_temperature() -> None:
    # weights [0.1*ln2, 0, 0, 0] / 0.1 = [ln2, 0, 0, 0] -> exp = [2, 1, 1, 1] -> /5
    raw = np.array([[[0.1 * LN2, 0.0, 0.0, 0.0]]])
    assert DEFAULT_TEMPERATURE == 0.1
    np.testing.assert_allclose(decode_filters(raw), [[[0.4, 0.2, 0.2, 0.2]]], rtol=1e-12)


def test_decode_temperature_changes_sharpness() -> None:
    raw = np.array([[[1.0, 0.0, 0.0, 0.0]]])
    # temperature 1: e / (e + 3); temperature 10 (paper's beta = 0.1): e^0.1 / (e^0.1 + 3)
    assert decode_filters(raw, temperature=1.0)[0, 0, 0] == pytest.approx(math.e / (math.e + 3))
    assert decode_filters(raw, temperature=10.0)[0, 0, 0] == pytest.approx(
        math.exp(0.1) / (math.exp(0.1) + 3)
    )


def test_decode_batched_shape_rows_sum_to_one_and_nan_rows_stay_nan() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 3, size=(5, 3, 7, 4))
    raw[2, 1, 4, 0] = np.nan
    probs = decode_filters(raw)
    assert probs.shape == raw.shape
    assert probs.dtype == np.float64
    finite = np.isfinite(probs).all(axis=-1)
    assert not finite[2, 1, 4]
    assert finite.sum() == 5 * 3 * 7 - 1
    np.testing.assert_allclose(probs[finite].sum(axis=-1), 1.0, rtol=1e-12)


def test_decode_large_weights_do_not_overflow() -> None:
    probs = decode_filters(np.array([[[500.0, 0.0, 0.0, 0.0]]]))
    np.testing.assert_allclose(probs, [[[1.0, 0.0, 0.0, 0.0]]], atol=1e-300)


# ---------------------------------------------------------------- hand-computed K values


def test_one_row_motif_two_row_filter_by_hand() -> None:
    # motif: always A. filter (temperature 1): row 0 = (0.5, 0.25, 0.125, 0.125),
    # row 1 uniform. KL(A || row) = 1 * ln(1 / p_A):
    #   row 0: ln(1/0.5) = ln 2 = 0.6931;  row 1 and the uniform pads: ln(1/0.25) = 1.3863
    # padded filter has 1 + 2 + 1 rows, windows of length 1; min = ln 2, / n = 1 -> ln 2.
    motif = np.array([[1.0, 0.0, 0.0, 0.0]])
    raw = logits_for([[[0.5, 0.25, 0.125, 0.125], UNIFORM]], 1.0)
    k = knowledge_dissimilarity(raw, [motif], temperature=1.0)
    assert isinstance(k, float)
    assert k == pytest.approx(0.6931471805599453, rel=1e-12)


def test_two_row_motif_with_padding_by_hand() -> None:
    # motif rows: A-only, then (0.5 C, 0.5 G). n = 2, pad = ceil(2/2) = 1 uniform row each end.
    # filter (temperature 1), one row: (0.1, 0.2, 0.6, 0.1). Padded rows: U, F, U.
    # window 0 = (U, F): row A vs U: ln 4 = 1.386294
    #                    row CG vs F: 0.5 ln(0.5/0.2) + 0.5 ln(0.5/0.6) = 0.458145 - 0.091161 = 0.366984
    #                    total 1.753279
    # window 1 = (F, U): row A vs F: ln(1/0.1) = 2.3026; row CG vs U: 2 * 0.5 ln(0.5/0.25) = ln 2 = 0.6931
    #                    total 2.9957
    # min = 1.753279, / n = 2 -> 0.876639
    motif = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    raw = logits_for([[[0.1, 0.2, 0.6, 0.1]]], 1.0)
    window0 = LN4 + 0.5 * math.log(0.5 / 0.2) + 0.5 * math.log(0.5 / 0.6)
    window1 = LN10 + LN2
    expected = min(window0, window1) / 2
    assert expected == pytest.approx(0.876639, abs=1e-6)
    assert knowledge_dissimilarity(raw, [motif], temperature=1.0) == pytest.approx(expected, rel=1e-12)


def test_uniform_padding_caps_a_bad_filter_and_none_does_not() -> None:
    # motif: A-only. filter rows both have p_A = 0.1 -> KL = ln 10 = 2.3026 per row.
    # uniform padding offers a pad row with KL = ln 4 = 1.3863, which wins;
    # padding="none" only sees the filter's own rows -> ln 10.
    motif = np.array([[1.0, 0.0, 0.0, 0.0]])
    raw = logits_for([[[0.1, 0.3, 0.3, 0.3], [0.1, 0.6, 0.2, 0.1]]], 1.0)
    assert knowledge_dissimilarity(raw, [motif], temperature=1.0) == pytest.approx(LN4, rel=1e-12)
    assert knowledge_dissimilarity(raw, [motif], temperature=1.0, padding="none") == pytest.approx(
        LN10, rel=1e-12
    )


def test_padding_none_falls_back_to_uniform_for_short_filter() -> None:
    rng = np.random.default_rng(1)
    motif = rng.dirichlet(np.ones(4), size=6)
    raw = rng.normal(0, 0.3, size=(2, 3, 4))  # width 3 < motif length 6
    a = knowledge_dissimilarity(raw, [motif], padding="none")
    b = knowledge_dissimilarity(raw, [motif], padding="uniform")
    assert math.isfinite(a)
    assert a == b


def test_padding_none_never_below_uniform() -> None:
    # "none" sees a subset of the windows that "uniform" sees, so its minimum is >= .
    rng = np.random.default_rng(2)
    motif = rng.dirichlet(np.ones(4), size=5)
    raw = rng.normal(0, 0.3, size=(40, 3, 12, 4))
    none = knowledge_dissimilarity(raw, [motif], padding="none")
    uniform = knowledge_dissimilarity(raw, [motif])
    assert np.all(none >= uniform - 1e-12)
    assert np.any(none > uniform + 1e-6)


def test_zero_motif_entries_are_skipped_even_when_filter_prob_underflows() -> None:
    # motif row (0.5, 0.5, 0, 0); filter row weights (0, 0, -1000, -1000) at temperature 1
    # decodes to (0.5, 0.5, ~e^-1000, ~e^-1000): the G/T terms are 0 * log(0 / ~0) -> skipped,
    # A/C terms are 0.5 ln(0.5/0.5) = 0, so K = 0 exactly (no NaN from 0 * log 0).
    motif = np.array([[0.5, 0.5, 0.0, 0.0]])
    raw = np.array([[[0.0, 0.0, -1000.0, -1000.0]]])
    k = knowledge_dissimilarity(raw, [motif], temperature=1.0, padding="none")
    assert k == pytest.approx(0.0, abs=1e-12)
    # against a uniform row: 2 * 0.5 ln(0.5/0.25) = ln 2; G/T still contribute nothing.
    raw_u = np.zeros((1, 1, 4))
    assert knowledge_dissimilarity(raw_u, [motif], temperature=1.0) == pytest.approx(LN2, rel=1e-12)


def test_per_filter_penalty_is_a_shift_of_penalty_times_filters() -> None:
    rng = np.random.default_rng(3)
    motifs = [rng.dirichlet(np.ones(4), size=n) for n in (4, 7)]
    raw = rng.normal(0, 0.5, size=(6, 3, 10, 4))
    base = knowledge_dissimilarity(raw, motifs)
    shifted = knowledge_dissimilarity(raw, motifs, per_filter_penalty=ORIGINAL_PER_FILTER_PENALTY)
    np.testing.assert_allclose(shifted - base, 0.03, rtol=1e-9)  # 0.01 x 3 filters
    per_motif = knowledge_dissimilarity(raw, motifs, reduce_motifs="none", per_filter_penalty=0.5)
    np.testing.assert_allclose(
        per_motif - knowledge_dissimilarity(raw, motifs, reduce_motifs="none"), 1.5, rtol=1e-9
    )


def test_reduce_none_gives_per_motif_values_and_mean_is_their_mean() -> None:
    # motif A-only vs filter row (0.5, ...) -> ln 2 ; motif C-only vs same row (p_C = 0.25)
    # -> ln 4, equal to the pad, so ln 4. Mean = (ln 2 + ln 4) / 2 = 1.5 ln 2.
    raw = logits_for([[[0.5, 0.25, 0.125, 0.125]]], 1.0)
    motifs = [np.array([[1.0, 0, 0, 0]]), np.array([[0, 1.0, 0, 0]])]
    per = knowledge_dissimilarity(raw, motifs, temperature=1.0, reduce_motifs="none")
    assert per.shape == (2,)
    np.testing.assert_allclose(per, [LN2, LN4], rtol=1e-12)
    assert knowledge_dissimilarity(raw, motifs, temperature=1.0) == pytest.approx(1.5 * LN2, rel=1e-12)
    batched = knowledge_dissimilarity(
        np.stack([raw, raw, raw]), motifs, temperature=1.0, reduce_motifs="none"
    )
    assert batched.shape == (3, 2)


def test_matches_literal_loop_reference_with_mixed_motif_lengths() -> None:
    rng = np.random.default_rng(4)
    motifs = [rng.dirichlet(np.full(4, 0.3), size=n) for n in (1, 3, 8, 14)]
    motifs[2][0] = [0.0, 0.0, 1.0, 0.0]  # exercise the zero skip
    raw = rng.normal(0, 0.4, size=(5, 3, 9, 4))
    got = knowledge_dissimilarity(raw, motifs, per_filter_penalty=0.01)
    expected = [reference_k(r, motifs, per_filter=0.01) for r in raw]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_accepts_motif_objects_and_stacked_array() -> None:
    rng = np.random.default_rng(5)
    pwms = rng.dirichlet(np.ones(4), size=(2, 5))
    raw = rng.normal(0, 0.5, size=(3, 8, 4))
    as_arrays = knowledge_dissimilarity(raw, list(pwms))
    as_objects = knowledge_dissimilarity(raw, [Motif("a", pwms[0]), Motif("b", pwms[1])])
    as_stack = knowledge_dissimilarity(raw, pwms)
    assert as_arrays == pytest.approx(as_objects, rel=1e-12)
    assert as_arrays == pytest.approx(as_stack, rel=1e-12)


# ------------------------------------------------------------------ properties / invariance

filter_seeds = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=25, deadline=None)
@given(seed=filter_seeds, n=st.integers(1, 10), width=st.integers(1, 16))
def test_filter_equal_to_motif_beats_random_filters(seed: int, n: int, width: int) -> None:
    rng = np.random.default_rng(seed)
    pwm = rng.dirichlet(np.ones(4), size=n)
    perfect = logits_for(pwm, DEFAULT_TEMPERATURE)[np.newaxis]  # (1, n, 4)
    k_perfect = knowledge_dissimilarity(perfect, [pwm])
    assert k_perfect == pytest.approx(0.0, abs=1e-9)
    others = rng.normal(0, 0.5, size=(20, 1, width, 4))
    k_others = knowledge_dissimilarity(others, [pwm])
    assert np.all(k_others > k_perfect)


@settings(max_examples=25, deadline=None)
@given(seed=filter_seeds)
def test_permuting_filters_changes_nothing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    motifs = [rng.dirichlet(np.ones(4), size=n) for n in (3, 6)]
    raw = rng.normal(0, 0.5, size=(4, 5, 8, 4))
    perm = rng.permutation(5)
    np.testing.assert_allclose(
        knowledge_dissimilarity(raw[:, perm], motifs), knowledge_dissimilarity(raw, motifs), rtol=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(seed=filter_seeds, padding=st.sampled_from(["uniform", "none"]))
def test_batched_equals_per_model(seed: int, padding: str) -> None:
    rng = np.random.default_rng(seed)
    motifs = [rng.dirichlet(np.ones(4), size=n) for n in (2, 5, 11)]
    raw = rng.normal(0, 0.5, size=(6, 3, 9, 4))
    batched = knowledge_dissimilarity(raw, motifs, padding=padding, reduce_motifs="none")
    singles = np.stack(
        [knowledge_dissimilarity(r, motifs, padding=padding, reduce_motifs="none") for r in raw]
    )
    np.testing.assert_allclose(batched, singles, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=filter_seeds)
def test_adding_a_filter_never_increases_k(seed: int) -> None:
    rng = np.random.default_rng(seed)
    motifs = [rng.dirichlet(np.ones(4), size=n) for n in (4, 9)]
    raw = rng.normal(0, 0.5, size=(3, 2, 10, 4))
    extra = rng.normal(0, 0.5, size=(3, 1, 10, 4))
    before = knowledge_dissimilarity(raw, motifs, reduce_motifs="none")
    after = knowledge_dissimilarity(np.concatenate([raw, extra], axis=1), motifs, reduce_motifs="none")
    assert np.all(after <= before + 1e-12)


def test_adding_a_perfect_filter_lowers_k() -> None:
    rng = np.random.default_rng(6)
    pwm = rng.dirichlet(np.ones(4), size=6)
    raw = rng.normal(0, 0.5, size=(2, 6, 4))
    with_perfect = np.concatenate([raw, logits_for(pwm, DEFAULT_TEMPERATURE)[np.newaxis]])
    assert knowledge_dissimilarity(with_perfect, [pwm]) < knowledge_dissimilarity(raw, [pwm]) - 0.1


def test_nan_model_gives_nan_and_leaves_others_unchanged() -> None:
    rng = np.random.default_rng(7)
    motifs = [rng.dirichlet(np.ones(4), size=n) for n in (3, 14)]
    raw = rng.normal(0, 0.5, size=(5, 3, 20, 4))
    clean = knowledge_dissimilarity(raw, motifs)
    broken = raw.copy()
    broken[1] = np.nan  # a missing model
    broken[3, 2, 5, 1] = np.inf  # a diverged model
    with np.errstate(all="raise"):  # no floating point warnings either
        got = knowledge_dissimilarity(broken, motifs)
    assert np.isnan(got[1]) and np.isnan(got[3])
    keep = [0, 2, 4]
    np.testing.assert_array_equal(got[keep], clean[keep])
    per = knowledge_dissimilarity(broken, motifs, reduce_motifs="none")
    assert np.isnan(per[1]).all() and np.isfinite(per[keep]).all()
    assert math.isnan(knowledge_dissimilarity(broken[1], motifs))


def test_result_types_and_dtypes() -> None:
    rng = np.random.default_rng(8)
    motif = rng.dirichlet(np.ones(4), size=4)
    raw = rng.normal(0, 0.5, size=(4, 3, 8, 4)).astype(np.float32)
    out = knowledge_dissimilarity(raw, [motif])
    assert out.shape == (4,) and out.dtype == np.float64
    assert type(knowledge_dissimilarity(raw[0], [motif])) is float
    assert knowledge_dissimilarity(raw[:0], [motif]).shape == (0,)


def test_large_batch_is_fast() -> None:
    import time

    rng = np.random.default_rng(9)
    raw = rng.normal(0, 0.5, size=(216 * 20, 3, 20, 4))
    motif = rng.dirichlet(np.ones(4), size=14)
    start = time.perf_counter()
    out = knowledge_dissimilarity(raw, [motif])
    elapsed = time.perf_counter() - start
    assert out.shape == (4320,) and np.isfinite(out).all()
    assert elapsed < 2.0  # typically ~0.05 s; generous for slow CI machines


# ------------------------------------------------------------------------------ bad input

GOOD_MOTIF = np.full((3, 4), 0.25)
GOOD_FILTERS = np.zeros((3, 8, 4))


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        (np.zeros((8, 4)), r"\(J, width, 4\)"),
        (np.zeros((2, 3, 3, 8, 4)), r"5-d"),
        (np.zeros((3, 8, 5)), r"last axis"),
        (np.zeros((3, 4, 8)), r"swapaxes"),
        (np.zeros((0, 8, 4)), r"at least one filter"),
        (np.zeros((3, 0, 4)), r"width"),
        ([["a", "b"]], r"numeric"),
    ],
)
def test_bad_filters_raise(filters: object, match: str) -> None:
    with pytest.raises(KnowledgeError, match=match):
        knowledge_dissimilarity(filters, [GOOD_MOTIF])


@pytest.mark.parametrize(
    ("motifs", "match"),
    [
        ([], r"empty"),
        ([np.full((3, 4), np.nan)], r"motif 0 .*NaN or infinite"),
        ([GOOD_MOTIF, np.full((2, 4), np.inf)], r"motif 1 .*NaN or infinite"),
        ([np.full((4, 3), 0.25)], r"motif 0 must be an \(n, 4\)"),
        ([np.zeros((0, 4))], r"n >= 1"),
        ([np.full((2, 4), 0.5)], r"row 0 sums to 2"),
        ([np.array([[1.5, -0.5, 0, 0]])], r"negative"),
        (GOOD_MOTIF, r"wrap a single"),
        (Motif("x", GOOD_MOTIF), r"wrap a single motif"),
        (3, r"sequence"),
    ],
)
def test_bad_motifs_raise(motifs: object, match: str) -> None:
    with pytest.raises(KnowledgeError, match=match):
        knowledge_dissimilarity(GOOD_FILTERS, motifs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, r"temperature"),
        ({"temperature": -1.0}, r"temperature"),
        ({"temperature": float("nan")}, r"temperature"),
        ({"padding": "same"}, r"padding"),
        ({"reduce_motifs": "max"}, r"reduce_motifs"),
        ({"per_filter_penalty": float("inf")}, r"per_filter_penalty"),
        ({"per_filter_penalty": "x"}, r"per_filter_penalty"),
    ],
)
def test_bad_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(KnowledgeError, match=match):
        knowledge_dissimilarity(GOOD_FILTERS, [GOOD_MOTIF], **kwargs)


def test_decode_bad_input_raises() -> None:
    with pytest.raises(KnowledgeError, match="temperature"):
        decode_filters(GOOD_FILTERS, temperature=0)
    with pytest.raises(KnowledgeError, match="last axis"):
        decode_filters(np.zeros((3, 8, 2)))


def test_padded_models_of_different_sizes_score_as_alone():
    """Models NaN-padded to one array (as a store keeps them) score as each alone; NaN
    inside a model's own weights, or a model all NaN, scores NaN."""
    rng = np.random.default_rng(7)
    motif = rng.dirichlet(np.ones(4), size=6)
    small, large = rng.normal(size=(2, 8, 4)), rng.normal(size=(3, 14, 4))
    batch = np.full((4, 3, 14, 4), np.nan)
    batch[0, :2, :8] = small
    batch[1] = large
    batch[2, :2, :8] = small
    batch[2, 1, 3, 2] = np.nan  # a diverged weight inside the model
    got = knowledge_dissimilarity(batch, [motif], per_filter_penalty=0.01)
    assert got[0] == pytest.approx(
        knowledge_dissimilarity(small, [motif], per_filter_penalty=0.01), rel=1e-12
    )
    assert got[1] == pytest.approx(
        knowledge_dissimilarity(large, [motif], per_filter_penalty=0.01), rel=1e-12
    )
    assert np.isnan(got[2]) and np.isnan(got[3])
