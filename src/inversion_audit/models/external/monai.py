"""A MONAI network named from an allowlist, built from literal keyword arguments, with its weights."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...io import file_hash
from .args import check_literal
from .latent import LatentTaps, find_latent
from .model import ExternalModel
from .weights import fill_network, read_state_dict

__all__ = [
    "MONAI_NETWORKS",
    "build_monai_network",
    "in_channels_of",
    "latent_on_grid",
    "load_monai",
]

#: class names of ``monai.networks.nets`` that may be built (3D segmentation networks)
MONAI_NETWORKS = ("UNet", "BasicUNet", "SegResNet", "DynUNet", "AttentionUnet", "SwinUNETR")


def build_monai_network(name: str, args: dict[str, Any], where: str = "model.network") -> Any:
    """Instantiate ``monai.networks.nets.<name>`` (allowlisted) with literal ``args``."""
    from monai.networks import nets

    short = name.removeprefix("monai.networks.nets.")
    if short not in MONAI_NETWORKS:
        raise ConfigError(
            f"{where}: network {name!r} is not allowed; choose one of {', '.join(MONAI_NETWORKS)}"
        )
    kwargs = check_literal(dict(args), f"{where} arguments")
    if kwargs.get("spatial_dims", 3) != 3:
        raise ConfigError(f"{where}: only 3D networks are audited (spatial_dims = 3)")
    try:
        return getattr(nets, short)(**kwargs)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise ConfigError(f"{where}: cannot build {short} from {kwargs}: {exc}") from exc


def in_channels_of(network: Any, args: dict[str, Any]) -> int:
    """The ``in_channels`` argument, or the class's default."""
    if "in_channels" in args:
        return int(args["in_channels"])
    default = inspect.signature(type(network).__init__).parameters.get("in_channels")
    return (
        int(default.default) if default is not None and default.default is not inspect._empty else 1
    )


def load_monai(
    weights: str | os.PathLike[str],
    network: str,
    network_args: dict[str, Any],
    grid: tuple[int, ...] = (32, 32, 32),
    latent: str = "auto",
    source: str = "monai",
) -> ExternalModel:
    """Build an allowlisted MONAI network, load its weights and find its latent on ``grid``.

    ``weights`` is ``.safetensors`` or a ``.pt``/``.pth`` state dict (``weights_only=True``;
    a nested ``{"model": ...}`` or ``{"state_dict": ...}`` is unwrapped).
    """
    path = Path(weights)
    net = build_monai_network(network, network_args)
    fill_network(net, read_state_dict(path), path, f"MONAI {type(net).__name__}")
    net.eval()
    channels = in_channels_of(net, network_args)
    grid = tuple(int(g) for g in grid)
    taps = latent_on_grid(net, channels, grid, latent, path)
    model = ExternalModel(
        net, source, type(net).__name__, channels, grid, taps, path, file_hash(path)
    )
    if source == "monai":  # what rebuilds it beside a decoder (a bundle has its own config)
        model.build = {"network_args": check_literal(dict(network_args), "model.network_args")}
    return model


def latent_on_grid(
    net: Any, channels: int, grid: tuple[int, ...], latent: str, path: Path
) -> LatentTaps:
    """:func:`find_latent`, with a network that cannot run on ``grid`` reported as a :class:`ConfigError`."""
    try:
        return find_latent(net, channels, grid, latent)
    except ConfigError:
        raise
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise ConfigError(
            f"{path}: {type(net).__name__} does not accept an input of {channels} channel(s) on grid "
            f"{grid} ({str(exc).splitlines()[0][:200]}); set the preprocessing shape to a grid it accepts"
        ) from exc
