"""The paper's 3D SegNet: a VGG16-style encoder and a decoder unpooling with the encoder's indices."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import conv_block, layout_args
from .latent import Latent
from .unet import check_input

__all__ = ["SegNet3D", "convs_per_level"]


def convs_per_level(depth: int) -> tuple[int, ...]:
    """VGG16's pattern: two convolutions in the first two levels, three below."""
    return tuple(2 if k < 2 else 3 for k in range(depth))


class SegNet3D(nn.Module):
    """3D SegNet without skip connections.

    Parameters are those of :class:`~inversion_audit.models.unet.UNet3D`. Level k has
    ``z * 2**k`` filters; after each level a y^3 max-pooling keeps its indices. The
    mirrored decoder unpools with those indices (``nn.MaxUnpool3d``).

    ``encode(x)`` returns the :class:`Latent` with the bottleneck (output of the last
    pooling, ``z * 2**(n-1)`` channels) and the pooling indices.
    """

    arch = "segnet"

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
        ch = [base_filters * 2**k for k in range(depth)]
        n_convs = convs_per_level(depth)
        self.down = nn.ModuleList(
            conv_block(in_channels if k == 0 else ch[k - 1], ch[k], n_convs[k], kernel_size, norm)
            for k in range(depth)
        )
        self.pool = nn.MaxPool3d(pool_size, return_indices=True)
        self.unpool = nn.MaxUnpool3d(pool_size)
        # decoder level k mirrors encoder level k: ch[k] -> ch[k-1] (ch[0] at the top)
        self.dec = nn.ModuleList(
            conv_block(ch[k], ch[max(k - 1, 0)], n_convs[k], kernel_size, norm)
            for k in range(depth)
        )
        self.head = nn.Conv3d(ch[0], n_classes, 1)

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this."""
        return self.arch_args["pool_size"] ** self.arch_args["depth"]

    def encode(self, x: torch.Tensor) -> Latent:
        """Z = Enc(X): the last pooling's output and every level's pooling indices."""
        check_input(x, self.multiple, self.arch_args["in_channels"])
        indices = []
        for block in self.down:
            x, idx = self.pool(block(x))
            indices.append(idx)
        return Latent(x, (), tuple(indices))

    def decode(self, latent: Latent) -> torch.Tensor:
        """Segmentation logits from a full latent (bottleneck and pooling indices)."""
        x = latent.bottleneck
        for k in reversed(range(len(self.down))):
            x = self.dec[k](self.unpool(x, latent.indices[k]))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
