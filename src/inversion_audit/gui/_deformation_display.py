"""What the Deformation widget draws: the displacement map over the candidate's brain only,
and displacement vectors on every slice of the viewed axis.

Plain functions, no Qt. :func:`register_for_display` runs in a child process (ANTs and greedy
hold the GIL); the mask and vector selections are numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InversionAuditError
from ..io import Volume
from ..progress import ProgressCallback
from ._registration import DeformationView, register_pair

__all__ = [
    "BrainMask",
    "DisplayResult",
    "brain_mask",
    "masked_magnitude",
    "outside_transparent_colormap",
    "mask_in_child",
    "mask_needs_child",
    "mean_inside",
    "register_for_display",
    "slice_lattice",
    "vectors_for_view",
]

#: values at or below this fraction of the colour range are drawn transparent (outside the brain)
TRANSPARENT_BELOW = 1e-6


@dataclass(frozen=True)
class BrainMask:
    """The voxels the map is drawn on, and where that mask comes from (for the label)."""

    mask: np.ndarray
    source: str


@dataclass(frozen=True)
class DisplayResult:
    """A registration's view, the brain mask it is drawn on, and its vectors on every slice."""

    view: DeformationView
    brain: BrainMask
    vectors: np.ndarray | None = None  # (N, 2, 3), positions on :func:`slice_lattice`


def brain_mask(fixed: np.ndarray, study_candidate: tuple[str, str, str] | None) -> BrainMask:
    """The candidate's brain: the study's scoring mask (``study.scoring.candidate_mask``, the
    mask its registration averaged over) when the layer is a study candidate whose cohort is
    on this machine; otherwise the candidate's non-zero voxels when its background is zero
    (skull-stripped), else its head by the preprocessing's rule (above half Otsu's threshold)."""
    if study_candidate is not None:
        from ..study.index import StudyIndex
        from ..study.scoring import candidate_mask

        root, variant, candidate_id = study_candidate
        try:
            mask = candidate_mask(StudyIndex(root), variant, candidate_id)
        except (InversionAuditError, OSError):
            mask = None
        if mask is not None and mask.shape == np.shape(fixed) and mask.any():
            return BrainMask(np.asarray(mask, bool), "the study's scoring mask")
    array = np.asarray(fixed, np.float32)
    nonzero = array != 0
    if nonzero.any() and nonzero.mean() < 0.99:
        return BrainMask(nonzero, "the candidate's non-zero voxels")
    from skimage.filters import threshold_otsu

    positive = array[array > 0]
    if positive.size == 0 or positive.min() == positive.max():
        return BrainMask(np.ones(array.shape, bool), "the whole grid")
    head = array > threshold_otsu(positive) * 0.5
    return BrainMask(head, "the candidate's head (half Otsu's threshold)")


def mask_needs_child(study_candidate: tuple[str, str, str] | None) -> bool:
    """Whether recomputing a study candidate's scoring mask runs ANTs' N4 (the study's
    preprocessing corrects bias): then it runs in a child process, never in napari's."""
    if study_candidate is None:
        return False
    from ..study.index import StudyIndex

    root, variant, _ = study_candidate
    try:
        return bool(StudyIndex(root).config().preprocess_config(variant).bias_correction)
    except (InversionAuditError, OSError, KeyError, ValueError):
        return False  # no config to follow: the mask falls back without preprocessing


def mask_in_child(
    fixed: np.ndarray,
    study_candidate: tuple[str, str, str] | None,
    progress: ProgressCallback | None = None,
) -> BrainMask:
    """:func:`brain_mask` for ``call_in_subprocess`` (which passes ``progress``)."""
    return brain_mask(fixed, study_candidate)


def mean_inside(magnitude: np.ndarray, mask: np.ndarray) -> float:
    """The mean displacement (mm) over ``mask`` (NaN when the mask is empty or off-grid)."""
    m = np.asarray(mask, bool)
    values = np.asarray(magnitude, np.float64)
    if m.shape != values.shape or not m.any():
        return float("nan")
    return float(values[m].mean())


def masked_magnitude(magnitude: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The magnitude map inside ``mask`` and 0 (drawn transparent) outside."""
    return np.where(np.asarray(mask, bool), np.asarray(magnitude, np.float32), 0.0).astype(
        np.float32
    )


def outside_transparent_colormap(name: str = "turbo") -> Any:
    """napari's ``name`` colormap with a transparent lowest value (the map's 0 outside the
    brain); every displacement above :data:`TRANSPARENT_BELOW` of the range is opaque."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    base = ensure_colormap(name)
    controls = np.concatenate([[0.0], np.linspace(TRANSPARENT_BELOW, 1.0, 64)])
    colors = np.concatenate([[[0.0, 0.0, 0.0, 0.0]], base.map(np.linspace(0.0, 1.0, 64))])
    return Colormap(colors=colors, controls=controls, name=f"{name} (brain only)")


def slice_lattice(vectors: np.ndarray, step: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Vectors whose positions have at least two coordinates on the every-``step``-th-voxel
    lattice (so every slice along any axis holds an in-plane lattice), inside ``mask``."""
    data = np.asarray(vectors, np.float32).reshape(-1, 2, 3)
    pos = np.rint(data[:, 0]).astype(np.int64)
    on = (pos % int(step) == 0).sum(axis=1) >= 2
    if mask is not None:
        m = np.asarray(mask, bool)
        inside = np.all((pos >= 0) & (pos < np.asarray(m.shape)), axis=1)
        on &= inside
        on[inside] &= m[tuple(pos[inside].T)]
    return data[on]


def vectors_for_view(vectors: np.ndarray, step: int, displayed: tuple[int, ...]) -> np.ndarray:
    """The vectors drawn for the displayed axes: the in-plane lattice on every slice (2D), the
    3D lattice in a 3D view."""
    data = np.asarray(vectors).reshape(-1, 2, 3)
    pos = np.rint(data[:, 0, list(displayed)]).astype(np.int64)
    return data[np.all(pos % int(step) == 0, axis=1)]


def register_for_display(
    moving: Volume,
    fixed: Volume,
    preset: str = "fast",
    vectors_step: int | None = None,
    study_candidate: tuple[str, str, str] | None = None,
    progress: ProgressCallback | None = None,
    registration: str = "ants",
) -> DisplayResult:
    """Register as :func:`~._registration.register_pair` does (the study's way for a study
    candidate), plus the brain mask and, with ``vectors_step``, the displacement vectors of
    every slice inside the brain. A pair the study did not score gets the mean displacement
    inside that brain. Call it through ``call_in_subprocess``."""
    view = register_pair(
        moving,
        fixed,
        preset=preset,
        vectors_step=1 if vectors_step else None,
        study_candidate=study_candidate,
        progress=progress,
        registration=registration,
    )
    brain = brain_mask(fixed.array, study_candidate)
    vectors = None
    if vectors_step and view.vectors is not None:
        vectors = slice_lattice(view.vectors, int(vectors_step), brain.mask)
    mean = view.mean_displacement_mm
    if not np.isfinite(mean):
        mean = mean_inside(view.magnitude, brain.mask)
    light = DeformationView(view.magnitude, mean, None, view.cached)
    return DisplayResult(light, brain, vectors)
