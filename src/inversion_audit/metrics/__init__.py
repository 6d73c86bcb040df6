"""Reconstruction metrics: SSIM, correlation ("MCC"), PSNR/MSE, Dice, ANTs deformation.

Each metric is a plain function on arrays (or :class:`~inversion_audit.io.Volume`
for the deformation). torch and ANTs are imported only inside the functions that
need them.
"""

from .deformation import DEFORMATION_PRESETS, DeformationResult, deformation
from .deformation_pairs import register_pairs
from .dice import dice, dice_baseline, segmentation_dice
from .similarity import correlation, correlation_matrix, mse, psnr
from .ssim import K1, K2, TRUNCATE, ssim, window_radius
from .ssim_matrix import ssim_matrix

__all__ = [
    "DEFORMATION_PRESETS",
    "K1",
    "K2",
    "TRUNCATE",
    "DeformationResult",
    "correlation",
    "correlation_matrix",
    "deformation",
    "dice",
    "dice_baseline",
    "mse",
    "psnr",
    "register_pairs",
    "segmentation_dice",
    "ssim",
    "ssim_matrix",
    "window_radius",
]
