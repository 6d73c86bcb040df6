"""Who leaks, and how strongly: members vs non-members, and membership inference (issue 18).

Members trained the target; non-members (the holdout) trained neither the target nor the
decoder. All reconstructions are ranked in one gallery that holds both. If non-members are
identified as well as members, the risk lies in exposing latent codes, whoever the patient;
if members are identified better, the published weights carry their training patients.

Pure numpy/scipy: intervals are Newcombe's hybrid score interval (Newcombe 1998, method 10)
for a difference of proportions and stratified bootstrap intervals for ROC figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..matching.ranking import ScoreMatrix, rank_of_true_match
from ..matching.retrieval import open_set_verification, roc_auc, tpr_at_fpr

__all__ = [
    "GroupFigures",
    "MemberComparison",
    "SignalResult",
    "compare_members",
    "cross_validated_logistic",
    "fisher_exact_p",
    "interval_sentence",
    "membership_inference",
    "newcombe_interval",
    "rank_average",
    "reconstruction_error",
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
    return MemberComparison(matrix.metric, n_cand, m, n, d, interval, p, confidence, text)


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
) -> str:
    """Plain-language verdict: latent exposure for anyone, the model's memory, or inconclusive.

    Worded with the interval of the difference in top-1 rates (members minus non-members).
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


