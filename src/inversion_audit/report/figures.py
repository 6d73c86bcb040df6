"""The report's charts: rank histograms, own-vs-others SSIM, verification ROC curves.

Images are returned as base64 PNG strings so the HTML report embeds them (no external files).
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Figure",
    "figure_slot",
    "png_base64",
    "slot_key",
    "rank_histogram_figure",
    "own_vs_others_figure",
    "roc_curve",
    "verification_figure",
]


@dataclass
class Figure:
    """One embedded figure: base64 PNG, caption, and machine-readable facts about it
    (``info["alt"]``: its alt text, a description of what it shows; the caption otherwise)."""

    png: str
    caption: str
    info: dict = field(default_factory=dict)

    @property
    def alt(self) -> str:
        """The figure's alt text."""
        return str(self.info.get("alt") or self.caption)


_SLOT = re.compile(r"^<!-- figure: ([A-Za-z0-9_.+-]+) -->$")


def figure_slot(key: str) -> str:
    """The report's Markdown line that places figure ``key`` (the HTML shows the image there,
    report.md its caption, report.pdf the image)."""
    return f"<!-- figure: {key} -->"


def slot_key(line: str) -> str | None:
    """The figure key of a :func:`figure_slot` line, else ``None``."""
    m = _SLOT.match(line)
    return m.group(1) if m else None


def png_base64(fig, dpi: int = 72) -> str:
    """Render a matplotlib figure to base64 PNG and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def rank_histogram_figure(run: str, entry: dict) -> Figure:
    """Bar charts of the true original's rank, one per metric of Table 3 (three per row)."""
    import matplotlib.pyplot as plt

    metrics = list(entry["table3"])
    cols = min(3, max(len(metrics), 1))
    rows = max(1, math.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(9.0, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    described = []
    for ax, m in zip(axes.flat, metrics, strict=False):
        t = entry["table3"][m]
        h = t["rank_histogram"]
        ax.bar(np.arange(1, len(h) + 1), h, color="#4477aa")
        ax.set_title(f"{m}: rank of true original", fontsize=10)
        ax.set_xlabel("rank")
        ax.set_xlim(0.5, min(len(h), 15) + 0.5)
        described.append(f"{m}: ranked first {t['top1']} of {t['n']}")
    fig.tight_layout()
    return Figure(
        png_base64(fig, dpi=100),
        f"{run}: how often the true original ranked 1st, 2nd, ... per metric.",
        {"alt": f"Bar charts of the true original's rank for {run}; " + "; ".join(described)},
    )


def own_vs_others_figure(run: str, own: list[float], others: list[float]) -> Figure:
    """Box plot of SSIM with the own original vs with other subjects."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.boxplot([own, others])
    ax.set_xticks([1, 2], ["own original", "other subjects"])
    ax.set_ylabel("SSIM")
    ax.set_title(run, fontsize=9)
    fig.tight_layout()
    return Figure(
        png_base64(fig, dpi=140),
        f"{run}: SSIM of each reconstruction with its own original and with every other subject.",
        {
            "alt": f"Box plots of SSIM for {run}: with the own original (median "
            f"{np.median(own):.3f}, {len(own)} pairs) and with other subjects (median "
            f"{np.median(others):.3f}, {len(others)} pairs)."
        },
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

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    aucs = {}
    for metric, (own, others, higher) in pairs.items():
        fpr, tpr = roc_curve(own, others, higher)
        aucs[metric] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        ax.plot(fpr, tpr, label=f"{metric} (AUC {aucs[metric]:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (other subjects)")
    ax.set_ylabel("true positive rate (own original)")
    ax.set_title(run, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    auc_words = ", ".join(f"{m} {a:.3f}" for m, a in aucs.items())
    return Figure(
        png_base64(fig, dpi=140),
        f"{run}: verification ROC. Each curve thresholds one metric to decide whether a candidate "
        "is the reconstruction's own subject; the diagonal is chance.",
        {
            "auc": aucs,
            "alt": f"ROC curves of same-subject verification for {run}, one per metric; "
            f"AUC {auc_words}.",
        },
    )
