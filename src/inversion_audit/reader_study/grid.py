"""One grid and one window for every image of a case.

Every image of a case is shown (and written into a reader package) on one common grid: the
same shape, voxel size and the centred affine that scoring uses (no subject's scanner
position), and every image of a case is shown with one intensity window
(:func:`case_window`), computed from the case's own images by the review widgets' display
rule (:mod:`inversion_audit.gui._display`, restated here without napari or torch): from the
lowest to the highest of the images' robust ranges, each image's robust range being its
0.5th to 99.5th percentile (:data:`WINDOW_PERCENTILES`) over its brain voxels
(:func:`brain_voxels`). So one intensity is one grey in every image of a case, no image has
more than 1% of its brain voxels outside the window (at most 0.5% beyond each end), and no
image carries a window of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..metrics.deformation import centred_affine

__all__ = [
    "DISPLAY_WINDOW",
    "WINDOW_PERCENTILES",
    "brain_voxels",
    "case_window",
    "common_grid",
    "display_array",
    "image_range",
]

#: the preprocessed space's range (preprocessed images are scaled to 0-1), which the
#: candidate review's blinded view clips to; reader cases use :func:`case_window` instead
DISPLAY_WINDOW = (0.0, 1.0)
#: the robust range of an image: these percentiles of its brain voxels
WINDOW_PERCENTILES = (0.5, 99.5)


def display_array(array: np.ndarray) -> np.ndarray:
    """``array`` as float32 with NaN as 0, not clipped (its window is the case's)."""
    return np.nan_to_num(np.asarray(array, np.float32))


def brain_voxels(array: np.ndarray) -> np.ndarray:
    """The brain (or head) of an image, as the review widgets take it: its non-zero voxels
    when its background is exactly zero (skull-stripped), else the voxels above half Otsu's
    threshold of its positive voxels; all voxels when it is flat."""
    data = display_array(array)
    nonzero = data != 0
    if nonzero.any() and nonzero.mean() < 0.99:
        return nonzero
    positive = data[data > 0]
    if positive.size == 0 or positive.min() == positive.max():
        return np.ones(data.shape, bool)
    from skimage.filters import threshold_otsu

    return data > threshold_otsu(positive) * 0.5


def image_range(array: np.ndarray) -> tuple[float, float]:
    """An image's robust range: :data:`WINDOW_PERCENTILES` of its brain voxels, taken at data
    values so that at most 0.5% of them lie beyond each end."""
    data = display_array(array)
    values = data[brain_voxels(data)]
    if values.size == 0:
        values = data.ravel()
    if values.size == 0:
        return 0.0, 1.0
    lo = float(np.percentile(values, WINDOW_PERCENTILES[0], method="lower"))
    hi = float(np.percentile(values, WINDOW_PERCENTILES[1], method="higher"))
    return lo, hi


def case_window(arrays: Sequence[np.ndarray]) -> tuple[float, float]:
    """The one window of a case's images: from the lowest to the highest of their robust
    ranges (:func:`image_range`); one unit wide from its low end when that is empty."""
    ranges = [image_range(a) for a in arrays] or [DISPLAY_WINDOW]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


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
