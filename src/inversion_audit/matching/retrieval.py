"""Retrieval and verification figures (Packhäuser et al. 2022).

Each reconstruction has exactly one relevant candidate (its own original), so
R = 1: mAP@R and R-Precision both equal Precision@1 and are not computed apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class ScoreTable(Protocol):
    """What these figures read of a :class:`~.ranking.ScoreMatrix`, typed by its shape so that
    this module need not import ``ranking`` (which imports it)."""

    metric: str
    values: np.ndarray
    reconstruction_ids: list[str]
    higher_is_better: bool

    @property
    def shape(self) -> tuple[int, ...]: ...

    def true_match_index(self) -> np.ndarray: ...


__all__ = [
    "mean_reciprocal_rank",
    "precision_at_k",
    "pair_auc",
    "roc_auc",
    "roc_points",
    "tpr_at_fpr",
    "OpenSetVerification",
    "open_set_verification",
    "same_subject_mask",
]


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


def same_subject_mask(matrix: ScoreTable) -> np.ndarray:
    """Boolean ``[N, M]`` marking each reconstruction's own original among the candidates."""
    idx = matrix.true_match_index()
    same = np.zeros(matrix.shape, dtype=bool)
    rows = np.flatnonzero(idx >= 0)
    same[rows, idx[rows]] = True
    return same


def pair_auc(matrix: ScoreTable) -> float:
    """Verification AUC: same-subject pairs vs different-subject pairs, over computed scores.

    The score is oriented by the metric's direction (lower-is-better metrics are negated).
    """
    same = same_subject_mask(matrix)
    scores = matrix.values if matrix.higher_is_better else -matrix.values
    ok = np.isfinite(scores)
    return roc_auc(scores[same & ok], scores[~same & ok])


def roc_points(
    positive_scores: np.ndarray, negative_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve ``(fpr, tpr)`` where higher scores mean "positive", from (0, 0) to (1, 1).

    One point per distinct score: a threshold ``t`` calls every score ``>= t`` positive,
    so tied scores enter together. NaN scores are dropped.
    """
    pos = np.asarray(positive_scores, dtype=np.float64).ravel()
    neg = np.asarray(negative_scores, dtype=np.float64).ravel()
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if pos.size == 0 or neg.size == 0:
        raise ValueError("an ROC curve needs at least one positive and one negative score")
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    tp = pos.size - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg_sorted, thresholds, side="left")
    fpr = np.concatenate([[0.0], fp / neg.size])
    tpr = np.concatenate([[0.0], tp / pos.size])
    return fpr, tpr


def tpr_at_fpr(positive_scores: np.ndarray, negative_scores: np.ndarray, fpr: float) -> float:
    """Highest true-positive rate whose false-positive rate is at most ``fpr`` (LiRA's low-FPR figure).

    With ``n`` negatives the FPR moves in steps of ``1 / n``: below ``1 / n`` this is the
    TPR at zero false positives. NaN when either class is empty.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    try:
        f, t = roc_points(positive_scores, negative_scores)
    except ValueError:
        return float("nan")
    return float(t[f <= fpr + 1e-12].max())


@dataclass(frozen=True)
class OpenSetVerification:
    """Verification over all (reconstruction, candidate) pairs: is this candidate the same subject?

    ``n_positive`` same-subject pairs, ``n_negative`` different-subject pairs (computed scores only).
    """

    metric: str
    n_positive: int
    n_negative: int
    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_10pct_fpr: float

    def to_dict(self) -> dict:
        """JSON-safe form (NaN becomes None)."""
        return {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in dataclasses.asdict(self).items()
        }


def open_set_verification(
    matrix: ScoreTable, rows: np.ndarray | list[str] | None = None
) -> OpenSetVerification:
    """Open-set verification ROC of one metric over every (reconstruction, candidate) pair.

    ``rows`` restricts the reconstructions (a boolean mask or a list of ids), e.g. to the
    members or to the non-members; the gallery stays whole. Scores are oriented by the
    metric's direction.
    """
    keep = np.ones(matrix.shape[0], dtype=bool)
    if rows is not None:
        rows_arr = np.asarray(rows)
        if rows_arr.dtype == bool:
            keep = rows_arr
        else:
            wanted = {str(r) for r in rows_arr}
            keep = np.array([r in wanted for r in matrix.reconstruction_ids], dtype=bool)
    same = same_subject_mask(matrix)[keep]
    scores = (matrix.values if matrix.higher_is_better else -matrix.values)[keep]
    ok = np.isfinite(scores)
    pos, neg = scores[same & ok], scores[~same & ok]
    return OpenSetVerification(
        metric=matrix.metric,
        n_positive=int(pos.size),
        n_negative=int(neg.size),
        auc=roc_auc(pos, neg),
        tpr_at_1pct_fpr=tpr_at_fpr(pos, neg, 0.01),
        tpr_at_10pct_fpr=tpr_at_fpr(pos, neg, 0.10),
    )
