"""Small statistics shared by the study report and the reader-study analysis."""

from __future__ import annotations

__all__ = ["wilson_interval"]


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``correct / n`` (``None`` when ``n == 0``)."""
    if n == 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(correct, n, alpha=1 - confidence, method="wilson")
    return float(lo), float(hi)
