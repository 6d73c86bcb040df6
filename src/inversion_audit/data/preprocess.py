"""Preprocessing: reorient, resample, N4, skull strip, intensity standardisation, crop/pad.

The forward mapping (the preprocessed grid's affine in the subject's world
space) is kept, so that a reconstruction can be written back onto the subject's
original file grid with :meth:`Preprocessed.to_source`.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from ..errors import ConfigError, VolumeError
from ..io import (
    Volume,
    atomic_write_bytes,
    cache_dir,
    config_hash,
    file_hash,
    read_labels,
    read_volume,
)
from .cohort import Subject, check_labels

__all__ = [
    "PreprocessConfig",
    "Preprocessed",
    "preprocess_subject",
    "preprocess_cohort",
    "learn_nyul_landmarks",
    "cache_dir",
    "config_with_nyul",
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


@dataclass(eq=False)
class Preprocessed:
    """A subject after preprocessing, with the mapping back to its source grid."""

    subject_id: str
    image: np.ndarray
    affine: np.ndarray
    mask: np.ndarray
    labels: np.ndarray | None
    source_affine: np.ndarray
    source_shape: tuple[int, int, int]
    config: PreprocessConfig = field(default_factory=PreprocessConfig)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape)

    def volume(self) -> Volume:
        """The preprocessed image as a :class:`Volume` (affine in the subject's world space)."""
        return Volume(self.image, self.affine.copy(), None, {"subject": self.subject_id})

    def to_source(self, array: np.ndarray, order: int = 1) -> Volume:
        """Resample an array on the preprocessed grid back onto the subject's source file grid."""
        if array.shape != self.image.shape:
            raise ValueError(
                f"array shape {array.shape} is not the preprocessed shape {self.image.shape}"
            )
        img = nib.Nifti1Image(np.asarray(array, dtype=np.float32), self.affine)
        out = resample_from_to(img, (self.source_shape, self.source_affine), order=order, cval=0.0)
        return Volume(np.asarray(out.dataobj, dtype=np.float32), self.source_affine.copy())


def _n4(array: np.ndarray, spacing: tuple[float, ...], mask: np.ndarray | None) -> np.ndarray:
    import ants

    img = ants.from_numpy(array.astype(np.float32), spacing=tuple(float(s) for s in spacing))
    kw = {}
    if mask is not None and mask.any():
        kw["mask"] = ants.from_numpy(
            mask.astype(np.float32), spacing=tuple(float(s) for s in spacing)
        )
    return ants.n4_bias_field_correction(img, **kw).numpy().astype(np.float32)


def _head_mask(array: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    positive = array[array > 0]
    if positive.size == 0:
        return np.zeros(array.shape, bool)
    return array > threshold_otsu(positive) * 0.5


def _target_grid(
    source: Volume, foreground: np.ndarray, config: PreprocessConfig
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Axis-aligned RAS grid centred on the foreground's bounding box."""
    idx = np.argwhere(foreground)
    if idx.size == 0:
        idx = np.argwhere(np.ones(foreground.shape, bool))
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    lo, hi = idx.min(0).astype(float), idx.max(0).astype(float)
    box = lo + corners * (hi - lo)
    world = nib.affines.apply_affine(source.affine, box)
    wlo, whi = world.min(0), world.max(0)
    spacing = np.array(config.spacing)
    if config.shape is not None:
        shape = np.array(config.shape)
    else:
        d = config.divisible_by
        needed = np.ceil((whi - wlo) / spacing) + 1 + 4  # 2-voxel margin on each side
        shape = (np.ceil(needed / d) * d).astype(int)
    center = (wlo + whi) / 2
    origin = center - (shape - 1) / 2 * spacing
    # snap to the source lattice when axes are aligned, so equal spacings resample exactly
    src_sp = np.array(source.spacing)
    if np.allclose(np.abs(source.affine[:3, :3]), np.diag(src_sp), atol=1e-4):
        src_origin = source.affine[:3, 3]
        origin = src_origin + np.round((origin - src_origin) / src_sp) * src_sp
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = origin
    return tuple(int(s) for s in shape), affine


def _resample(
    array: np.ndarray, affine: np.ndarray, shape, target_affine, order: int
) -> np.ndarray:
    img = nib.Nifti1Image(array, affine)
    out = resample_from_to(img, (shape, target_affine), order=order, cval=0.0)
    return np.asarray(out.dataobj)


def _robust_scale(
    image: np.ndarray, mask: np.ndarray, percentiles: tuple[float, float]
) -> np.ndarray:
    values = image[mask] if mask.any() else image.ravel()
    lo, hi = np.percentile(values, percentiles)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _nyul_apply(image: np.ndarray, mask: np.ndarray, landmarks: tuple[float, ...]) -> np.ndarray:
    values = image[mask] if mask.any() else image.ravel()
    own = np.percentile(values, NYUL_PERCENTILES)
    own = np.maximum.accumulate(own + np.arange(len(own)) * 1e-6)
    std = np.asarray(landmarks, float)
    mapped = np.interp(image, own, std)
    return np.clip(mapped / std[-1], 0.0, 1.0).astype(np.float32) * mask.astype(np.float32)


def learn_nyul_landmarks(
    images: list[np.ndarray], masks: list[np.ndarray], scale_max: float = 100.0
) -> tuple[float, ...]:
    """Learn Nyul's standard-scale landmarks from training images only (Nyul & Udupa 1999)."""
    if not images:
        raise ValueError("Nyul standardisation needs at least one training image")
    mapped = []
    for image, mask in zip(images, masks, strict=True):
        p = np.percentile(image[mask] if mask.any() else image, NYUL_PERCENTILES)
        span = p[-1] - p[0] if p[-1] > p[0] else 1.0
        mapped.append((p - p[0]) / span * scale_max)
    return tuple(float(v) for v in np.mean(mapped, axis=0))


def _load(
    subject: Subject, config: PreprocessConfig
) -> tuple[Volume, Volume | None, np.ndarray | None]:
    image = read_volume(subject.image)
    labels = check_labels(read_labels(subject.labels)) if subject.labels is not None else None
    mask_file = read_labels(subject.mask) if subject.mask is not None else None
    for other in (labels, mask_file):
        if other is not None and (
            other.shape != image.shape or not np.allclose(other.affine, image.affine, atol=1e-3)
        ):
            raise VolumeError(
                f"{other.path}: grid does not match image {image.path} (shape or affine)"
            )
    if config.skull_strip == "labels" and labels is None:
        raise VolumeError(
            f"{subject.image}: skull_strip='labels' but subject {subject.id!r} has no labels"
        )
    if config.skull_strip == "mask" and mask_file is None:
        raise VolumeError(
            f"{subject.image}: skull_strip='mask' but subject {subject.id!r} has no mask"
        )
    # the brain mask named by skull_strip; with "none", whichever exists (it is only stored)
    sources = {"labels": (labels,), "mask": (mask_file,)}.get(
        config.skull_strip, (mask_file, labels)
    )
    brain = next((v.array > 0 for v in sources if v is not None), None)
    return image, labels, brain


def _compute(subject: Subject, config: PreprocessConfig) -> Preprocessed:
    image, labels, brain = _load(subject, config)
    data = image.array
    if float(data.max()) == float(data.min()):
        raise VolumeError(f"{subject.image}: empty volume (all voxels equal)")
    strip = config.skull_strip != "none"
    if config.bias_correction:
        data = _n4(data, image.spacing, brain if strip else None)
    foreground = brain if (strip and brain is not None) else _head_mask(data)
    if strip:
        data = data * foreground
    shape, affine = _target_grid(image, foreground, config)
    out = _resample(data.astype(np.float32), image.affine, shape, affine, order=1).astype(
        np.float32
    )
    fg = _resample(foreground.astype(np.uint8), image.affine, shape, affine, order=0) > 0
    lab = None
    if labels is not None:
        lab = _resample(labels.array.astype(np.int32), image.affine, shape, affine, order=0).astype(
            np.int32
        )
    if config.intensity == "percentile":
        out = _robust_scale(out, fg, config.percentiles)
    elif config.intensity == "nyul":
        if config.nyul_landmarks is None:
            raise ConfigError(
                "intensity='nyul' needs nyul_landmarks learned on the training subjects"
            )
        out = _nyul_apply(out, fg, config.nyul_landmarks)
    if strip:
        out = out * fg
    src = image.meta["source_grid"]
    return Preprocessed(
        subject.id,
        np.ascontiguousarray(out),
        affine,
        fg,
        lab,
        np.asarray(src["affine"]),
        tuple(src["shape"]),
        config,
    )


def _cache_key(subject: Subject, config: PreprocessConfig) -> str:
    files = [file_hash(p) for p in subject.files().values()]
    key = {"files": files, "config": config.to_dict(), "version": 1}
    if subject.mask is not None and config.skull_strip == "labels":
        key["brain"] = "labels"  # before 2026-11-22 the mask file was used here by mistake
    return config_hash(key)


def _save_cache(path: Path, pre: Preprocessed) -> None:
    buf = io.BytesIO()
    arrays = {
        "image": pre.image,
        "affine": pre.affine,
        "mask": pre.mask,
        "source_affine": pre.source_affine,
        "source_shape": np.asarray(pre.source_shape),
    }
    if pre.labels is not None:
        arrays["labels"] = pre.labels
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _load_cache(path: Path, subject_id: str, config: PreprocessConfig) -> Preprocessed | None:
    try:
        with np.load(path) as z:
            return Preprocessed(
                subject_id,
                z["image"],
                z["affine"],
                z["mask"],
                z["labels"] if "labels" in z.files else None,
                z["source_affine"],
                tuple(int(s) for s in z["source_shape"]),
                config,
            )
    except Exception:  # a damaged cache entry is recomputed
        return None


def preprocess_subject(
    subject: Subject, config: PreprocessConfig, use_cache: bool = True
) -> Preprocessed:
    """Preprocess one subject, reading from / writing to the on-disk cache.

    The cache key is a content hash of the subject's files and the config.
    """
    if not use_cache:
        return _compute(subject, config)
    path = cache_dir() / "preprocessed" / f"{_cache_key(subject, config)}.npz"
    if path.exists():
        hit = _load_cache(path, subject.id, config)
        if hit is not None:
            return hit
    pre = _compute(subject, config)
    _save_cache(path, pre)
    return pre


def preprocess_cohort(
    subjects: list[Subject],
    config: PreprocessConfig,
    use_cache: bool = True,
    progress=None,
) -> list[Preprocessed]:
    """Preprocess several subjects in order, reporting progress as ``(done, total, "preprocess")``."""
    from ..progress import report

    out = []
    for k, subject in enumerate(subjects):
        out.append(preprocess_subject(subject, config, use_cache))
        report(progress, k + 1, len(subjects), "preprocess")
    return out


def config_with_nyul(config: PreprocessConfig, training: list[Subject]) -> PreprocessConfig:
    """Return ``config`` with Nyul landmarks learned on ``training`` (no-op for other methods)."""
    if config.intensity != "nyul" or config.nyul_landmarks is not None:
        return config
    raw = dataclasses.replace(config, intensity="none")
    pres = [preprocess_subject(s, raw) for s in training]
    landmarks = learn_nyul_landmarks([p.image for p in pres], [p.mask for p in pres])
    return dataclasses.replace(config, nyul_landmarks=landmarks)
