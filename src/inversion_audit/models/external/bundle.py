"""A MONAI bundle folder, read as plain data: MONAI's config parser is never called.

``configs/inference.json`` (or ``.yaml``, read with ``yaml.safe_load``) must hold a
``network_def`` table whose ``_target_`` is an allowlisted MONAI network (bare name or
``monai.networks.nets.X``) and whose arguments are literals. A ``$`` expression (which
MONAI would evaluate as Python) or an ``@`` reference is refused, naming the file and key.
The weights are ``models/model.safetensors`` or ``models/model.pt`` (``weights_only=True``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...io.untrusted import read_json, read_text
from .args import check_literal
from .model import ExternalModel
from .monai import MONAI_NETWORKS, load_monai

__all__ = ["load_bundle", "read_network_def"]

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
WEIGHT_NAMES = ("model.safetensors", "model.pt", "model.pth")


def _read_config(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        data = read_json(path, ConfigError, "bundle config")
    else:
        text = read_text(path, ConfigError, "bundle config")
        try:
            import yaml

            data = yaml.safe_load(text)
        except Exception as exc:  # yaml.YAMLError and friends
            raise ConfigError(
                f"{path}: unreadable bundle config ({type(exc).__name__}: {exc})"
            ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a bundle config must be a table at the top level")
    return data


def read_network_def(folder: str | os.PathLike[str]) -> tuple[str, dict[str, Any], Path]:
    """``(network class, literal arguments, config file)`` of a bundle's ``network_def``."""
    configs = Path(folder) / "configs"
    found = [configs / n for n in CONFIG_NAMES if (configs / n).is_file()]
    if not found:
        raise ConfigError(f"{folder}: not a MONAI bundle: no configs/inference.json or .yaml")
    path = found[0]
    data = _read_config(path)
    if "network_def" not in data:
        raise ConfigError(f"{path}: no 'network_def' entry")
    node = data["network_def"]
    if isinstance(node, str):
        check_literal(node, f"{path}: key network_def")
    if not isinstance(node, dict):
        raise ConfigError(f"{path}: key network_def must be a table with a _target_")
    target = node.get("_target_")
    if not isinstance(target, str):
        raise ConfigError(f"{path}: key network_def._target_ is missing or not a name")
    check_literal(target, f"{path}: key network_def._target_")
    if target.removeprefix("monai.networks.nets.") not in MONAI_NETWORKS:
        raise ConfigError(
            f"{path}: key network_def._target_ = {target!r} is not allowed; "
            f"choose one of {', '.join(MONAI_NETWORKS)}"
        )
    args = {}
    for key, value in node.items():
        if key == "_target_":
            continue
        if key.startswith("_"):
            raise ConfigError(f"{path}: key network_def.{key} is not a network argument")
        args[key] = check_literal(value, f"{path}: key network_def.{key}")
    return target, args, path


def _metadata_grid(folder: Path) -> tuple[int, ...] | None:
    meta = folder / "configs" / "metadata.json"
    if not meta.is_file():
        return None
    data = read_json(meta, ConfigError, "bundle metadata")
    try:
        shape = data["network_data_format"]["inputs"]["image"]["spatial_shape"]
    except (KeyError, TypeError):
        return None
    if isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape):
        return tuple(shape)
    return None


def load_bundle(
    folder: str | os.PathLike[str],
    grid: tuple[int, ...] | None = None,
    latent: str = "auto",
) -> ExternalModel:
    """Build a bundle's network from its ``network_def``, load ``models/model.*``, find its latent.

    ``grid`` defaults to the ``spatial_shape`` in ``configs/metadata.json``.
    """
    root = Path(folder)
    target, args, config = read_network_def(root)
    weights = next(
        (root / "models" / n for n in WEIGHT_NAMES if (root / "models" / n).is_file()), None
    )
    if weights is None:
        raise ConfigError(f"{root}: no models/model.safetensors or models/model.pt in the bundle")
    grid = grid or _metadata_grid(root)
    if grid is None:
        raise ConfigError(
            f"{root}: the input grid is not in configs/metadata.json (spatial_shape); give it explicitly"
        )
    try:
        return load_monai(weights, target, args, grid, latent, source="bundle")
    except ConfigError as exc:
        raise ConfigError(f"{config}: {exc}") from exc
