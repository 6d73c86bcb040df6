"""Reconstruction metrics: SSIM, correlation ("MCC"), PSNR/MSE, Dice, deformation (ANTs or greedy).

Each metric is a plain function on arrays (or :class:`~inversion_audit.io.Volume`
for the deformation). torch, ANTs and greedy are imported only inside the functions that
need them.
"""

from .deformation import DEFORMATION_PRESETS, DeformationResult, deformation
from .deformation_pairs import register_pairs
from .dice import dice, dice_baseline, segmentation_dice
from .registration import (
    BACKEND_PRESETS,
    REGISTRATION_BACKENDS,
    check_registration,
    displacement_magnitude,
)
from .similarity import correlation, correlation_matrix, mse, psnr
from .ssim import K1, K2, TRUNCATE, ssim, window_radius
from .ssim_matrix import ssim_matrix

__all__ = [
    "BACKEND_PRESETS",
    "DEFORMATION_PRESETS",
    "K1",
    "K2",
    "REGISTRATION_BACKENDS",
    "TRUNCATE",
    "DeformationResult",
    "check_registration",
    "correlation",
    "correlation_matrix",
    "deformation",
    "dice",
    "dice_baseline",
    "displacement_magnitude",
    "mse",
    "psnr",
    "register_pairs",
    "segmentation_dice",
    "ssim",
    "ssim_matrix",
    "window_radius",
]
