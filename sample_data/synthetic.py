"""Deterministic synthetic T1 cohort derived from the MNI152 template bundled with nilearn.

Each subject is the template warped by a smooth random diffeomorphism (a velocity
field integrated by scaling and squaring, composed with a small affine jitter), with a
gamma/per-tissue contrast change, a smooth multiplicative bias field and Rician noise.
The optional head shell (CSF layer, dark skull, bright scalp) follows a smoothed brain
envelope. Subject ``k`` depends only on ``(seed, k, spacing, with_skull)``.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..progress import ProgressCallback, report

__all__ = [
    "LABEL_NAMES",
    "SAMPLE_VERSION",
    "SyntheticSubject",
    "generate_sample_cohort",
    "sample_cohort_dir",
    "synthesize_subject",
]

#: bump when the generated data change, so that cached cohorts are regenerated
SAMPLE_VERSION = 2
MARKER = "sample_cohort.json"

#: label value -> name; lobes are grey matter split by template coordinates
LABEL_NAMES: dict[int, str] = {
    0: "background",
    1: "CSF",
    2: "grey matter, other (cerebellum, brainstem)",
    3: "white matter",
    4: "left frontal grey matter",
    5: "right frontal grey matter",
    6: "left parietal-temporal grey matter",
    7: "right parietal-temporal grey matter",
    8: "left occipital grey matter",
    9: "right occipital grey matter",
}

# output field of view in template (MNI) mm: [low, high) per axis, room for the head shell
_FOV_LOW = np.array([-96.0, -129.0, -82.0])
_FOV_SIZE = np.array([192.0, 224.0, 192.0])
_BRAIN_CENTRE = np.array([0.0, -17.0, 5.0])
# lobe boundaries (template y, mm) and the non-cerebral region (template y, z)
_FRONTAL_Y = -18.0
_OCCIPITAL_Y = -72.0
# coarse grids: velocity field and head-shell distance map
_VELOCITY_SPACING = 8.0
_SHELL_SPACING = 2.0
# anatomical variability: peak of the smooth deformation (mm), per-axis scaling, rotation (deg)
_WARP_MM = (8.0, 12.0)
_SCALE = (0.92, 1.08)
_ROTATION_DEG = 6.0


@dataclass(frozen=True)
class SyntheticSubject:
    """One synthetic subject on its output grid (RAS, voxel size ``spacing``)."""

    id: str
    image: np.ndarray  # int16 T1 intensities
    labels: np.ndarray  # uint8, see LABEL_NAMES
    mask: np.ndarray  # uint8 brain mask (labels > 0)
    affine: np.ndarray


@dataclass(frozen=True)
class _Template:
    tissue: np.ndarray  # (3, X, Y, Z) T1, GM, WM as float32 in [0, 1]
    inv_affine: np.ndarray  # world mm -> template voxel
    shell_distance: np.ndarray  # signed mm to the smoothed brain envelope (2 mm grid)
    shell_inv_affine: np.ndarray


def _arr(img) -> np.ndarray:
    data = np.asarray(img.dataobj, dtype=np.float32)
    return data / max(float(data.max()), 1e-6)


def _block_mean(array: np.ndarray, step: int) -> np.ndarray:
    """Average non-overlapping ``step``^3 blocks of the last three axes (edges cropped)."""
    if step == 1:
        return array
    lead = array.shape[:-3]
    n = [s // step for s in array.shape[-3:]]
    a = array[..., : n[0] * step, : n[1] * step, : n[2] * step]
    return a.reshape(*lead, n[0], step, n[1], step, n[2], step).mean(axis=(-5, -3, -1))


def _block_affine(affine: np.ndarray, step: int, pad: int = 0) -> np.ndarray:
    """The affine of :func:`_block_mean` output, after padding ``pad`` voxels on each side."""
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * step
    out[:3, 3] = (
        affine[:3, 3] + affine[:3, :3] @ np.full(3, (step - 1) / 2) - out[:3, :3] @ np.full(3, pad)
    )
    return out


@functools.lru_cache(maxsize=1)
def _mni152() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 1 mm MNI152 T1, GM and WM maps as (3, X, Y, Z) in [0, 1], and their affine."""
    from nilearn.datasets import (
        load_mni152_gm_template,
        load_mni152_template,
        load_mni152_wm_template,
    )

    # resolution=1 returns the files bundled in the nilearn wheel, without resampling
    t1_img = load_mni152_template(resolution=1)
    tissue = np.stack(
        [
            _arr(t1_img),
            _arr(load_mni152_gm_template(resolution=1)),
            _arr(load_mni152_wm_template(resolution=1)),
        ]
    )
    return tissue, np.asarray(t1_img.affine, dtype=np.float64)


