"""One grid and one window for every image of a case.

Every image of a case is shown (and written into a reader package) on one common grid: the
same shape, voxel size and the centred affine that scoring uses (no subject's scanner
position), with one intensity window for all (:data:`DISPLAY_WINDOW`, the preprocessed
space's range).
"""

from __future__ import annotations

import numpy as np

from ..metrics.deformation import centred_affine

__all__ = ["DISPLAY_WINDOW", "common_grid", "windowed"]

#: the intensity window of every image (preprocessed images are scaled to 0-1); values
#: outside are clipped, so no image carries a range of its own
DISPLAY_WINDOW = (0.0, 1.0)


def windowed(array: np.ndarray) -> np.ndarray:
    """``array`` as float32 clipped to :data:`DISPLAY_WINDOW` (NaN as 0)."""
    return np.clip(np.nan_to_num(np.asarray(array, np.float32)), *DISPLAY_WINDOW)


def common_grid(
    arrays: list[np.ndarray], spacings: list[tuple[float, ...]]
) -> tuple[list[np.ndarray], tuple[float, ...], tuple[float, ...]]:
    """``arrays`` centred on one grid: (arrays, scale, translate) of the centred affine.

    Arrays of different shapes are zero-padded or cropped about their centres to the
    largest size along each axis; voxel sizes must agree (within 0.1%).
    """
    spacing = tuple(float(v) for v in spacings[0])
    if any(not np.allclose(sp, spacing, rtol=1e-3) for sp in spacings):
        raise ValueError("the images do not share one voxel size")
    shape = tuple(max(a.shape[i] for a in arrays) for i in range(3))
    out = []
    for a in arrays:
        canvas = np.zeros(shape, np.float32)
        src, dst = [], []
        for n, m in zip(a.shape, shape, strict=True):
            lo = (m - n) // 2 if m >= n else 0
            cut = (n - m) // 2 if n > m else 0
            size = min(n, m)
            dst.append(slice(lo, lo + size))
            src.append(slice(cut, cut + size))
        canvas[tuple(dst)] = a[tuple(src)]
        out.append(canvas)
    affine = centred_affine(shape, spacing)
    return out, spacing, tuple(float(t) for t in affine[:3, 3])
