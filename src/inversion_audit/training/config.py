"""Typed settings of target training (torch-free, so configs load without torch)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..models import ARCHITECTURES

__all__ = [
    "TargetConfig",
    "config_from_dict",
    "parse_label_map",
    "label_map_from_groups",
    "check_layout_args",
    "check_int",
    "check_number",
    "short_repr",
    "MAX_SEED",
]

#: bounds of every count a config or an untrusted checkpoint sidecar may set, checked
#: before a network is built: the paper's n, z, x, y, the classes, and training lengths
MAX_DEPTH = 8
MAX_BASE_FILTERS = 512
MAX_KERNEL = 9
MAX_POOL = 4
MAX_CLASSES = 1024
MAX_LABEL = 2**31 - 1
MAX_LABEL_MAP_ENTRIES = 65536
MAX_EPOCHS = 100_000
MAX_BATCH = 4096
MAX_SEED = 2**63 - 1
#: rough upper bound of a network's weights (4 * x^3 * sum of squared channels); 1e8 is 400 MB of float32
MAX_PARAMETERS = 10**8
#: largest grid multiple ``pool_size ** depth`` (the preprocessed grid's side limit)
MAX_MULTIPLE = 1024


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) in ``low..high``, else :class:`ConfigError` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {short_repr(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in {low}..{high}, got {short_repr(value)}")
    return value


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to 80 characters (a 100,000-digit integer is not echoed back)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return text if len(text) <= 80 else text[:77] + "..."


def check_layout_args(
    depth: Any, base_filters: Any, kernel_size: Any, pool_size: Any, where: str = "target"
) -> None:
    """Check the paper's layout (n, z, x, y) against the bounds above; :class:`ConfigError` names the key."""
    check_int(f"{where}.depth", depth, 1, MAX_DEPTH)
    check_int(f"{where}.base_filters", base_filters, 1, MAX_BASE_FILTERS)
    check_int(f"{where}.kernel_size", kernel_size, 1, MAX_KERNEL)
    check_int(f"{where}.pool_size", pool_size, 2, MAX_POOL)
    if kernel_size % 2 == 0:
        raise ConfigError(f"{where}.kernel_size must be odd, got {kernel_size}")
    if pool_size**depth > MAX_MULTIPLE:
        raise ConfigError(
            f"{where}: pool_size ** depth = {pool_size**depth} is more than {MAX_MULTIPLE}"
        )
    channels = [base_filters * 2**k for k in range(depth + 1)]
    estimate = 4 * kernel_size**3 * sum(c * c for c in channels)
    if estimate > MAX_PARAMETERS:
        raise ConfigError(
            f"{where}: depth {depth} with base_filters {base_filters} and kernel_size "
            f"{kernel_size} makes about {estimate:.2g} weights (at most {MAX_PARAMETERS:.0e})"
        )


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
        lo = hi = item
    elif isinstance(item, str) and len(item) < 32:
        text = item.strip()
        low, sep, high = text.partition("-")
        try:
            lo, hi = (int(low), int(high)) if sep else (int(text), int(text))
        except ValueError:
            lo, hi = -1, -1
    else:
        lo, hi = -1, -1
    if not 0 <= lo <= hi <= MAX_LABEL or hi - lo >= MAX_LABEL_MAP_ENTRIES:
        raise ConfigError(
            f"label group entry {short_repr(item)} is not a label >= 0 or an 'a-b' range of them"
        )
    return list(range(lo, hi + 1))


def label_map_from_groups(groups: list[list[int | str]]) -> dict[int, int]:
    """Map every label of group k to class k + 1 (class 0 is background).

    Entries are labels or inclusive ``"a-b"`` ranges, e.g. ``[["4", "11", "49-52"], ["100-207"]]``.
    """
    out: dict[int, int] = {}
    if len(groups) >= MAX_CLASSES:
        raise ConfigError(f"label groups: more than {MAX_CLASSES - 1} groups")
    for k, group in enumerate(groups):
        for item in group if isinstance(group, (list, tuple)) else [group]:
            if len(out) > MAX_LABEL_MAP_ENTRIES:
                raise ConfigError(f"label groups hold more than {MAX_LABEL_MAP_ENTRIES} labels")
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
    if len(value) > MAX_LABEL_MAP_ENTRIES:
        raise ConfigError(f"label_map has more than {MAX_LABEL_MAP_ENTRIES} entries")
    try:
        out = {
            int(k): int(v)
            for k, v in value.items()
            if isinstance(k, (int, str)) and not isinstance(v, (bool, float)) and len(str(k)) < 12
        }
    except (TypeError, ValueError):
        raise ConfigError("label_map keys and values must be integers") from None
    if len(out) != len(value):
        raise ConfigError("label_map keys and values must be integers")
    if any(not 0 <= k <= MAX_LABEL or not 0 <= v < MAX_CLASSES for k, v in out.items()):
        raise ConfigError(
            f"label_map labels must be in 0..{MAX_LABEL} and classes in 0..{MAX_CLASSES - 1}"
        )
    return out


def check_number(name: str, value: Any) -> None:
    """A finite int or float (not a bool), else :class:`ConfigError` naming ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        try:
            ok = math.isfinite(float(value))
        except OverflowError:
            ok = False
    if not ok:
        raise ConfigError(f"{name} must be a finite number, got {short_repr(value)}")


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
        if self.arch not in ARCHITECTURES:
            raise ConfigError(
                f"target.arch must be one of {', '.join(map(repr, ARCHITECTURES))}, "
                f"got {short_repr(self.arch)}"
            )
        check_layout_args(self.depth, self.base_filters, self.kernel_size, self.pool_size)
        check_int("target.epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("target.batch_size", self.batch_size, 1, MAX_BATCH)
        check_int("target.patches_per_subject", self.patches_per_subject, 1, MAX_BATCH)
        check_int("target.seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.norm, str) or self.norm not in ("batch", "instance", "none"):
            raise ConfigError(
                f"target.norm must be batch|instance|none, got {short_repr(self.norm)}"
            )
        if self.patch_size is not None:
            patch = tuple(self.patch_size) if isinstance(self.patch_size, (list, tuple)) else ()
            if len(patch) != 3 or any(
                not isinstance(p, int) or not 0 < p <= MAX_MULTIPLE or p % self.multiple
                for p in patch
            ):
                raise ConfigError(
                    f"target.patch_size must be 3 sizes in 1..{MAX_MULTIPLE} divisible by "
                    f"{self.multiple}, got {short_repr(self.patch_size)}"
                )
            object.__setattr__(self, "patch_size", patch)
        check_number("target.lr", self.lr)
        object.__setattr__(self, "lr", float(self.lr))
        _positive("target.lr", self.lr, float)
        check_number("target.val_fraction", self.val_fraction)
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"target.val_fraction must be in [0, 1), got {self.val_fraction}")
        check_int("target.patience", self.patience, 0, MAX_EPOCHS)
        if self.patience and not self.val_fraction:
            raise ConfigError(
                "target.patience (early stopping) needs a validation split: set target.val_fraction > 0"
            )
        label_map = parse_label_map(self.label_map)
        object.__setattr__(self, "label_map", label_map)
        if label_map is not None and 0 in label_map and label_map[0] != 0:
            raise ConfigError("target.label_map must keep background: label 0 -> class 0")
        if self.n_classes is not None:
            check_int("target.n_classes", self.n_classes, 2, MAX_CLASSES)
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