@functools.lru_cache(maxsize=4)
def _template(step: int) -> _Template:
    """MNI152 maps block-averaged to ``step`` mm and the head-shell distance map."""
    from scipy import ndimage

    tissue, affine = _mni152()
    # smoothed brain envelope on a padded 2 mm grid, its bottom extruded downwards (a neck)
    shell_step = int(round(_SHELL_SPACING / affine[0, 0]))
    pad = 12
    env = np.pad(_block_mean((tissue[0] > 0.1).astype(np.float32), shell_step), pad)
    env[:, :, :pad] = env[:, :, pad : pad + 1]
    env = ndimage.binary_fill_holes(ndimage.gaussian_filter(env, 3.0) > 0.25)
    dist = ndimage.distance_transform_edt(
        ~env, sampling=_SHELL_SPACING
    ) - ndimage.distance_transform_edt(env, sampling=_SHELL_SPACING)
    return _Template(
        np.ascontiguousarray(_block_mean(tissue, step), dtype=np.float32),
        np.linalg.inv(_block_affine(affine, step)),
        np.ascontiguousarray(dist, dtype=np.float32),
        np.linalg.inv(_block_affine(affine, shell_step, pad)),
    )


def _template_step(spacing: float) -> int:
    """Template block size (mm) for an output voxel size: the coarsest not above it."""
    return max(1, int(spacing))


def _output_grid(spacing: float) -> tuple[tuple[int, int, int], np.ndarray]:
    shape = tuple(int(round(s / spacing)) for s in _FOV_SIZE)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = _FOV_LOW + spacing / 2
    return shape, affine


def _linear_weights(n_source: int, positions: np.ndarray) -> np.ndarray:
    """(len(positions), n_source) linear interpolation weights at fractional indices (clamped)."""
    pos = np.clip(positions, 0, n_source - 1)
    lo = np.minimum(np.floor(pos).astype(int), n_source - 2)
    frac = pos - lo
    w = np.zeros((len(pos), n_source))
    w[np.arange(len(pos)), lo] = 1 - frac
    w[np.arange(len(pos)), lo + 1] = frac
    return w


def _sample(volumes: np.ndarray, inv_affine: np.ndarray, q: np.ndarray, padding: str) -> np.ndarray:
    """Trilinear samples of ``volumes`` (C, X, Y, Z) at world points ``q`` (3, ...) -> (C, ...).

    ``inv_affine`` maps world mm to voxel indices of ``volumes``. Uses
    :func:`torch.nn.functional.grid_sample`, several times faster than scipy here.
    """
    import torch
    import torch.nn.functional as F

    size = np.array(volumes.shape[1:], dtype=np.float64)
    # world -> voxel -> grid_sample's [-1, 1] (align_corners=True); its last axis is (z, y, x)
    to_norm = np.diag(np.append(2.0 / (size - 1), 1.0))
    to_norm[:3, 3] = -1.0
    m = to_norm @ inv_affine
    grid = np.empty((*q.shape[1:], 3), dtype=np.float32)
    for i in range(3):
        grid[..., 2 - i] = m[i, 0] * q[0] + m[i, 1] * q[1] + m[i, 2] * q[2] + m[i, 3]
    with torch.no_grad():
        out = F.grid_sample(
            torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32))[None],
            torch.from_numpy(grid)[None],
            mode="bilinear",
            padding_mode=padding,
            align_corners=True,
        )
    return out[0].numpy()


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    ax, ay, az = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _velocity_displacement(
    rng: np.random.Generator, amplitude_mm: float, n_steps: int = 6
) -> np.ndarray:
    """A smooth diffeomorphic displacement (mm) on the coarse velocity grid, shape (3, X, Y, Z)."""
    from scipy import ndimage

    shape = tuple(int(s) for s in np.ceil(_FOV_SIZE / _VELOCITY_SPACING) + 1)
    v = rng.standard_normal((3, *shape))
    v = np.stack([ndimage.gaussian_filter(c, 2.0, mode="nearest") for c in v])
    v *= amplitude_mm / max(float(np.sqrt((v**2).sum(0)).max()), 1e-9)
    u = v / _VELOCITY_SPACING / 2**n_steps  # coarse voxel units
    grid = np.indices(shape, dtype=np.float64)
    for _ in range(n_steps):  # scaling and squaring: u <- u + u o (id + u)
        warped = grid + u
        u = u + np.stack([ndimage.map_coordinates(c, warped, order=1, mode="nearest") for c in u])
    return u * _VELOCITY_SPACING


def _smoothstep(x: np.ndarray, width: float = 0.8) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x / width, -30, 30)))


