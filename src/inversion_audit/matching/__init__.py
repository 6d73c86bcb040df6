"""Matching reconstructions to candidates: score matrices, ranking, retrieval, fusion, Dask execution.

:mod:`.distributed` (dask) is not imported here; import it where pairwise work
runs on a cluster.
"""

from .fusion import FUSED_METRICS, fuse_rankings, fused_rank
from .ranking import (
    METRIC_DIRECTIONS,
    MatchSummary,
    ScoreMatrix,
    rank_candidates,
    rank_matrix,
    rank_of_true_match,
    summarize,
    top_k_mask,
)
from .retrieval import mean_reciprocal_rank, pair_auc, precision_at_k, roc_auc

__all__ = [
    "FUSED_METRICS",
    "METRIC_DIRECTIONS",
    "MatchSummary",
    "ScoreMatrix",
    "fuse_rankings",
    "fused_rank",
    "mean_reciprocal_rank",
    "pair_auc",
    "precision_at_k",
    "rank_candidates",
    "rank_matrix",
    "rank_of_true_match",
    "roc_auc",
    "summarize",
    "top_k_mask",
]
