"""Deformation widget: ANTs registration in a child process, stored results, cancel,
UI responsiveness while it runs, screenshots.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_deformation.py -q``. The tests
on the session's runner-made study come first: training after a viewer's OpenGL context exists
has crashed the process (torch's compiler stack and mesa each load their own LLVM).
"""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import pytest

from gui_fakes import blob_image, copy_study, ticks_while_running
from inversion_audit.gui._layers import layer_volume
from inversion_audit.gui._registration import displacement_vectors
from inversion_audit.gui.review_panel import open_tab
from inversion_audit.io import read_volume
from inversion_audit.metrics import deformation

PLUGIN = "napari-inversion-audit"
SCALE = (2.0, 2.0, 2.0)
TRANSLATE = (-16.0, -20.0, -12.0)


def test_displacement_vectors_subsample_and_convert_mm_to_voxels():
    field = np.zeros((8, 8, 8, 3), np.float32)
    field[..., 0] = 4.0  # 4 mm along axis 0
    field[0, 0, 0] = 0.0
    vectors = displacement_vectors(field, (2.0, 2.0, 2.0), step=4)
    assert vectors.shape == (7, 2, 3)  # 2^3 sampled voxels minus the one without displacement
    np.testing.assert_allclose(vectors[:, 1], [[2.0, 0.0, 0.0]] * 7)
    assert set(map(tuple, vectors[:, 0])) == {
        (a, b, c) for a in (0, 4) for b in (0, 4) for c in (0, 4)
    } - {(0, 0, 0)}


def _scored_pair(viewer, qtbot, study):
    """Open ``study``, select sub-001 and another candidate whose deformation was scored;
    returns ``(index, entry, candidates table, candidate id)``."""
    opener = open_tab(viewer, "Open study")
    index = opener.open_study(study.root)
    entry = index.search("sub-001")[0]
    opener.select(entry)
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    table = open_tab(viewer, "Candidate matches")
    row = next(
        r
        for r in table.rows
        if r.candidate.candidate_id != "sub-001"
        and r.candidate.deformation == r.candidate.deformation
    )
    cid = row.candidate.candidate_id
    table.select_row(table.rows.index(row))
    qtbot.waitUntil(lambda: table.state.candidate_id == cid, timeout=15000)
    return index, entry, table, cid


def test_stored_study_result_opens_without_a_worker(
    make_napari_viewer, qtbot, tmp_path, runner_study
):
    study = copy_study(runner_study, tmp_path / "study")
    viewer = make_napari_viewer()
    index, entry, table, cid = _scored_pair(viewer, qtbot, study)
    widget = open_tab(viewer, "Deformation")
    assert widget.fixed_combo.currentText() == table.state.candidate_layer
    start = time.perf_counter()
    view = widget.run()
    assert time.perf_counter() - start < 2.0 and view.cached  # no registration, no worker
    stored = read_volume(index.deformation_file(entry.run, "sub-001", cid)).array
    magnitude = [layer for layer in viewer.layers if layer.name.endswith("displacement (mm)")]
    assert len(magnitude) == 1
    # drawn over the candidate's brain only: the study's scoring mask, which for this
    # skull-stripped study is the candidate's stored brain labels (read here with nibabel)
    variant = index.variants()[0]
    brain = np.asarray(nib.load(index.labels_file(variant, cid)).dataobj) > 0
    assert 0.05 < brain.mean() < 0.9
    np.testing.assert_array_equal(magnitude[0].data[brain], stored[brain])
    assert (magnitude[0].data[~brain] == 0).all() and (stored[~brain] > 0).any()
    cmap = magnitude[0].colormap
    assert cmap.map(np.array([0.0]))[0, 3] == 0.0  # outside the brain: transparent
    assert (cmap.map(np.array([0.01, 0.5, 1.0]))[:, 3] == 1.0).all()  # any displacement: opaque
    assert magnitude[0].metadata["inversion_audit"]["mask"] == "the study's scoring mask"
    np.testing.assert_allclose(magnitude[0].scale, viewer.layers[table.state.candidate_layer].scale)
    assert view.mean_displacement_mm == pytest.approx(
        study.scores[(entry.run, "sub-001", cid, "deformation")], rel=1e-5
    )
    assert "stored in the study" in widget.result_label.text()


