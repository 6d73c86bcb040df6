"""An nnU-Net v2 trained model folder: the network rebuilt from its plans, checked before any import.

The folder holds ``plans.json``, ``dataset.json`` and ``fold_K/checkpoint_final.pth`` (or
``checkpoint_best.pth``). The class in the plans and every dotted name that nnU-Net would
import (``_kw_requires_import``) must be on an allowlist (``dynamic_network_architectures``
architectures, ``torch.nn`` layer classes) before nnU-Net's ``get_network_from_plans`` runs.
The checkpoint loads with ``weights_only=True`` and only numpy's scalar and dtype globals.
The preprocessing the plans record is mapped onto the project's :class:`PreprocessConfig`;
what cannot be matched is listed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, ConfigError
from ...io import file_hash
from ...io.untrusted import read_json
from .model import ExternalModel
from .monai import latent_on_grid
from .weights import fill_network, read_pickle

__all__ = ["check_architecture", "load_nnunet", "plans_preprocessing"]

_NETWORK = re.compile(r"^dynamic_network_architectures\.architectures(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_TORCH_OP = re.compile(r"^torch\.nn\.(?:modules\.[a-z_]+\.)?([A-Z][A-Za-z0-9]*)$")
#: torch.nn layer classes a plan may name as conv, norm, dropout or nonlinearity ops
TORCH_OPS = frozenset(
    "Conv1d Conv2d Conv3d InstanceNorm1d InstanceNorm2d InstanceNorm3d BatchNorm1d BatchNorm2d "
    "BatchNorm3d GroupNorm LayerNorm Dropout Dropout1d Dropout2d Dropout3d LeakyReLU ReLU PReLU "
    "ELU GELU SiLU Identity".split()
)
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")
READERS_KEEPING_AXES = ("NibabelIO", "NibabelIOWithReorient")


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"{path.parent}: not an nnU-Net trained model folder: {path.name} is missing"
        )
    data = read_json(path, ConfigError, "nnU-Net " + path.name)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _configuration(plans: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or name not in configs:
        raise ConfigError(f"{path}: no configuration {name!r} under 'configurations'")
    cfg: dict[str, Any] = {}
    seen = []
    while name not in seen:
        seen.append(name)
        node = configs.get(name)
        if not isinstance(node, dict):
            raise ConfigError(f"{path}: configuration {name!r} is not a table")
        cfg = {**node, **cfg}
        parent = node.get("inherits_from")
        if not parent:
            break
        name = parent
    return cfg


def check_architecture(arch: Any, path: Path) -> tuple[str, dict[str, Any], list[str]]:
    """``(class name, kwargs, kwargs to import)`` of a plans ``architecture`` entry, allowlisted.

    Raises :class:`ConfigError` naming ``path`` and the key for anything off the allowlist.
    """
    if not isinstance(arch, dict):
        raise ConfigError(f"{path}: key architecture must be a table")
    name, kwargs = arch.get("network_class_name"), arch.get("arch_kwargs")
    needs = arch.get("_kw_requires_import", [])
    if not isinstance(name, str) or not _NETWORK.match(name):
        raise ConfigError(
            f"{path}: key architecture.network_class_name = {name!r} is not allowed; "
            "only dynamic_network_architectures.architectures classes are built"
        )
    if not isinstance(kwargs, dict) or not isinstance(needs, list):
        raise ConfigError(
            f"{path}: keys architecture.arch_kwargs / _kw_requires_import are malformed"
        )
    for key in needs:
        if key not in kwargs:
            raise ConfigError(
                f"{path}: key architecture._kw_requires_import names {key!r}, not in arch_kwargs"
            )
    for key, value in kwargs.items():
        imported = key in needs
        if imported and value is None:
            continue
        if isinstance(value, str) and (imported or "." in value):
            op = _TORCH_OP.match(value)
            if not (op and op.group(1) in TORCH_OPS):
                raise ConfigError(
                    f"{path}: key architecture.arch_kwargs.{key} = {value!r} is not allowed; "
                    f"only torch.nn layers ({', '.join(sorted(TORCH_OPS))}) are imported"
                )
        elif imported:
            raise ConfigError(
                f"{path}: key architecture.arch_kwargs.{key} must name a torch.nn layer"
            )
    return name, kwargs, list(needs)


def _axes(plans: dict[str, Any], dataset: dict[str, Any]) -> tuple[int, ...]:
    forward = plans.get("transpose_forward", [0, 1, 2])
    if sorted(forward) != [0, 1, 2]:
        raise ConfigError(
            f"plans.json: transpose_forward {forward!r} is not a permutation of 0, 1, 2"
        )
    reader = str(dataset.get("overwrite_image_reader_writer", "SimpleITKIO"))
    if reader in READERS_KEEPING_AXES:
        return tuple(int(t) for t in forward)
    return tuple(2 - int(t) for t in forward)  # SimpleITK arrays are (z, y, x)


def plans_preprocessing(
    cfg: dict[str, Any], axes: tuple[int, ...], grid: tuple[int, ...]
) -> tuple[Any, str, tuple[str, ...]]:
    """``(PreprocessConfig, input normalisation, differences)`` closest to a plans configuration."""
    from ...data import PreprocessConfig

    spacing_net = [float(s) for s in cfg.get("spacing", [1.0, 1.0, 1.0])]
    spacing = [0.0, 0.0, 0.0]
    for k, a in enumerate(axes):
        spacing[a] = spacing_net[k]
    schemes = list(cfg.get("normalization_schemes", ["ZScoreNormalization"]))
    masks = list(cfg.get("use_mask_for_norm", [False] * len(schemes)))
    diffs = [
        "resampling: the project's own resampling to the plans' spacing, not nnU-Net's third-order spline",
        f"patch: one volume of the patch size {list(grid)} per subject (nnU-Net slides a window "
        f"over images of median size {cfg.get('median_image_size_in_voxels', '?')})",
        "intensities: percentile-scaled to [0, 1] before the model's own normalisation",
    ]
    normalization = "none"
    if schemes and schemes[0] in ("ZScoreNormalization", "ZScore"):
        normalization = "zscore-mask" if masks and masks[0] else "zscore"
    elif schemes:
        diffs.append(
            f"normalisation: {schemes[0]} is not reproduced; the model sees [0, 1] intensities"
        )
    if len(schemes) > 1:
        diffs.append(
            f"channels: the model takes {len(schemes)} channels; the project feeds one image"
        )
    config = PreprocessConfig(
        spacing=tuple(spacing), shape=tuple(grid), divisible_by=1, bias_correction=False
    )
    return config, normalization, tuple(diffs)


def _classes(dataset: dict[str, Any], path: Path) -> tuple[int, int]:
    channels = dataset.get("channel_names", dataset.get("modality"))
    labels = dataset.get("labels")
    if not isinstance(channels, dict) or not isinstance(labels, dict) or not labels:
        raise ConfigError(f"{path}: keys channel_names and labels must be tables")
    foreground = [v for k, v in labels.items() if k not in ("background", "ignore")]
    regions = any(isinstance(v, (list, tuple)) for v in labels.values())
    return len(channels), len(foreground) if regions else len(foreground) + 1


def load_nnunet(
    folder: str | os.PathLike[str],
    fold: int | str = 0,
    latent: str = "auto",
    configuration: str | None = None,
) -> ExternalModel:
    """Rebuild an nnU-Net v2 model (deep supervision off), load ``fold_K``'s weights, find its latent."""
    root = Path(folder)
    plans_path, dataset_path = root / "plans.json", root / "dataset.json"
    plans, dataset = _json(plans_path), _json(dataset_path)
    fold_dir = root / f"fold_{fold}"
    weights = next((fold_dir / n for n in CHECKPOINTS if (fold_dir / n).is_file()), None)
    if weights is None:
        raise ConfigError(f"{fold_dir}: no {' or '.join(CHECKPOINTS)} (model.fold = {fold!r})")
    if configuration is None:
        parts = root.name.split("__")
        configuration = parts[-1] if len(parts) == 3 else "3d_fullres"
    cfg = _configuration(plans, configuration, plans_path)
    name, kwargs, needs = check_architecture(cfg.get("architecture"), plans_path)
    in_channels, n_out = _classes(dataset, dataset_path)
    ckpt = read_pickle(weights, allow_numpy=True)
    state = ckpt.get("network_weights") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights}: no 'network_weights' state dict in the checkpoint")
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}

    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    try:
        net = get_network_from_plans(
            name, kwargs, needs, in_channels, n_out, allow_init=False, deep_supervision=False
        )
    except (ImportError, TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{plans_path}: cannot build {name} from the plans: {exc}") from exc
    fill_network(net, state, weights, f"{name.rsplit('.', 1)[-1]} from {plans_path.name}")
    net.eval()
    axes = _axes(plans, dataset)
    patch = [int(p) for p in cfg.get("patch_size", [])]
    if len(patch) != 3:
        raise ConfigError(f"{plans_path}: configuration {configuration!r} has no 3D patch_size")
    grid = [0, 0, 0]
    for k, a in enumerate(axes):
        grid[a] = patch[k]
    preprocess, normalization, diffs = plans_preprocessing(cfg, axes, tuple(grid))
    if axes != (0, 1, 2):
        diffs = (
            *diffs,
            f"axes: the project's (x, y, z) arrays are permuted to the network's order {list(axes)}",
        )
    taps = latent_on_grid(net, in_channels, tuple(patch), latent, weights)
    return ExternalModel(
        net,
        "nnunet",
        name.rsplit(".", 1)[-1],
        in_channels,
        tuple(grid),
        taps,
        weights,
        file_hash(weights),
        preprocess,
        diffs,
        axes,
        normalization,
        {"fold": int(fold)} if str(fold).isdigit() else {},
    )
