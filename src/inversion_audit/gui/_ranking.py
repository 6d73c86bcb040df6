"""Ordering a reconstruction's candidates for the Candidate matches table (Qt-free).

SSIM and correlation rank higher-is-better, deformation (mean displacement) lower-is-better;
candidates without a score go last. The ranking itself is :mod:`inversion_audit.matching`'s.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..study.index import CandidateScore

if TYPE_CHECKING:
    from ..matching import ScoreMatrix

__all__ = ["RANK_KEYS", "RankedCandidate", "rank_candidates", "rank_keys", "blinded_codes"]

#: ranking choices of the table (directions: :data:`inversion_audit.matching.METRIC_DIRECTIONS`)
RANK_KEYS = ("ssim", "correlation", "deformation", "fused")


def rank_keys(metrics: list[str]) -> tuple[str, ...]:
    """The table's ranking choices for a study holding ``metrics``: :data:`RANK_KEYS` plus
    every other metric with a direction in :data:`inversion_audit.matching.METRIC_DIRECTIONS`
    (e.g. ``reid``, ``ssim_brain``, ``psnr``)."""
    from ..matching import METRIC_DIRECTIONS

    extra = [m for m in metrics if m in METRIC_DIRECTIONS and m not in RANK_KEYS]
    return (*RANK_KEYS[:-1], *sorted(extra), RANK_KEYS[-1])


@dataclass(frozen=True)
class RankedCandidate:
    """One table row: 1-based rank under the chosen ordering and the candidate's scores."""

    rank: int
    candidate: CandidateScore


def _matrix(candidates: list[CandidateScore], metric: str) -> ScoreMatrix:
    from ..matching import METRIC_DIRECTIONS, ScoreMatrix

    values = np.array([[c.value(metric) for c in candidates]], float)
    ids = [c.candidate_id for c in candidates]
    return ScoreMatrix(
        metric, values, ["reconstruction"], ids, higher_is_better=METRIC_DIRECTIONS[metric]
    )


def rank_candidates(candidates: list[CandidateScore], by: str = "ssim") -> list[RankedCandidate]:
    """Candidates in rank order under ``by`` (``"fused"`` or a metric of
    :data:`inversion_audit.matching.METRIC_DIRECTIONS`, its direction from there).

    Orders with :func:`inversion_audit.matching.rank_candidates`; ``"fused"`` is the study
    report's fused rank (:func:`~inversion_audit.matching.fused_rank`), SSIM alone when no
    deformation was computed.
    """
    from ..matching import METRIC_DIRECTIONS, fused_rank
    from ..matching import rank_candidates as ranked_ids

    if by != "fused" and by not in METRIC_DIRECTIONS:
        choices = ", ".join([*METRIC_DIRECTIONS, "fused"])
        raise ValueError(f"cannot rank by {by!r}; choose one of {choices}")
    if not candidates:
        return []
    if by == "fused":
        ssim, deformation = _matrix(candidates, "ssim"), _matrix(candidates, "deformation")
        scored = np.isfinite(deformation.values).any()
        fused = fused_rank({"ssim": ssim, "deformation": deformation}) if scored else None
        matrix = fused or ssim
    else:
        matrix = _matrix(candidates, by)
    by_id = {c.candidate_id: c for c in candidates}
    return [RankedCandidate(k + 1, by_id[cid]) for k, cid in enumerate(ranked_ids(matrix)[0])]


def blinded_codes(candidate_ids: list[str], seed: str) -> dict[str, str]:
    """Codes ``C01``, ``C02``... assigned in a shuffled order fixed by ``seed`` (not by id)."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    order = rng.permutation(len(candidate_ids))
    width = max(2, int(math.log10(max(len(candidate_ids), 1))) + 1)
    return {candidate_ids[i]: f"C{k + 1:0{width}d}" for k, i in enumerate(order)}
