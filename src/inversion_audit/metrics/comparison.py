"""A reconstruction compared with its original, voxel for voxel: difference, SSIM map, SSIM,
correlation and PSNR (what the napari Compare widget shows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io import Volume
from ..progress import ProgressCallback, report

__all__ = ["Comparison", "align_to", "compare_volumes"]


@dataclass(frozen=True)
class Comparison:
    """A reconstruction compared with its original on the original's grid."""

    aligned: np.ndarray
    difference: np.ndarray
    ssim_map: np.ndarray
    ssim: float
    correlation: float
    psnr: float
    data_range: float


def align_to(volume: Volume, reference: Volume) -> np.ndarray:
    """``volume`` on ``reference``'s grid, resampled (linear) unless both have the same shape and
    voxel axes: then they are compared voxel for voxel, as in the study's preprocessed space
    (where each subject's grid has its own world position)."""
    if volume.shape == reference.shape and np.allclose(
        volume.affine[:3, :3], reference.affine[:3, :3], atol=1e-3
    ):
        return np.asarray(volume.array, np.float32)
    import nibabel as nib
    from nibabel.processing import resample_from_to

    img = nib.Nifti1Image(np.asarray(volume.array, np.float32), volume.affine)
    out = resample_from_to(img, (reference.shape, reference.affine), order=1, cval=0.0)
    return np.asarray(out.dataobj, np.float32)


def compare_volumes(
    original: Volume, reconstruction: Volume, progress: ProgressCallback | None = None
) -> Comparison:
    """Difference (reconstruction - original), SSIM map and global SSIM, correlation, PSNR.

    The reconstruction is put on the original's grid first (:func:`align_to`). The data
    range is 1 for images in [0, 1] (preprocessed space), else the joint range.
    """
    from . import correlation, psnr, ssim

    report(progress, 0, 3, "align")
    a = np.asarray(original.array, np.float32)
    b = align_to(reconstruction, original)
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    data_range = 1.0 if lo >= 0.0 and hi <= 1.0 else max(hi - lo, 1e-6)
    report(progress, 1, 3, "SSIM map")
    value, smap = ssim(b, a, data_range=data_range, return_map=True)
    report(progress, 2, 3, "correlation, PSNR")
    out = Comparison(
        aligned=b,
        difference=(b - a).astype(np.float32),
        ssim_map=np.asarray(smap, np.float32),
        ssim=float(value),
        correlation=float(correlation(b, a)),
        psnr=float(psnr(a, b, data_range=data_range)),
        data_range=float(data_range),
    )
    report(progress, 3, 3, "done")
    return out