def test_stored_map_mask_from_a_child_process_when_it_needs_bias_correction(
    make_napari_viewer, qtbot, tmp_path, runner_study, monkeypatch
):
    """A study whose preprocessing runs N4 recomputes the mask in a child process (never
    ANTs in napari's): the same map and mask as computed here."""
    from inversion_audit.gui import deformation_widget
    from inversion_audit.gui._deformation_display import mask_needs_child

    study = copy_study(runner_study, tmp_path / "study")
    viewer = make_napari_viewer()
    index, entry, table, cid = _scored_pair(viewer, qtbot, study)
    candidate = (str(index.root), index.variants()[0], cid)
    assert not mask_needs_child(candidate)  # this study's preprocessing has no N4
    widget = open_tab(viewer, "Deformation")
    assert widget.run().cached  # the stored view, its mask computed here
    (shown,) = [la for la in viewer.layers if la.name.endswith("displacement (mm)")]
    expected = np.array(shown.data)
    monkeypatch.setattr(deformation_widget, "mask_needs_child", lambda c: True)
    job = widget.run()
    assert hasattr(job, "is_running")  # a job this time, not the view
    qtbot.waitUntil(lambda: not job.is_running, timeout=120000)
    assert job.error is None, job.error
    maps = [la for la in viewer.layers if la.name.endswith("displacement (mm)")]
    assert len(maps) == 1 and maps[0].metadata["inversion_audit"]["stored"]
    np.testing.assert_array_equal(maps[0].data, expected)
    brain = np.asarray(nib.load(index.labels_file(candidate[1], cid)).dataobj) > 0
    assert (maps[0].data[~brain] == 0).all()


@pytest.mark.slow
def test_registering_a_study_pair_again_gives_the_studys_score(
    make_napari_viewer, qtbot, tmp_path, runner_study
):
    """Not the stored result: a fresh registration in the widget (the study's mask, one ITK
    thread, its seed) reproduces the mean displacement in the study's ``scores.csv``."""
    study = copy_study(runner_study, tmp_path / "study")
    viewer = make_napari_viewer()
    _, entry, _, cid = _scored_pair(viewer, qtbot, study)
    widget = open_tab(viewer, "Deformation")
    widget.cache_check.setChecked(False)
    widget.preset_combo.setCurrentText("fast")  # the study's matching.deformation_preset
    job = widget.run()
    qtbot.waitUntil(lambda: not job.is_running, timeout=300000)
    assert job.error is None, job.error
    expected = study.scores[(entry.run, "sub-001", cid, "deformation")]  # read with csv
    assert widget.result.mean_displacement_mm == pytest.approx(expected, rel=1e-5)
    assert f"{expected:.2f} mm" in widget.result_label.text()


def test_a_stored_ants_result_is_not_shown_for_greedy(
    make_napari_viewer, qtbot, tmp_path, runner_study
):
    """The study registered with ANTs: with greedy chosen the widget registers afresh."""
    study = copy_study(runner_study, tmp_path / "study")
    viewer = make_napari_viewer()
    _scored_pair(viewer, qtbot, study)
    widget = open_tab(viewer, "Deformation")
    moving, fixed = widget.moving_combo.layer(), widget.fixed_combo.layer()
    assert widget.registration() == "ants" and widget.cached(moving, fixed) is not None
    widget.backend_combo.setCurrentText("greedy")
    assert widget.cached(moving, fixed) is None


