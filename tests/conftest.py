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


#: subject ids of the session's runner-made study (``runner_study``)
RUNNER_STUDY_IDS = tuple(f"sub-{k:03d}" for k in range(5))


def write_blob_cohort(root, seeds: dict[str, int]):
    """A folder cohort of 32^3 blob subjects at 2 mm (``<id>_T1.nii.gz`` + ``<id>_seg.nii.gz``),
    subject ``id`` made with ``make_blob_volume(seed=seeds[id])``; returns ``root``."""
    import nibabel as nib

    root.mkdir(parents=True, exist_ok=True)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -32
    for sid, seed in seeds.items():
        img, lab = make_blob_volume(seed=seed)
        nib.save(
            nib.Nifti1Image((img * 1000).astype(np.float32), affine), root / f"{sid}_T1.nii.gz"
        )
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), affine), root / f"{sid}_seg.nii.gz")
    return root


def runner_study_config(cohort) -> dict:
    """The smallest study with every file kind: 2 folds, U-Net and SegNet, the bottleneck
    attack, SSIM/correlation/PSNR and deformation on the SSIM top-1."""
    return {
        "study": {"name": "session", "seed": 1, "device": "cpu", "threads": 1},
        "cohort": {"path": str(cohort)},
        "folds": {"n_folds": 2, "seed": 0},
        "variants": ["skull-stripped"],
        "archs": ["unet", "segnet"],
        "threat_models": ["bottleneck"],
        "preprocess": {
            "spacing": [2.0, 2.0, 2.0],
            "shape": [32, 32, 32],
            "divisible_by": 4,
            "bias_correction": False,
        },
        "target": {"depth": 2, "base_filters": 4, "epochs": 1, "batch_size": 2, "lr": 0.01},
        "inversion": {"epochs": 1, "batch_size": 2, "lr": 0.01},
        "matching": {
            "metrics": ["ssim", "correlation", "psnr", "deformation"],
            "top_k": 1,
            "deformation_preset": "fast",
        },
    }


@pytest.fixture(scope="session")
def runner_study(tmp_path_factory):
    """A study folder made once per session by the real runner (``runner_study_config``).

    Shared: tests must not change it (copy it first, e.g. with ``gui_fakes.copy_study``).
    """
    from inversion_audit.study.config import study_config_from_dict
    from inversion_audit.study.runner import run_study

    root = tmp_path_factory.mktemp("runner_study")
    write_blob_cohort(root / "cohort", {sid: k for k, sid in enumerate(RUNNER_STUDY_IDS)})
    with pytest.MonkeyPatch.context() as mp:  # session scope: isolate the cache by hand
        mp.setenv("INVERSION_AUDIT_CACHE", str(root / "cache"))
        run_study(study_config_from_dict(runner_study_config(root / "cohort")), root / "study")
    return root / "study"
