"""A reader package's case images: checked before anything is written, then written as
neutral copies.

Each case folder holds ``reconstruction.nii.gz`` and ``<label>.nii.gz`` per candidate, every
image on the case's common grid (:func:`~.grid.common_grid`: one shape, one voxel size, the
centred affine, no scanner position), float32 with NaN as 0 and otherwise the source's values
(not clipped: a reader session shows every image of a case in the one window it computes from
them, :func:`~.grid.case_window`), written by :func:`~inversion_audit.io.write_volume`
(scrubbed header, no source text).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import read_volume, write_volume
from ..io.paths import output_path
from ..metrics.deformation import centred_affine
from .database import ReaderStudyError
from .design import Case, Design
from .grid import common_grid, display_array
from .store import RECONSTRUCTION_FILE

__all__ = ["case_sources", "check_case_images", "write_case_images"]


def case_sources(study: Path, case: Case) -> list[tuple[str, Path]]:
    """(package file name without suffix, source file) of each image of ``case``."""
    items = [(RECONSTRUCTION_FILE, study / case.reconstruction_path)]
    return items + [(c.label, study / c.path) for c in case.candidates]


def check_case_images(study: Path, design: Design) -> None:
    """Read every image of every case once and check that each case's images share one
    voxel size; raise an error naming the file (or the case's files) otherwise."""
    grids: dict[Path, tuple[float, ...]] = {}
    for case in design.cases:
        for _, path in case_sources(study, case):
            if path not in grids:
                grids[path] = read_volume(path).spacing  # errors name the file
        spacings = [grids[p] for _, p in case_sources(study, case)]
        if any(not np.allclose(sp, spacings[0], rtol=1e-3) for sp in spacings):
            files = ", ".join(str(p) for _, p in case_sources(study, case))
            raise ReaderStudyError(
                f"case {case.case_id}: its images do not share one voxel size ({files})"
            )


def write_case_images(package: Path, study: Path, case: Case) -> None:
    """Write the images of ``case`` into ``package/<case_id>/`` on the case's common grid."""
    names, arrays, spacings = [], [], []
    for name, path in case_sources(study, case):
        vol = read_volume(path)  # checked by check_case_images; errors name the file
        names.append(name)
        arrays.append(display_array(vol.array))
        spacings.append(vol.spacing)
    try:
        arrays, spacing, _ = common_grid(arrays, spacings)
    except ValueError as exc:
        raise ReaderStudyError(f"case {case.case_id}: {exc}") from None
    affine = centred_affine(arrays[0].shape, spacing)
    for name, array in zip(names, arrays, strict=True):
        write_volume(output_path(package, case.case_id, f"{name}.nii.gz"), array, affine)
