"""Deformation magnitude: how far a reconstruction must be warped to match a candidate.

The paper registers a reconstruction (moving) to a candidate original (fixed) with ANTs,
affine with mutual information then SyN with cross-correlation, and scores the pair by the
mean norm of the displacement vectors; smaller means more alike. ``registration="greedy"``
registers with greedy instead (affine, then NCC deformable; :mod:`.registration_greedy`).

The displacement is that of the *composed* forward transform (affine + deformable warp,
collapsed into one displacement field on the fixed grid), so a pure shift between the volumes
is measured too; both backends turn it into the magnitude map and the mean with the same
functions (:mod:`.registration`). Results are cached on disk, keyed by the content hashes of
both volumes (arrays and affines), the backend and the preset.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..children import scratch_dir
from ..io import Volume, array_hash
from .ants_process import register_isolated, run_here, set_itk_threads
from .deformation_cache import cache_entry_path, load_entry, save_entry
from .registration import (
    check_registration,
    displacement_magnitude,
    lps_to_ras,
    mean_displacement,
)

if TYPE_CHECKING:
    import ants

__all__ = [
    "DEFORMATION_PRESETS",
    "DeformationResult",
    "centred_affine",
    "deformation",
    "deformation_cache_path",
    "register_volumes",
    "to_ants",
]

Preset = Literal["paper", "fast"]

#: ``ants.registration`` calls per preset, run in order; each call after the
#: first starts from the transforms of the previous one.
DEFORMATION_PRESETS: dict[str, tuple[dict, ...]] = {
    # The paper: affine (Mattes mutual information) then SyN (cross-correlation,
    # radius 4). Everything else is ANTsPy's default for type_of_transform="SyN":
    # affine 2100x1200x1200x0 at shrink 4x2x2x1; SyN 40x20x0 at shrink 4x2x1.
    "paper": (
        {"type_of_transform": "SyN", "aff_metric": "mattes", "syn_metric": "CC", "syn_sampling": 4},
    ),
    # Fewer iterations and coarser levels: a shorter affine, then SyN with Mattes mutual
    # information at two levels (40x20 iterations; 8 and 4 mm on the 4 mm copies below).
    # Tuned on ixi-dev reconstructions: top-1 agrees with `paper` on 9/10 at ~14 s per pair
    # (benchmarks/tune_fast_preset.py, docs/benchmarks.md).
    "fast": (
        {
            "type_of_transform": "Affine",
            "aff_metric": "mattes",
            "aff_iterations": (1000, 500, 200),
            "aff_shrink_factors": (4, 2, 1),
            "aff_smoothing_sigmas": (2, 1, 0),
            # "auto": dense metric sampling on small volumes (random 20% sampling let the
            # affine drift on 32^3 test volumes), ANTs' 20% on real ones (dense is ~5x slower)
            "aff_random_sampling_rate": "auto",
        },
        {
            "type_of_transform": "SyNOnly",
            "syn_metric": "mattes",
            "syn_sampling": 32,
            "reg_iterations": (40, 20),
        },
    ),
}

#: Registration grid per preset: ``fast`` registers copies resampled to 4 mm when the
#: resampled grid keeps at least :data:`MIN_COARSE_EXTENT` voxels per axis (the transforms
#: are in world mm, so the displacement is still evaluated on the full fixed grid).
#: At 2 mm (96x112x96) this makes SyN with CC about 3x cheaper.
REGISTRATION_SPACING_MM: dict[str, float | None] = {"paper": None, "fast": 4.0}
MIN_COARSE_EXTENT = 40

_CACHE_VERSION = 4
#: with ``aff_random_sampling_rate = "auto"``, the affine metric uses at least this many
#: fixed-image voxels (all of them for smaller volumes), else ANTs' default 20%
MIN_AFFINE_SAMPLES = 65536
_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class DeformationResult:
    """Outcome of registering a reconstruction (moving) to a candidate (fixed).

    Attributes
    ----------
    mean_displacement_mm : mean displacement norm in mm over the fixed mask (or all voxels).
    magnitude : displacement norm per voxel (mm), a volume on the fixed (candidate) grid.
    warped : the moving volume warped onto the fixed grid.
    preset : ``"paper"`` or ``"fast"``.
    displacement : the composed forward displacement field on the fixed grid, shape
        ``(*fixed.shape, 3)``, in RAS world mm (fixed point ``p`` maps to ``p + u(p)``
        in the moving volume); ``None`` unless requested with ``return_displacement``.
    seconds : wall time of the registration (the original run's time on a cache hit).
    cached : whether the result came from the on-disk cache.
    registration : the backend, ``"ants"`` or ``"greedy"``.
    cpu_seconds : CPU time of the registration (all its threads; NaN when not known).
    """

    mean_displacement_mm: float
    magnitude: Volume
    warped: Volume
    preset: str
    seconds: float
    cached: bool = False
    displacement: np.ndarray | None = None
    registration: str = "ants"
    cpu_seconds: float = float("nan")


def centred_affine(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """An axis-aligned RAS affine with the grid centre at the world origin.

    Give it to both volumes of a pair compared in the preprocessed space, so that
    registration sees their voxels on one grid and not each subject's position
    in its scanner (which would identify the subject by head position alone).
    """
    affine = np.eye(4)
    affine[:3, :3] = np.diag(np.asarray(spacing, dtype=np.float64))
    affine[:3, 3] = (
        -(np.asarray(shape, dtype=np.float64) - 1) / 2 * np.asarray(spacing, dtype=np.float64)
    )
    return affine


def _registration_grid(image: ants.ANTsImage, preset: str) -> ants.ANTsImage:
    """``image`` resampled (linear) to the preset's registration spacing, or as it is."""
    import ants

    target = REGISTRATION_SPACING_MM.get(preset)
    if target is None or min(image.spacing) >= target:
        return image
    extent = np.asarray(image.shape) * np.asarray(image.spacing) / target
    if extent.min() < MIN_COARSE_EXTENT:
        return image
    return ants.resample_image(image, (target,) * image.dimension, use_voxels=False, interp_type=0)


def affine_sampling_rate(shape: tuple[int, ...]) -> float:
    """The ``"auto"`` affine sampling rate: dense below :data:`MIN_AFFINE_SAMPLES` voxels,
    then decreasing to ANTs' default of 0.2."""
    return float(min(1.0, max(0.2, MIN_AFFINE_SAMPLES / float(np.prod(shape)))))


def to_ants(volume: Volume) -> ants.ANTsImage:
    """Convert a RAS :class:`Volume` to an ANTs image (LPS physical space) with the same geometry."""
    import ants

    affine = np.asarray(volume.affine, dtype=np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if np.any(spacing <= 0):
        raise ValueError(f"{volume.name}: affine has a zero voxel size")
    direction = _LPS @ (affine[:3, :3] / spacing)
    origin = _LPS @ affine[:3, 3]
    return ants.from_numpy(
        np.asarray(volume.array, dtype=np.float32),
        origin=tuple(float(v) for v in origin),
        spacing=tuple(float(v) for v in spacing),
        direction=direction,
    )


def deformation_cache_path(
    moving: Volume, fixed: Volume, preset: str, registration: str = "ants"
) -> Path:
    """Where the result for this pair, backend and preset is cached (an ANTs key is the
    same as before greedy existed, so earlier ANTs results stay valid)."""
    key: dict = {
        "moving": array_hash(np.asarray(moving.array, dtype=np.float32), moving.affine),
        "fixed": array_hash(np.asarray(fixed.array, dtype=np.float32), fixed.affine),
        "preset": preset,
        "version": _CACHE_VERSION,
    }
    if registration == "ants":
        key["stages"] = [
            sorted((k, str(v)) for k, v in s.items()) for s in DEFORMATION_PRESETS[preset]
        ]
        key["registration_spacing_mm"] = REGISTRATION_SPACING_MM.get(preset)
    else:
        from .registration_greedy import greedy_commands, greedy_version

        key["registration"] = registration
        key["commands"] = list(greedy_commands(preset, fixed.shape))
        key["greedy"] = greedy_version()
    return cache_entry_path(key)


def _check_mask(fixed_mask: np.ndarray | None, fixed: Volume) -> np.ndarray | None:
    if fixed_mask is None:
        return None
    mask = np.asarray(fixed_mask, dtype=bool)
    if mask.shape != fixed.shape:
        raise ValueError(
            f"{fixed.name}: fixed_mask shape {mask.shape} does not match the fixed grid {fixed.shape}"
        )
    if not mask.any():
        raise ValueError(f"{fixed.name}: fixed_mask is empty")
    return mask


def _register_ants(moving: Volume, fixed: Volume, preset: str) -> tuple[np.ndarray, np.ndarray]:
    """Run the ANTs preset's registrations; return (the composed displacement field in ITK's
    LPS mm, the warped moving volume), both on the fixed grid."""
    import ants

    fixed_img, moving_img = to_ants(fixed), to_ants(moving)
    reg_fixed, reg_moving = (
        _registration_grid(fixed_img, preset),
        _registration_grid(moving_img, preset),
    )
    with scratch_dir("ants") as tmp:  # patients' images: in the cache, cleaned if we are killed
        transforms: list[str] | None = None
        for k, stage in enumerate(DEFORMATION_PRESETS[preset]):
            kwargs = dict(stage)
            if kwargs.get("aff_random_sampling_rate") == "auto":
                kwargs["aff_random_sampling_rate"] = affine_sampling_rate(reg_fixed.shape)
            if transforms is not None:
                kwargs["initial_transform"] = transforms
            result = ants.registration(
                reg_fixed, reg_moving, outprefix=os.path.join(tmp, f"stage{k}_"), **kwargs
            )
            transforms = list(result["fwdtransforms"])
        assert transforms is not None
        # world-space transforms: evaluate the composed field and the warp on the full grid
        field_file = ants.apply_transforms(
            fixed_img, moving_img, transformlist=transforms, compose=os.path.join(tmp, "composed_")
        )
        field = ants.image_read(field_file).numpy()
        if reg_fixed is fixed_img and reg_moving is moving_img:
            warped = result["warpedmovout"].numpy()
        else:  # registered on coarse copies: warp the full-resolution moving volume
            warped = ants.apply_transforms(fixed_img, moving_img, transformlist=transforms).numpy()
    return np.asarray(field, dtype=np.float64), np.asarray(warped, dtype=np.float32)


def register_volumes(
    moving: Volume,
    fixed: Volume,
    preset: str,
    registration: str = "ants",
    threads: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Register in this process with the backend; return (displacement magnitude (mm), warped
    moving, displacement field in RAS mm), all on the fixed grid.

    ``threads`` and ``seed`` go to greedy's command line; ANTs reads its own from the
    environment (:func:`deformation` sets them).
    """
    if registration == "greedy":
        from .registration_greedy import register_greedy

        field, warped = register_greedy(moving, fixed, preset, threads=threads, seed=seed)
    else:
        field, warped = _register_ants(moving, fixed, preset)
    # both fields are in ITK's LPS physical space: one magnitude, one RAS conversion
    return displacement_magnitude(field), warped, lps_to_ras(field)


def deformation(
    moving_volume: Volume,
    fixed_volume: Volume,
    fixed_mask: np.ndarray | None = None,
    preset: Preset = "paper",
    cache: bool = True,
    threads: int | None = None,
    seed: int | None = 0,
    isolated: bool = False,
    return_displacement: bool = False,
    registration: str = "ants",
) -> DeformationResult:
    """Register ``moving_volume`` (a reconstruction) to ``fixed_volume`` (a candidate).

    Parameters
    ----------
    moving_volume, fixed_volume : 3D volumes with RAS affines (world mm).
    fixed_mask : optional boolean array on the fixed grid (e.g. the candidate's
        brain mask); the mean displacement is taken over it.
    preset : ``"paper"`` (ANTs: affine MI then SyN CC, ANTs' defaults) or ``"fast"``
        (ANTs: fewer iterations, coarser levels, :data:`DEFORMATION_PRESETS`; greedy: its one
        preset, :data:`~.registration_greedy.GREEDY_PRESETS`).
    cache : read and write the on-disk cache (``cache_dir()/deformation``).
    threads : ITK threads (see :func:`~.ants_process.set_itk_threads`); ``None`` keeps the
        environment's setting.
        ITK fixes its thread count at a process's first ANTs registration, so a later ANTs
        call asking for another count runs in a fresh child process (as ``isolated``);
        greedy sets its count per call (``-threads``).
    seed : random seed of ANTs' metric sampling, passed as ``ANTS_RANDOM_SEED = seed + 1``
        (ANTs reads 0 as "seed from the clock"), and of greedy (``-seed seed + 1``); ``None``
        keeps the environment's setting (greedy: 0).
        With one ITK thread a registration is then bit-reproducible; with more, the
        affine stage's multi-threaded metric still varies slightly between calls.
    isolated : register in a child Python process (about 2 s more per call).
        ANTsPy and greedy hold the GIL for the whole registration; isolation keeps the
        caller's other threads running (Dask heartbeats, a GUI) and turns a crash into a
        ``RuntimeError``.
    return_displacement : also return (and cache) the displacement field, e.g. for a
        napari Vectors layer; a cached entry without it is recomputed.
    registration : the backend, ``"ants"`` or ``"greedy"``
        (:data:`~.registration.REGISTRATION_BACKENDS`); greedy has no ``paper`` preset.

    Returns
    -------
    :class:`DeformationResult` with the mean displacement (mm), the magnitude
    map and the warped reconstruction, both on the fixed grid.
    """
    check_registration(registration, preset)
    for role, vol in (("moving", moving_volume), ("fixed", fixed_volume)):
        arr = np.asarray(vol.array)
        if arr.ndim != 3:
            raise ValueError(f"{vol.name}: {role} volume must be 3D, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{vol.name}: {role} volume holds NaN or Inf values")
    mask = _check_mask(fixed_mask, fixed_volume)
    path = (
        deformation_cache_path(moving_volume, fixed_volume, preset, registration) if cache else None
    )
    hit = load_entry(path, return_displacement) if path is not None and path.exists() else None
    if hit is not None:
        magnitude, warped, seconds, cpu_seconds, field = hit
        cached = True
    else:
        set_itk_threads(threads)
        if seed is not None:  # ANTs takes 0 as "seed from the clock": never pass it
            os.environ["ANTS_RANDOM_SEED"] = str(int(seed) + 1)
        greedy_threads = int(threads or os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS") or 0)
        if registration == "ants" and not isolated and not run_here(threads):
            isolated = True
        if isolated:
            magnitude, warped, field, seconds, cpu_seconds = register_isolated(
                moving_volume, fixed_volume, preset, registration, greedy_threads, seed or 0
            )
        else:
            start, cpu_start = time.perf_counter(), time.process_time()
            magnitude, warped, field = register_volumes(
                moving_volume, fixed_volume, preset, registration, greedy_threads, seed or 0
            )
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu_start
        cached = False
        if path is not None:
            save_entry(
                path,
                magnitude,
                warped,
                seconds,
                field if return_displacement else None,
                cpu_seconds,
            )
    affine = np.asarray(fixed_volume.affine, dtype=np.float64).copy()
    return DeformationResult(
        mean_displacement_mm=mean_displacement(magnitude, mask),
        magnitude=Volume(magnitude, affine.copy(), None, {"kind": "deformation magnitude (mm)"}),
        warped=Volume(warped, affine, None, {"kind": "warped reconstruction"}),
        preset=preset,
        seconds=seconds,
        cached=cached,
        displacement=field if return_displacement else None,
        registration=registration,
        cpu_seconds=cpu_seconds,
    )
