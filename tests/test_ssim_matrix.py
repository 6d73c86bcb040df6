"""The batched torch SSIM matrix equals pairwise SSIM (and so scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from conftest import make_blob_volume
from inversion_audit.errors import JobCancelled
from inversion_audit.metrics import ssim, ssim_matrix


def _stacks(shape=(22, 26, 20), n=3, m=4, seed=0):
    rng = np.random.default_rng(seed)
    cand = np.stack([make_blob_volume(shape, seed=seed + k)[0] for k in range(m)])
    rec = np.stack(
        [gaussian_filter(cand[k % m], 1.0) + rng.normal(0, 0.03, shape) for k in range(n)]
    )
    rec[-1] = rng.random(shape)  # one unstructured "reconstruction"
    return rec.astype(np.float32), cand.astype(np.float32)


def _pairwise(rec, cand, mask=None, per_candidate=False):
    return np.array(
        [
            [
                ssim(r, c, data_range=1.0, mask=mask[j] if per_candidate else mask)
                for j, c in enumerate(cand)
            ]
            for r in rec
        ]
    )


@pytest.mark.parametrize("budget", [1024.0, 0.2])  # one block, and many tiny chunks and blocks
def test_matrix_equals_pairwise_3d(budget):
    rec, cand = _stacks()
    got = ssim_matrix(rec, cand, data_range=1.0, device="cpu", memory_budget_mb=budget)
    np.testing.assert_allclose(got, _pairwise(rec, cand), atol=1e-5)
    # the own original scores best for the blurred reconstructions
    assert list(got[:3].argmax(axis=1)) == [0, 1, 2]


def test_matrix_equals_skimage_2d():
    rng = np.random.default_rng(3)
    rec = rng.random((2, 30, 34))
    cand = np.stack([rec[0] * 0.7 + 0.1, rng.random((30, 34)), rec[1]])
    got = ssim_matrix(rec, cand, data_range=1.0, device="cpu", dtype="float64")
    expected = [
        [
            structural_similarity(
                r, c, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
            for c in cand
        ]
        for r in rec
    ]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[1, 2] == pytest.approx(1.0)


def test_matrix_with_shared_and_per_candidate_masks(rng):
    rec, cand = _stacks(n=2, m=3)
    shared = rng.random(rec.shape[1:]) > 0.5
    per = cand > 0.2  # each candidate's own head mask
    np.testing.assert_allclose(
        ssim_matrix(rec, cand, mask=shared, device="cpu"), _pairwise(rec, cand, shared), atol=1e-5
    )
    np.testing.assert_allclose(
        ssim_matrix(rec, cand, mask=per, device="cpu", memory_budget_mb=0.3),
        _pairwise(rec, cand, per, per_candidate=True),
        atol=1e-5,
    )


def test_matrix_progress_and_cancel():
    rec, cand = _stacks(n=2, m=3)
    seen = []
    ssim_matrix(
        rec,
        cand,
        device="cpu",
        memory_budget_mb=0.2,
        progress=lambda d, t, s: seen.append((d, t, s)),
    )
    assert seen[0] == (0, 6, "ssim matrix") and seen[-1] == (6, 6, "ssim matrix")
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)

    def cancel(done, total, stage):
        if done > 0:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        ssim_matrix(rec, cand, device="cpu", progress=cancel)


def test_matrix_bad_input():
    rec, cand = _stacks(n=1, m=2)
    with pytest.raises(ValueError, match="differs"):
        ssim_matrix(rec, cand[:, :-1], device="cpu")
    with pytest.raises(ValueError, match="mask shape"):
        ssim_matrix(rec, cand, mask=np.ones((3, 3, 3), bool), device="cpu")
    bad = cand.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ssim_matrix(rec, bad, device="cpu")
    with pytest.raises(ValueError, match="unknown device"):
        ssim_matrix(rec, cand, device="tpu")


@pytest.mark.gpu
def test_matrix_on_cuda_equals_cpu():
    rec, cand = _stacks()
    np.testing.assert_allclose(
        ssim_matrix(rec, cand, device="cuda"), ssim_matrix(rec, cand, device="cpu"), atol=1e-5
    )
