"""The greedy registration backend (``picsl_greedy``, Yushkevich's greedy, Apache-2.0).

A reconstruction (moving) is registered to a candidate (fixed) in memory, as SimpleITK
images, in three greedy calls on one :class:`picsl_greedy.Greedy3D`:

1. affine (12 degrees of freedom), started from the translation that aligns the volumes'
   centres of mass (as ANTs starts its affine), normalised cross-correlation (radius 2; with
   normalised mutual information the affine drifted on small volumes). greedy's
   Python API drops a matrix given as ``-ia``, so the moving image is handed over with its
   origin moved by that translation, and the translation added back to the field;
2. deformable, normalised cross-correlation (radius 2), from the affine; both at three
   levels (4x, 2x, 1x), the full resolution skipped on large grids (as ANTs ``fast``
   registers 4 mm copies there);
3. the affine and the warp composed into one displacement field on the fixed grid (``-rc``),
   and the moving volume resliced through them.

Each call gets ``-threads N`` (one ITK thread per registration in the pipeline) and a fixed
``-seed`` (greedy seeds from the clock otherwise: its NCC adds a little random noise), so a
registration is bit-reproducible. The deformable warp is kept at full precision (``-wp 0``;
greedy rounds it to 0.1 voxel by default). greedy holds the GIL for a whole call, so the
pipeline runs it in child processes as it runs ANTs (:mod:`.ants_process`).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ..io import Volume

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = [
    "GREEDY_PRESETS",
    "centre_of_mass_ras",
    "greedy_commands",
    "greedy_version",
    "initial_translation",
    "iterations",
    "register_greedy",
    "to_sitk",
]

#: greedy's options per preset: the affine stage, the deformable stage, and their levels
GREEDY_PRESETS: dict[str, dict[str, str]] = {
    "fast": {
        "affine": "-a -dof 12 -m NCC 2x2x2",
        "deformable": "-m NCC 2x2x2 -s 1.732vox 0.707vox -wp 0",
        # three levels (4x, 2x, 1x); "coarse" skips the full resolution, where most of the
        # time goes, on grids large enough for it (:func:`iterations`)
        "iterations": "100x50x10",
        "iterations_coarse": "100x50x0",
    },
}
#: the full resolution is skipped when the half-resolution grid keeps at least this many
#: voxels on every axis (96 x 112 x 96 at 2 mm: yes, about 4 CPU-s a pair instead of 10; the
#: 32^3 test volumes: no, where registering at half resolution left 0.9 mm between a volume
#: and itself)
MIN_COARSE_EXTENT = 40

_LPS = np.diag([-1.0, -1.0, 1.0])


def to_sitk(volume: Volume, shift_ras: np.ndarray | None = None) -> sitk.Image:
    """A RAS :class:`Volume` as a SimpleITK image (LPS physical space), same geometry, or
    moved by ``shift_ras`` (mm)."""
    import SimpleITK as sitk

    affine = np.asarray(volume.affine, dtype=np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if np.any(spacing <= 0):
        raise ValueError(f"{volume.name}: affine has a zero voxel size")
    direction = _LPS @ (affine[:3, :3] / spacing)
    # SimpleITK's arrays are (z, y, x); the project's are (x, y, z)
    array = np.ascontiguousarray(np.asarray(volume.array, dtype=np.float64).transpose(2, 1, 0))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(v) for v in spacing))
    origin = affine[:3, 3] + (0.0 if shift_ras is None else np.asarray(shift_ras, np.float64))
    image.SetOrigin(tuple(float(v) for v in _LPS @ origin))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return image


def iterations(preset: str, shape: tuple[int, ...]) -> str:
    """greedy's ``-n`` for a fixed grid of ``shape``: all levels, or the coarse ones only when
    the half-resolution grid keeps :data:`MIN_COARSE_EXTENT` voxels per axis."""
    stages = GREEDY_PRESETS[preset]
    coarse = min(int(n) for n in shape) // 2 >= MIN_COARSE_EXTENT
    return stages["iterations_coarse" if coarse else "iterations"]


def greedy_commands(
    preset: str, shape: tuple[int, ...], threads: int = 1, seed: int = 0
) -> tuple[str, str, str]:
    """The three greedy command lines of a registration (affine, deformable, compose) to a
    fixed grid of ``shape``: ``fixed``/``moving`` are the images, ``affine``/``warp``/
    ``composed``/``warped`` the outputs, all held in memory."""
    if preset not in GREEDY_PRESETS:
        raise ValueError(f"unknown greedy preset {preset!r}; choose {' or '.join(GREEDY_PRESETS)}")
    stages = GREEDY_PRESETS[preset]
    n = f"-n {iterations(preset, shape)}"
    # greedy takes seed 0 as "seed from the clock" (as ANTs does): never pass it
    common = f"-d 3 -threads {max(0, int(threads))} -seed {int(seed) + 1} -V 0"
    return (
        f"{common} -i fixed moving -ia-identity {stages['affine']} {n} -o affine",
        f"{common} -i fixed moving -it affine {stages['deformable']} {n} -o warp",
        f"{common} -rf fixed -rm moving warped -r warp affine -rc composed",
    )


def centre_of_mass_ras(volume: Volume) -> np.ndarray:
    """The intensity-weighted centre of a volume in RAS mm (its grid centre when it is all 0)."""
    array = np.abs(np.asarray(volume.array, dtype=np.float64))
    total = array.sum()
    if total > 0 and np.isfinite(total):
        index = [
            (array.sum(axis=tuple(a for a in range(3) if a != axis)) * np.arange(n)).sum() / total
            for axis, n in enumerate(array.shape)
        ]
    else:
        index = [(n - 1) / 2 for n in array.shape]
    return (np.asarray(volume.affine, dtype=np.float64) @ np.array([*index, 1.0]))[:3]


def initial_translation(moving: Volume, fixed: Volume) -> np.ndarray:
    """The affine's start (RAS mm, fixed point to moving point): the translation that brings
    the fixed volume's centre of mass onto the moving one's, as ANTs starts."""
    return centre_of_mass_ras(moving) - centre_of_mass_ras(fixed)


def _flush_c_streams() -> None:
    """Flush the C library's buffered output (greedy's optimiser ``printf``s there)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library handle here (Windows)
        pass


