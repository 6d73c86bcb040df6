"""Compare defaults that do not mislead the eye: no label tint, full-opacity titled panels,
a curtain across the slice shown, anatomical axis names.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_compare_defaults.py -q``.
"""

from __future__ import annotations

import numpy as np
import pytest

from inversion_audit.gui.review_panel import open_tab

pytest.importorskip("pytestqt")

PLUGIN = "napari-inversion-audit"


@pytest.fixture
def viewer_widget(make_napari_viewer):
    from inversion_audit.gui._layers import axial_view

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    original = rng.uniform(0.0, 0.4, (20, 22, 18)).astype(np.float32)
    recon = rng.uniform(0.6, 1.0, (20, 22, 18)).astype(np.float32)  # apart from the original
    viewer.add_image(original, name="original", scale=(2, 2, 2))
    viewer.add_image(recon, name="recon", scale=(2, 2, 2))
    viewer.add_labels((original > 0.2).astype(np.int32), name="labels", scale=(2, 2, 2))
    axial_view(viewer)
    widget = open_tab(viewer, "Compare")
    widget.original_combo.choose("original")
    widget.reconstruction_combo.choose("recon")
    return viewer, widget


def test_axes_are_named_by_anatomy(viewer_widget):
    _, widget = viewer_widget
    combo = widget.axis_combo
    names = [combo.itemText(i) for i in range(combo.count())]
    assert [n.split()[0] for n in names] == ["R–L", "A–P", "S–I"]


def test_side_by_side_full_opacity_titled_no_label_tint(viewer_widget):
    viewer, widget = viewer_widget
    widget.opacity_slider.setValue(30)
    widget.set_mode("overlay")
    assert not viewer.layers["labels"].visible
    assert viewer.layers["recon"].opacity == pytest.approx(0.3)
    widget.set_mode("side by side")
    for name in ("original", "recon"):
        layer = viewer.layers[name]
        assert layer.opacity == 1.0 and layer.visible and layer.name_overlay.visible
    assert not viewer.layers["labels"].visible
    widget.set_mode("overlay")
    assert not viewer.layers["recon"].name_overlay.visible


def test_curtain_cuts_across_the_axial_slice_shown(viewer_widget):
    viewer, widget = viewer_widget
    assert tuple(viewer.dims.displayed) == (1, 0)  # axial: S-I is the sliced axis
    widget.axis_combo.setCurrentIndex(2)  # S-I would show one image per slice
    widget.set_mode("curtain")
    cut = viewer.layers["curtain"].data
    z = int(viewer.dims.current_step[2])
    shown = cut[:, :, z]
    assert (shown <= 0.4).any() and (shown >= 0.6).any()  # both images on the slice on screen
    assert widget.axis_combo.currentIndex() in viewer.dims.displayed
