"""The synthetic sample cohort: determinism, variability, labels, skull shell, caching, CLI."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from inversion_audit.cli.main import main
from inversion_audit.data import load_cohort, validate_cohort
from inversion_audit.errors import CohortError, JobCancelled
from inversion_audit.io import read_labels, read_volume
from inversion_audit.sample_data import (
    LABEL_NAMES,
    generate_sample_cohort,
    resolve_cohort_path,
    sample_cohort_dir,
    synthetic,
)


# generating subjects loads the nilearn template once per process (~7 s CPU), then ~1 s each
@pytest.fixture(scope="module")
def cohort2(tmp_path_factory):
    return generate_sample_cohort(tmp_path_factory.mktemp("sample") / "c", n_subjects=2, seed=0)


@pytest.mark.slow
def test_folder_is_a_valid_cohort(cohort2):
    cohort = load_cohort(cohort2)
    assert cohort.ids == ["sub-000", "sub-001"]
    assert all(s.labels is not None and s.mask is not None for s in cohort)
    assert validate_cohort(cohort, require_labels=True) == []
    vol = read_volume(cohort[0].image)
    assert vol.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert all(n % 16 == 0 for n in vol.shape)


@pytest.mark.slow
def test_same_seed_gives_same_bytes(cohort2, tmp_path):
    again = generate_sample_cohort(tmp_path / "again", n_subjects=2, seed=0)
    for sid in ("sub-000", "sub-001"):
        for suffix in ("T1", "seg", "mask"):
            name = f"{sid}_{suffix}.nii.gz"
            assert (again / name).read_bytes() == (cohort2 / name).read_bytes(), name


@pytest.mark.slow
def test_subjects_differ(cohort2, tmp_path):
    a, b = (read_volume(cohort2 / f"sub-00{i}_T1.nii.gz").array for i in (0, 1))
    rng = float(max(a.max(), b.max()))
    assert structural_similarity(a, b, data_range=rng) < 0.8
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.98
    la, lb = (read_labels(cohort2 / f"sub-00{i}_seg.nii.gz").array for i in (0, 1))
    assert (la != lb).mean() > 0.02  # the anatomy is deformed, not only the intensities
    other_seed = generate_sample_cohort(tmp_path / "seed1", n_subjects=1, seed=1)
    c = read_volume(other_seed / "sub-000_T1.nii.gz").array
    assert structural_similarity(a, c, data_range=rng) < 0.8


def test_brains_differ_in_shape_and_size_at_the_demo_grid():
    """At the demo's 6 mm grid the brains must differ by more than about a voxel, or no
    reconstruction can be told apart from the other subjects (cohort version 1 did not:
    mean mask Dice 0.935, brain-volume CV 0.052)."""
    masks = [
        synthetic.synthesize_subject(i, seed=0, spacing=6.0, with_skull=False).mask > 0
        for i in range(4)
    ]
    dice = [
        2 * (a & b).sum() / (a.sum() + b.sum()) for i, a in enumerate(masks) for b in masks[i + 1 :]
    ]
    volumes = np.array([m.sum() for m in masks], dtype=float)
    assert np.mean(dice) < 0.92
    assert volumes.std() / volumes.mean() > 0.07


@pytest.mark.slow
def test_labels_cover_all_classes_and_are_lateralised(cohort2):
    seg = read_labels(cohort2 / "sub-000_seg.nii.gz")
    mask = read_labels(cohort2 / "sub-000_mask.nii.gz").array
    assert set(np.unique(seg.array)) == set(LABEL_NAMES)
    np.testing.assert_array_equal(seg.array > 0, mask > 0)
    world = (
        np.einsum("ij,j...->i...", seg.affine[:3, :3], np.indices(seg.shape))
        + seg.affine[:3, 3, None, None, None]
    )
    for left, right in ((4, 5), (6, 7), (8, 9)):
        assert (
            np.median(world[0][seg.array == left])
            < -10
            < 10
            < np.median(world[0][seg.array == right])
        )
    y = {lab: np.median(world[1][seg.array == lab]) for lab in (4, 6, 8)}
    assert y[4] > y[6] > y[8]  # frontal, parietal-temporal, occipital from front to back


@pytest.mark.slow
def test_skull_shell_outside_brain_only_with_skull(cohort2, tmp_path):
    img = read_volume(cohort2 / "sub-000_T1.nii.gz").array
    mask = read_labels(cohort2 / "sub-000_mask.nii.gz").array > 0
    brain = np.median(img[mask])
    assert np.percentile(img[~mask], 99.5) > 0.5 * brain  # bright scalp
    bare = generate_sample_cohort(tmp_path / "bare", n_subjects=1, with_skull=False)
    img0 = read_volume(bare / "sub-000_T1.nii.gz").array
    mask0 = read_labels(bare / "sub-000_mask.nii.gz").array > 0
    assert np.count_nonzero(img0[~mask0]) == 0
    np.testing.assert_array_equal(mask0, mask)  # same anatomy, only the head shell differs


@pytest.mark.slow
def test_default_folder_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("INVERSION_AUDIT_CACHE", str(tmp_path / "cache"))
    path = generate_sample_cohort(n_subjects=1)
    assert path == sample_cohort_dir(n_subjects=1)
    assert path.is_relative_to(tmp_path / "cache")
    marker = json.loads((path / synthetic.MARKER).read_text())
    assert marker["params"]["n_subjects"] == 1
    stamp = (path / "sub-000_T1.nii.gz").stat().st_mtime_ns
    assert generate_sample_cohort(n_subjects=1) == path
    assert (path / "sub-000_T1.nii.gz").stat().st_mtime_ns == stamp  # not rewritten
    (path / "sub-000_seg.nii.gz").unlink()  # incomplete: regenerated
    generate_sample_cohort(n_subjects=1)
    assert (path / "sub-000_seg.nii.gz").exists()


@pytest.mark.slow
def test_cancel_leaves_no_completion_marker(tmp_path):
    def cancel(done, total, stage):
        if done >= 1:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        generate_sample_cohort(tmp_path / "c", n_subjects=3, progress=cancel, workers=1)
    assert not (tmp_path / "c" / synthetic.MARKER).exists()
    assert not list((tmp_path / "c").glob(".*tmp*"))  # no partial files


def test_template_is_read_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    tissue, affine = synthetic._mni152.__wrapped__()
    assert tissue.shape[0] == 3 and tissue.max() == pytest.approx(1.0)
    assert affine[0, 0] == pytest.approx(1.0)


@pytest.mark.slow
def test_resolve_cohort_path(tmp_path, monkeypatch):
    monkeypatch.setenv("INVERSION_AUDIT_CACHE", str(tmp_path / "cache"))
    assert resolve_cohort_path(str(tmp_path)) == tmp_path
    path = resolve_cohort_path("sample:1")
    assert load_cohort(path).ids == ["sub-000"]
    with pytest.raises(CohortError, match="sample:x"):
        resolve_cohort_path("sample:x")


@pytest.mark.slow
def test_cli_sample_prints_path(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["sample", "--out", str(out), "--n", "1", "--seed", "3", "--no-skull"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    marker = json.loads((out / synthetic.MARKER).read_text())
    assert marker["params"] == {
        "version": synthetic.SAMPLE_VERSION,
        "n_subjects": 1,
        "seed": 3,
        "spacing": 2.0,
        "with_skull": False,
    }


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_subjects"):
        generate_sample_cohort("unused", n_subjects=0)
    with pytest.raises(ValueError, match="spacing"):
        synthetic.synthesize_subject(0, spacing=0)
