"""napari sample data: the first subject of the synthetic sample cohort."""

from __future__ import annotations

from pathlib import Path

from .reader import LayerData, read_nifti_layers

__all__ = ["sample_subject", "sample_subject_files"]


def sample_subject_files() -> tuple[Path, Path]:
    """T1 and label files of ``sub-000``, from the cached default cohort or a 1-subject one."""
    from ..sample_data import generate_sample_cohort, sample_cohort_dir
    from ..sample_data.synthetic import MARKER

    default = sample_cohort_dir()
    folder = default if (default / MARKER).exists() else generate_sample_cohort(n_subjects=1)
    return folder / "sub-000_T1.nii.gz", folder / "sub-000_seg.nii.gz"


def sample_subject() -> list[LayerData]:
    """npe2 sample-data hook: the synthetic subject's T1 (Image) and labels (Labels)."""
    image, labels = sample_subject_files()
    return read_nifti_layers([str(image), str(labels)])
