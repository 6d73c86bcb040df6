"""Who leaks, and how strongly: members vs non-members (membership inference in
``membership_inference.py``).

Members trained the target; non-members (the holdout) trained neither the target nor the
decoder. All reconstructions are ranked in one gallery that holds both. If non-members are
identified as well as members, the risk lies in exposing latent codes, whoever the patient;
if members are identified better, the published weights carry their training patients.

Pure numpy/scipy: intervals are Newcombe's hybrid score interval (Newcombe 1998, method 10)
for a difference of proportions and stratified bootstrap intervals for ROC figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..matching.ranking import ScoreMatrix, rank_of_true_match
from ..matching.retrieval import open_set_verification

__all__ = [
    "GroupFigures",
    "MemberComparison",
    "compare_members",
    "fisher_exact_p",
    "holm_adjusted",
    "newcombe_interval",
    "verdict",
    "wilson_bounds",
]

#: a member advantage within this many points (at the interval's upper end) counts as "alike"
ALIKE_MARGIN = 0.2


def _clean(v: object) -> object:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, tuple):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


def wilson_bounds(x: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``x / n`` (closed form; ``(nan, nan)`` when ``n == 0``)."""
    from scipy.stats import norm

    if n == 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def newcombe_interval(
    x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid (Wilson) score interval of ``x1/n1 - x2/n2``."""
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan")
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_bounds(x1, n1, confidence)
    l2, u2 = wilson_bounds(x2, n2, confidence)
    d = p1 - p2
    return (
        float(d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)),
        float(d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)),
    )


def fisher_exact_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided Fisher exact p-value of the 2x2 table ``[[x1, n1-x1], [x2, n2-x2]]``."""
    from scipy.stats import fisher_exact

    if n1 == 0 or n2 == 0:
        return float("nan")
    return float(fisher_exact([[x1, n1 - x1], [x2, n2 - x2]]).pvalue)


@dataclass(frozen=True)
class GroupFigures:
    """Identification of one group's reconstructions in the shared gallery."""

    n: int
    top1: int
    top1_rate: float
    top1_interval: tuple[float, float]
    mean_rank: float
    auc: float
    tpr_at_1pct_fpr: float
    own_mean: float


@dataclass(frozen=True)
class MemberComparison:
    """One metric's members vs non-members figures, the difference of top-1 rates and the verdict."""

    metric: str
    n_candidates: int
    members: GroupFigures
    nonmembers: GroupFigures
    difference: float
    interval: tuple[float, float]
    fisher_p: float
    confidence: float
    verdict: str
    #: Fisher's p after Holm's correction over the metrics compared for the same run
    fisher_p_holm: float = float("nan")
    n_metrics: int = 1

    def to_dict(self) -> dict:
        """JSON-safe form (NaN becomes None)."""
        return _clean(dataclasses.asdict(self))  # type: ignore[return-value]


def _group(matrix: ScoreMatrix, keep: np.ndarray, ranks: np.ndarray, confidence: float):
    r = ranks[keep]
    r = r[np.isfinite(r)]
    top1 = int((r == 1).sum())
    idx = matrix.true_match_index()
    own = np.array(
        [matrix.values[i, idx[i]] for i in np.flatnonzero(keep) if idx[i] >= 0], dtype=float
    )
    own = own[np.isfinite(own)]
    ver = open_set_verification(matrix, keep)
    return GroupFigures(
        n=int(r.size),
        top1=top1,
        top1_rate=top1 / r.size if r.size else float("nan"),
        top1_interval=wilson_bounds(top1, int(r.size), confidence),
        mean_rank=float(r.mean()) if r.size else float("nan"),
        auc=ver.auc,
        tpr_at_1pct_fpr=ver.tpr_at_1pct_fpr,
        own_mean=float(own.mean()) if own.size else float("nan"),
    )


def compare_members(
    matrix: ScoreMatrix,
    members: Iterable[str],
    nonmembers: Iterable[str],
    confidence: float = 0.95,
) -> MemberComparison:
    """Members vs non-members for one metric, both ranked in ``matrix``'s one gallery.

    Top-1 uses average tie ranks (a tie for first is not a top-1). ``own_mean`` is the
    metric's mean score to the own original (SSIM to the own original for ``ssim``).
    """
    m_ids, n_ids = {str(i) for i in members}, {str(i) for i in nonmembers}
    if m_ids & n_ids:
        raise ValueError(f"ids both member and non-member: {sorted(m_ids & n_ids)[:5]}")
    rows = matrix.reconstruction_ids
    ranks = rank_of_true_match(matrix)
    m = _group(matrix, np.array([r in m_ids for r in rows]), ranks, confidence)
    n = _group(matrix, np.array([r in n_ids for r in rows]), ranks, confidence)
    interval = newcombe_interval(m.top1, m.n, n.top1, n.n, confidence)
    d = m.top1_rate - n.top1_rate if m.n and n.n else float("nan")
    p = fisher_exact_p(m.top1, m.n, n.top1, n.n)
    n_cand = len(matrix.candidate_ids)
    text = verdict(matrix.metric, m, n, interval, p, n_cand, confidence)
    return MemberComparison(matrix.metric, n_cand, m, n, d, interval, p, confidence, text, p)


def holm_adjusted(comparisons: dict[str, MemberComparison]) -> dict[str, MemberComparison]:
    """The same comparisons with Fisher's p Holm-adjusted over them, and verdicts reworded.

    One run is compared by several metrics; a member advantage is claimed only where the
    interval excludes zero *and* the adjusted p is below ``1 - confidence``
    (``statsmodels.stats.multitest.multipletests``, method ``holm``).
    """
    from statsmodels.stats.multitest import multipletests

    keys = [k for k, c in comparisons.items() if np.isfinite(c.fisher_p)]
    if not keys:
        return dict(comparisons)
    adjusted = multipletests([comparisons[k].fisher_p for k in keys], method="holm")[1]
    out = dict(comparisons)
    for k, q in zip(keys, adjusted, strict=True):
        c = comparisons[k]
        text = verdict(
            c.metric,
            c.members,
            c.nonmembers,
            c.interval,
            c.fisher_p,
            c.n_candidates,
            c.confidence,
            adjusted_p=float(q),
            n_metrics=len(keys),
        )
        out[k] = dataclasses.replace(c, verdict=text, fisher_p_holm=float(q), n_metrics=len(keys))
    return out


def _pct(v: float, sign: bool = False) -> str:
    return f"{100 * v:+.0f}" if sign else f"{100 * v:.0f}%"


def verdict(
    metric: str,
    members: GroupFigures,
    nonmembers: GroupFigures,
    interval: tuple[float, float],
    fisher_p: float,
    n_candidates: int,
    confidence: float = 0.95,
    adjusted_p: float | None = None,
    n_metrics: int = 1,
) -> str:
    """Plain-language verdict: latent exposure for anyone, the model's memory, or inconclusive.

    Worded with the interval of the difference in top-1 rates (members minus non-members).
    A member advantage is claimed only when the interval excludes zero and Fisher's p
    (``adjusted_p``: Holm-adjusted over ``n_metrics`` metrics, where given) is below
    ``1 - confidence``; an interval above zero that the test does not confirm is "suggestive".
    """
    if members.n == 0 or nonmembers.n == 0:
        return f"{metric}: no comparison: {members.n} member and {nonmembers.n} non-member reconstructions."
    lo, hi = interval
    level = f"{100 * confidence:.0f}%"
    facts = (
        f"{metric}: members identified {members.top1}/{members.n} ({_pct(members.top1_rate)}), "
        f"non-members {nonmembers.top1}/{nonmembers.n} ({_pct(nonmembers.top1_rate)}); "
        f"difference {_pct(members.top1_rate - nonmembers.top1_rate, True)} points, "
        f"{level} interval {_pct(lo, True)} to {_pct(hi, True)}, Fisher p = {fisher_p:.2g}."
    )
    chance = 1.0 / max(n_candidates, 1)
    nonmembers_found = nonmembers.top1_interval[0] > chance
    p_claim = fisher_p if adjusted_p is None else adjusted_p
    if lo > 0 and not p_claim < 1 - confidence:
        tested = f"Fisher's exact test does not confirm it (p = {fisher_p:.2g}" + (
            f"; Holm-adjusted over {n_metrics} metrics, p = {adjusted_p:.2g})"
            if adjusted_p is not None and n_metrics > 1
            else ")"
        )
        return (
            f"{facts} Suggestive, not established: the interval lies above zero but {tested}; "
            f"more non-members are needed to tell the model's memory of its training patients "
            f"from latent exposure for anyone."
        )
    if lo > 0:
        return (
            f"{facts} Members are identified more often: the published weights carry their "
            f"training patients (the model's memory adds at least {_pct(lo, True)} points)."
        )
    if nonmembers_found and hi <= ALIKE_MARGIN:
        return (
            f"{facts} Non-members are identified about as well as members: the risk lies in "
            f"exposing latent codes, whoever the patient; any extra risk for training patients "
            f"is at most {_pct(max(hi, 0.0), True)} points."
        )
    tail = (
        " Neither group is identified clearly above chance."
        if not nonmembers_found and members.top1_interval[0] <= chance
        else ""
    )
    return (
        f"{facts} Inconclusive: with {members.n} members and {nonmembers.n} non-members the "
        f"interval allows anything from {_pct(lo, True)} to {_pct(hi, True)} points, so it cannot "
        f"tell latent exposure for anyone from the model's memory of its training patients.{tail}"
    )


# ---- membership inference --------------------------------------------------------------------
