"""Target segmentation networks (3D U-Net, 3D SegNet) and their attack surface.

Both architectures take the paper's layout: depth n (pooling steps), base filters z
(doubling per level), kernel x and pooling y. ``model.encode(x)`` returns a
:class:`Latent`; ``model(x)`` returns segmentation logits.

Importing this package does not import torch; the network classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .latent import THREAT_MODELS, Latent, check_threat_model

if TYPE_CHECKING:
    from .segnet import SegNet3D
    from .unet import UNet3D

__all__ = [
    "ARCHITECTURES",
    "THREAT_MODELS",
    "Latent",
    "SegNet3D",
    "UNet3D",
    "build_target_network",
    "check_threat_model",
]

#: architecture name -> "module:class"
ARCHITECTURES = {"unet": "unet:UNet3D", "segnet": "segnet:SegNet3D"}


def _class(arch: str) -> type:
    module, name = ARCHITECTURES[arch].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __getattr__(name: str) -> Any:
    for arch, spec in ARCHITECTURES.items():
        if spec.endswith(f":{name}"):
            return _class(arch)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_target_network(
    arch: str,
    in_channels: int = 1,
    n_classes: int = 2,
    depth: int = 4,
    base_filters: int = 16,
    kernel_size: int = 3,
    pool_size: int = 2,
    norm: str = "batch",
) -> UNet3D | SegNet3D:
    """Build an untrained target network by architecture name (``"unet"`` or ``"segnet"``).

    Bad arguments raise ``ValueError`` with the reason.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return _class(arch)(
        in_channels=in_channels,
        n_classes=n_classes,
        depth=depth,
        base_filters=base_filters,
        kernel_size=kernel_size,
        pool_size=pool_size,
        norm=norm,
    )
