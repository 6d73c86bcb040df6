"""Registration backends (ANTs, greedy): the shared magnitude, greedy against known shifts,
reproducibility, agreement with ANTs, the pipeline and Dask with ``registration="greedy"``,
and ``resolve_threads``."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from scipy import ndimage

from conftest import make_blob_volume
from inversion_audit.devices import cpu_count, resolve_threads
from inversion_audit.errors import ConfigError
from inversion_audit.io import Volume
from inversion_audit.metrics import REGISTRATION_BACKENDS, deformation
from inversion_audit.metrics.deformation import deformation_cache_path
from inversion_audit.metrics.registration import (
    check_registration,
    displacement_magnitude,
    lps_to_ras,
    mean_displacement,
)

SPACING = 2.0


@pytest.fixture(scope="module")
def pair():
    img, labels = make_blob_volume((32, 32, 32), seed=1)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = -31
    return Volume(img, affine), labels > 0


def greedy(moving: Volume, fixed: Volume, mask=None, **kw):
    kw = {"preset": "fast", "cache": False, "threads": 1, **kw}
    return deformation(moving, fixed, fixed_mask=mask, registration="greedy", **kw)


# -- the shared displacement arithmetic ---------------------------------------------------------
def test_displacement_magnitude_is_numpys_norm_and_the_mean_is_inside_the_mask():
    field = np.random.default_rng(0).normal(0, 3, (5, 6, 7, 3))
    magnitude = displacement_magnitude(field)
    assert magnitude.dtype == np.float32 and magnitude.shape == (5, 6, 7)
    np.testing.assert_allclose(magnitude, np.linalg.norm(field, axis=-1), rtol=1e-6)
    # LPS and RAS fields have the same norms; RAS flips x and y
    np.testing.assert_allclose(displacement_magnitude(lps_to_ras(field)), magnitude, rtol=1e-6)
    np.testing.assert_allclose(lps_to_ras(field)[..., 0], -field[..., 0], rtol=1e-6)
    np.testing.assert_allclose(lps_to_ras(field)[..., 2], field[..., 2], rtol=1e-6)
    mask = np.zeros((5, 6, 7), bool)
    mask[1:3, 2:5, :] = True
    norms = np.linalg.norm(field, axis=-1)
    assert mean_displacement(magnitude, mask) == pytest.approx(norms[mask].mean(), rel=1e-6)
    assert mean_displacement(magnitude) == pytest.approx(norms.mean(), rel=1e-6)
    with pytest.raises(ValueError, match="3 components"):
        displacement_magnitude(np.zeros((4, 4, 4, 2)))


def test_backend_names_and_refusals():
    assert REGISTRATION_BACKENDS == ("ants", "greedy")
    check_registration("ants", "paper")
    check_registration("ants", "fast")
    check_registration("greedy", "fast")
    with pytest.raises(ConfigError, match="'paper' is ANTs SyN as the paper ran it"):
        check_registration("greedy", "paper")
    with pytest.raises(ConfigError, match="unknown registration backend 'elastix'"):
        check_registration("elastix", "fast")
    with pytest.raises(ValueError, match="preset 'slow'"):  # a ConfigError is a ValueError
        check_registration("greedy", "slow")


def test_resolve_threads():
    assert resolve_threads("auto") == cpu_count() >= 1
    assert resolve_threads(" AUTO ") == cpu_count()
    if hasattr(os, "sched_getaffinity"):
        assert cpu_count() == len(os.sched_getaffinity(0))
    assert resolve_threads(1) == 1 and resolve_threads(3) == 3
    assert resolve_threads(np.int64(2)) == 2 and resolve_threads("4") == 4
    for bad in (0, -1, True, 1.5, "many", "", "0", None):
        with pytest.raises(ValueError, match="auto"):
            resolve_threads(bad)


# -- greedy against known displacements ---------------------------------------------------------
def test_greedy_of_a_volume_against_itself_is_near_zero(pair):
    fixed, mask = pair
    same = greedy(fixed, fixed, mask)
    assert same.registration == "greedy" and same.magnitude.shape == fixed.shape
    assert same.mean_displacement_mm < 0.25 * SPACING


def test_greedy_measures_a_known_shift_in_mm(pair):
    """The independent reference: the shift applied, in mm (2 voxels of 2 mm along x)."""
    fixed, mask = pair
    shifted = Volume(ndimage.shift(fixed.array, (2, 0, 0), order=1), fixed.affine)
    res = greedy(shifted, fixed, mask, return_displacement=True)
    assert res.mean_displacement_mm == pytest.approx(4.0, rel=0.15)
    np.testing.assert_allclose(res.magnitude.affine, fixed.affine)
    # RAS mm: content moved +x, so fixed points are found 4 mm along +x in the moving volume
    np.testing.assert_allclose(res.displacement[mask].mean(axis=0), [4.0, 0.0, 0.0], atol=0.6)
    np.testing.assert_allclose(
        np.linalg.norm(res.displacement, axis=-1), res.magnitude.array, rtol=1e-4, atol=1e-4
    )
    err_before = np.abs(shifted.array - fixed.array)[mask].mean()
    assert np.abs(res.warped.array - fixed.array)[mask].mean() < 0.5 * err_before


def test_greedy_measures_a_world_shift_through_the_affine(pair):
    """Same voxels, origin 6 mm along y: the RAS/LPS conversion and the centre-of-mass start."""
    fixed, mask = pair
    moved = fixed.affine.copy()
    moved[1, 3] += 6.0
    res = greedy(Volume(fixed.array, moved), fixed, mask, return_displacement=True)
    assert res.mean_displacement_mm == pytest.approx(6.0, rel=0.05)
    np.testing.assert_allclose(res.displacement[mask].mean(axis=0), [0.0, 6.0, 0.0], atol=0.3)


def test_greedy_is_reproducible_here_and_in_a_child_process(pair):
    fixed, mask = pair
    moving = Volume(ndimage.shift(fixed.array, (1.5, -1.0, 0.5), order=1), fixed.affine)
    runs = [greedy(moving, fixed, mask) for _ in range(2)]
    runs.append(greedy(moving, fixed, mask, isolated=True))
    for run in runs[1:]:
        np.testing.assert_array_equal(run.magnitude.array, runs[0].magnitude.array)
        np.testing.assert_array_equal(run.warped.array, runs[0].warped.array)
        assert run.mean_displacement_mm == runs[0].mean_displacement_mm
    assert runs[2].cpu_seconds > 0 and runs[0].cpu_seconds > 0


def test_greedy_results_are_cached_under_their_own_key(pair):
    fixed, mask = pair
    moving = Volume(ndimage.shift(fixed.array, (0, 1.0, 0), order=1), fixed.affine)
    ants_key = deformation_cache_path(moving, fixed, "fast")
    assert deformation_cache_path(moving, fixed, "fast", "ants") == ants_key
    greedy_key = deformation_cache_path(moving, fixed, "fast", "greedy")
    assert greedy_key != ants_key
    first = greedy(moving, fixed, mask, cache=True)
    second = greedy(moving, fixed, mask, cache=True)
    assert not first.cached and second.cached and greedy_key.exists() and not ants_key.exists()
    np.testing.assert_array_equal(second.magnitude.array, first.magnitude.array)
    assert second.cpu_seconds == pytest.approx(first.cpu_seconds)


def test_greedy_refuses_the_paper_preset_before_registering(pair):
    fixed, _ = pair
    with pytest.raises(ConfigError, match="ANTs SyN"):
        deformation(fixed, fixed, preset="paper", registration="greedy")


def _warped(image: np.ndarray, amplitude_mm: float, seed: int) -> np.ndarray:
    """``image`` under a smooth random warp whose RMS displacement is ``amplitude_mm``."""
    rng = np.random.default_rng(seed)
    field = np.stack([ndimage.gaussian_filter(rng.normal(size=image.shape), 4) for _ in range(3)])
    field *= amplitude_mm / SPACING / np.sqrt((field**2).sum(0).mean())
    grid = np.indices(image.shape, dtype=np.float64)
    return ndimage.map_coordinates(image, grid + field, order=1, mode="nearest").astype(np.float32)


@pytest.mark.slow
def test_greedy_and_ants_rank_tiny_pairs_alike(pair):
    """The pair with the larger applied warp has the larger mean displacement under both."""
    fixed, mask = pair
    amplitudes = (0.8, 2.0, 3.5)  # mm, RMS
    moving = [
        Volume(_warped(fixed.array, a, seed), fixed.affine) for seed, a in enumerate(amplitudes)
    ]
    means = {
        backend: [
            deformation(
                m,
                fixed,
                fixed_mask=mask,
                preset="fast",
                cache=False,
                threads=1,
                isolated=True,
                registration=backend,
            ).mean_displacement_mm
            for m in moving
        ]
        for backend in REGISTRATION_BACKENDS
    }
    for backend, values in means.items():
        assert values == sorted(values), (backend, values)
    np.testing.assert_allclose(means["greedy"], means["ants"], rtol=0.5)


# -- the pipeline and Dask ----------------------------------------------------------------------
def _tiny_match():
    from inversion_audit.data.preprocess import Preprocessed

    eye = np.diag([SPACING, SPACING, SPACING, 1.0])
    vols = [make_blob_volume(seed=s) for s in range(3)]
    candidates = {
        f"s{i}": Preprocessed(f"s{i}", im, eye, lab > 0, lab, eye, im.shape)
        for i, (im, lab) in enumerate(vols)
    }
    recs = {
        f"s{i}": ndimage.gaussian_filter(np.roll(im, 1, axis=i), 0.7).astype(np.float32)
        for i, (im, _) in enumerate(vols)
    }
    return recs, candidates


def test_pipeline_scores_with_greedy_end_to_end():
    from inversion_audit.matching.pipeline import (
        MatchOptions,
        register_candidate,
        score_reconstructions,
    )

    recs, candidates = _tiny_match()
    options = MatchOptions(
        metrics=("ssim", "deformation"), top_k=2, deformation_preset="fast", registration="greedy"
    )
    out = score_reconstructions(recs, candidates, options, device="cpu")
    scores = {(r, c): v for r, c, m, v in out.rows if m == "deformation"}
    assert len(scores) == 6 and not out.failures and len(out.maps) == 6
    for rid in recs:  # each reconstruction is closest to its own original
        assert scores[(rid, rid)] == min(v for (r, _), v in scores.items() if r == rid)
    # one pair as the GUI registers it: the pipeline's grid, mask, thread and seed
    direct = register_candidate(
        recs["s0"],
        candidates["s0"].image,
        candidates["s0"].mask,
        (SPACING,) * 3,
        "fast",
        registration="greedy",
    )
    assert direct.registration == "greedy"
    assert direct.mean_displacement_mm == pytest.approx(scores[("s0", "s0")], rel=1e-6)
    np.testing.assert_array_equal(direct.magnitude.array, out.maps[("s0", "s0")])


def test_pipeline_refuses_greedy_with_the_paper_preset_before_computing():
    from inversion_audit.matching.pipeline import MatchOptions, score_reconstructions

    recs, candidates = _tiny_match()
    calls = []
    options = MatchOptions(metrics=("ssim", "deformation"), deformation_preset="paper")
    with pytest.raises(ConfigError, match="ANTs SyN"):
        score_reconstructions(
            recs,
            candidates,
            options,
            device="cpu",
            progress=lambda *a: calls.append(a),
            registration="greedy",  # the keyword wins over the options' "ants"
        )
    assert calls == []
    with pytest.raises(ValueError, match="auto"):
        score_reconstructions(recs, candidates, options, registration_workers=0)


@pytest.mark.slow
def test_pipeline_greedy_is_the_same_on_all_cores_and_on_dask():
    """``threads = "auto"``: one child process per core, one ITK thread each, the very same
    numbers as one at a time; and the Dask path (``--scheduler``/``n_workers``) too."""
    from inversion_audit.matching.pipeline import MatchOptions, score_reconstructions

    recs, candidates = _tiny_match()
    options = MatchOptions(
        metrics=("ssim", "deformation"), top_k=2, deformation_preset="fast", registration="greedy"
    )

    def scores(**kw):
        out = score_reconstructions(recs, candidates, options, device="cpu", **kw)
        return {(r, c): v for r, c, m, v in out.rows if m == "deformation"}

    one = scores(registration_workers=1)
    assert scores(registration_workers="auto") == one
    from inversion_audit.io import cache_dir

    for f in (cache_dir() / "deformation").glob("*.npz"):  # make Dask register them again
        f.unlink()
    on_dask = score_reconstructions(
        recs, candidates, dataclasses.replace(options, n_workers=1), device="cpu"
    )
    assert {(r, c): v for r, c, m, v in on_dask.rows if m == "deformation"} == one


def test_deformation_matrix_with_greedy_on_a_cluster(pair):
    from inversion_audit.matching.distributed import deformation_matrix

    fixed, mask = pair
    moving = [Volume(np.roll(fixed.array, 1, axis=0), fixed.affine)]
    matrix, failures = deformation_matrix(
        moving,
        [fixed],
        ["s0"],
        ["s0"],
        candidate_masks=[mask],
        preset="fast",
        n_workers=1,
        processes=False,
        registration="greedy",
    )
    assert not failures and any(n.startswith("greedy preset 'fast'") for n in matrix.notes)
    direct = greedy(moving[0], fixed, mask, cache=True)
    assert direct.cached and matrix.values[0, 0] == pytest.approx(direct.mean_displacement_mm)
    with pytest.raises(ConfigError, match="ANTs SyN"):
        deformation_matrix(moving, [fixed], ["s0"], ["s0"], preset="paper", registration="greedy")
