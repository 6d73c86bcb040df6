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


@pytest.mark.parametrize("skull_strip", ["labels", "none"])
def test_round_trip_to_source_grid(tmp_path, tiny_cohort, skull_strip):
    subject = _psr_subject(tmp_path, tiny_cohort)
    config = PreprocessConfig(spacing=(2.0, 2.0, 2.0), skull_strip=skull_strip, divisible_by=8)
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
    assert np.corrcoef(a, b)[0, 1] > 0.99


def test_resampling_to_other_spacing_and_fixed_shape(tiny_cohort):
    subject = load_cohort(tiny_cohort)["sub01"]
    config = PreprocessConfig(spacing=3.0, shape=(24, 24, 24), divisible_by=8, skull_strip="labels")
    pre = preprocess_subject(subject, config)
    assert pre.shape == (24, 24, 24)
    assert np.allclose(np.diag(pre.affine)[:3], 3.0)
    assert pre.labels is not None and set(np.unique(pre.labels)) >= {0, 1}
    assert not pre.image[~pre.mask].any()  # skull-stripped: nothing outside the brain mask


def test_cache_hit_returns_same_arrays(tiny_cohort, monkeypatch):
    subject = load_cohort(tiny_cohort)["sub02"]
    config = PreprocessConfig(divisible_by=8)
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
    config = PreprocessConfig(intensity="nyul", skull_strip="labels", divisible_by=8)
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


def test_bias_correction_runs_with_ants(tiny_cohort):
    subject = load_cohort(tiny_cohort)["sub00"]
    pre = preprocess_subject(
        subject, PreprocessConfig(bias_correction=True, skull_strip="labels", divisible_by=8)
    )
    assert np.isfinite(pre.image).all() and pre.image.max() > 0.5


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
    pre = preprocess_subject(subject, PreprocessConfig(divisible_by=8))
    vol = pre.volume()
    src = read_volume(subject.image)
    # the centre voxel of the preprocessed grid maps to a world point inside the source field of view
    centre = nib.affines.apply_affine(vol.affine, np.array(vol.shape) / 2)
    ijk = nib.affines.apply_affine(np.linalg.inv(src.affine), centre)
    assert np.all(ijk >= 0) and np.all(ijk < np.array(src.shape))
