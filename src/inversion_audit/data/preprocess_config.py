"""The typed preprocessing settings (:class:`PreprocessConfig`), checked before anything is built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import ConfigError

__all__ = [
    "PreprocessConfig",
    "NYUL_PERCENTILES",
    "SPACING_RANGE_MM",
    "MAX_SHAPE_SIDE",
    "MAX_VOXELS",
]

NYUL_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
#: accepted voxel sizes (mm): from micro-CT-like 0.05 mm to 50 mm slabs
SPACING_RANGE_MM = (0.05, 50.0)
#: largest preprocessed grid side and voxel count (about 1 GiB of float32)
MAX_SHAPE_SIDE = 1024
MAX_VOXELS = 2**28


def _int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _finite_number(value: object) -> bool:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        return False
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:  # an integer too large for a float
        return False


@dataclass(frozen=True)
class PreprocessConfig:
    """Typed preprocessing settings; saved with every output that depends on them.

    Attributes
    ----------
    spacing : target voxel size in mm (isotropic or per axis).
    shape : fixed output shape; ``None`` gives the smallest shape around the head
        that is divisible by ``divisible_by``.
    divisible_by : output shape multiple, normally ``2 ** depth`` of the network.
    bias_correction : N4 bias-field correction with ANTs; on by default, as real scans
        need it (configs for the synthetic sample cohort turn it off to save time).
    skull_strip : ``"none"`` keeps the head; ``"labels"`` masks by labels > 0;
        ``"mask"`` uses the subject's mask file.
    intensity : ``"percentile"`` robust scaling to [0, 1]; ``"nyul"`` histogram
        standardisation with ``nyul_landmarks`` learned on training subjects only;
        ``"none"`` keeps raw values.
    percentiles : low/high percentiles for robust scaling (inside the foreground).
    nyul_landmarks : the standard-scale landmarks (set by :func:`learn_nyul_landmarks`).
    """

    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    shape: tuple[int, int, int] | None = None
    divisible_by: int = 16
    bias_correction: bool = True
    skull_strip: Literal["none", "labels", "mask"] = "none"
    intensity: Literal["percentile", "nyul", "none"] = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    nyul_landmarks: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        # every field typed and bounded before anything is built from it: a config may come
        # from an untrusted checkpoint sidecar or a study TOML
        sp = self.spacing if isinstance(self.spacing, (tuple, list)) else (self.spacing,) * 3
        if len(sp) != 3 or not all(_finite_number(s) for s in sp):
            raise ConfigError(
                f"preprocess.spacing must be a number or 3 numbers (mm), got {self.spacing!r}"
            )
        spacing = tuple(float(s) for s in sp)
        if not all(SPACING_RANGE_MM[0] <= s <= SPACING_RANGE_MM[1] for s in spacing):
            raise ConfigError(
                f"preprocess.spacing must be between {SPACING_RANGE_MM[0]} and "
                f"{SPACING_RANGE_MM[1]} mm, got {self.spacing!r}"
            )
        object.__setattr__(self, "spacing", spacing)
        if not _int(self.divisible_by) or not 1 <= self.divisible_by <= MAX_SHAPE_SIDE:
            raise ConfigError(
                f"preprocess.divisible_by must be an integer in 1..{MAX_SHAPE_SIDE}, "
                f"got {self.divisible_by!r}"
            )
        if self.shape is not None:
            shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else ()
            if (
                len(shape) != 3
                or not all(_int(s) and 1 <= s <= MAX_SHAPE_SIDE for s in shape)
                or any(s % self.divisible_by for s in shape)
            ):
                raise ConfigError(
                    f"preprocess.shape {self.shape!r} must be 3 sizes in 1..{MAX_SHAPE_SIDE} "
                    f"divisible by {self.divisible_by}"
                )
            if int(np.prod(shape)) > MAX_VOXELS:
                raise ConfigError(f"preprocess.shape {shape} has more than {MAX_VOXELS} voxels")
            object.__setattr__(self, "shape", tuple(int(s) for s in shape))
        if not isinstance(self.bias_correction, bool):
            raise ConfigError(
                f"preprocess.bias_correction must be true or false, got {self.bias_correction!r}"
            )
        if not isinstance(self.skull_strip, str) or self.skull_strip not in (
            "none",
            "labels",
            "mask",
        ):
            raise ConfigError(
                f"preprocess.skull_strip must be none|labels|mask, got {self.skull_strip!r}"
            )
        if not isinstance(self.intensity, str) or self.intensity not in (
            "percentile",
            "nyul",
            "none",
        ):
            raise ConfigError(
                f"preprocess.intensity must be percentile|nyul|none, got {self.intensity!r}"
            )
        pct = self.percentiles
        if (
            not isinstance(pct, (tuple, list))
            or len(pct) != 2
            or not all(_finite_number(p) for p in pct)
            or not 0 <= pct[0] < pct[1] <= 100
        ):
            raise ConfigError(
                f"preprocess.percentiles must be 2 numbers 0 <= low < high <= 100, got {pct!r}"
            )
        object.__setattr__(self, "percentiles", tuple(float(p) for p in pct))
        if self.nyul_landmarks is not None:
            marks = self.nyul_landmarks
            if (
                not isinstance(marks, (tuple, list))
                or len(marks) != len(NYUL_PERCENTILES)
                or not all(_finite_number(v) and abs(v) <= 1e12 for v in marks)
                or not float(marks[-1]) > 0
            ):
                raise ConfigError(
                    f"preprocess.nyul_landmarks must be {len(NYUL_PERCENTILES)} finite numbers "
                    "ending above 0"
                )
            object.__setattr__(self, "nyul_landmarks", tuple(float(v) for v in marks))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        """Build a config from a table; unknown keys and wrong types raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"preprocess must be a table, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown preprocess key(s): {', '.join(sorted(unknown))}")
        return cls(**data)
