"""Preprocessing: round trip to the source grid, skull stripping, Nyul, caching."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.data import PreprocessConfig, config_with_nyul, load_cohort, preprocess_subject
from inversion_audit.data.cohort import Subject
from inversion_audit.errors import ConfigError, VolumeError
from inversion_audit.io import read_volume, write_volume


def _psr_subject(tmp_path, tiny_cohort) -> Subject:
    """A subject stored in PSR orientation with an offset origin, like ixi-dev."""
    out = []
    for name in ("sub00_T1.nii.gz", "sub00_seg.nii.gz"):
        img = nib.load(tiny_cohort / name)
        ornt = nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt(("R", "A", "S")),
            nib.orientations.axcodes2ornt(("P", "S", "R")),
        )
        re = img.as_reoriented(ornt)
        path = tmp_path / name.replace("sub00", "psr")
        nib.save(re, path)
        out.append(path)
    return Subject("psr", out[0], out[1])


@pytest.mark.parametrize(
    ("skull_strip", "spacing", "min_corr"),
    # at 3 mm the 2 mm blobs lose detail; a voxel of misregistration would still fail 0.95
    [("labels", 2.0, 0.99), ("none", 2.0, 0.99), ("labels", 3.0, 0.95)],
)
def test_round_trip_to_source_grid(tmp_path, tiny_cohort, skull_strip, spacing, min_corr):
    subject = _psr_subject(tmp_path, tiny_cohort)
    config = PreprocessConfig(
        spacing=spacing, skull_strip=skull_strip, divisible_by=8, bias_correction=False
    )
    pre = preprocess_subject(subject, config)
    assert all(s % 8 == 0 for s in pre.shape)
    assert 0.0 <= pre.image.min() and pre.image.max() <= 1.0
    back = pre.to_source(pre.image)
    path = write_volume(tmp_path / "back.nii.gz", back)
    disk_in, disk_out = nib.load(subject.image), nib.load(path)
    assert disk_out.shape == disk_in.shape
    np.testing.assert_allclose(disk_out.affine, disk_in.affine, atol=1e-5)
    mask = np.asarray(nib.load(subject.labels).dataobj) > 0
    a = disk_in.get_fdata()[mask]
    b = disk_out.get_fdata()[mask]
    assert np.corrcoef(a, b)[0, 1] > min_corr


def test_resampling_to_other_spacing_and_fixed_shape(tiny_cohort):
    subject = load_cohort(tiny_cohort)["sub01"]
    config = PreprocessConfig(
        spacing=3.0, shape=(24, 24, 24), divisible_by=8, skull_strip="labels", bias_correction=False
    )
    pre = preprocess_subject(subject, config)
    assert pre.shape == (24, 24, 24)
    assert np.allclose(np.diag(pre.affine)[:3], 3.0)
    assert pre.labels is not None and set(np.unique(pre.labels)) >= {0, 1}
    assert not pre.image[~pre.mask].any()  # skull-stripped: nothing outside the brain mask


def test_cache_hit_returns_same_arrays(tiny_cohort, monkeypatch):
    subject = load_cohort(tiny_cohort)["sub02"]
    config = PreprocessConfig(divisible_by=8, bias_correction=False)
    first = preprocess_subject(subject, config)
    import inversion_audit.data.preprocess as pp

    def boom(*args, **kwargs):
        raise AssertionError("cache was not used")

    monkeypatch.setattr(pp, "_compute", boom)
    second = preprocess_subject(subject, config)
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.affine, second.affine)


def test_nyul_learned_on_training_subjects_only(tiny_cohort):
    cohort = load_cohort(tiny_cohort)
    config = PreprocessConfig(
        intensity="nyul", skull_strip="labels", divisible_by=8, bias_correction=False
    )
    with pytest.raises(ConfigError, match="nyul_landmarks"):
        preprocess_subject(cohort["sub00"], config)
    learned = config_with_nyul(config, [cohort["sub00"], cohort["sub01"]])
    assert learned.nyul_landmarks is not None and len(learned.nyul_landmarks) == 11
    other = config_with_nyul(config, [cohort["sub02"], cohort["sub03"], cohort["sub04"]])
    assert other.nyul_landmarks != learned.nyul_landmarks
    pre = preprocess_subject(cohort["sub05"], learned)
    assert 0.0 <= pre.image.min() and pre.image.max() <= 1.0 and pre.image.std() > 0.05
    # the config round-trips through a dict (it is saved with every output)
    assert PreprocessConfig.from_dict(learned.to_dict()) == learned


def _wm_trend(pre) -> float:
    """Slope of log intensity along the left-right axis inside white matter (label 3)."""
    wm = pre.labels == 3
    x = np.broadcast_to(np.linspace(-1, 1, wm.shape[0])[:, None, None], wm.shape)[wm]
    return float(np.polyfit(x, np.log(pre.image[wm] + 1e-3), 1)[0])


@pytest.mark.slow
def test_bias_correction_is_on_by_default_and_removes_a_bias_field(tmp_path):
    from inversion_audit.sample_data import synthesize_subject

    assert PreprocessConfig().bias_correction is True  # real scans need N4
    subject = synthesize_subject(0, spacing=4.0, with_skull=False)  # a brain-like image, 4 mm
    x = np.linspace(-1, 1, subject.image.shape[0])[:, None, None]
    image, seg = tmp_path / "biased_T1.nii.gz", tmp_path / "biased_seg.nii.gz"
    biased = subject.image * np.exp(0.5 * x)  # a strong left-right multiplicative bias field
    nib.save(nib.Nifti1Image(biased.astype(np.float32), subject.affine), image)
    nib.save(nib.Nifti1Image(subject.labels, subject.affine), seg)
    base = dict(spacing=4.0, skull_strip="labels", divisible_by=8)
    corrected = preprocess_subject(Subject("biased", image, seg), PreprocessConfig(**base))
    uncorrected = preprocess_subject(
        Subject("biased", image, seg), PreprocessConfig(**base, bias_correction=False)
    )
    # white matter has one intensity across the brain: N4 must remove most of the trend
    assert abs(_wm_trend(corrected)) < 0.4 * abs(_wm_trend(uncorrected))


def test_skull_strip_uses_the_named_mask(tmp_path, tiny_cohort):
    seg = nib.load(tiny_cohort / "sub00_seg.nii.gz")
    box = np.zeros(seg.shape, np.uint8)
    box[8:24, 8:24, 8:24] = 1  # a brain mask file unlike labels > 0
    mask_file = tmp_path / "sub00_mask.nii.gz"
    nib.save(nib.Nifti1Image(box, seg.affine), mask_file)
    subject = Subject(
        "sub00", tiny_cohort / "sub00_T1.nii.gz", tiny_cohort / "sub00_seg.nii.gz", mask_file
    )
    base = dict(spacing=2.0, shape=(32, 32, 32), divisible_by=8, bias_correction=False)
    by_labels = preprocess_subject(subject, PreprocessConfig(skull_strip="labels", **base))
    by_mask = preprocess_subject(subject, PreprocessConfig(skull_strip="mask", **base))
    labels = np.asarray(seg.dataobj) > 0
    np.testing.assert_array_equal(by_labels.mask, labels)
    np.testing.assert_array_equal(by_mask.mask, box > 0)


def test_bad_config_and_missing_mask(tiny_cohort):
    with pytest.raises(ConfigError, match="unknown preprocess key"):
        PreprocessConfig.from_dict({"spacingg": 2})
    with pytest.raises(ConfigError, match="divisible"):
        PreprocessConfig(shape=(30, 32, 32))
    subject = dataclasses.replace(load_cohort(tiny_cohort)["sub00"], labels=None)
    with pytest.raises(VolumeError, match="sub00_T1.nii.gz"):
        preprocess_subject(subject, PreprocessConfig(skull_strip="labels"))


def test_preprocessed_volume_has_world_affine(tiny_cohort):
    subject = load_cohort(tiny_cohort)["sub00"]
    pre = preprocess_subject(subject, PreprocessConfig(divisible_by=8, bias_correction=False))
    vol = pre.volume()
    src = read_volume(subject.image)
    # the centre voxel of the preprocessed grid maps to a world point inside the source field of view
    centre = nib.affines.apply_affine(vol.affine, np.array(vol.shape) / 2)
    ijk = nib.affines.apply_affine(np.linalg.inv(src.affine), centre)
    assert np.all(ijk >= 0) and np.all(ijk < np.array(src.shape))
