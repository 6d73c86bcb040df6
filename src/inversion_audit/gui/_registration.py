"""The Deformation widget's compute functions: a pair registered (ANTs or greedy) as the
study scores it, and the study's stored magnitude maps.

Plain functions, no Qt (see :mod:`._compute`). :func:`register_pair` runs in a child process
(ANTs and greedy hold the GIL), so it is module-level and pickled by name; the registration
and the study's scoring are imported inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InversionAuditError
from ..io import Volume, read_volume
from ..progress import ProgressCallback, report

if TYPE_CHECKING:
    from ..study.index import StudyIndex

__all__ = [
    "DeformationView",
    "cached_deformation",
    "displacement_vectors",
    "register_pair",
    "study_registration",
]


@dataclass(frozen=True)
class DeformationView:
    """What the Deformation widget shows: the magnitude map (mm) on the candidate's grid,
    the mean displacement norm, and optional subsampled displacement vectors."""

    magnitude: np.ndarray
    mean_displacement_mm: float  # NaN: not computed (the study never scored the pair)
    vectors: np.ndarray | None = None
    cached: bool = False


def displacement_vectors(
    displacement: np.ndarray, spacing: tuple[float, ...], step: int
) -> np.ndarray:
    """napari Vectors data ``(N, 2, 3)`` from a displacement field ``(X, Y, Z, 3)`` in mm:
    every ``step``-th voxel, projections in voxels (the layer's scale turns them into mm)."""
    field = np.asarray(displacement, np.float32)[::step, ::step, ::step]
    grid = np.stack(
        np.meshgrid(*[np.arange(0, n, step) for n in displacement.shape[:3]], indexing="ij"), -1
    )
    positions = grid.reshape(-1, 3).astype(np.float32)
    projections = (field.reshape(-1, 3) / np.asarray(spacing, np.float32)).astype(np.float32)
    keep = np.linalg.norm(projections, axis=1) > 1e-3
    return np.stack([positions[keep], projections[keep]], axis=1)


def register_pair(
    moving: Volume,
    fixed: Volume,
    preset: str = "fast",
    vectors_step: int | None = None,
    study_candidate: tuple[str, str, str] | None = None,
    progress: ProgressCallback | None = None,
    registration: str = "ants",
) -> DeformationView:
    """Registration of ``moving`` (a reconstruction) to ``fixed`` (a candidate) with the
    backend ``registration`` (``"ants"`` or ``"greedy"``; greedy has the ``fast`` preset only).

    With ``study_candidate`` (study folder, variant, candidate id) the pair is registered as
    the study scores it (:func:`inversion_audit.matching.pipeline.register_candidate`: the
    candidate's preprocessing mask, one ITK thread, the seed) and the mean displacement is
    the study's. Other layers get the magnitude map only: their mean is "not computed".
    Call it through :func:`~inversion_audit.gui._subprocess.call_in_subprocess`.
    """
    from ..matching.pipeline import REGISTRATION_SEED, register_candidate
    from ..metrics import check_registration, deformation
    from ..metrics.registration import backend_label

    check_registration(registration, preset)
    report(progress, 0, 2, f"{backend_label(registration)} registration ({preset})")
    want_field = bool(vectors_step)
    mean = float("nan")
    if study_candidate is not None and moving.shape == fixed.shape:
        from ..study.index import StudyIndex
        from ..study.scoring import candidate_mask

        root, variant, candidate_id = study_candidate
        mask = candidate_mask(StudyIndex(root), variant, candidate_id)
        result = register_candidate(
            moving.array,
            fixed.array,
            mask,
            fixed.spacing,
            preset,
            return_displacement=want_field,
            registration=registration,
        )
        mean = float(result.mean_displacement_mm)
    else:  # world positions as they are; the study never scored this pair
        result = deformation(
            moving,
            fixed,
            preset=preset,  # type: ignore[arg-type]
            threads=1,
            seed=REGISTRATION_SEED,
            return_displacement=want_field,
            registration=registration,
        )
    report(progress, 1, 2, "displacement vectors")
    vectors = None
    if vectors_step and result.displacement is not None:
        vectors = displacement_vectors(result.displacement, fixed.spacing, int(vectors_step))
    report(progress, 2, 2, "done")
    return DeformationView(np.asarray(result.magnitude.array, np.float32), mean, vectors)


def study_registration(study: StudyIndex) -> str:
    """The registration backend a study scored with (``[matching] registration``; ``"ants"``
    for a study that names none, or whose config cannot be read)."""
    try:
        matching = study.config().matching
    except (InversionAuditError, OSError, KeyError, ValueError):  # read as the default, ANTs
        return "ants"
    return str(getattr(matching, "registration", None) or "ants")


def cached_deformation(
    study: StudyIndex, run: str, reconstruction_id: str, candidate_id: str
) -> DeformationView | None:
    """The study's stored magnitude map and its scored mean displacement for a pair, or
    ``None``; the mean is NaN ("not computed") when ``scores.csv`` holds none."""
    path = study.deformation_file(run, reconstruction_id, candidate_id)
    if not path.is_file():
        return None
    magnitude = read_volume(path).array
    mean = study.score(run, reconstruction_id, candidate_id, "deformation")
    return DeformationView(magnitude, float(mean), None, cached=True)
