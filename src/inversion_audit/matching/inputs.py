"""What ``inversion-audit match`` scores: reconstruction files and the grid they are on.

Everything is compared in the preprocessed space, voxel for voxel. ``<id>_recon_pre.nii.gz``
files are used as they are (the decoder's output grid), and their grid is the grid the
candidates are preprocessed onto; ``<id>_recon.nii.gz`` files (the subject's original grid)
are resampled back onto subject ``<id>``'s preprocessed grid, which needs subject ``<id>``
among the candidates.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from ..data.preprocess import PreprocessConfig, Preprocessed
from ..errors import ConfigError, VolumeError

__all__ = [
    "AUTO_PATTERNS",
    "check_reconstructions",
    "find_reconstructions",
    "grid_config",
    "load_reconstruction",
    "on_preprocessed_grid",
]

AUTO_PATTERNS = ("{id}_recon_pre.nii.gz", "{id}_recon.nii.gz")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    if pattern.count("{id}") != 1:
        raise ConfigError(f"--reconstruction-pattern {pattern!r} must contain {{id}} once")
    head, tail = pattern.split("{id}")
    return re.compile(f"^{re.escape(head)}(?P<id>.+?){re.escape(tail)}$")


def find_reconstructions(
    folder: str | Path, pattern: str | None = None
) -> tuple[dict[str, Path], str]:
    """Reconstruction files by subject id, and the pattern used (auto: recon_pre first).

    Hidden files (``._x`` from macOS) are skipped; an id that is not a safe subject id
    (:func:`~inversion_audit.io.paths.check_subject_id`) is refused naming its file.
    """
    from ..io.paths import check_subject_id

    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeError(f"{folder}: reconstruction folder not found")
    names = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for pat in (pattern,) if pattern else AUTO_PATTERNS:
        rx = _pattern_regex(pat)
        found = {check_subject_id(m["id"], p): p for p in names if (m := rx.match(p.name))}
        if found:
            return found, pat
    raise VolumeError(
        f"{folder}: no reconstruction files matching {pattern or ' or '.join(AUTO_PATTERNS)}"
    )


def on_preprocessed_grid(pattern: str) -> bool:
    """Whether files of ``pattern`` are on the preprocessed grid (``*_pre.nii.gz``)."""
    return pattern.endswith("_pre.nii.gz")


def grid_config(
    base: PreprocessConfig, files: dict[str, Path], pattern: str, shape=None, spacing=None
) -> PreprocessConfig:
    """``base`` with the grid the reconstructions are on: ``shape`` and ``spacing`` as given,
    else those of the first preprocessed-grid file. No ``divisible_by`` applies: the grid is
    the reconstructions', whatever network made them."""
    from ..io import read_volume

    if on_preprocessed_grid(pattern) and (spacing is None or shape is None):
        first = read_volume(next(iter(files.values())))
        spacing = spacing or [round(float(s), 6) for s in first.spacing]
        shape = shape or list(first.shape)
    if shape is None:
        raise ConfigError(
            "--shape is required when the reconstructions are not on the preprocessed grid"
        )
    spacing = list(spacing or base.spacing)
    return dataclasses.replace(
        base,
        spacing=tuple(spacing) if len(spacing) == 3 else (spacing[0],) * 3,
        shape=tuple(int(s) for s in shape),
        divisible_by=1,
    )


def check_reconstructions(
    files: dict[str, Path], on_preprocessed: bool, config: PreprocessConfig, candidate_ids
) -> None:
    """Read every reconstruction file once (header and voxels) before anything is written,
    and refuse, naming the file, what :func:`load_reconstruction` would refuse later: a
    preprocessed-grid file of another shape or voxel size than ``config``'s, a source-grid
    file of a subject that is not among ``candidate_ids``."""
    from ..io import read_volume

    known = set(candidate_ids)
    for rid, path in sorted(files.items()):
        if not on_preprocessed and rid not in known:
            raise VolumeError(
                f"{path}: subject {rid!r} is not a candidate, so its preprocessed grid "
                "is unknown; use the <id>_recon_pre.nii.gz file instead"
            )
        vol = read_volume(path)
        if not on_preprocessed:
            continue
        if vol.shape != tuple(config.shape):
            raise VolumeError(
                f"{path}: shape {vol.shape} is not the preprocessed shape {tuple(config.shape)}"
            )
        if not np.allclose(vol.spacing, config.spacing, atol=1e-3):
            raise VolumeError(
                f"{path}: grid differs from the preprocessing's: voxel size {vol.spacing} mm, "
                f"not {tuple(config.spacing)}; --spacing/--shape/--skull-strip must match the "
                "attack's preprocessing"
            )


def load_reconstruction(
    path: Path,
    reconstruction_id: str,
    on_preprocessed: bool,
    candidates: dict[str, Preprocessed],
    shape: tuple[int, ...],
) -> np.ndarray:
    """A reconstruction on the preprocessed grid (checked against its own subject's grid)."""
    from nibabel.processing import resample_from_to

    from ..io import read_volume, to_nifti

    vol = read_volume(path)
    own = candidates.get(reconstruction_id)
    if on_preprocessed:
        if vol.shape != tuple(shape):
            raise VolumeError(
                f"{path}: shape {vol.shape} is not the preprocessed shape {tuple(shape)}"
            )
        if own is not None and not np.allclose(vol.affine, own.affine, atol=1e-3):
            raise VolumeError(
                f"{path}: grid differs from subject {reconstruction_id!r} preprocessed with these "
                "flags; --spacing/--shape/--skull-strip must match the attack's preprocessing"
            )
        return np.asarray(vol.array, dtype=np.float32)
    if own is None:
        raise VolumeError(
            f"{path}: subject {reconstruction_id!r} is not a candidate, so its preprocessed grid "
            "is unknown; use the <id>_recon_pre.nii.gz file instead"
        )
    out = resample_from_to(to_nifti(vol, scrub=False), (own.shape, own.affine), order=1, cval=0.0)
    return np.asarray(out.dataobj, dtype=np.float32)
