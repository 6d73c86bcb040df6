"""Dice overlap per label, for re-segmenting reconstructions with the target network.

The paper segments each reconstruction with the target network and compares the
result with the subject's ground-truth labels; its baseline is the target
network's segmentation of the original scan against the same labels. Both are
:func:`segmentation_dice` with a ``segment`` callable (for example
``functools.partial(segment, model)``), so this module never imports a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["dice", "segmentation_dice", "dice_baseline"]

Segmenter = Callable[[np.ndarray], np.ndarray]


def dice(
    pred: np.ndarray, truth: np.ndarray, labels: Iterable[int] | None = None
) -> tuple[dict[int, float], float]:
    """Dice coefficient ``2 |P & T| / (|P| + |T|)`` per label, and their mean.

    Parameters
    ----------
    pred, truth : integer label maps of equal shape (0 is background).
    labels : the labels to score; ``None`` takes every label > 0 present in
        ``truth``. A label absent from both maps scores NaN and is left out of
        the mean; a label present in only one scores 0.

    Returns
    -------
    ``(per_label, mean)``: a dict label -> Dice and the mean over labels (NaN if none).
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"label maps have different shapes {pred.shape} and {truth.shape}")
    for name, arr in (("pred", pred), ("truth", truth)):
        if not np.issubdtype(arr.dtype, np.integer) and not np.array_equal(arr, np.rint(arr)):
            raise ValueError(f"{name} holds non-integer labels")
    p = pred.astype(np.int64).ravel()
    t = truth.astype(np.int64).ravel()
    if p.size and (p.min() < 0 or t.min() < 0):
        raise ValueError("label maps must not hold negative labels")
    if labels is None:
        wanted = np.unique(t)
        wanted = wanted[wanted > 0]
    else:
        wanted = np.asarray(sorted({int(v) for v in labels}), dtype=np.int64)
    n = int(max(p.max(initial=0), t.max(initial=0), wanted.max(initial=0))) + 1
    size_p = np.bincount(p, minlength=n)
    size_t = np.bincount(t, minlength=n)
    both = np.bincount(t[p == t], minlength=n)
    per_label: dict[int, float] = {}
    for lab in wanted:
        denom = size_p[lab] + size_t[lab]
        per_label[int(lab)] = float(2 * both[lab] / denom) if denom else float("nan")
    scored = [v for v in per_label.values() if not np.isnan(v)]
    return per_label, float(np.mean(scored)) if scored else float("nan")


def segmentation_dice(
    segment: Segmenter, image: np.ndarray, truth: np.ndarray, labels: Iterable[int] | None = None
) -> tuple[dict[int, float], float]:
    """Segment ``image`` with ``segment`` and score it against ``truth`` with :func:`dice`.

    With a reconstruction as ``image`` this is the paper's Dice of the
    re-segmented reconstruction.
    """
    return dice(segment(image), truth, labels)


def dice_baseline(
    segment: Segmenter, original: np.ndarray, truth: np.ndarray, labels: Iterable[int] | None = None
) -> tuple[dict[int, float], float]:
    """The paper's baseline: the target network's segmentation of the *original* scan vs ground truth."""
    return segmentation_dice(segment, original, truth, labels)