def reconstruction_error(
    reconstruction: np.ndarray, original: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Mean squared error of a reconstruction to its original (inside ``mask`` when given)."""
    a = np.asarray(reconstruction, dtype=np.float64)
    b = np.asarray(original, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"reconstruction shape {a.shape} differs from original {b.shape}")
    diff = (a - b) ** 2
    if mask is not None:
        diff = diff[np.asarray(mask, dtype=bool)]
    return float(diff.mean()) if diff.size else float("nan")


def rank_average(features: np.ndarray) -> np.ndarray:
    """Mean of each column's normalised ranks (0..1): a fit-free combination of signals."""
    from scipy.stats import rankdata

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError("rank_average needs a (subjects, signals) array with >= 2 subjects")
    return ((rankdata(x, axis=0) - 1) / (x.shape[0] - 1)).mean(axis=1)


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    from scipy.optimize import minimize

    xb = np.column_stack([np.ones(len(x)), x])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xb @ w
        nll = np.sum(np.logaddexp(0.0, z) - y * z)
        grad = xb.T @ (1.0 / (1.0 + np.exp(-z)) - y)
        pen = l2 * np.sum(w[1:] ** 2) / 2
        return nll + pen, grad + l2 * np.concatenate([[0.0], w[1:]])

    return minimize(loss, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B").x


def cross_validated_logistic(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, l2: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Out-of-fold member probabilities from an L2 logistic regression (stratified k-fold).

    Each subject's probability comes from a model fitted without it, so the combined
    signal is calibrated and not scored on its own training data.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError("features must be (subjects, signals) with one label per subject")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for cls in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(idx.size) % folds
    out = np.full(len(y), np.nan)
    for k in range(folds):
        test, train = fold == k, fold != k
        if not test.any():
            continue
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        w = _fit_logistic((x[train] - mu) / sd, y[train], l2)
        z = w[0] + ((x[test] - mu) / sd) @ w[1:]
        out[test] = 1.0 / (1.0 + np.exp(-z))
    return out


@dataclass(frozen=True)
class SignalResult:
    """Membership inference by one signal (higher = more likely a member), with bootstrap intervals."""

    signal: str
    n_members: int
    n_nonmembers: int
    auc: float
    auc_interval: tuple[float, float]
    tpr_at_1pct_fpr: float
    tpr_at_1pct_interval: tuple[float, float]
    tpr_at_10pct_fpr: float
    tpr_at_10pct_interval: tuple[float, float]
    sentence: str = ""

    def to_dict(self) -> dict:
        """JSON-safe form (NaN becomes None)."""
        return _clean(dataclasses.asdict(self))  # type: ignore[return-value]


def _bootstrap(
    pos: np.ndarray, neg: np.ndarray, n_boot: int, seed: int, confidence: float
) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {"auc": [], "t1": [], "t10": []}
    for _ in range(n_boot):
        p = pos[rng.integers(0, pos.size, pos.size)]
        n = neg[rng.integers(0, neg.size, neg.size)]
        rows["auc"].append(roc_auc(p, n))
        rows["t1"].append(tpr_at_fpr(p, n, 0.01))
        rows["t10"].append(tpr_at_fpr(p, n, 0.10))
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    return {k: tuple(float(x) for x in np.quantile(v, q)) for k, v in rows.items()}  # type: ignore[misc]


def interval_sentence(result: SignalResult) -> str:
    """What the AUC interval and the subject counts allow one to say."""
    lo, hi = result.auc_interval
    step = 1.0 / result.n_nonmembers if result.n_nonmembers else float("nan")
    if lo > 0.5:
        auc_part = "better than guessing: membership leaks through this signal"
    elif hi < 0.5:
        auc_part = "below guessing: the signal points the wrong way"
    else:
        auc_part = "compatible with guessing (0.5): no membership leak shown, none ruled out"
    fpr_part = (
        f"with {result.n_nonmembers} non-members the false-positive rate moves in steps of "
        f"{100 * step:.0f}%, so TPR at 1% FPR is the TPR at zero false positives"
        if step > 0.01
        else f"{result.n_nonmembers} non-members resolve a 1% false-positive rate"
    )
    return (
        f"{result.signal}: AUC {result.auc:.2f} ({lo:.2f} to {hi:.2f}) is {auc_part}; {fpr_part} "
        f"({100 * result.tpr_at_1pct_fpr:.0f}%, interval {100 * result.tpr_at_1pct_interval[0]:.0f} "
        f"to {100 * result.tpr_at_1pct_interval[1]:.0f}%)."
    )


def membership_inference(
    signals: Mapping[str, tuple[np.ndarray, np.ndarray]],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    combine: bool = True,
) -> list[SignalResult]:
    """AUC and TPR at 1%/10% FPR of each membership signal, members vs non-members.

    ``signals`` maps a name to ``(member_scores, nonmember_scores)``, oriented so that a
    higher score means "more likely a member" (negate errors and losses). With ``combine``
    and two or more signals over the same subjects (same order), adds ``combined``:
    cross-validated logistic regression over all signals. Intervals: stratified bootstrap.
    """
    series = {
        k: (np.asarray(a, float).ravel(), np.asarray(b, float).ravel())
        for k, a, b in ((k, *v) for k, v in signals.items())
    }
    if combine and len(series) >= 2:
        shapes = {(a.size, b.size) for a, b in series.values()}
        if len(shapes) == 1:
            feats = np.column_stack([np.concatenate(v) for v in series.values()])
            n_m = next(iter(shapes))[0]
            labels = np.r_[np.ones(n_m), np.zeros(len(feats) - n_m)]
            ok = np.isfinite(feats).all(axis=1)
            if ok[:n_m].sum() >= 2 and ok[n_m:].sum() >= 2:
                prob = np.full(len(feats), np.nan)
                prob[ok] = cross_validated_logistic(
                    feats[ok],
                    labels[ok],
                    folds=min(5, int(ok[n_m:].sum()), int(ok[:n_m].sum())),
                    seed=seed,
                )
                series["combined"] = (prob[:n_m], prob[n_m:])
    out = []
    for name, (pos, neg) in series.items():
        pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
        if pos.size == 0 or neg.size == 0:
            nan2 = (float("nan"), float("nan"))
            res = SignalResult(
                name,
                int(pos.size),
                int(neg.size),
                float("nan"),
                nan2,
                float("nan"),
                nan2,
                float("nan"),
                nan2,
                f"{name}: no scores",
            )
            out.append(res)
            continue
        ci = _bootstrap(pos, neg, n_boot, seed, confidence)
        res = SignalResult(
            name,
            int(pos.size),
            int(neg.size),
            roc_auc(pos, neg),
            ci["auc"],
            tpr_at_fpr(pos, neg, 0.01),
            ci["t1"],
            tpr_at_fpr(pos, neg, 0.10),
            ci["t10"],
        )
        out.append(dataclasses.replace(res, sentence=interval_sentence(res)))
    return out
