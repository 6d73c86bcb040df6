"""Agreement and chance statistics of reader answers: Fleiss' and Cohen's kappa, the exact
binomial test against chance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["binomial_p_greater", "fleiss_kappa", "cohen_kappa"]


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def binomial_p_greater(correct: int, n: int, chance: float) -> float | None:
    """One-sided exact binomial p-value of ``correct`` or more hits in ``n`` at rate ``chance``."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(correct, n, chance, alternative="greater").pvalue)


def fleiss_kappa(ratings: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa of ``ratings[case][rater]`` (every case rated by the same number of raters).

    ``None`` when undefined (fewer than 2 raters or cases, or a single category overall).
    """
    if len(ratings) < 1 or min(len(r) for r in ratings) < 2:
        return None
    if len({len(r) for r in ratings}) != 1:
        raise ValueError("every case needs the same number of ratings for Fleiss' kappa")
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    cats = sorted({x for r in ratings for x in r})
    if len(cats) < 2:
        return None
    codes = np.array([[cats.index(x) for x in r] for r in ratings])
    table, _ = aggregate_raters(codes, n_cat=len(cats))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _finite(_fleiss(table, method="fleiss"))


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' paired labels (``None`` when undefined)."""
    if len(a) != len(b):
        raise ValueError("Cohen's kappa needs paired ratings")
    if not a:
        return None
    from statsmodels.stats.inter_rater import cohens_kappa as _cohen

    cats = sorted(set(a) | set(b))
    if len(cats) < 2:
        return None
    table = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b, strict=True):
        table[cats.index(x), cats.index(y)] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return _finite(_cohen(table).kappa)
