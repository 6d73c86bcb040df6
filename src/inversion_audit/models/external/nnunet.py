"""An nnU-Net v2 trained model folder: the network rebuilt from its plans, without nnU-Net's locator.

The folder holds ``plans.json``, ``dataset.json`` and ``fold_K/checkpoint_final.pth`` (or
``checkpoint_best.pth``; ``fold_all`` for a model trained on every case). The class in the
plans and every class nnU-Net would import (``_kw_requires_import``) are looked up in
explicit tables (:mod:`.nnunet_arch`); nnU-Net's ``get_network_from_plans`` is never called.
The checkpoint loads with ``weights_only=True`` and only numpy's scalar and dtype globals.
The preprocessing the plans record is mapped onto the project's :class:`PreprocessConfig`;
what cannot be matched is listed. 2D configurations are refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, ConfigError
from ...io import file_hash
from ...io.untrusted import read_json
from .model import ExternalModel
from .monai import latent_on_grid
from .nnunet_arch import NOT_3D, build_nnunet_network, check_architecture
from .weights import fill_network, read_pickle

__all__ = ["check_architecture", "check_fold", "load_nnunet", "plans_preprocessing"]

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")
READERS_KEEPING_AXES = ("NibabelIO", "NibabelIOWithReorient")
MAX_LISTED = 20


def check_fold(fold: Any, where: str = "model.fold") -> int | str:
    """``fold`` as nnU-Net names its folders: an integer in 0..99 or ``"all"``."""
    if isinstance(fold, str) and fold.isdigit() and len(fold) <= 2:
        fold = int(fold)
    if fold == "all" or (isinstance(fold, int) and not isinstance(fold, bool) and 0 <= fold <= 99):
        return fold
    raise ConfigError(f"{where} must be an integer in 0..99 or 'all', got {str(fold)[:40]!r}")


def _trained_models_below(root: Path) -> list[str]:
    """``Dataset*/<Trainer>__<Plans>__<config>`` folders (or ``<Trainer>__...`` ones) holding plans.json."""
    found = [*root.glob("Dataset*/*__*__*/plans.json"), *root.glob("*__*__*/plans.json")]
    return sorted(str(p.parent.relative_to(root)) for p in found)


def _check_model_folder(root: Path) -> None:
    if (root / "plans.json").is_file():
        return
    below = _trained_models_below(root) if root.is_dir() else []
    if below:
        listed = ", ".join(below[:MAX_LISTED]) + (" ..." if len(below) > MAX_LISTED else "")
        raise ConfigError(
            f"{root}: not an nnU-Net trained model folder (no plans.json); it holds "
            f"{len(below)} trained model folder(s): {listed}. Set the path to one of them"
        )
    raise ConfigError(f"{root}: not an nnU-Net trained model folder: plans.json is missing")


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
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: key configurations.{name}.inherits_from must be a name")
        name = parent
    return cfg


def _axes(plans: dict[str, Any], dataset: dict[str, Any]) -> tuple[int, ...]:
    forward = plans.get("transpose_forward", [0, 1, 2])
    if not isinstance(forward, list) or sorted(map(str, forward)) != ["0", "1", "2"]:
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
    """Rebuild an nnU-Net v2 model (deep supervision off), load ``fold_K``'s weights, find its latent.

    ``fold`` is 0..99 or ``"all"`` (the folder ``fold_all``).
    """
    root = Path(folder)
    fold = check_fold(fold)
    _check_model_folder(root)
    plans_path, dataset_path = root / "plans.json", root / "dataset.json"
    plans, dataset = _json(plans_path), _json(dataset_path)
    if configuration is None:
        parts = root.name.split("__")
        configuration = parts[-1] if len(parts) == 3 else "3d_fullres"
    if configuration.startswith("2d"):
        raise ConfigError(f"{root}: configuration {configuration!r}: {NOT_3D}")
    cfg = _configuration(plans, configuration, plans_path)
    patch = cfg.get("patch_size")
    if isinstance(patch, list) and len(patch) == 2:
        raise ConfigError(
            f"{plans_path}: key configurations.{configuration}.patch_size = {patch}: {NOT_3D}"
        )
    if not (
        isinstance(patch, list)
        and len(patch) == 3
        and all(isinstance(p, int) and not isinstance(p, bool) and 0 < p <= 1024 for p in patch)
    ):
        raise ConfigError(
            f"{plans_path}: key configurations.{configuration}.patch_size must be 3 integers"
        )
    name, cls, kwargs = check_architecture(cfg.get("architecture"), plans_path)
    in_channels, n_out = _classes(dataset, dataset_path)
    fold_dir = root / f"fold_{fold}"
    weights = next((fold_dir / n for n in CHECKPOINTS if (fold_dir / n).is_file()), None)
    if weights is None:
        raise ConfigError(f"{fold_dir}: no {' or '.join(CHECKPOINTS)} (model.fold = {fold!r})")
    ckpt = read_pickle(weights, allow_numpy=True)
    state = ckpt.get("network_weights") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights}: no 'network_weights' state dict in the checkpoint")
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    net = build_nnunet_network(cls, kwargs, in_channels, n_out, plans_path)
    fill_network(net, state, weights, f"{name} from {plans_path.name}")
    net.eval()
    axes = _axes(plans, dataset)
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
    model = ExternalModel(
        net,
        "nnunet",
        name,
        in_channels,
        tuple(grid),
        taps,
        weights,
        file_hash(weights),
        preprocess,
        diffs,
        axes,
        normalization,
        {"fold": fold},
    )
    model.channels_key = f"{dataset_path}: key channel_names"
    return model
