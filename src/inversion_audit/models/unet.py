"""The paper's 3D U-Net: x^3 convolutions with ReLU, y^3 max-pooling, z filters doubling over n levels."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import conv_block, layout_args
from .latent import Latent

__all__ = ["UNet3D"]


class UNet3D(nn.Module):
    """3D U-Net with skip connections and up-convolutions.

    Parameters
    ----------
    in_channels : image channels (1 for T1).
    n_classes : segmentation classes including background.
    depth : n, the number of max-pooling steps; inputs must be divisible by ``pool_size ** depth``.
    base_filters : z, filters at the finest level; doubled at each level down to
        ``z * 2**n`` in the bottleneck.
    kernel_size : x, the (odd) convolution size.
    pool_size : y, the max-pooling and up-convolution size.
    norm : ``"batch"``, ``"instance"`` or ``"none"`` after each convolution.

    ``encode(x)`` returns the :class:`Latent` (bottleneck plus the skip features);
    ``decode(latent)`` and ``forward(x)`` return segmentation logits (B, n_classes, ...).
    """

    arch = "unet"

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 4,
        base_filters: int = 16,
        kernel_size: int = 3,
        pool_size: int = 2,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.arch_args = layout_args(
            in_channels, n_classes, depth, base_filters, kernel_size, pool_size, norm
        )
        ch = [base_filters * 2**k for k in range(depth + 1)]
        self.down = nn.ModuleList(
            conv_block(in_channels if k == 0 else ch[k - 1], ch[k], 2, kernel_size, norm)
            for k in range(depth)
        )
        self.pool = nn.MaxPool3d(pool_size)
        self.bottom = conv_block(ch[depth - 1], ch[depth], 2, kernel_size, norm)
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(ch[k + 1], ch[k], pool_size, stride=pool_size) for k in range(depth)
        )
        self.dec = nn.ModuleList(
            conv_block(2 * ch[k], ch[k], 2, kernel_size, norm) for k in range(depth)
        )
        self.head = nn.Conv3d(ch[0], n_classes, 1)

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this."""
        return self.arch_args["pool_size"] ** self.arch_args["depth"]

    def encode(self, x: torch.Tensor) -> Latent:
        """Z = Enc(X): the bottleneck and the skip features (finest first)."""
        check_input(x, self.multiple, self.arch_args["in_channels"])
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        return Latent(self.bottom(x), tuple(skips))

    def decode(self, latent: Latent) -> torch.Tensor:
        """Segmentation logits from a full latent (bottleneck and skips)."""
        x = latent.bottleneck
        for k in reversed(range(len(self.down))):
            x = self.dec[k](torch.cat([latent.skips[k], self.up[k](x)], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def check_input(x: torch.Tensor, multiple: int, in_channels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is (B, C, X, Y, Z) with sizes divisible by ``multiple``."""
    if x.ndim != 5 or x.shape[1] != in_channels:
        raise ValueError(
            f"expected input of shape (B, {in_channels}, X, Y, Z), got {tuple(x.shape)}"
        )
    if any(s % multiple for s in x.shape[2:]):
        raise ValueError(
            f"input grid {tuple(x.shape[2:])} must be divisible by {multiple} (pool_size ** depth); "
            "set the preprocessing shape accordingly"
        )
