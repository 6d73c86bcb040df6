"""A MONAI network named from an explicit table, built from literal keyword arguments, with its weights."""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...io import file_hash
from .args import check_literal
from .arguments import check_arguments
from .latent import LatentTaps, find_latent
from .model import ExternalModel
from .tables import MONAI_NETWORKS, MONAI_REMOVED_ARGS, monai_short_name
from .weights import fill_network, read_state_dict

__all__ = [
    "MONAI_NETWORKS",
    "build_monai_network",
    "check_swin_grid",
    "in_channels_of",
    "latent_on_grid",
    "load_monai",
]


def build_monai_network(
    name: str,
    args: dict[str, Any],
    where: str = "model.network",
    args_where: str = "model.network_args",
) -> tuple[Any, tuple[str, ...]]:
    """``(network, dropped arguments)``: an allowed MONAI class built from literal ``args``.

    The class comes from :func:`.tables.monai_classes` (``name`` spelled as a bare class,
    ``monai.networks.nets.X`` or ``monai.networks.nets.<module>.X``); each argument must be
    one the installed class takes, except the known removed ones
    (:data:`.tables.MONAI_REMOVED_ARGS`), which are dropped and returned.
    """
    from .tables import monai_classes

    short = monai_short_name(name) if isinstance(name, str) else None
    if short is None:
        raise ConfigError(
            f"{where}: network {ascii(name)[:120]} is not allowed; "
            f"choose one of {', '.join(MONAI_NETWORKS)}"
        )
    cls = monai_classes()[short]
    literal = check_literal(dict(args), args_where)
    kwargs, dropped = check_arguments(
        cls, literal, args_where, removed=MONAI_REMOVED_ARGS.get(short, ())
    )
    if kwargs.get("spatial_dims", 3) != 3:
        raise ConfigError(f"{args_where}.spatial_dims: only 3D networks are audited (set 3)")
    try:
        return cls(**kwargs), dropped
    except (TypeError, ValueError, KeyError, AssertionError, IndexError) as exc:
        raise ConfigError(
            f"{args_where}: cannot build {short} from {str(kwargs)[:200]}: {str(exc)[:200]}"
        ) from exc


def check_swin_grid(net: Any, grid: tuple[int, ...], where: str) -> None:
    """A SwinUNETR's grid: every side a multiple of ``patch_size**5`` and the deepest grid > 1 voxel."""
    patch = getattr(net, "patch_size", 2)
    step = int(patch) ** 5 if isinstance(patch, int) else 32
    deepest = [g // step for g in grid]
    if all(g % step == 0 for g in grid) and math.prod(deepest) > 1:
        return
    want = [max(2 * step, -(-g // step) * step) for g in grid]
    raise ConfigError(
        f"{where}: SwinUNETR (patch_size {patch}) takes grids whose every side is a multiple of "
        f"{step} and that are larger than {step} x {step} x {step} (its deepest stage is 1/{step} "
        f"of the input and is instance-normalised); the grid is {list(grid)}: set the grid "
        f"(the preprocessing shape) to {want}"
    )


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
    config: Path | None = None,
) -> ExternalModel:
    """Build an allowed MONAI network, load its weights and find its latent on ``grid``.

    ``weights`` is ``.safetensors`` or a ``.pt``/``.pth`` state dict (``weights_only=True``;
    a nested ``{"model": ...}`` or ``{"state_dict": ...}`` is unwrapped). ``config`` is a
    bundle's config file, named in errors and notes instead of ``model.network_args``.
    """
    path = Path(weights)
    if config is None:
        keys = ("model.network", "model.network_args")
    else:
        keys = (f"{config}: key network_def._target_", f"{config}: key network_def")
    net, dropped = build_monai_network(network, network_args, *keys)
    fill_network(net, read_state_dict(path), path, f"MONAI {type(net).__name__}")
    net.eval()
    channels = in_channels_of(net, network_args)
    grid = tuple(int(g) for g in grid)
    if type(net).__name__ == "SwinUNETR":
        check_swin_grid(net, grid, str(path))
    taps = latent_on_grid(net, channels, grid, latent, path)
    model = ExternalModel(
        net, source, type(net).__name__, channels, grid, taps, path, file_hash(path)
    )
    model.channels_key = f"{keys[1]}.in_channels"
    if dropped:
        import monai

        model.preprocess_differences = tuple(
            f"{keys[1]}.{k}: dropped; MONAI {monai.__version__}'s {model.name} no longer takes it"
            for k in dropped
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
