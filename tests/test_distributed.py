"""Pairwise work on a Dask LocalCluster equals the serial result; failures are retried, then reported."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from conftest import make_blob_volume
from inversion_audit.io import Volume
from inversion_audit.matching.distributed import (
    dask_client,
    deformation_matrix,
    run_pairs,
)
from inversion_audit.metrics import deformation, ssim, ssim_matrix

pytestmark = pytest.mark.slow


def _stacks(n=3, m=4, shape=(20, 22, 18)):
    rng = np.random.default_rng(5)
    cand = np.stack([make_blob_volume(shape, seed=k)[0] for k in range(m)])
    rec = np.stack([gaussian_filter(cand[k], 1.0) + rng.normal(0, 0.03, shape) for k in range(n)])
    return rec.astype(np.float32), cand


def flaky_once(a: np.ndarray, b: np.ndarray, marker_dir: str) -> float:
    """Fails the first time each pair runs (a marker file remembers), then succeeds."""
    marker = Path(marker_dir) / f"{a.sum():.6f}-{b.sum():.6f}"
    if not marker.exists():
        marker.touch()
        raise RuntimeError("transient failure")
    return float(np.abs(a - b).mean())


def always_fails_for_first(a: np.ndarray, b: np.ndarray, bad_sum: float) -> float:
    if abs(float(b.sum()) - bad_sum) < 1e-6:
        raise ValueError("registration diverged")
    return float(np.abs(a - b).mean())


def test_local_cluster_processes_equals_serial():
    """Worker processes (the default) compute the same SSIM values as the serial matrix code."""
    rec, cand = _stacks()
    serial = ssim_matrix(rec, cand, device="cpu")
    with dask_client(n_workers=2, threads_per_worker=1, processes=True) as client:
        env = client.run(
            lambda: __import__("os").environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
        )
        assert set(env.values()) == {"1"}
        pairs = run_pairs(
            functools.partial(ssim, data_range=1.0),
            list(rec),
            list(cand),
            ["r0", "r1", "r2"],
            ["c0", "c1", "c2", "c3"],
            client=client,
        )
    assert not pairs.failures
    # SSIM is computed in float32 (the pairwise and the batched implementation reduce their
    # sums in another order), so the two agree to float32 precision, not to the last bit
    np.testing.assert_allclose(pairs.values, serial, rtol=0, atol=1e-5)


def test_retry_once_then_succeed(tmp_path):
    rec, cand = _stacks(n=2, m=2)
    res = run_pairs(
        flaky_once,
        list(rec),
        list(cand),
        ["r0", "r1"],
        ["c0", "c1"],
        pair_kwargs={"marker_dir": str(tmp_path)},
        n_workers=2,
        processes=False,
    )
    assert not res.failures
    assert len(list(tmp_path.iterdir())) == 4  # every pair failed once before its retry
    expected = np.abs(rec[:, None] - cand[None]).mean(axis=(2, 3, 4))
    np.testing.assert_allclose(res.values, expected, rtol=1e-6)


def test_failed_pairs_are_reported_and_others_kept():
    rec, cand = _stacks(n=2, m=3)
    bad = float(cand[1].sum())
    seen = []
    res = run_pairs(
        always_fails_for_first,
        list(rec),
        list(cand),
        ["r0", "r1"],
        ["c0", "c1", "c2"],
        pair_kwargs={"bad_sum": bad},
        n_workers=2,
        processes=False,
        progress=lambda d, t, s: seen.append((d, t)),
    )
    assert [(f.reconstruction_id, f.candidate_id) for f in res.failures] == [
        ("r0", "c1"),
        ("r1", "c1"),
    ]
    assert "registration diverged" in res.failures[0].error
    assert np.isnan(res.values[:, 1]).all() and np.isfinite(res.values[:, [0, 2]]).all()
    assert seen[-1] == (6, 6)


def test_deformation_matrix_top_k_on_cluster():
    img, labels = make_blob_volume((24, 24, 24), seed=2)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    fixed = [Volume(img, affine), Volume(make_blob_volume((24, 24, 24), seed=4)[0], affine)]
    moving = [Volume(np.roll(img, 1, axis=0), affine)]
    pairs = np.array([[True, False]])
    matrix, failures = deformation_matrix(
        moving,
        fixed,
        ["s0"],
        ["s0", "s1"],
        candidate_masks=[labels > 0, None],
        pairs=pairs,
        preset="fast",
        top_k=1,
        n_workers=1,
        processes=False,
    )
    assert not failures and np.isnan(matrix.values[0, 1])
    assert any("SSIM top-1" in n and "not computed" in n for n in matrix.notes)
    # the worker's result equals (and was cached for) the direct call
    direct = deformation(moving[0], fixed[0], fixed_mask=labels > 0, preset="fast")
    assert direct.cached and matrix.values[0, 0] == pytest.approx(direct.mean_displacement_mm)
