"""Ranking, retrieval figures and fusion on hand-made score matrices."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from inversion_audit.matching import (
    ScoreMatrix,
    fuse_rankings,
    rank_candidates,
    rank_matrix,
    rank_of_true_match,
    roc_auc,
    summarize,
    top_k_mask,
)

IDS = ["a", "b", "c"]


def _ssim_like():
    # rows: reconstructions a, b, c; columns: candidates a, b, c
    values = [
        [0.9, 0.5, 0.4],  # a: own original best -> rank 1
        [0.7, 0.6, 0.7],  # b: own original worst -> rank 3
        [0.3, 0.8, 0.8],  # c: tied with b for best -> average rank 1.5
    ]
    return ScoreMatrix("ssim", np.array(values), IDS, IDS, higher_is_better=True)


def test_rank_of_true_match_higher_is_better_with_ties():
    m = _ssim_like()
    np.testing.assert_array_equal(rank_of_true_match(m), [1, 3, 1.5])
    np.testing.assert_array_equal(rank_of_true_match(m, ties="min"), [1, 3, 1])
    np.testing.assert_array_equal(rank_of_true_match(m, ties="max"), [1, 3, 2])
    # b's row: a and c tie at 0.7 -> both rank 1.5
    np.testing.assert_array_equal(rank_matrix(m)[1], [1.5, 3, 1.5])


def test_lower_is_better_reverses_the_order():
    m = _ssim_like()
    low = ScoreMatrix("deformation", m.values, IDS, IDS, higher_is_better=False)
    np.testing.assert_array_equal(rank_of_true_match(low), [3, 1, 2.5])
    assert rank_candidates(low)[0] == ["c", "b", "a"]


def test_rank_candidates_is_deterministic_on_ties():
    m = _ssim_like()
    assert rank_candidates(m) == [["a", "b", "c"], ["a", "c", "b"], ["b", "c", "a"]]
    # reordering columns reorders tied candidates the same way every time
    flipped = ScoreMatrix("ssim", m.values[:, ::-1], IDS, IDS[::-1])
    assert rank_candidates(flipped)[2] == ["c", "b", "a"]
    assert rank_candidates(flipped) == rank_candidates(flipped)


def test_not_computed_ranks_last_and_is_reported():
    values = np.array([[0.2, np.nan, 0.1], [np.nan, 0.3, 0.9], [0.5, 0.4, np.nan]])
    m = ScoreMatrix("deformation", values, IDS, IDS, higher_is_better=False, notes=["top-2 only"])
    assert rank_candidates(m)[0] == ["c", "a", "b"]
    ranks = rank_of_true_match(m)
    assert ranks[0] == 2 and ranks[1] == 1 and np.isnan(ranks[2])
    s = summarize(m)
    assert s.n == 2 and s.n_not_computed == 1 and s.top1 == 1
    assert any("not computed" in n for n in s.notes) and "top-2 only" in s.notes


def test_summary_figures():
    m = _ssim_like()
    s = summarize(m)
    assert (s.top1, s.top5, s.n) == (1, 3, 3)
    assert s.mean_rank == pytest.approx((1 + 3 + 1.5) / 3)
    assert s.mrr == pytest.approx((1 + 1 / 3 + 1 / 1.5) / 3)
    assert s.precision_at_1 == pytest.approx(1 / 3)
    assert s.own_mean == pytest.approx((0.9 + 0.6 + 0.8) / 3)
    assert s.others_mean == pytest.approx(np.mean([0.5, 0.4, 0.7, 0.7, 0.3, 0.8]))
    np.testing.assert_array_equal(
        s.rank_histogram, [1, 1, 1]
    )  # ranks 1, 3 and 1.5 (rounded up to 2)
    d = s.to_dict()
    assert d["metric"] == "ssim" and d["ranks"] == [1.0, 3.0, 1.5]


def test_summary_when_subject_not_a_candidate():
    m = ScoreMatrix("ssim", np.array([[0.9, 0.1], [0.2, 0.3]]), ["a", "zz"], ["a", "b"])
    s = summarize(m)
    assert s.n == 1 and s.n_true_missing == 1 and s.top1 == 1
    assert np.isnan(s.ranks[1])


@pytest.mark.parametrize("higher", [True, False])
def test_auc_equals_sklearn(rng, higher):
    n = 12
    ids = [f"s{k}" for k in range(n)]
    values = rng.normal(0, 1, (n, n)) + np.eye(n) * (1.0 if higher else -1.0)
    values[0, :4] = values[0, 0]  # ties, counted as one half
    m = ScoreMatrix("x", values, ids, ids, higher_is_better=higher)
    truth = np.eye(n, dtype=bool).ravel()
    expected = roc_auc_score(truth, values.ravel() if higher else -values.ravel())
    assert summarize(m).auc == pytest.approx(expected, abs=1e-12)


def test_roc_auc_small_exact_example():
    assert roc_auc([3, 2], [1, 0]) == 1.0
    assert roc_auc([0], [1, 2]) == 0.0
    assert roc_auc([1, 3], [1, 2]) == pytest.approx(0.625)  # (0.5 + 1 + 1 + 0) / 4
    assert np.isnan(roc_auc([], [1.0]))


def test_fusion_mean_of_ranks():
    ssim = _ssim_like()
    defo = ScoreMatrix(
        "deformation", np.array([[1.0, 2, 3], [2, 1, 3], [3, 2, 1]]), IDS, IDS, False
    )
    fused = fuse_rankings([ssim, defo])
    assert fused.metric == "fused(ssim+deformation)" and not fused.higher_is_better
    np.testing.assert_allclose(fused.values, (rank_matrix(ssim) + rank_matrix(defo)) / 2)
    np.testing.assert_array_equal(rank_of_true_match(fused), [1, 2, 1])


def test_fusion_with_top_k_deformation_keeps_top_k_first():
    ssim = _ssim_like()
    values = np.where(top_k_mask(ssim, 1), 1.0, np.nan)
    defo = ScoreMatrix("deformation", values, IDS, IDS, False, ["SSIM top-1 only"])
    fused = fuse_rankings([ssim, defo])
    assert np.isfinite(fused.values).all()
    # each reconstruction's SSIM best candidate stays first after fusion
    assert [r[0] for r in rank_candidates(fused)] == [r[0] for r in rank_candidates(ssim)]
    assert any("SSIM top-1 only" in n for n in fused.notes)


def test_fusion_rejects_mismatched_ids():
    other = ScoreMatrix("x", np.zeros((3, 3)), IDS, ["c", "b", "a"])
    with pytest.raises(ValueError, match="order differ"):
        fuse_rankings([_ssim_like(), other])


def test_top_k_mask_counts_and_direction():
    m = _ssim_like()
    mask = top_k_mask(m, 2)
    assert mask.sum(axis=1).tolist() == [2, 2, 2]
    assert mask[0].tolist() == [True, True, False]
    with pytest.raises(ValueError):
        top_k_mask(m, 0)


def test_csv_round_trip(tmp_path):
    values = np.array([[0.5, np.nan], [0.25, 1.0]])
    m = ScoreMatrix("deformation", values, ["r1", "r2"], ["c1", "c2"], higher_is_better=False)
    path = m.to_csv(tmp_path / "scores_deformation.csv")
    back = ScoreMatrix.read_csv(path, "deformation", higher_is_better=False)
    np.testing.assert_array_equal(back.values, values)
    assert back.reconstruction_ids == ["r1", "r2"] and back.candidate_ids == ["c1", "c2"]
    assert m.long_rows() == [
        ("r1", "c1", "deformation", 0.5),
        ("r2", "c1", "deformation", 0.25),
        ("r2", "c2", "deformation", 1.0),
    ]


def test_score_matrix_validation():
    with pytest.raises(ValueError, match="does not match ids"):
        ScoreMatrix("ssim", np.zeros((2, 2)), ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        ScoreMatrix("ssim", np.zeros((2, 1)), ["a", "a"], ["a"])