def synthesize_subject(
    index: int, seed: int = 0, spacing: float = 2.0, with_skull: bool = True
) -> SyntheticSubject:
    """Synthesise subject ``index`` of the sample cohort in memory.

    Parameters
    ----------
    index : subject number; the id is ``sub-{index:03d}``.
    seed : cohort seed; subject ``index`` depends only on ``(seed, index)`` and the grid.
    spacing : isotropic voxel size in mm of the output grid.
    with_skull : add a CSF layer, skull and scalp around the brain.
    """
    from scipy import ndimage

    if spacing <= 0:
        raise ConfigError(f"spacing must be positive, got {spacing}")
    tpl = _template(_template_step(spacing))
    rng = np.random.default_rng([int(seed), int(index)])
    shape, affine = _output_grid(spacing)

    # world coordinates (mm) of the output voxels along each axis (the grid is axis-aligned)
    axes = [affine[i, i] * np.arange(n) + affine[i, 3] for i, n in enumerate(shape)]
    # diffeomorphic displacement on the coarse grid, upsampled separably to the output voxels
    u_coarse = _velocity_displacement(rng, amplitude_mm=rng.uniform(*_WARP_MM))
    wx, wy, wz = (
        _linear_weights(u_coarse.shape[i + 1], (axes[i] - _FOV_LOW[i]) / _VELOCITY_SPACING)
        for i in range(3)
    )
    u = np.einsum("xa,yb,zc,kabc->kxyz", wx, wy, wz, u_coarse, optimize=True).astype(np.float32)
    # affine jitter around the brain centre: q = A (p + u - c) + c + t, A = rotation x scaling
    rot = _random_rotation(rng, _ROTATION_DEG) @ np.diag(rng.uniform(*_SCALE, 3))
    offset = _BRAIN_CENTRE + rng.uniform(-3.0, 3.0, 3) - rot @ _BRAIN_CENTRE
    px, py, pz = np.meshgrid(*axes, indexing="ij", sparse=True)
    q = np.empty((3, *shape), dtype=np.float32)
    for i in range(3):
        a = rot[i].astype(np.float32)
        q[i] = (a[0] * px + a[1] * py + a[2] * pz + offset[i]).astype(np.float32)
        q[i] += a[0] * u[0] + a[1] * u[1] + a[2] * u[2]
    del u
    t1, gm, wm = _sample(tpl.tissue, tpl.inv_affine, q, "zeros")

    # labels: tissue by the largest probability inside the brain, grey matter split into lobes
    mask = ndimage.binary_fill_holes(t1 > 0.1)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    tissue = np.argmax(np.stack([csf, gm, wm]), axis=0).astype(np.uint8) + 1
    labels = np.where(mask, tissue, 0).astype(np.uint8)
    qx, qy, qz = q
    cerebral = ~(((qy < -40) & (qz < -18)) | (qz < -45))
    lobe = np.where(qy >= _FRONTAL_Y, 0, np.where(qy >= _OCCIPITAL_Y, 1, 2))
    lobe_label = (4 + 2 * lobe + (qx >= 0)).astype(np.uint8)
    labels = np.where((labels == 2) & cerebral, lobe_label, labels)

    # contrast: gamma and per-tissue gains; bias field; head shell; Rician noise
    img = np.power(np.clip(t1, 0, None), rng.uniform(0.8, 1.25)) * (
        1.0
        + rng.uniform(-0.08, 0.08) * gm
        + rng.uniform(-0.08, 0.08) * wm
        + rng.uniform(-0.3, 0.3) * csf * mask
    )
    if with_skull:
        d = _sample(tpl.shell_distance[None], tpl.shell_inv_affine, q, "border")[0]
        c_t, k_t, s_t = rng.uniform(1.5, 3.0), rng.uniform(4.0, 7.0), rng.uniform(4.0, 7.0)
        inside = _smoothstep(-d)  # within the brain envelope
        layer_csf = _smoothstep(d) * _smoothstep(c_t - d)
        layer_skull = _smoothstep(d - c_t) * _smoothstep(c_t + k_t - d)
        layer_scalp = _smoothstep(d - c_t - k_t) * _smoothstep(c_t + k_t + s_t - d)
        shell = (
            inside * rng.uniform(0.08, 0.15)
            + layer_csf * rng.uniform(0.08, 0.15)
            + layer_skull * rng.uniform(0.02, 0.06)
            + layer_scalp * rng.uniform(0.7, 0.95)
        )
        img = np.where(mask, img, np.maximum(img, shell))
    else:
        img = img * mask
    coords = [np.linspace(-1, 1, s, dtype=np.float32) for s in shape]
    x, y, z = np.meshgrid(*coords, indexing="ij", sparse=True)
    terms = [x, y, z, x * y, x * z, y * z, x * x, y * y, z * z]
    log_bias = sum(float(rng.normal(0, 0.12)) * t for t in terms)
    img = img * np.exp(log_bias)
    sigma = rng.uniform(0.015, 0.03)
    img = np.sqrt(
        (img + sigma * rng.standard_normal(shape, dtype=np.float32)) ** 2
        + (sigma * rng.standard_normal(shape, dtype=np.float32)) ** 2
    )
    if not with_skull:
        img = img * mask
    gain = rng.uniform(800.0, 1200.0)
    image = np.clip(np.rint(img * gain), 0, np.iinfo(np.int16).max).astype(np.int16)
    return SyntheticSubject(f"sub-{index:03d}", image, labels, mask.astype(np.uint8), affine)