@pytest.fixture
def pair_viewer(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    fixed = blob_image((16, 20, 16), seed=2)
    moving = np.roll(fixed, 2, axis=0)
    viewer.add_image(fixed, name="candidate", scale=SCALE, translate=TRANSLATE)
    viewer.add_image(moving, name="recon", scale=SCALE, translate=TRANSLATE)
    widget = open_tab(viewer, "Deformation")
    widget.moving_combo.choose("recon")
    widget.fixed_combo.choose("candidate")
    widget.preset_combo.setCurrentText("fast")
    return viewer, widget


@pytest.mark.slow
def test_registration_runs_in_a_worker_and_the_ui_stays_responsive(pair_viewer, qtbot):
    viewer, widget = pair_viewer
    job, ticks, seconds = ticks_while_running(qtbot, widget.run)
    assert job.error is None, job.error
    assert seconds > 1.0  # a real job, long enough to measure
    assert len(ticks) >= 0.5 * seconds / 0.05, (len(ticks), seconds)  # the event loop kept running
    layer = viewer.layers["displacement (mm)"]
    np.testing.assert_allclose(layer.scale, SCALE)
    np.testing.assert_allclose(layer.translate, TRANSLATE)
    assert layer.data.shape == viewer.layers["candidate"].data.shape
    # the map equals a fresh registration with the study's function, parameters and seed
    fixed, moving = (layer_volume(viewer.layers[n]) for n in ("candidate", "recon"))
    fresh = deformation(moving, fixed, preset="fast", cache=False, threads=1, seed=0, isolated=True)
    # inside the candidate's head (the preprocessing's rule: above half Otsu's threshold,
    # here with scikit-image) the map is the registration's; outside it is 0, transparent
    from skimage.filters import threshold_otsu

    head = fixed.array > threshold_otsu(fixed.array[fixed.array > 0]) * 0.5
    assert 0.05 < head.mean() < 0.9
    np.testing.assert_allclose(layer.data[head], fresh.magnitude.array[head], rtol=1e-5, atol=1e-5)
    # layers outside a study: the mean displacement over that head, as the label says
    mean = widget.result.mean_displacement_mm
    assert mean == pytest.approx(float(fresh.magnitude.array[head].mean()), rel=1e-4)
    assert f"mean displacement {mean:.2f} mm" in widget.result_label.text()
    assert (layer.data[~head] == 0).all() and (fresh.magnitude.array[~head] > 0).any()
    assert widget.legend.range[0] == 0.0 and widget.legend.range[1] > 0.0
    # screenshot: the magnitude map over the candidate is drawn and follows its opacity
    qtbot.wait(300)  # let the dock layout settle after the result text
    before = viewer.screenshot(canvas_only=True, flash=False, size=(300, 300))[..., :3].astype(int)
    assert before.std() > 5.0
    layer.opacity = 0.1
    qtbot.wait(100)
    after = viewer.screenshot(canvas_only=True, flash=False, size=(300, 300))[..., :3].astype(int)
    assert after.shape == before.shape and np.abs(before - after).mean() > 1.0


@pytest.mark.slow
def test_vectors_layer_shows_the_displacement_field(pair_viewer, qtbot):
    viewer, widget = pair_viewer
    widget.vectors_check.setChecked(True)
    widget.step_spin.setValue(2)
    job = widget.run()
    qtbot.waitUntil(lambda: not job.is_running, timeout=180000)
    assert job.error is None, job.error
    layer = viewer.layers["vectors"]
    assert layer._type_string == "vectors"
    np.testing.assert_allclose(layer.scale, SCALE)
    np.testing.assert_allclose(layer.translate, TRANSLATE)
    data = np.asarray(layer.data)
    assert data.ndim == 3 and data.shape[1:] == (2, 3) and len(data) > 10
    # every slice of the viewed axis holds vectors: the in-plane lattice on each slice
    fixed = viewer.layers["candidate"].data
    for order in ((0, 1, 2), (2, 0, 1)):
        viewer.dims.order = order
        sliced, shown = order[0], list(viewer.dims.displayed)
        data = np.asarray(layer.data)
        assert (data[:, 0, shown] % 2 == 0).all()  # in-plane every 2nd voxel
        slices = set(data[:, 0, sliced].astype(int))
        brain_slices = np.flatnonzero(
            (fixed > 0.3).any(axis=tuple(a for a in range(3) if a != sliced))
        )
        assert set(brain_slices) <= slices, sorted(set(brain_slices) - slices)
        assert any(k % 2 for k in slices) and any(k % 2 == 0 for k in slices)
    viewer.dims.order = (0, 1, 2)
    data = np.asarray(layer.data)
    # the reconstruction is the candidate rolled +2 voxels along axis 0: inside the head,
    # fixed points are found about 2 voxels further along axis 0 (vectors are in voxels)
    inside = viewer.layers["candidate"].data[tuple(data[:, 0].astype(int).T)] > 0.3
    mean = data[inside, 1].mean(axis=0)
    assert mean[0] > 1.0 and abs(mean[1]) < 0.5 and abs(mean[2]) < 0.5, mean


def test_backend_choice_defaults_to_ants_and_greedy_offers_fast_only(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = open_tab(viewer, "Deformation")

    def presets():
        return [widget.preset_combo.itemText(i) for i in range(widget.preset_combo.count())]

    assert widget.backend_combo.currentText() == "ANTs" and widget.registration() == "ants"
    assert presets() == ["fast", "paper"]
    widget.preset_combo.setCurrentText("paper")
    widget.backend_combo.setCurrentText("greedy")
    assert widget.registration() == "greedy" and presets() == ["fast"]
    widget.backend_combo.setCurrentText("ANTs")
    assert presets() == ["fast", "paper"] and widget.preset_combo.currentText() == "fast"


@pytest.mark.slow
def test_greedy_registration_in_the_widget(pair_viewer, qtbot):
    viewer, widget = pair_viewer
    widget.backend_combo.setCurrentText("greedy")
    job = widget.run()
    qtbot.waitUntil(lambda: not job.is_running, timeout=180000)
    assert job.error is None, job.error
    layer = viewer.layers["displacement (mm)"]
    fixed, moving = (layer_volume(viewer.layers[n]) for n in ("candidate", "recon"))
    fresh = deformation(
        moving, fixed, preset="fast", cache=False, threads=1, seed=0, registration="greedy"
    )
    inside = layer.data > 0
    assert inside.mean() > 0.05
    np.testing.assert_allclose(layer.data[inside], fresh.magnitude.array[inside], rtol=1e-5)
    assert "greedy preset fast" in widget.result_label.text()
