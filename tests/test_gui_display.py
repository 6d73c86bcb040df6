"""One display rule in the Review panel, on a study made by the real runner: one window per
comparison with at most 1% of brain voxels clipped, the opacity and blending the Compare tab
shows, one layer per Compare view, titles only in grid panels, short layer names that leave
the canvas 60% of a 1280-px window, and the Reconstruct tab saying why it has no checkpoints.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_display.py -q``.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gui_fakes import copy_study
from inversion_audit.gui._display import comparison_window
from inversion_audit.gui.review_panel import open_review

pytest.importorskip("pytestqt")

SUBJECT = "sub-001"


@pytest.fixture
def study(tmp_path, runner_study):
    return copy_study(runner_study, tmp_path / "study")


def _wait(qtbot, job):
    if job is not None:
        qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
        assert job.error is None, job.error


def _open(viewer, qtbot, study, subject=SUBJECT):
    panel = open_review(viewer)
    opener = panel.pages["Study"]
    index = opener.open_study(study.root)
    entry = index.search(subject)[0]
    _wait(qtbot, opener.select(entry))
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    return panel, index, entry


def _clipped(data, brain, limits) -> float:
    values = np.asarray(data)[brain]
    return float(((values < limits[0]) | (values > limits[1])).mean())


def _shares_one_window(layers, brain):
    limits = tuple(layers[0].contrast_limits)
    for layer in layers:
        assert tuple(layer.contrast_limits) == pytest.approx(limits)
        assert _clipped(layer.data, brain, limits) <= 0.01, layer.name
    return limits


def test_one_window_and_the_opacity_the_compare_tab_shows(make_napari_viewer, qtbot, study):
    viewer = make_napari_viewer()
    panel, index, entry = _open(viewer, qtbot, study)
    compare, candidates = panel.pages["Compare"], panel.pages["Candidates"]
    original, recon = viewer.layers["original"], viewer.layers["recon"]

    # first view: one window for original and reconstruction; the overlay the tab shows
    _shares_one_window([original, recon], np.asarray(original.data) != 0)
    assert compare.mode_combo.currentText() == "overlay"
    assert recon.opacity == pytest.approx(compare.opacity_slider.value() / 100)
    assert str(recon.blending) == compare.blending_combo.currentText()
    assert f"{compare.opacity_slider.value()}%" == compare.opacity_label.text()
    assert not any(la.name_overlay.visible for la in viewer.layers)  # one view, no titles

    for blinded in (False, True):
        candidates.blinded_check.setChecked(blinded)
        _wait(qtbot, candidates.panel.job)
        for row in range(3):
            _wait(qtbot, candidates.select_row(row))
            recon = viewer.layers["recon"]
            cand = viewer.layers[candidates.state.candidate_layer]
            brain = np.asarray(cand.data) != 0
            lo, hi = _shares_one_window([recon, cand], brain)
            # numpy's percentiles of the candidate's brain lie inside the window
            p_lo, p_hi = np.percentile(np.asarray(cand.data)[brain], (0.5, 99.5))
            assert lo <= p_lo and hi >= p_hi
            assert hi <= float(np.asarray(cand.data).max()) + 1e-6 or hi <= 1.0
            # the grid shows both whole, and the Compare tab says so
            assert recon.opacity == cand.opacity == 1.0
            assert compare.mode_combo.currentText() == "side by side"
            assert compare.opacity_label.text() == "100%"
            assert not compare.opacity_slider.isEnabled()
            titled = {la.name for la in viewer.layers if la.name_overlay.visible}
            assert titled == {recon.name, cand.name}
            assert max(len(name) for name in titled) <= 8

    candidates.blinded_check.setChecked(False)
    _wait(qtbot, candidates.panel.job)
    qtbot.waitUntil(lambda: candidates.state.original_layer is not None, timeout=15000)
    compare.set_mode("overlay")
    recon = viewer.layers["recon"]
    assert recon.opacity == pytest.approx(compare.opacity_slider.value() / 100)
    assert not any(la.name_overlay.visible for la in viewer.layers)


def test_comparison_window_against_numpy_percentiles():
    rng = np.random.default_rng(0)
    brain = np.zeros((20, 20, 20), bool)
    brain[4:16, 4:16, 4:16] = True
    bright = np.where(brain, rng.uniform(0.3, 1.0, brain.shape), 0).astype(np.float32)
    dim = np.where(brain, rng.uniform(0.1, 0.6, brain.shape), 0).astype(np.float32)
    lo, hi = comparison_window([bright, dim], reference=bright)
    for image in (bright, dim):
        assert _clipped(image, brain, (lo, hi)) <= 0.01
    assert lo <= np.percentile(dim[brain], 0.5) and hi >= np.percentile(bright[brain], 99.5)
    assert hi <= bright.max() and lo >= dim[brain].min()


def test_each_compare_view_reuses_its_layer(make_napari_viewer, qtbot, study):
    viewer = make_napari_viewer()
    panel, _, _ = _open(viewer, qtbot, study)
    compare = panel.pages["Compare"]
    base = {la.name for la in viewer.layers}
    for _ in range(2):
        for mode in ("overlay", "side by side", "checkerboard", "curtain"):
            compare.set_mode(mode)
        _wait(qtbot, compare.compute())
    names = [la.name for la in viewer.layers]
    assert len(names) == len(set(names)) == len(base) + 3, names  # view, difference, SSIM map
    assert set(names) - base == {"curtain", "difference", "SSIM map"}
    compare.set_mode("checkerboard")
    assert "checkerboard" in viewer.layers and "curtain" not in viewer.layers
    composite = viewer.layers["checkerboard"]
    assert tuple(composite.contrast_limits) == pytest.approx(
        tuple(viewer.layers["original"].contrast_limits)
    )


def test_canvas_keeps_60_percent_of_a_1280_window(make_napari_viewer, qtbot, study):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 800)
    panel, _, _ = _open(viewer, qtbot, study)
    qtbot.wait(200)
    assert panel.isVisible()
    canvas = viewer.window._qt_viewer.canvas.native
    assert window.width() == 1280
    assert canvas.width() >= 0.6 * 1280, canvas.width()
    for layer in viewer.layers:
        assert len(layer.name) <= 8
        assert "title" in layer.metadata["inversion_audit"]  # the details


def test_reconstruct_tab_says_why_it_has_no_checkpoints(make_napari_viewer, qtbot, study):
    run_dir = sorted((study.root / "checkpoints").glob("*_bottleneck"))[0]
    shutil.rmtree(run_dir / "fold1")  # as a study that kept fold 0's checkpoints only
    viewer = make_napari_viewer()
    panel = open_review(viewer)
    opener, recon = panel.pages["Study"], panel.pages["Reconstruct"]
    index = opener.open_study(study.root)
    removed = next(e for e in index.entries if e.fold == 1 and e.run == run_dir.name)
    kept = next(e for e in index.entries if e.fold == 0 and e.run == run_dir.name)
    _wait(qtbot, opener.select(kept))
    assert recon.inversion_edit.text() and not recon.note.isVisibleTo(recon)
    _wait(qtbot, opener.select(removed))
    qtbot.waitUntil(lambda: opener.state.entry == removed, timeout=15000)
    assert recon.inversion_edit.text() == "" and recon.target_edit.text() == ""
    assert "No checkpoints for fold 1 in this study: only fold 0's were kept" in recon.note.text()
    assert recon.note.isVisibleTo(recon)
