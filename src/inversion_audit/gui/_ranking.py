"""Ordering a reconstruction's candidates for the Candidate matches table (Qt-free).

SSIM and correlation rank higher-is-better, deformation (mean displacement) lower-is-better;
candidates without a score go last. The fused rank comes from
:func:`inversion_audit.matching.fuse_rankings` over the metrics every candidate has.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from ._study_index import CandidateScore

__all__ = ["RANK_KEYS", "RankedCandidate", "rank_candidates", "blinded_codes"]

#: ranking choices of the table; ``True`` = higher is better
HIGHER_IS_BETTER = {"ssim": True, "correlation": True, "deformation": False}
RANK_KEYS = ("ssim", "correlation", "deformation", "fused")


@dataclass(frozen=True)
class RankedCandidate:
    """One table row: 1-based rank under the chosen ordering and the candidate's scores."""

    rank: int
    candidate: CandidateScore


def _order(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    key = np.where(np.isnan(values), np.inf, -values if higher_is_better else values)
    return np.argsort(key, kind="stable")


def _fused_order(candidates: list[CandidateScore]) -> np.ndarray:
    from ..matching import ScoreMatrix, fuse_rankings

    ids = [c.candidate_id for c in candidates]
    matrices = []
    for metric, higher in HIGHER_IS_BETTER.items():
        values = np.array([getattr(c, metric) for c in candidates], float)
        if not np.isnan(values).any():
            matrices.append(
                ScoreMatrix(
                    metric, values[None, :], ["reconstruction"], ids, higher_is_better=higher
                )
            )
    if not matrices:
        return np.arange(len(candidates))
    fused = fuse_rankings(matrices)
    return _order(np.asarray(fused.values, float)[0], fused.higher_is_better)


def rank_candidates(candidates: list[CandidateScore], by: str = "ssim") -> list[RankedCandidate]:
    """Candidates in rank order under ``by`` (one of :data:`RANK_KEYS`)."""
    if by not in RANK_KEYS:
        raise ValueError(f"cannot rank by {by!r}; choose one of {', '.join(RANK_KEYS)}")
    if not candidates:
        return []
    if by == "fused":
        order = _fused_order(candidates)
    else:
        order = _order(np.array([getattr(c, by) for c in candidates], float), HIGHER_IS_BETTER[by])
    return [RankedCandidate(k + 1, candidates[i]) for k, i in enumerate(order)]


def blinded_codes(candidate_ids: list[str], seed: str) -> dict[str, str]:
    """Codes ``C01``, ``C02``... assigned in a shuffled order fixed by ``seed`` (not by id)."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    order = rng.permutation(len(candidate_ids))
    width = max(2, int(math.log10(max(len(candidate_ids), 1))) + 1)
    return {candidate_ids[i]: f"C{k + 1:0{width}d}" for k, i in enumerate(order)}
