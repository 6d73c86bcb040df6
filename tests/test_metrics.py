"""SSIM against scikit-image, correlation against numpy, PSNR/MSE, Dice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import make_blob_volume
from inversion_audit.metrics import (
    correlation,
    correlation_matrix,
    dice,
    dice_baseline,
    mse,
    psnr,
    segmentation_dice,
    ssim,
    window_radius,
)


def _skimage_ssim(a, b, data_range, sigma=1.5, full=False):
    return structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        data_range=data_range,
        gaussian_weights=True,
        sigma=sigma,
        use_sample_covariance=False,
        full=full,
    )


def _pairs():
    rng = np.random.default_rng(1)
    img, _ = make_blob_volume((24, 28, 22), seed=3)
    blurred = gaussian_filter(img, 1.2) + rng.normal(0, 0.05, img.shape)
    flat = rng.random((40, 36))
    return {
        "random3d": (rng.random((20, 22, 18)), rng.random((20, 22, 18))),
        "structured3d": (img, blurred.astype(np.float32)),
        "random2d": (flat, rng.random((40, 36))),
        "structured2d": (img[:, :, 11], blurred[:, :, 11]),
        "scaled": (img * 1000, blurred * 1000 + 20),
    }


@pytest.mark.parametrize("name", list(_pairs()))
def test_ssim_matches_skimage(name):
    a, b = _pairs()[name]
    r = float(max(a.max(), b.max()) - min(a.min(), b.min()))
    expected = _skimage_ssim(a, b, r)
    assert abs(ssim(a, b, data_range=r) - expected) < 1e-4
    # the default data range is the joint range
    assert abs(ssim(a, b) - expected) < 1e-4


@pytest.mark.parametrize("name", list(_pairs()))
def test_masked_ssim_is_mean_of_cropped_skimage_map(name, rng):
    a, b = _pairs()[name]
    r = float(max(a.max(), b.max()) - min(a.min(), b.min()))
    mask = rng.random(a.shape) > 0.6
    _, full = _skimage_ssim(a, b, r, full=True)
    pad = window_radius(1.5)
    crop = tuple(slice(pad, s - pad) for s in a.shape)
    expected = full[crop][mask[crop]].mean()
    value, smap = ssim(a, b, data_range=r, mask=mask, return_map=True)
    assert abs(value - expected) < 1e-4
    assert smap.shape == a.shape
    # the mask changes the value (a masked mean over a part of the map)
    assert value != pytest.approx(ssim(a, b, data_range=r), abs=1e-9)


def test_ssim_window_and_identity():
    assert window_radius(1.5) == 5  # 11-tap window, as Wang et al. and scikit-image
    img, _ = make_blob_volume((20, 20, 20))
    assert ssim(img, img, data_range=1.0) == pytest.approx(1.0)
    assert ssim(img, 1 - img, data_range=1.0) < 0.5


def test_ssim_bad_input():
    a = np.zeros((20, 20))
    with pytest.raises(ValueError, match="different shapes"):
        ssim(a, np.zeros((20, 21)), data_range=1.0)
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        ssim(np.zeros((8, 30)), np.zeros((8, 30)), data_range=1.0)
    with pytest.raises(ValueError, match="data_range"):
        ssim(a, a)
    with pytest.raises(ValueError, match="border crop"):
        mask = np.zeros((20, 20), bool)
        mask[0, :] = True
        ssim(a + np.eye(20), a, data_range=1.0, mask=mask)


def test_correlation_matches_numpy(rng):
    a = rng.random((16, 18, 14))
    b = 0.5 * a + rng.random(a.shape)
    mask = rng.random(a.shape) > 0.5
    assert correlation(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-12)
    assert correlation(a, b, mask) == pytest.approx(np.corrcoef(a[mask], b[mask])[0, 1], abs=1e-12)
    assert correlation(a, 3 * a + 1) == pytest.approx(1.0)
    assert np.isnan(correlation(a, np.ones_like(a)))


def test_correlation_matrix_equals_pairwise(rng):
    rec = rng.random((3, 10, 12, 8))
    cand = rng.random((4, 10, 12, 8))
    cand[2] = rec[1] * 2 + 0.1 * rng.random(rec[1].shape)
    mask = rng.random(rec.shape[1:]) > 0.3
    for m in (None, mask):
        expected = np.array([[correlation(r, c, m) for c in cand] for r in rec])
        np.testing.assert_allclose(correlation_matrix(rec, cand, m), expected, atol=1e-12)
    assert correlation_matrix(rec, cand)[1].argmax() == 2


def test_psnr_and_mse(rng):
    a = rng.random((12, 12, 12))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    assert mse(a, b) == pytest.approx(np.mean((a - b) ** 2))
    assert psnr(a, b, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=1.0)
    )
    mask = a > 0.5
    assert mse(a, b, mask) == pytest.approx(np.mean((a[mask] - b[mask]) ** 2))
    assert psnr(a, a, data_range=1.0) == float("inf")
    assert psnr(a, b, data_range=1.0) > psnr(a, np.clip(b + 0.1, 0, 1), data_range=1.0)


def test_dice_per_label_and_mean():
    truth = np.zeros((6, 6), np.int32)
    truth[:3, :3] = 1  # 9 voxels
    truth[3:, 3:] = 2  # 9 voxels
    pred = np.zeros_like(truth)
    pred[:3, :2] = 1  # 6 voxels, all inside label 1
    pred[0, 5] = 3  # a label the truth does not have
    per, mean = dice(pred, truth)
    assert per == {1: pytest.approx(2 * 6 / 15), 2: 0.0}
    assert mean == pytest.approx((0.8 + 0.0) / 2)
    per, mean = dice(pred, truth, labels=[1, 3, 7])
    assert per[3] == 0.0 and np.isnan(per[7])  # 7 is in neither map: left out of the mean
    assert mean == pytest.approx(0.4)
    assert dice(truth, truth)[1] == 1.0
    with pytest.raises(ValueError, match="shapes"):
        dice(pred, truth[:5])


def test_segmentation_dice_and_baseline_use_the_callable():
    _, labels = make_blob_volume((20, 20, 20), seed=2)
    calls = []

    def segment(image):  # a stand-in "network": thresholds at the mean intensity
        calls.append(image.shape)
        return (image > image.mean()).astype(np.int32) * (labels > 0)

    img, _ = make_blob_volume((20, 20, 20), seed=2)
    truth = (labels > 0).astype(np.int32)
    per, mean = dice_baseline(segment, img, truth)
    assert calls == [img.shape] and set(per) == {1} and 0.5 < mean <= 1.0
    _, degraded = segmentation_dice(segment, np.zeros_like(img), truth)
    assert degraded < mean
