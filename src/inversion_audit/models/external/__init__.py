"""Models that hospitals bring: MONAI networks, MONAI bundles and nnU-Net v2 folders.

Each source rebuilds the network without running code from its files and returns an
:class:`ExternalModel` (network, tapped latent modules, expected input). Its
:meth:`ExternalModel.target` has the target networks' ``encode(x) -> Latent``
interface, so the inversion attack runs on it unchanged. Importing this package does
not import torch.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import ExternalModel

__all__ = [
    "SOURCES",
    "ExternalModel",
    "ExternalTarget",
    "LatentTaps",
    "find_latent",
    "load_bundle",
    "load_external",
    "load_monai",
    "load_nnunet",
    "rebuild_target",
]

from .args import SOURCES

_LAZY = {
    "ExternalModel": "model",
    "ExternalTarget": "model",
    "LatentTaps": "latent",
    "find_latent": "latent",
    "load_bundle": "bundle",
    "load_monai": "monai",
    "load_nnunet": "nnunet",
    "rebuild_target": "rebuild",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_external(
    source: str,
    path: str | os.PathLike[str],
    *,
    network: str | None = None,
    network_args: dict[str, Any] | None = None,
    fold: int | str = 0,
    grid: tuple[int, ...] | None = None,
    latent: str = "auto",
) -> ExternalModel:
    """Load an external model by source (``"monai"``, ``"bundle"`` or ``"nnunet"``).

    ``grid`` is the input grid for MONAI networks (bundles default to their metadata's);
    nnU-Net folders take theirs from the plans' patch size.
    """
    from ...errors import ConfigError

    if source == "monai":
        if not network:
            raise ConfigError("model.network is required for source = 'monai'")
        return __getattr__("load_monai")(
            path, network, network_args or {}, grid or (32, 32, 32), latent
        )
    if source == "bundle":
        return __getattr__("load_bundle")(path, grid, latent)
    if source == "nnunet":
        return __getattr__("load_nnunet")(path, fold, latent)
    raise ConfigError(f"model.source must be one of {', '.join(SOURCES)}, got {source!r}")
