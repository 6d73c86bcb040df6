"""A MONAI bundle folder, read as plain data: MONAI's config parser is never called.

``configs/inference.json`` (or ``.yaml``, read with ``yaml.safe_load``) must hold a
``network_def`` table whose ``_target_`` is an allowed MONAI network (looked up in an
explicit table) and whose arguments are literals, or ``@`` references that lead, through
other references (``@a`` -> ``@b``; ``@a::b`` / ``@a#b`` into tables and lists), to
literals. References are followed, never evaluated; a ``$`` expression (which MONAI would
evaluate as Python), a ``%`` macro or a reference to anything that builds objects is
refused, naming the file and key. The weights are ``models/model.safetensors`` or
``models/model.pt`` (``weights_only=True``); a TorchScript ``models/model.ts`` is never loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...io.untrusted import read_json, read_text
from .args import check_literal
from .model import ExternalModel
from .monai import load_monai
from .tables import MONAI_NETWORKS, monai_short_name

__all__ = ["load_bundle", "read_network_def", "resolve_references"]

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
WEIGHT_NAMES = ("model.safetensors", "model.pt", "model.pth")
TORCHSCRIPT_NAMES = ("model.ts", "model.torchscript")
MAX_HOPS, MAX_VALUES = 32, 10_000
_BUILDS = ("_target_", "_requires_", "_disabled_", "_mode_")
_SEP = re.compile(r"::|#")


def _lookup(data: dict[str, Any], ref: str, where: str) -> Any:
    node: Any = data
    for part in _SEP.split(ref):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ConfigError(f"{where}: reference @{ref[:80]} names nothing in the config")
    return node


def resolve_references(value: Any, data: dict[str, Any], where: str) -> Any:
    """``value`` with every ``@`` reference replaced by the literal it leads to in ``data``.

    A chain of references is followed (at most 32 hops; a cycle is refused, and so is an
    expansion to more than 10,000 values); a reference to a table that builds objects
    (``_target_``), a ``$`` expression or a ``%`` macro raises :class:`ConfigError` naming
    ``where``. Nothing is evaluated.
    """
    return _resolve(value, data, where, (), [MAX_VALUES])


def _resolve(
    value: Any, data: dict[str, Any], where: str, seen: tuple[str, ...], budget: list[int]
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"{where}: references expand to more than {MAX_VALUES} values")
    if isinstance(value, str) and value.startswith("@"):
        ref = value[1:]
        chain = " -> ".join(f"@{r}" for r in (*seen, ref))
        if ref in seen:
            raise ConfigError(f"{where}: references form a cycle ({chain[:200]})")
        if len(seen) >= MAX_HOPS:
            raise ConfigError(f"{where}: more than {MAX_HOPS} references in a chain")
        target = _lookup(data, ref, where)
        if isinstance(target, dict) and any(k in target for k in _BUILDS):
            raise ConfigError(
                f"{where}: {chain[:200]} refers to a table that builds objects; "
                "only references to literal values are followed"
            )
        if isinstance(target, str) and target[:1] in ("$", "%"):
            raise ConfigError(
                f"{where}: {chain[:200]} refers to {target[:40]!r}, not a literal value; "
                "expressions and macros are never evaluated"
            )
        return _resolve(target, data, where, (*seen, ref), budget)
    if isinstance(value, list):
        return [_resolve(v, data, f"{where}[{k}]", seen, budget) for k, v in enumerate(value)]
    if isinstance(value, dict):
        check_literal({k: None for k in value}, where)  # refuses _target_ and the like
        return {k: _resolve(v, data, f"{where}.{k}", seen, budget) for k, v in value.items()}
    return check_literal(value, where)


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
    if monai_short_name(target) is None:
        raise ConfigError(
            f"{path}: key network_def._target_ = {ascii(target)[:120]} is not allowed; "
            f"choose one of {', '.join(MONAI_NETWORKS)}"
        )
    args = {}
    for key, value in node.items():
        if key == "_target_":
            continue
        if not isinstance(key, str) or key.startswith("_"):
            raise ConfigError(
                f"{path}: key network_def.{ascii(key)[:60]} is not a network argument"
            )
        args[key] = resolve_references(value, data, f"{path}: key network_def.{key}")
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
    models = root / "models"
    weights = next((models / n for n in WEIGHT_NAMES if (models / n).is_file()), None)
    script = next((models / n for n in TORCHSCRIPT_NAMES if (models / n).is_file()), None)
    if weights is None and script is not None:
        raise ConfigError(
            f"{script}: the bundle's only weights are TorchScript, which holds code and is never "
            "loaded; provide the weights as models/model.pt (a state dict, "
            "torch.save(net.state_dict(), ...)) or models/model.safetensors"
        )
    target, args, config = read_network_def(root)
    if weights is None:
        raise ConfigError(f"{root}: no models/model.safetensors or models/model.pt in the bundle")
    grid = grid or _metadata_grid(root)
    if grid is None:
        raise ConfigError(
            f"{root}: the input grid is not in configs/metadata.json (spatial_shape); give it explicitly"
        )
    try:
        return load_monai(weights, target, args, grid, latent, source="bundle", config=config)
    except ConfigError as exc:
        if str(config) in str(exc):
            raise
        raise ConfigError(f"{config}: {exc}") from exc
