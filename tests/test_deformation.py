"""ANTs deformation metric on tiny volumes: a known shift, identity, geometry, cache, temp files."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from scipy import ndimage

from conftest import make_blob_volume
from inversion_audit.data import cache_dir
from inversion_audit.io import Volume
from inversion_audit.metrics import deformation
from inversion_audit.metrics.deformation import deformation_cache_path, to_ants

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair():
    img, labels = make_blob_volume((32, 32, 32), seed=1)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -31
    return Volume(img, affine), labels > 0


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_known_shift_and_identity(pair, preset):
    fixed, mask = pair
    shifted = Volume(
        ndimage.shift(fixed.array, (2, 0, 0), order=1), fixed.affine
    )  # 2 voxels = 4 mm
    res = deformation(shifted, fixed, fixed_mask=mask, preset=preset, cache=False)
    assert res.mean_displacement_mm == pytest.approx(4.0, rel=0.2)
    assert res.magnitude.shape == fixed.shape and np.allclose(res.magnitude.affine, fixed.affine)
    # the warped reconstruction lies on the fixed grid and matches it better than before
    err_before = np.abs(shifted.array - fixed.array)[mask].mean()
    assert np.abs(res.warped.array - fixed.array)[mask].mean() < 0.5 * err_before
    same = deformation(fixed, fixed, fixed_mask=mask, preset=preset, cache=False)
    # identical volumes: ANTs' sampled metrics leave a residual of ~0.1-0.45 voxel (0.2-0.9 mm
    # here, varying between runs with thread scheduling); well below the 4 mm shift
    assert same.mean_displacement_mm < 0.25 * res.mean_displacement_mm
    assert same.mean_displacement_mm < 0.5 * fixed.spacing[0]


def test_world_shift_through_affine(pair):
    """Same voxels, origin moved 6 mm along y: RAS->LPS conversion must give 6 mm."""
    fixed, mask = pair
    moved = fixed.affine.copy()
    moved[1, 3] += 6.0
    res = deformation(
        Volume(fixed.array, moved),
        fixed,
        fixed_mask=mask,
        preset="fast",
        cache=False,
        return_displacement=True,
    )
    assert res.mean_displacement_mm == pytest.approx(6.0, rel=0.2)
    # the field is in RAS mm: a fixed point p is found at p + (0, 6, 0) in the moving volume
    assert res.displacement.shape == (*fixed.shape, 3)
    mean_vector = res.displacement[mask].mean(axis=0)
    np.testing.assert_allclose(mean_vector, [0.0, 6.0, 0.0], atol=1.2)
    norms = np.linalg.norm(res.displacement, axis=-1)
    np.testing.assert_allclose(norms, res.magnitude.array, rtol=1e-4, atol=1e-4)


def test_to_ants_geometry(pair):
    import ants

    fixed, _ = pair
    img = to_ants(fixed)
    assert np.allclose(img.spacing, (2.0, 2.0, 2.0))
    # ANTs is LPS: every voxel's world point is the RAS point with x and y negated
    point_ras = (fixed.affine @ np.array([3, 4, 5, 1.0]))[:3]
    point_lps = ants.transform_index_to_physical_point(img, (3, 4, 5))
    assert np.allclose(point_lps, point_ras * np.array([-1, -1, 1]))
    np.testing.assert_array_equal(img.numpy(), fixed.array)


def test_cache_hit_and_mask_reuse(pair):
    fixed, mask = pair
    moving = Volume(ndimage.shift(fixed.array, (0, 1.5, 0), order=1), fixed.affine)
    first = deformation(moving, fixed, preset="fast")
    path = deformation_cache_path(moving, fixed, "fast")
    assert not first.cached and path.exists() and path.is_relative_to(cache_dir() / "deformation")
    second = deformation(moving, fixed, fixed_mask=mask, preset="fast")
    assert second.cached and second.seconds == pytest.approx(first.seconds)
    np.testing.assert_array_equal(second.magnitude.array, first.magnitude.array)
    assert second.mean_displacement_mm == pytest.approx(
        float(first.magnitude.array[mask].mean()), rel=1e-6
    )
    assert first.displacement is None and second.displacement is None  # not asked for
    # asking for the field recomputes once (the entry lacked it), then it is cached too
    third = deformation(moving, fixed, preset="fast", return_displacement=True)
    assert not third.cached and third.displacement.shape == (*fixed.shape, 3)
    fourth = deformation(moving, fixed, preset="fast", return_displacement=True)
    assert fourth.cached
    np.testing.assert_array_equal(fourth.displacement, third.displacement)
    # another preset or another volume is another key
    assert deformation_cache_path(moving, fixed, "paper") != path
    assert deformation_cache_path(fixed, moving, "fast") != path


def test_temporary_transform_files_are_removed(pair, tmp_path, monkeypatch):
    fixed, _ = pair
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    moving = Volume(ndimage.shift(fixed.array, (1, 0, 0), order=1), fixed.affine)
    deformation(moving, fixed, preset="fast", cache=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_input(pair):
    fixed, mask = pair
    with pytest.raises(ValueError, match="preset"):
        deformation(fixed, fixed, preset="slow")
    bad = fixed.array.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        deformation(Volume(bad, fixed.affine), fixed)
    with pytest.raises(ValueError, match="fixed_mask"):
        deformation(fixed, fixed, fixed_mask=mask[:-1], preset="fast", cache=False)


def test_isolated_registration_frees_the_calling_process(pair):
    """ANTs in a child process: other threads keep running, and the result is the same metric."""
    import threading
    import time

    fixed, mask = pair
    shifted = Volume(ndimage.shift(fixed.array, (2, 0, 0), order=1), fixed.affine)
    ticks: list[float] = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.05)

    thread = threading.Thread(target=tick)
    thread.start()
    start = time.perf_counter()
    try:
        res = deformation(
            shifted,
            fixed,
            fixed_mask=mask,
            preset="fast",
            cache=False,
            isolated=True,
            return_displacement=True,
        )
    finally:
        stop.set()
        thread.join()
    end = time.perf_counter()
    assert sum(start + 0.5 < t < end - 0.5 for t in ticks) >= 5
    assert res.mean_displacement_mm == pytest.approx(4.0, rel=0.2)
    # content moved +2 voxels along x (R): fixed points are found 4 mm to the right
    np.testing.assert_allclose(res.displacement[mask].mean(axis=0), [4.0, 0.0, 0.0], atol=0.8)


def test_isolated_registration_failure_is_an_error(pair):
    fixed, _ = pair
    tiny = np.eye(4)
    with pytest.raises(RuntimeError, match="failed in a subprocess"):
        deformation(
            Volume(np.zeros((3, 3, 3), np.float32), tiny),
            Volume(np.ones((3, 3, 3), np.float32), tiny),
            preset="fast",
            cache=False,
            isolated=True,
        )


def test_seeded_single_thread_registration_is_reproducible(pair):
    # ANTs seeds its metric sampling from the clock when given seed 0: the wrapper must not
    fixed, _ = pair
    moving = Volume(ndimage.shift(fixed.array, (1.5, -1.0, 0.5), order=1), fixed.affine)
    runs = [
        deformation(moving, fixed, preset="fast", cache=False, threads=1, isolated=True)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].magnitude.array, runs[1].magnitude.array)
    assert runs[0].mean_displacement_mm == runs[1].mean_displacement_mm


@pytest.mark.slow
def test_register_pairs_in_parallel_equals_sequential(pair):
    """One ITK thread per registration: two child processes at once give the very same
    results as one after the other."""
    from inversion_audit.metrics import register_pairs

    fixed, mask = pair
    moving = [
        Volume(ndimage.shift(fixed.array, shift, order=1), fixed.affine)
        for shift in ((1.5, -1.0, 0.5), (-1.0, 0.5, 1.0))
    ]
    other = Volume(ndimage.shift(fixed.array, (0.5, 0.5, -1.5), order=1), fixed.affine)
    pairs = [(0, 0), (1, 0), (0, 1)]
    calls = []
    runs = [
        register_pairs(
            moving,
            [fixed, other],
            pairs,
            [mask, None],
            workers=workers,
            cache=False,
            progress=lambda done, total, stage: calls.append((done, total, stage)),
            isolated=True,  # fresh processes: this one's ITK may already run more threads
        )
        for workers in (1, 2)
    ]
    assert [c[:2] for c in calls] == [(k, 3) for k in (1, 2, 3)] * 2
    for results, failed in runs:
        assert set(results) == set(pairs) and not failed
    (seq, _), (par, _) = runs
    for key in pairs:
        assert seq[key].mean_displacement_mm == par[key].mean_displacement_mm
        np.testing.assert_array_equal(seq[key].magnitude.array, par[key].magnitude.array)
    assert len({round(seq[key].mean_displacement_mm, 6) for key in pairs}) == 3


def test_in_process_registration_after_a_multithreaded_one_is_still_reproducible(pair):
    """ITK keeps the thread count of its first use in a process: once ANTs ran here with two
    threads, a registration asking for one must still give the single-threaded result (the
    one a fresh child process gives), not a two-threaded one."""
    fixed, mask = pair
    moving = Volume(ndimage.shift(fixed.array, (1.0, 1.5, -0.5), order=1), fixed.affine)
    deformation(moving, fixed, preset="fast", cache=False, threads=2)  # ANTs used here first
    here = [
        deformation(moving, fixed, fixed_mask=mask, preset="fast", cache=False, threads=1)
        for _ in range(2)
    ]
    child = deformation(
        moving, fixed, fixed_mask=mask, preset="fast", cache=False, threads=1, isolated=True
    )
    for run in here:
        np.testing.assert_array_equal(run.magnitude.array, child.magnitude.array)
        assert run.mean_displacement_mm == child.mean_displacement_mm
