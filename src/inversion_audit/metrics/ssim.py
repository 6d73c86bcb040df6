"""SSIM (Wang et al. 2004) in 2D and 3D, with an optional mask and the SSIM map.

The defaults equal scikit-image's ``structural_similarity(a, b,
data_range=R, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``:
constants ``K1 = 0.01`` and ``K2 = 0.03``, a Gaussian window truncated at 3.5
sigma (radius 5, 11 taps, for sigma = 1.5), and the mean taken after cropping a
border of ``(win_size - 1) // 2`` voxels. scikit-image does the filtering; this
module adds the mask, the default data range and float64 computation.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

__all__ = ["K1", "K2", "TRUNCATE", "ssim", "window_radius", "crop_border", "default_data_range"]

K1 = 0.01
K2 = 0.03
#: Gaussian truncation (in sigmas) used by scikit-image with ``gaussian_weights=True``.
TRUNCATE = 3.5


def window_radius(sigma: float = 1.5) -> int:
    """Radius of the Gaussian window, as in scipy.ndimage and scikit-image (5 for sigma 1.5)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return int(TRUNCATE * sigma + 0.5)


def crop_border(array: np.ndarray, pad: int) -> np.ndarray:
    """Remove ``pad`` voxels from both ends of every axis (scikit-image's ``crop``)."""
    if pad == 0:
        return array
    return array[tuple(slice(pad, s - pad) for s in array.shape)]


def default_data_range(a: np.ndarray, b: np.ndarray) -> float:
    """The joint range ``max(a, b) - min(a, b)``, used when ``data_range`` is not given."""
    lo = min(float(np.min(a)), float(np.min(b)))
    hi = max(float(np.max(a)), float(np.max(b)))
    if hi <= lo:
        raise ValueError("both images are constant and equal; pass data_range explicitly")
    return hi - lo


def _check_pair(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None, win_size: int) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images have different shapes {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D image, got shape {a.shape}")
    if min(a.shape) < win_size:
        raise ValueError(
            f"image shape {a.shape} is smaller than the SSIM window ({win_size} voxels)"
        )
    if mask is not None and mask.shape != a.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {a.shape}")


@overload
def ssim(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float | None = ...,
    mask: np.ndarray | None = ...,
    sigma: float = ...,
    return_map: Literal[False] = ...,
) -> float: ...


@overload
def ssim(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float | None = ...,
    mask: np.ndarray | None = ...,
    sigma: float = ...,
    *,
    return_map: Literal[True],
) -> tuple[float, np.ndarray]: ...


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float | None = None,
    mask: np.ndarray | None = None,
    sigma: float = 1.5,
    return_map: bool = False,
) -> float | tuple[float, np.ndarray]:
    """Mean structural similarity of two 2D or 3D images.

    Parameters
    ----------
    a, b : arrays of equal shape (a reconstruction and a candidate original).
    data_range : the intensity range ``R`` in ``C1 = (K1 R)^2``, ``C2 = (K2 R)^2``.
        ``None`` uses the joint range of both images; pass ``1.0`` for
        preprocessed volumes in [0, 1].
    mask : optional boolean array; the mean is taken over the mask voxels of the
        cropped SSIM map instead of over all of it.
    sigma : standard deviation of the Gaussian window in voxels.
    return_map : also return the full (uncropped) SSIM map, for display.

    Returns
    -------
    The mean SSIM (1 means identical), and the SSIM map if ``return_map``.
    """
    from skimage.metrics import structural_similarity

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    pad = window_radius(sigma)
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    _check_pair(a, b, mask, 2 * pad + 1)
    if data_range is None:
        data_range = default_data_range(a, b)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    mean, smap = structural_similarity(
        a,
        b,
        data_range=float(data_range),
        gaussian_weights=True,
        sigma=sigma,
        use_sample_covariance=False,
        K1=K1,
        K2=K2,
        full=True,
    )
    if mask is not None:
        inside = crop_border(mask, pad)
        if not inside.any():
            raise ValueError("mask has no voxels inside the SSIM border crop")
        mean = crop_border(smap, pad)[inside].mean(dtype=np.float64)
    if return_map:
        return float(mean), smap
    return float(mean)
