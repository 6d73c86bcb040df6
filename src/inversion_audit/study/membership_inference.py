"""Membership inference from per-subject signals (reconstruction error, similarity to the
own original, ...): a fit-free rank average and a cross-validated logistic model, with
stratified bootstrap intervals for AUC and TPR at 1% / 10% FPR. Pure numpy/scipy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..matching.retrieval import roc_auc, tpr_at_fpr
from .membership import _clean

__all__ = [
    "SignalResult",
    "bootstrap_roc",
    "cross_validated_logistic",
    "interval_sentence",
    "membership_inference",
    "rank_average",
    "reconstruction_error",
]


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


def bootstrap_roc(
    pos: np.ndarray,
    neg: np.ndarray,
    fprs: tuple[float, ...] = (0.01, 0.10),
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """Stratified bootstrap intervals of the AUC and of the TPR at each of ``fprs``.

    Members (``pos``) and non-members (``neg``) are resampled separately, with replacement,
    ``n_boot`` times; the intervals are the equal-tailed ``confidence`` quantiles.
    Returns ``(auc_interval, [tpr_interval per fpr])``.
    """
    rng = np.random.default_rng(seed)
    aucs: list[float] = []
    tprs: list[list[float]] = [[] for _ in fprs]
    for _ in range(n_boot):
        p = pos[rng.integers(0, pos.size, pos.size)]
        n = neg[rng.integers(0, neg.size, neg.size)]
        aucs.append(roc_auc(p, n))
        for row, fpr in zip(tprs, fprs, strict=True):
            row.append(tpr_at_fpr(p, n, fpr))
    q = [(1 - confidence) / 2, (1 + confidence) / 2]

    def interval(values: list[float]) -> tuple[float, float]:
        lo, hi = np.quantile(values, q)
        return float(lo), float(hi)

    return interval(aucs), [interval(v) for v in tprs]


def _bootstrap(
    pos: np.ndarray, neg: np.ndarray, n_boot: int, seed: int, confidence: float
) -> dict[str, tuple[float, float]]:
    auc, (t1, t10) = bootstrap_roc(pos, neg, (0.01, 0.10), n_boot, seed, confidence)
    return {"auc": auc, "t1": t1, "t10": t10}


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
