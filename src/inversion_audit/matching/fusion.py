"""Fusion of several metrics' rankings: the mean of per-metric ranks (lower is better)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .ranking import ScoreMatrix, Ties, rank_matrix

__all__ = ["FUSED_METRICS", "fuse_rankings", "fused_rank"]

#: the metrics whose ranks the study's "fused" ranking averages
FUSED_METRICS = ("ssim", "deformation")


def fuse_rankings(
    matrices: Sequence[ScoreMatrix], ties: Ties = "average", name: str | None = None
) -> ScoreMatrix:
    """Fuse score matrices into one by averaging each candidate's per-metric ranks.

    All matrices must have the same reconstruction and candidate ids in the same
    order. A candidate not computed in one metric (e.g. deformation outside the
    SSIM top-k) is averaged over the metrics that scored it; with SSIM included,
    such a candidate's SSIM rank exceeds k, so it still ranks behind the top-k.

    Returns a lower-is-better :class:`ScoreMatrix` named ``fused(<a>+<b>...)``.
    """
    if not matrices:
        raise ValueError("fuse_rankings needs at least one score matrix")
    first = matrices[0]
    for m in matrices[1:]:
        if (
            m.reconstruction_ids != first.reconstruction_ids
            or m.candidate_ids != first.candidate_ids
        ):
            raise ValueError(
                f"cannot fuse {m.metric!r} with {first.metric!r}: ids or their order differ"
            )
    ranks = np.stack([rank_matrix(m, ties) for m in matrices])
    counts = np.isfinite(ranks).sum(axis=0)
    with np.errstate(invalid="ignore"):
        fused = np.where(counts > 0, np.nansum(ranks, axis=0) / np.maximum(counts, 1), np.nan)
    metrics = [m.metric for m in matrices]
    notes = [f"mean of per-metric ranks of {', '.join(metrics)} (lower is better)"]
    for m in matrices:
        notes.extend(f"{m.metric}: {n}" for n in m.notes)
    return ScoreMatrix(
        name or f"fused({'+'.join(metrics)})",
        fused,
        list(first.reconstruction_ids),
        list(first.candidate_ids),
        higher_is_better=False,
        notes=notes,
    )


def fused_rank(matrices: Mapping[str, ScoreMatrix]) -> ScoreMatrix | None:
    """The study's ``fused`` ranking: the mean of the :data:`FUSED_METRICS` ranks (lower is
    better), named ``"fused"``; ``None`` unless every one of them was scored."""
    if not all(m in matrices for m in FUSED_METRICS):
        return None
    return fuse_rankings([matrices[m] for m in FUSED_METRICS], name="fused")
