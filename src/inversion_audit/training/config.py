"""Typed settings of target training (torch-free, so configs load without torch)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["TargetConfig", "config_from_dict", "parse_label_map", "label_map_from_groups"]


def config_from_dict(cls: type, data: dict[str, Any], section: str) -> Any:
    """Build the frozen dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"[{section}] must be a table of settings, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown {section} key(s): {', '.join(unknown)} (allowed: {', '.join(sorted(names))})"
        )
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"invalid {section} settings: {exc}") from exc


def _label_range(item: int | str) -> list[int]:
    if isinstance(item, int) and not isinstance(item, bool):
        return [item]
    text = str(item).strip()
    lo, sep, hi = text.partition("-")
    try:
        return list(range(int(lo), int(hi) + 1)) if sep else [int(text)]
    except ValueError:
        raise ConfigError(f"label group entry {item!r} is not a label or an 'a-b' range") from None


def label_map_from_groups(groups: list[list[int | str]]) -> dict[int, int]:
    """Map every label of group k to class k + 1 (class 0 is background).

    Entries are labels or inclusive ``"a-b"`` ranges, e.g. ``[["4", "11", "49-52"], ["100-207"]]``.
    """
    out: dict[int, int] = {}
    for k, group in enumerate(groups):
        for item in group if isinstance(group, (list, tuple)) else [group]:
            for label in _label_range(item):
                if label in out:
                    raise ConfigError(f"label {label} is in label groups {out[label]} and {k + 1}")
                out[label] = k + 1
    return out


def parse_label_map(value: Any) -> dict[int, int] | None:
    """Accept ``{label: class}`` (keys may be strings, as in JSON/TOML) or a list of label groups."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return label_map_from_groups(list(value))
    if not isinstance(value, dict):
        raise ConfigError(
            f"label_map must be a table {{label: class}} or a list of groups, got {value!r}"
        )
    try:
        out = {int(k): int(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise ConfigError("label_map keys and values must be integers") from None
    if any(k < 0 or v < 0 for k, v in out.items()):
        raise ConfigError("label_map labels and classes must be >= 0")
    return out


def _positive(name: str, value: Any, kind: type = int) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {value!r}")


@dataclass(frozen=True)
class TargetConfig:
    """Settings of a target segmentation network and its training on the private set.

    Attributes
    ----------
    arch : ``"unet"`` or ``"segnet"``.
    depth, base_filters, kernel_size, pool_size : the paper's n, z, x, y.
    norm : normalisation after each convolution (``batch``, ``instance``, ``none``).
    epochs, lr, batch_size, seed : Adam training; seeded.
    label_map : source label -> class (class 0 is background). Labels not in the map
        are an error, except 0. ``None`` uses the labels as they are.
    n_classes : classes including background; ``None`` infers ``max(class) + 1``.
    patch_size : train on random crops of this size (centred on a labelled voxel two
        times in three) instead of whole volumes; more, cheaper steps per CPU second.
        ``None`` trains on whole volumes. Validation and inference use whole volumes.
    patches_per_subject : crops drawn from each subject per epoch.
    val_fraction : share of the private set held out for validation (0: none).
    patience : early stopping after this many epochs without a better validation
        loss (0: never; needs ``val_fraction > 0``).
    """

    arch: str = "unet"
    depth: int = 3
    base_filters: int = 8
    kernel_size: int = 3
    pool_size: int = 2
    norm: str = "batch"
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 1
    seed: int = 0
    label_map: dict[int, int] | None = None
    n_classes: int | None = None
    patch_size: tuple[int, int, int] | None = None
    patches_per_subject: int = 1
    val_fraction: float = 0.0
    patience: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ("unet", "segnet"):
            raise ConfigError(f"target.arch must be 'unet' or 'segnet', got {self.arch!r}")
        for name in (
            "depth",
            "base_filters",
            "kernel_size",
            "epochs",
            "batch_size",
            "patches_per_subject",
        ):
            _positive(f"target.{name}", getattr(self, name))
        if not isinstance(self.pool_size, int) or self.pool_size < 2:
            raise ConfigError(f"target.pool_size must be an integer >= 2, got {self.pool_size!r}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"target.kernel_size must be odd, got {self.kernel_size}")
        if self.norm not in ("batch", "instance", "none"):
            raise ConfigError(f"target.norm must be batch|instance|none, got {self.norm!r}")
        if self.patch_size is not None:
            patch = tuple(self.patch_size) if isinstance(self.patch_size, (list, tuple)) else ()
            if len(patch) != 3 or any(
                not isinstance(p, int) or p <= 0 or p % self.multiple for p in patch
            ):
                raise ConfigError(
                    f"target.patch_size must be 3 sizes divisible by {self.multiple}, got {self.patch_size!r}"
                )
            object.__setattr__(self, "patch_size", patch)
        object.__setattr__(self, "lr", float(self.lr))
        _positive("target.lr", self.lr, float)
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"target.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(f"target.patience must be an integer >= 0, got {self.patience!r}")
        if self.patience and not self.val_fraction:
            raise ConfigError(
                "target.patience (early stopping) needs a validation split: set target.val_fraction > 0"
            )
        label_map = parse_label_map(self.label_map)
        object.__setattr__(self, "label_map", label_map)
        if label_map is not None and 0 in label_map and label_map[0] != 0:
            raise ConfigError("target.label_map must keep background: label 0 -> class 0")
        if self.n_classes is not None:
            if not isinstance(self.n_classes, int) or self.n_classes < 2:
                raise ConfigError(
                    f"target.n_classes must be an integer >= 2, got {self.n_classes!r}"
                )
            if label_map and max(label_map.values()) >= self.n_classes:
                raise ConfigError(
                    f"target.label_map uses class {max(label_map.values())} but n_classes is {self.n_classes}"
                )

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of ``pool_size ** depth``."""
        return self.pool_size**self.depth

    def network_args(self, n_classes: int) -> dict[str, Any]:
        """Keyword arguments for :func:`inversion_audit.models.build_target_network`."""
        return {
            "arch": self.arch,
            "n_classes": n_classes,
            "depth": self.depth,
            "base_filters": self.base_filters,
            "kernel_size": self.kernel_size,
            "pool_size": self.pool_size,
            "norm": self.norm,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-safe dict (label map keys as strings)."""
        out = dataclasses.asdict(self)
        if self.patch_size is not None:
            out["patch_size"] = list(self.patch_size)
        if self.label_map is not None:
            out["label_map"] = {str(k): v for k, v in sorted(self.label_map.items())}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` naming them."""
        return config_from_dict(cls, data, "target")
