"""Retrieval and verification figures (Packhäuser et al. 2022, seed 003).

Each reconstruction has exactly one relevant candidate (its own original), so
R = 1: mAP@R and R-Precision both equal Precision@1 and are not computed apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .ranking import ScoreMatrix

__all__ = ["mean_reciprocal_rank", "precision_at_k", "pair_auc", "roc_auc"]


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    """Mean of ``1 / rank`` of the true match over reconstructions with a defined rank."""
    r = np.asarray(ranks, dtype=np.float64)
    r = r[np.isfinite(r)]
    return float(np.mean(1.0 / r)) if r.size else float("nan")


def precision_at_k(ranks: np.ndarray, k: int = 1) -> float:
    """Fraction of reconstructions whose true match ranks within the first ``k`` (Precision@1 for k=1)."""
    r = np.asarray(ranks, dtype=np.float64)
    r = r[np.isfinite(r)]
    return float(np.mean(r <= k)) if r.size else float("nan")


def roc_auc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """ROC AUC where higher scores mean "positive", from rank statistics (Mann-Whitney U).

    Ties count one half. NaN when either class is empty.
    """
    from scipy.stats import rankdata

    pos = np.asarray(positive_scores, dtype=np.float64).ravel()
    neg = np.asarray(negative_scores, dtype=np.float64).ravel()
    n_pos, n_neg = pos.size, neg.size
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks for ties
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def pair_auc(matrix: ScoreMatrix) -> float:
    """Verification AUC: same-subject pairs vs different-subject pairs, over computed scores.

    The score is oriented by the metric's direction (lower-is-better metrics are negated).
    """
    idx = matrix.true_match_index()
    same = np.zeros(matrix.shape, dtype=bool)
    rows = np.flatnonzero(idx >= 0)
    same[rows, idx[rows]] = True
    scores = matrix.values if matrix.higher_is_better else -matrix.values
    ok = np.isfinite(scores)
    return roc_auc(scores[same & ok], scores[~same & ok])
