"""The report's charts: rank histograms, own-vs-others SSIM, verification ROC curves.

Images are returned as base64 PNG strings so the HTML report embeds them (no external files).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Figure",
    "png_base64",
    "rank_histogram_figure",
    "own_vs_others_figure",
    "roc_curve",
    "verification_figure",
]


@dataclass
class Figure:
    """One embedded figure: base64 PNG, caption, and machine-readable facts about it."""

    png: str
    caption: str
    info: dict = field(default_factory=dict)


def png_base64(fig, dpi: int = 72) -> str:
    """Render a matplotlib figure to base64 PNG and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def rank_histogram_figure(run: str, entry: dict) -> Figure:
    """Bar charts of the true original's rank, one per metric of Table 3."""
    import matplotlib.pyplot as plt

    metrics = list(entry["table3"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 2.6), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        h = entry["table3"][m]["rank_histogram"]
        ax.bar(np.arange(1, len(h) + 1), h, color="#4477aa")
        ax.set_title(f"{m}: rank of true original", fontsize=9)
        ax.set_xlabel("rank")
        ax.set_xlim(0.5, min(len(h), 15) + 0.5)
    return Figure(
        png_base64(fig, dpi=80),
        f"{run}: how often the true original ranked 1st, 2nd, ... per metric.",
    )


def own_vs_others_figure(run: str, own: list[float], others: list[float]) -> Figure:
    """Box plot of SSIM with the own original vs with other subjects."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 2.6))
    ax.boxplot([own, others])
    ax.set_xticks([1, 2], ["own original", "other subjects"])
    ax.set_ylabel("SSIM")
    ax.set_title(run, fontsize=8)
    return Figure(
        png_base64(fig, dpi=80),
        f"{run}: SSIM of each reconstruction with its own original and with every other subject.",
    )


def roc_curve(
    own: list[float], others: list[float], higher_is_better: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of "same subject" decisions at every score threshold.

    Positives are reconstruction/own-original pairs, negatives pairs with other subjects.
    """
    sign = 1.0 if higher_is_better else -1.0
    pos, neg = sign * np.asarray(own, float), sign * np.asarray(others, float)
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    tpr = [0.0] + [float((pos >= t).mean()) for t in thresholds]
    fpr = [0.0] + [float((neg >= t).mean()) for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)


def verification_figure(
    run: str, pairs: dict[str, tuple[list[float], list[float], bool]]
) -> Figure:
    """ROC curves of verification ("is this candidate the reconstruction's subject?") per metric.

    ``pairs`` maps a metric to (own-pair scores, other-pair scores, higher is better).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    aucs = {}
    for metric, (own, others, higher) in pairs.items():
        fpr, tpr = roc_curve(own, others, higher)
        aucs[metric] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        ax.plot(fpr, tpr, label=f"{metric} (AUC {aucs[metric]:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (other subjects)")
    ax.set_ylabel("true positive rate (own original)")
    ax.set_title(run, fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    return Figure(
        png_base64(fig, dpi=80),
        f"{run}: verification ROC. Each curve thresholds one metric to decide whether a candidate "
        "is the reconstruction's own subject; the diagonal is chance.",
        {"auc": aucs},
    )