def sample_cohort_dir(
    n_subjects: int = 40, seed: int = 0, spacing: float = 2.0, with_skull: bool = True
) -> Path:
    """The cache folder of a sample cohort (under :func:`inversion_audit.io.cache_dir`)."""
    from ..io import cache_dir

    variant = "skull" if with_skull else "brain"
    return (
        cache_dir()
        / "sample_cohort"
        / f"v{SAMPLE_VERSION}_seed{seed}_n{n_subjects}_{spacing:g}mm_{variant}"
    )


def _params(n_subjects: int, seed: int, spacing: float, with_skull: bool) -> dict:
    return {
        "version": SAMPLE_VERSION,
        "n_subjects": int(n_subjects),
        "seed": int(seed),
        "spacing": float(spacing),
        "with_skull": bool(with_skull),
    }


def _is_complete(out: Path, params: dict) -> bool:
    marker = out / MARKER
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if done.get("params") != params:
        return False
    return all((out / name).exists() for name in done.get("files", []))


def _write_subject(out: Path, index: int, seed: int, spacing: float, with_skull: bool) -> list[str]:
    from ..io import write_volume

    s = synthesize_subject(index, seed, spacing, with_skull)
    names = []
    for suffix, array in (("T1", s.image), ("seg", s.labels), ("mask", s.mask)):
        names.append(f"{s.id}_{suffix}.nii.gz")
        write_volume(out / names[-1], array, s.affine, scrub=True)
    return names


def generate_sample_cohort(
    out_dir: str | os.PathLike[str] | None = None,
    n_subjects: int = 40,
    seed: int = 0,
    spacing: float = 2.0,
    with_skull: bool = True,
    progress: ProgressCallback | None = None,
    workers: int = 2,
) -> Path:
    """Write the synthetic sample cohort and return its folder.

    Writes ``<id>_T1.nii.gz`` (int16), ``<id>_seg.nii.gz`` (uint8, :data:`LABEL_NAMES`) and
    ``<id>_mask.nii.gz`` (brain mask) per subject, readable by
    :func:`inversion_audit.data.load_cohort`, then a completion marker. Generation is
    skipped when the folder already holds a complete cohort with the same parameters.

    Parameters
    ----------
    out_dir : output folder; default a per-parameter folder in the user cache.
    n_subjects : number of subjects (ids ``sub-000`` ...).
    seed : cohort seed; the same seed gives byte-identical files.
    spacing : isotropic voxel size in mm.
    with_skull : add a synthetic CSF layer, skull and scalp around the brain.
    progress : optional ``progress(done, total, stage)`` callback; it may raise
        :class:`~inversion_audit.errors.JobCancelled` (no completion marker is written).
    workers : subjects synthesised concurrently (threads); the output does not depend on it.
    """
    from ..io import atomic_write_json

    if n_subjects < 1:
        raise ConfigError(f"n_subjects must be at least 1, got {n_subjects}")
    out = (
        Path(out_dir)
        if out_dir is not None
        else sample_cohort_dir(n_subjects, seed, spacing, with_skull)
    )
    params = _params(n_subjects, seed, spacing, with_skull)
    if _is_complete(out, params):
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    files: list[str] = []
    stage = "sample cohort"
    report(progress, 0, n_subjects, stage)
    _template(_template_step(spacing))  # load once, before the worker threads
    # torch's grid_sample, numpy and zlib release the GIL: threads overlap synthesis and writing
    n_workers = max(1, min(workers, os.cpu_count() or 1, n_subjects))
    with ThreadPoolExecutor(n_workers) as pool:
        futures = [
            pool.submit(_write_subject, out, i, seed, spacing, with_skull)
            for i in range(n_subjects)
        ]
        try:
            for done, future in enumerate(futures, 1):
                files.extend(future.result())
                report(progress, done, n_subjects, stage)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    atomic_write_json(
        out / MARKER,
        {
            "params": params,
            "files": files,
            "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        },
    )
    return out
