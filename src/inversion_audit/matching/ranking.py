"""Score matrices (reconstructions x candidates) and the ranking of candidates.

A reconstruction's true match is the candidate with the same subject id. NaN
scores mean "not computed" (for example deformation outside the SSIM top-k);
they rank after every computed score.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "METRIC_DIRECTIONS",
    "ScoreMatrix",
    "MatchSummary",
    "Ties",
    "rank_candidates",
    "rank_matrix",
    "rank_of_true_match",
    "summarize",
    "top_k_mask",
]

Ties = Literal["average", "min", "max"]

#: every ranked metric of ``scores.csv`` -> whether higher is better (the one definition)
METRIC_DIRECTIONS: dict[str, bool] = {
    "ssim": True,
    "correlation": True,
    "psnr": True,
    "deformation": False,
    "ssim_brain": True,
    "correlation_brain": True,
    "reid": True,  # the learned re-identifier's verification logit (matching/reid.py)
}


@dataclass(eq=False)
class ScoreMatrix:
    """One metric's scores of every reconstruction (rows) against every candidate (columns).

    Attributes
    ----------
    metric : metric name, e.g. ``"ssim"``, ``"correlation"``, ``"deformation"``.
    values : float array ``[N, M]``; NaN means not computed.
    reconstruction_ids, candidate_ids : subject ids of rows and columns.
    higher_is_better : the metric's direction (False for deformation and fused ranks).
    notes : human-readable remarks carried into outputs (e.g. the top-k restriction).
    """

    metric: str
    values: np.ndarray
    reconstruction_ids: list[str]
    candidate_ids: list[str]
    higher_is_better: bool = True
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        self.reconstruction_ids = [str(i) for i in self.reconstruction_ids]
        self.candidate_ids = [str(i) for i in self.candidate_ids]
        expected = (len(self.reconstruction_ids), len(self.candidate_ids))
        if self.values.shape != expected:
            raise ValueError(
                f"{self.metric}: values shape {self.values.shape} does not match ids {expected}"
            )
        for kind, ids in (
            ("reconstruction", self.reconstruction_ids),
            ("candidate", self.candidate_ids),
        ):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{self.metric}: duplicate {kind} ids")

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    @property
    def computed(self) -> np.ndarray:
        """Boolean ``[N, M]``: which scores were computed."""
        return np.isfinite(self.values)

    def true_match_index(self) -> np.ndarray:
        """Column of each reconstruction's true match, or -1 if its subject is not a candidate."""
        col = {c: j for j, c in enumerate(self.candidate_ids)}
        return np.array([col.get(r, -1) for r in self.reconstruction_ids], dtype=np.int64)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the matrix as CSV (rows: reconstruction ids, columns: candidate ids; empty = not computed)."""
        from ..io import atomic_write_text

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["reconstruction_id", *self.candidate_ids])
        for rid, row in zip(self.reconstruction_ids, self.values, strict=True):
            w.writerow([rid, *("" if not np.isfinite(v) else repr(float(v)) for v in row)])
        return atomic_write_text(path, buf.getvalue())

    @classmethod
    def read_csv(
        cls, path: str | os.PathLike[str], metric: str, higher_is_better: bool = True
    ) -> ScoreMatrix:
        """Read a matrix written by :meth:`to_csv`."""
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows or rows[0][:1] != ["reconstruction_id"]:
            raise ValueError(f"{path}: not a score matrix CSV (missing reconstruction_id header)")
        values = [[float(v) if v != "" else np.nan for v in r[1:]] for r in rows[1:]]
        return cls(
            metric,
            np.array(values, dtype=np.float64).reshape(len(rows) - 1, len(rows[0]) - 1),
            [r[0] for r in rows[1:]],
            rows[0][1:],
            higher_is_better,
        )

    def long_rows(self) -> list[tuple[str, str, str, float]]:
        """Computed scores as ``(reconstruction_id, candidate_id, metric, value)`` rows."""
        return [
            (r, c, self.metric, float(v))
            for r, row in zip(self.reconstruction_ids, self.values, strict=True)
            for c, v in zip(self.candidate_ids, row, strict=True)
            if np.isfinite(v)
        ]


def _oriented(matrix: ScoreMatrix) -> np.ndarray:
    """Scores where lower is better; NaN becomes +inf (ranked last)."""
    v = -matrix.values if matrix.higher_is_better else matrix.values.copy()
    return np.where(np.isfinite(v), v, np.inf)


def rank_matrix(matrix: ScoreMatrix, ties: Ties = "average") -> np.ndarray:
    """Rank (1 = best) of every candidate within each reconstruction's row; NaN where not computed.

    Tied scores share a rank by ``ties``: ``"average"`` (the expected rank under
    random tie-breaking), ``"min"`` (optimistic) or ``"max"`` (pessimistic).
    """
    from scipy.stats import rankdata

    if ties not in ("average", "min", "max"):
        raise ValueError(f"ties must be average, min or max, got {ties!r}")
    ranks = rankdata(_oriented(matrix), method=ties, axis=1).astype(np.float64)
    ranks[~matrix.computed] = np.nan
    return ranks


def rank_candidates(matrix: ScoreMatrix) -> list[list[str]]:
    """Candidate ids of each reconstruction from best to worst.

    Ties keep the candidates' column order (a stable sort), so the order is
    deterministic; not-computed candidates come last.
    """
    order = np.argsort(_oriented(matrix), axis=1, kind="stable")
    return [[matrix.candidate_ids[j] for j in row] for row in order]


def rank_of_true_match(matrix: ScoreMatrix, ties: Ties = "average") -> np.ndarray:
    """Rank (1 = best) of each reconstruction's own original among the candidates.

    NaN where the true match is not a candidate or its score was not computed.
    """
    ranks = rank_matrix(matrix, ties)
    idx = matrix.true_match_index()
    out = np.full(len(idx), np.nan)
    has = idx >= 0
    out[has] = ranks[np.flatnonzero(has), idx[has]]
    return out


def top_k_mask(matrix: ScoreMatrix, k: int) -> np.ndarray:
    """Boolean ``[N, M]`` marking each reconstruction's ``k`` best computed candidates (stable order)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(_oriented(matrix), axis=1, kind="stable")[:, :k]
    mask = np.zeros(matrix.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask & matrix.computed


@dataclass(frozen=True)
class MatchSummary:
    """Identification figures of one score matrix (the paper's Tables 2 and 3, Packhäuser et al.'s (2022) retrieval).

    ``n`` counts reconstructions whose true match was scored; ranks of the others are NaN
    (``n_true_missing``: subject not among the candidates; ``n_not_computed``: scored pair missing).
    """

    metric: str
    higher_is_better: bool
    n_reconstructions: int
    n_candidates: int
    n: int
    n_true_missing: int
    n_not_computed: int
    ranks: np.ndarray
    top1: int
    top5: int
    mean_rank: float
    median_rank: float
    mrr: float
    precision_at_1: float
    auc: float
    own_mean: float
    own_sd: float
    others_mean: float
    others_sd: float
    rank_histogram: np.ndarray
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-serialisable form (NaN becomes None)."""

        def clean(v):
            if isinstance(v, np.ndarray):
                return [clean(x) for x in v.tolist()]
            if isinstance(v, float) and not np.isfinite(v):
                return None
            return v

        return {k: clean(getattr(self, k)) for k in self.__dataclass_fields__} | {
            "notes": list(self.notes)
        }


def _mean_sd(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize(matrix: ScoreMatrix, ties: Ties = "average") -> MatchSummary:
    """Summarise a score matrix: top-1/top-5 counts, mean rank, own vs others, histogram, MRR, P@1, AUC.

    ``rank_histogram[r - 1]`` counts true matches at rank ``r`` (fractional tie
    ranks are rounded up). The AUC separates same-subject from different-subject
    pairs over all computed scores (see :func:`~inversion_audit.matching.retrieval.pair_auc`).
    """
    from .retrieval import mean_reciprocal_rank, pair_auc, precision_at_k

    ranks = rank_of_true_match(matrix, ties)
    idx = matrix.true_match_index()
    missing = int((idx < 0).sum())
    not_computed = int(np.isnan(ranks).sum()) - missing
    valid = ranks[np.isfinite(ranks)]
    n_cand = len(matrix.candidate_ids)
    hist = (
        np.bincount(np.ceil(valid).astype(np.int64) - 1, minlength=n_cand)[:n_cand]
        if valid.size
        else np.zeros(n_cand, np.int64)
    )
    own = np.full(len(idx), np.nan)
    has = idx >= 0
    own[has] = matrix.values[np.flatnonzero(has), idx[has]]
    same = np.zeros(matrix.shape, dtype=bool)
    same[np.flatnonzero(has), idx[has]] = True
    others = matrix.values[~same]
    notes = list(matrix.notes)
    if not_computed:
        notes.append(f"{not_computed} true match(es) not computed: excluded from ranks")
    if missing:
        notes.append(
            f"{missing} reconstruction(s) whose subject is not a candidate: excluded from ranks"
        )
    own_mean, own_sd = _mean_sd(own)
    others_mean, others_sd = _mean_sd(others)
    return MatchSummary(
        metric=matrix.metric,
        higher_is_better=matrix.higher_is_better,
        n_reconstructions=len(matrix.reconstruction_ids),
        n_candidates=n_cand,
        n=int(valid.size),
        n_true_missing=missing,
        n_not_computed=not_computed,
        ranks=ranks,
        top1=int((valid == 1).sum()),
        top5=int((valid <= 5).sum()),
        mean_rank=float(valid.mean()) if valid.size else float("nan"),
        median_rank=float(np.median(valid)) if valid.size else float("nan"),
        mrr=mean_reciprocal_rank(ranks),
        precision_at_1=precision_at_k(ranks, 1),
        auc=pair_auc(matrix),
        own_mean=own_mean,
        own_sd=own_sd,
        others_mean=others_mean,
        others_sd=others_sd,
        rank_histogram=hist,
        notes=tuple(notes),
    )
