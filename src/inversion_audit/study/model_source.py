"""The ``[model]`` table: audit an external model (MONAI network, MONAI bundle, nnU-Net folder).

```toml
[model]
source = "monai"                 # "monai" | "bundle" | "nnunet"
path = "weights.safetensors"     # weights file | bundle folder | nnU-Net trained model folder
network = "BasicUNet"            # monai only
network_args = { spatial_dims = 3, in_channels = 1, out_channels = 6 }   # monai only
fold = 0                         # nnunet only: 0..99, or "all" (the folder fold_all)
latent = "auto"                  # or a module path
members = ["IXI002-Guys-0828"]   # or members_file = "ids.txt" / an nnU-Net splits_final.json
```

Torch-free. The members are the private set; the attack set is the cohort's other subjects
(or ``cohort.attack_path``). Errors are :class:`ConfigError` naming the key (and the file).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.untrusted import read_json, read_text
from ..models.external import SOURCES

__all__ = ["ModelSource", "parse_model_source", "resolve_members", "model_path"]

_KEYS = ("source", "path", "network", "network_args", "fold", "latent", "members", "members_file")


@dataclass(frozen=True)
class ModelSource:
    """A validated ``[model]`` table (``written``: the table as its file wrote it, which
    ``config.toml`` records; ``None``: built in code)."""

    source: str
    path: str
    network: str | None = None
    network_args: dict[str, Any] = field(default_factory=dict)
    fold: int | str = 0
    latent: str = "auto"
    members: tuple[str, ...] = ()
    members_file: str | None = None
    written: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The table as ``config.toml`` records it."""
        if self.written is not None:
            return copy.deepcopy(dict(self.written))
        out: dict[str, Any] = {"source": self.source, "path": self.path}
        if self.source == "monai":
            out.update(network=self.network, network_args=dict(self.network_args))
        if self.source == "nnunet":
            out["fold"] = self.fold
        out["latent"] = self.latent
        if self.members_file is not None:
            out["members_file"] = self.members_file
        else:
            out["members"] = list(self.members)
        return out

    @property
    def arch(self) -> str:
        """The name the study's runs and scores use for this model."""
        return "external"


def parse_model_source(data: Any) -> ModelSource | None:
    """Validate a ``[model]`` table (``None`` or empty: no external model)."""
    if not data:
        return None
    if not isinstance(data, dict):
        raise ConfigError("model must be a table")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"unknown key 'model.{unknown[0]}' (allowed: {', '.join(_KEYS)})")
    source = data.get("source")
    if source not in SOURCES:
        raise ConfigError(f"model.source must be one of {', '.join(SOURCES)}, got {source!r}")
    path = data.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError("model.path must name a weights file or model folder")
    network, args = data.get("network"), data.get("network_args", {})
    if source == "monai":
        if not isinstance(network, str) or not network:
            raise ConfigError("model.network (a MONAI class name) is required for source = 'monai'")
        if not isinstance(args, dict):
            raise ConfigError("model.network_args must be a table")
    elif network is not None or "network_args" in data:
        raise ConfigError(
            f"model.network and model.network_args apply to source = 'monai' only, not {source!r}"
        )
    fold = data.get("fold", 0)
    if fold != "all" and (
        not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold <= 99
    ):
        raise ConfigError(
            f"model.fold must be an integer in 0..99 or 'all', got {str(fold)[:40]!r}"
        )
    if "fold" in data and source != "nnunet":
        raise ConfigError("model.fold applies to source = 'nnunet' only")
    latent = data.get("latent", "auto")
    if not isinstance(latent, str) or not latent or len(latent) > 300:
        raise ConfigError("model.latent must be 'auto' or a module path")
    members, members_file = data.get("members"), data.get("members_file")
    if (members is None) == (members_file is None):
        raise ConfigError("model: give exactly one of members (a list of ids) and members_file")
    if members is not None and (
        not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members)
    ):
        raise ConfigError("model.members must be a non-empty list of subject ids")
    if members_file is not None and (not isinstance(members_file, str) or not members_file):
        raise ConfigError("model.members_file must be a file name")
    if members is not None and len(set(members)) != len(members):
        raise ConfigError("model.members lists a subject twice")
    return ModelSource(
        source,
        path,
        network,
        dict(args),
        fold,
        latent,
        tuple(members or ()),
        members_file,
        copy.deepcopy(data),
    )


def model_path(value: str, config_source: str | None) -> Path:
    """A ``[model]`` path, relative to the config file's folder when it exists there."""
    p = Path(value)
    if not p.is_absolute() and config_source:
        cand = Path(config_source).parent / p
        if cand.exists():
            return cand
    return p


def _split_ids(splits: Any, fold: int | str, path: Path) -> list[str]:
    """Fold K's training cases of an nnU-Net splits file; for ``"all"``, every case of fold 0."""
    index = 0 if fold == "all" else fold
    keys = ("train", "val") if fold == "all" else ("train",)  # fold "all" trains on every case
    ids: list[str] = []
    for key in keys:
        try:
            part = splits[index][key]
        except (IndexError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"model.members_file {path}: not an nnU-Net splits file with fold {fold} "
                f"({type(exc).__name__})"
            ) from exc
        if not isinstance(part, list) or not all(isinstance(i, str) for i in part):
            raise ConfigError(f"model.members_file {path}: fold {index} {key!r} must list ids")
        ids += part
    return ids


def _read_members_file(path: Path, fold: int | str) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"model.members_file = {str(path)!r}: file not found")
    kind = "model.members_file"
    if path.suffix == ".json":  # nnU-Net's splits_final.json: [{"train": [...], "val": [...]}, ...]
        return _split_ids(read_json(path, ConfigError, kind), fold, path)
    text = read_text(path, ConfigError, kind, max_bytes=64 * 2**20)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def resolve_members(
    model: ModelSource,
    cohort_ids: list[str] | tuple[str, ...],
    config_source: str | None,
    holdout: tuple[list[str] | tuple[str, ...], str] = ((), ""),
) -> tuple[str, ...]:
    """The members (private set), each checked to be a cohort subject.

    ``holdout`` is the non-member ids and the config key that named them: a member among
    them trained the model, so it cannot be a non-member (:class:`ConfigError`).
    """
    where = "model.members"
    ids = list(model.members)
    if model.members_file is not None:
        path = model_path(model.members_file, config_source)
        where = f"model.members_file ({path})"
        ids = _read_members_file(path, model.fold)
    known = set(cohort_ids)
    missing = [i for i in ids if i not in known]
    prefix = f"{config_source}: " if config_source else ""
    if missing:
        raise ConfigError(
            f"{prefix}{where}: {len(missing)} id(s) not in the cohort, e.g. {missing[0]!r}"
        )
    trained = sorted(set(ids).intersection(holdout[0]))
    if trained:
        raise ConfigError(
            f"{prefix}{where}: {trained[0]!r} is also in the holdout ({holdout[1]}); a member "
            "trained the model, a holdout subject must train neither the model nor the decoder"
        )
    if not ids:
        raise ConfigError(f"{where}: no members")
    return tuple(sorted(set(ids)))
