"""Reference verification figures by scikit-learn, for tests of the report's Table 3 columns."""

from __future__ import annotations

import numpy as np


def sklearn_verification(
    vals: dict[tuple[str, str], float], higher: bool, fpr: float = 0.01
) -> tuple[float, float] | None:
    """``(AUC, TPR at fpr)`` over every scored ``(reconstruction, candidate) -> value`` pair.

    Same subject (``reconstruction == candidate``) is the positive class; ``higher`` orients
    the scores. The TPR is the highest among sklearn's ROC points whose FPR is at most ``fpr``,
    every threshold kept (``drop_intermediate=False``; no interpolation between points).
    ``None`` when a class is empty; non-finite values are dropped.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    pairs = [(a == c, v if higher else -v) for (a, c), v in vals.items() if np.isfinite(v)]
    same = [s for s, _ in pairs]
    if all(same) or not any(same):
        return None
    score = [v for _, v in pairs]
    f, t, _ = roc_curve(same, score, drop_intermediate=False)
    return float(roc_auc_score(same, score)), float(t[f <= fpr + 1e-12].max())
