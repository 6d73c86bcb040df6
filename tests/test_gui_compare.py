"""Compare widget: views, difference and SSIM-map layers, global scores, screenshots.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_compare.py -q``.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gui_fakes import blob_image
from inversion_audit.gui._compute import checkerboard, curtain
from inversion_audit.gui.review_panel import open_tab

PLUGIN = "napari-inversion-audit"
SCALE = (2.0, 2.0, 2.5)
TRANSLATE = (-30.0, -20.0, -10.0)


def test_checkerboard_and_curtain_take_each_tile_from_one_image():
    a, b = np.zeros((8, 8, 8), np.float32), np.ones((8, 8, 8), np.float32)
    board = checkerboard(a, b, 4)
    assert (
        board[0, 0, 0] == 0 and board[4, 0, 0] == 1 and board[4, 4, 0] == 0 and board[4, 4, 4] == 1
    )
    assert board.mean() == pytest.approx(0.5)
    cut = curtain(a, b, axis=2, fraction=0.25)
    assert (cut[..., :2] == 0).all() and (cut[..., 2:] == 1).all()


def screenshot(viewer, qtbot) -> np.ndarray:
    """The rendered canvas (RGB) once pending layout and paint events are processed."""
    qtbot.wait(100)
    return viewer.screenshot(canvas_only=True, flash=False, size=(300, 300))[..., :3].astype(int)


@pytest.fixture
def pair_viewer(make_napari_viewer):
    from scipy.ndimage import gaussian_filter

    viewer = make_napari_viewer(show=True)  # a hidden canvas is not rendered
    original = blob_image((24, 24, 20), seed=5)
    recon = np.clip(
        gaussian_filter(original, 1.5) + np.random.default_rng(0).normal(0, 0.05, original.shape),
        0,
        1,
    )
    viewer.add_image(original, name="original", scale=SCALE, translate=TRANSLATE)
    viewer.add_image(recon.astype(np.float32), name="recon", scale=SCALE, translate=TRANSLATE)
    widget = open_tab(viewer, "Compare")
    widget.original_combo.choose("original")
    widget.reconstruction_combo.choose("recon")
    return viewer, widget


def _compute(qtbot, widget):
    job = widget.compute()
    assert job is not None
    qtbot.waitUntil(lambda: not job.is_running, timeout=30000)
    assert job.error is None
    return job


def test_difference_and_ssim_map_layers_with_scores(pair_viewer, qtbot):
    viewer, widget = pair_viewer
    _compute(qtbot, widget)
    a, b = viewer.layers["original"].data, viewer.layers["recon"].data
    diff = viewer.layers["difference"]
    smap = viewer.layers["SSIM map"]
    for layer in (diff, smap):
        np.testing.assert_allclose(layer.scale, SCALE)
        np.testing.assert_allclose(layer.translate, TRANSLATE)
    np.testing.assert_allclose(diff.data, b - a, atol=1e-6)
    low, high = diff.contrast_limits
    assert low == pytest.approx(-high) and high == pytest.approx(
        np.percentile(np.abs(b - a), 99.5), rel=1e-5
    )
    assert smap.contrast_limits[1] == 1.0 and smap.contrast_limits[0] < 1.0
    # independent references: scikit-image with the study's SSIM settings, numpy's Pearson r
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    expected = structural_similarity(
        b64, a64, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert widget.comparison.ssim == pytest.approx(expected, rel=1e-5)
    r = np.corrcoef(b64.ravel(), a64.ravel())[0, 1]
    assert widget.comparison.correlation == pytest.approx(r, rel=1e-5)
    assert widget.comparison.psnr == pytest.approx(
        peak_signal_noise_ratio(a64, b64, data_range=1.0), rel=1e-5
    )
    assert f"SSIM {expected:.3f}" in widget.metrics_label.text()
    assert widget.difference_legend.range == pytest.approx((low, high))


def test_reconstruction_on_another_grid_is_resampled_onto_the_original(pair_viewer, qtbot):
    viewer, widget = pair_viewer
    coarse = viewer.layers["recon"].data[::2, ::2, ::2]
    viewer.add_image(coarse, name="coarse", scale=tuple(2 * s for s in SCALE), translate=TRANSLATE)
    widget.reconstruction_combo.choose("coarse")
    _compute(qtbot, widget)
    assert viewer.layers["difference"].data.shape == viewer.layers["original"].data.shape


def test_view_modes(pair_viewer):
    viewer, widget = pair_viewer
    widget.set_mode("side by side")
    assert viewer.canvas.grid.enabled
    assert {layer.name for layer in viewer.layers if layer.visible} == {"original", "recon"}
    widget.set_mode("checkerboard")
    assert not viewer.canvas.grid.enabled
    board = viewer.layers["checkerboard"]
    tile = widget.tile_slider.value()
    a, b = viewer.layers["original"].data, viewer.layers["recon"].data
    assert board.data[0, 0, 0] == a[0, 0, 0] and board.data[tile, 0, 0] == b[tile, 0, 0]
    np.testing.assert_allclose(board.scale, SCALE)
    widget.set_mode("curtain")
    curtain_layer = viewer.layers["curtain"]  # the same layer, reused by the next view
    assert curtain_layer is board and curtain_layer.visible and "checkerboard" not in viewer.layers
    widget.set_mode("overlay")
    assert viewer.layers.index("recon") > viewer.layers.index("original")
    widget.opacity_slider.setValue(30)
    assert viewer.layers["recon"].opacity == pytest.approx(0.3)
    widget.blending_combo.setCurrentText("additive")
    assert str(viewer.layers["recon"].blending) == "additive"


def test_screenshot_overlay_changes_with_opacity(pair_viewer, qtbot):
    viewer, widget = pair_viewer
    viewer.layers["recon"].colormap = "magenta"  # tell the overlay apart from the original
    widget.set_mode("overlay")
    widget.opacity_slider.setValue(100)
    opaque = screenshot(viewer, qtbot)
    assert opaque.std() > 5.0  # not a blank canvas
    widget.opacity_slider.setValue(10)
    faint = screenshot(viewer, qtbot)
    assert faint.shape == opaque.shape
    assert np.abs(opaque - faint).mean() > 1.0


def test_screenshot_of_the_ssim_map_is_not_blank(pair_viewer, qtbot):
    viewer, widget = pair_viewer
    _compute(qtbot, widget)
    for layer in viewer.layers:
        layer.visible = layer.name == "SSIM map"
    assert screenshot(viewer, qtbot).std() > 5.0
