"""Loss functions: Dice + cross-entropy for targets, the paper's eq. 1 (plus options) for inversion."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["segmentation_loss", "gradient_difference_loss", "InversionLoss"]


def segmentation_loss() -> nn.Module:
    """Dice plus cross-entropy over all classes; takes logits (B, C, ...) and labels (B, 1, ...)."""
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True)


def gradient_difference_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the finite-difference image gradients along each spatial axis."""
    total = prediction.new_zeros(())
    for axis in range(2, prediction.ndim):
        total = total + torch.mean(
            (torch.diff(prediction, dim=axis) - torch.diff(target, dim=axis)) ** 2
        )
    return total / (prediction.ndim - 2)


class InversionLoss(nn.Module):
    """``||D^(Z) - X||^2`` (paper eq. 1, as the voxel mean) plus optional SSIM and gradient terms.

    ``forward`` returns the total loss; ``tensor_terms`` holds the parts of the last call as
    detached tensors on the loss's device, ``terms`` the same as floats (a device sync).
    """

    def __init__(self, ssim_weight: float = 0.0, gradient_weight: float = 0.0) -> None:
        super().__init__()
        self.ssim_weight = float(ssim_weight)
        self.gradient_weight = float(gradient_weight)
        self.ssim = None
        if self.ssim_weight > 0:
            from monai.losses import SSIMLoss

            self.ssim = SSIMLoss(spatial_dims=3, data_range=1.0)
        self.tensor_terms: dict[str, torch.Tensor] = {}

    @property
    def terms(self) -> dict[str, float]:
        """The parts of the last call as floats."""
        return {name: float(value) for name, value in self.tensor_terms.items()}

    def forward(self, reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        mse = torch.mean((reconstruction - image) ** 2)
        total = mse
        self.tensor_terms = {"mse": mse.detach()}
        if self.ssim is not None:
            ssim_term = self.ssim(reconstruction.float(), image.float())
            total = total + self.ssim_weight * ssim_term
            self.tensor_terms["ssim"] = ssim_term.detach()
        if self.gradient_weight > 0:
            grad_term = gradient_difference_loss(reconstruction, image)
            total = total + self.gradient_weight * grad_term
            self.tensor_terms["gradient"] = grad_term.detach()
        return total
