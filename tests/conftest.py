"""Shared fixtures: tiny synthetic volumes and an isolated cache folder."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own preprocessing/registration cache folder."""
    monkeypatch.setenv("INVERSION_AUDIT_CACHE", str(tmp_path_factory.mktemp("cache")))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a dependency
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_blob_volume(shape=(32, 32, 32), seed=0, n_blobs=6) -> tuple[np.ndarray, np.ndarray]:
    """A smooth structured image in [0, 1] and integer labels (0 = background)."""
    from scipy.ndimage import gaussian_filter

    r = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    head = (grid**2).sum(0) < 0.8**2
    img = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.int32)
    labels[head] = 1
    for k in range(n_blobs):
        c = r.uniform(-0.45, 0.45, 3)[:, None, None, None]
        rad = r.uniform(0.12, 0.3)
        blob = ((grid - c) ** 2).sum(0) < rad**2
        labels[blob & head] = 2 + k % 3
    intensity = {0: 0.0, 1: 0.4, 2: 0.7, 3: 0.9, 4: 0.55}
    for lab, val in intensity.items():
        img[labels == lab] = val
    img = gaussian_filter(img, 1.0) + r.normal(0, 0.02, shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32), labels


@pytest.fixture(scope="session")
def tiny_volumes() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The six 32^3 blob images and labels of ``tiny_cohort`` as arrays (images in [0, 1])."""
    pairs = [make_blob_volume(seed=i) for i in range(6)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture
def tiny_cohort(tmp_path):
    """A folder cohort of six 32^3 subjects (``<id>_T1.nii.gz`` + ``<id>_seg.nii.gz``) at 2 mm."""
    import nibabel as nib

    root = tmp_path / "cohort"
    root.mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -32
    for i in range(6):
        img, lab = make_blob_volume(seed=i)
        nib.save(
            nib.Nifti1Image((img * 1000).astype(np.float32), affine), root / f"sub{i:02d}_T1.nii.gz"
        )
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), affine), root / f"sub{i:02d}_seg.nii.gz")
    return root


os.environ.setdefault("QT_API", "pyqt6")
