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
from .preprocess_config import NYUL_PERCENTILES, PreprocessConfig

__all__ = [
    "PreprocessConfig",
    "Preprocessed",
    "preprocess_subject",
    "preprocess_cohort",
    "save_pending",
    "learn_nyul_landmarks",
    "cache_dir",
    "config_with_nyul",
]


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
    subject: Subject,
    config: PreprocessConfig,
    use_cache: bool = True,
    pending: list[tuple[Path, Preprocessed]] | None = None,
) -> Preprocessed:
    """Preprocess one subject, reading from / writing to the on-disk cache.

    The cache key is a content hash of the subject's files and the config. With
    ``pending``, a new entry is appended there instead of written (a job that is still
    checking its inputs writes nothing; :func:`save_pending` writes them later).
    """
    if not use_cache:
        return _compute(subject, config)
    path = cache_dir() / "preprocessed" / f"{_cache_key(subject, config)}.npz"
    if path.exists():
        hit = _load_cache(path, subject.id, config)
        if hit is not None:
            return hit
    pre = _compute(subject, config)
    if pending is None:
        _save_cache(path, pre)
    else:
        pending.append((path, pre))
    return pre


def save_pending(pending: list[tuple[Path, Preprocessed]]) -> None:
    """Write the cache entries :func:`preprocess_subject` deferred into ``pending``, and empty it."""
    for path, pre in pending:
        _save_cache(path, pre)
    pending.clear()


def preprocess_cohort(
    subjects: list[Subject],
    config: PreprocessConfig,
    use_cache: bool = True,
    progress=None,
    pending: list[tuple[Path, Preprocessed]] | None = None,
) -> list[Preprocessed]:
    """Preprocess several subjects in order, reporting progress as ``(done, total, "preprocess")``;
    ``pending`` as in :func:`preprocess_subject`."""
    from ..progress import report

    out = []
    for k, subject in enumerate(subjects):
        out.append(preprocess_subject(subject, config, use_cache, pending))
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
