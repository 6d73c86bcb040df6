"""Voxel-wise similarity: correlation (the paper's "MCC"), MSE and PSNR, with an optional mask."""

from __future__ import annotations

import numpy as np

__all__ = ["correlation", "correlation_matrix", "mse", "psnr"]


def _values(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images have different shapes {a.shape} and {b.shape}")
    if mask is None:
        return a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != a.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {a.shape}")
    if not mask.any():
        raise ValueError("mask is empty")
    return a[mask].astype(np.float64), b[mask].astype(np.float64)


def correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of the grey values of two images (over ``mask`` voxels if given).

    This is the paper's "MCC": a correlation of grey values (normalised
    cross-correlation), not the binary Matthews correlation coefficient. A
    constant image has no defined correlation and gives NaN.
    """
    x, y = _values(a, b, mask)
    x = x - x.mean()
    y = y - y.mean()
    denom = np.sqrt((x @ x) * (y @ y))
    if denom == 0:
        return float("nan")
    return float((x @ y) / denom)


def correlation_matrix(
    reconstructions: np.ndarray, candidates: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Pearson correlation of every reconstruction ``[N, ...]`` with every candidate ``[M, ...]``.

    ``mask`` is ``None``, one boolean volume shared by all pairs (both computed as
    one matrix product of standardised images), or ``[M, ...]``, one mask per
    candidate (computed pair by pair). Equals :func:`correlation` pair by pair.
    """
    r = np.asarray(reconstructions)
    c = np.asarray(candidates)
    if r.shape[1:] != c.shape[1:]:
        raise ValueError(
            f"reconstruction shape {r.shape[1:]} differs from candidate shape {c.shape[1:]}"
        )
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape == c.shape:
            return np.array(
                [[correlation(x, y, mk) for y, mk in zip(c, mask, strict=True)] for x in r]
            )
        if mask.shape != r.shape[1:]:
            raise ValueError(f"mask shape {mask.shape} must be {r.shape[1:]} or {c.shape}")
        if not mask.any():
            raise ValueError("mask is empty")

    def standardise(stack: np.ndarray) -> np.ndarray:
        flat = stack[:, mask] if mask is not None else stack.reshape(len(stack), -1)
        flat = flat.astype(np.float64)
        flat -= flat.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(flat, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0, flat / norm, np.nan)

    return standardise(r) @ standardise(c).T


def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared difference of two images (over ``mask`` voxels if given)."""
    x, y = _values(a, b, mask)
    return float(np.mean((x - y) ** 2))


def psnr(
    a: np.ndarray, b: np.ndarray, data_range: float | None = None, mask: np.ndarray | None = None
) -> float:
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` in dB; infinite for identical images.

    ``data_range`` ``R`` defaults to the range of ``a`` (the reference image);
    pass ``1.0`` for preprocessed volumes in [0, 1].
    """
    x, y = _values(a, b, mask)
    if data_range is None:
        data_range = float(x.max() - x.min())
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    err = float(np.mean((x - y) ** 2))
    if err == 0:
        return float("inf")
    return float(10 * np.log10(data_range**2 / err))
