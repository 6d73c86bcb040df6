"""Building blocks shared by the target networks and the inversion decoder."""

from __future__ import annotations

import math

from torch import nn

__all__ = ["NORMS", "conv_block", "check_layout"]

#: normalisation after each convolution (MONAI layer names)
NORMS = {"batch": "BATCH", "instance": "INSTANCE", "group": "GROUP", "none": None}


def norm_layer(norm: str, channels: int) -> str | tuple | None:
    """MONAI norm spec; ``group`` uses gcd(32, channels) groups, as Opacus's BatchNorm fix does."""
    if norm == "group":
        return ("GROUP", {"num_groups": math.gcd(32, channels)})
    return NORMS[norm]


def check_layout(
    depth: int, base_filters: int, kernel_size: int, pool_size: int, norm: str
) -> None:
    """Validate the paper's layout arguments (n, z, x, y) and the norm name."""
    if depth < 1:
        raise ValueError(f"depth (n) must be >= 1, got {depth}")
    if base_filters < 1:
        raise ValueError(f"base_filters (z) must be >= 1, got {base_filters}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size (x) must be odd and >= 1 to keep the grid size, got {kernel_size}"
        )
    if pool_size < 2:
        raise ValueError(f"pool_size (y) must be >= 2, got {pool_size}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def layout_args(
    in_channels: int,
    n_classes: int,
    depth: int,
    base_filters: int,
    kernel_size: int,
    pool_size: int,
    norm: str,
) -> dict[str, int | str]:
    """A target network's checked ``arch_args`` (the paper's n, z, x, y, the norm, the classes)."""
    check_layout(depth, base_filters, kernel_size, pool_size, norm)
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2 (background plus one structure), got {n_classes}")
    return {
        "in_channels": in_channels,
        "n_classes": n_classes,
        "depth": depth,
        "base_filters": base_filters,
        "kernel_size": kernel_size,
        "pool_size": pool_size,
        "norm": norm,
    }


def conv_block(
    in_channels: int, out_channels: int, n_convs: int, kernel_size: int, norm: str
) -> nn.Sequential:
    """``n_convs`` convolutions of size x^3, each followed by normalisation and ReLU.

    The first convolution maps ``in_channels`` to ``out_channels``; the grid size is kept.
    """
    from monai.networks.blocks import Convolution

    layers = [
        Convolution(
            spatial_dims=3,
            in_channels=in_channels if k == 0 else out_channels,
            out_channels=out_channels,
            kernel_size=kernel_size,
            act="RELU",
            norm=norm_layer(norm, out_channels),
            adn_ordering="NA",
        )
        for k in range(n_convs)
    ]
    return nn.Sequential(*layers)