@contextmanager
def _c_stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1, the C library's stdout, to /dev/null: greedy's line-search
    optimiser prints there, past the ``out`` stream greedy's Python API redirects, and a
    child process may talk to its parent on that descriptor (the GUI's children do). greedy
    holds the GIL for a whole call, so no Python thread of this process prints meanwhile."""
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):  # no stdout, or a closed one
        pass
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1: nothing to keep clean
        saved = None
    if saved is None:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            _flush_c_streams()
            os.dup2(null.fileno(), 1)
            try:
                yield
            finally:
                _flush_c_streams()  # greedy's buffered text goes to /dev/null, not to fd 1
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def _array(image: sitk.Image) -> np.ndarray:
    """A SimpleITK image's voxels as (x, y, z[, components])."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    axes = (2, 1, 0, 3) if array.ndim == 4 else (2, 1, 0)
    return array.transpose(axes)


def register_greedy(
    moving: Volume, fixed: Volume, preset: str = "fast", threads: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Register ``moving`` to ``fixed`` with greedy; return (displacement field ``(X, Y, Z, 3)``
    in ITK's LPS mm on the fixed grid, float64; the moving volume warped onto it, float32).

    ``threads``: ITK threads of greedy (0: all cores); ``seed``: greedy's random seed (its
    NCC noise), passed as ``seed + 1``. Raises ``RuntimeError`` when greedy fails.
    """
    from picsl_greedy import Greedy3D

    affine, deformable, compose = greedy_commands(preset, fixed.shape, threads, seed)
    # the moving image moved onto the fixed one's centre of mass: a point q of the moving
    # volume is q - start in the image greedy registers, so its field lacks ``start``
    start = initial_translation(moving, fixed)
    log = io.StringIO()  # greedy's messages (and its optimiser's) stay out of the caller's output
    greedy = Greedy3D()
    try:
        with _c_stdout_silenced():
            greedy.execute(
                affine,
                out=log,
                err=log,
                fixed=to_sitk(fixed),
                moving=to_sitk(moving, shift_ras=-start),
                affine=None,
            )
            greedy.execute(deformable, out=log, err=log, warp=None)
            greedy.execute(compose, out=log, err=log, composed=None, warped=None)
        field = _array(greedy["composed"])
        warped = _array(greedy["warped"])
    except Exception as exc:  # greedy's own exception types are not importable
        tail = " | ".join(log.getvalue().strip().splitlines()[-3:])
        raise RuntimeError(
            f"greedy registration of {moving.name} to {fixed.name} failed: {exc}"
            + (f" ({tail})" if tail else "")
        ) from exc
    if field.shape != (*fixed.shape, 3):
        raise RuntimeError(
            f"greedy returned a field of shape {field.shape} for the fixed grid {fixed.shape}"
        )
    field = np.asarray(field, dtype=np.float64) + _LPS @ start  # back to the moving volume
    return field, np.asarray(warped, dtype=np.float32)


def greedy_version() -> str:
    """The installed ``picsl_greedy`` version (part of the cache key of greedy's results)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("picsl_greedy")
    except PackageNotFoundError:  # pragma: no cover - a dependency
        return "missing"
