"""Orientation as radiologists expect: axial first, radiological convention, edge letters
that follow the view, the slice position in mm.

Expected letters are computed independently: each voxel axis's anatomical direction from
``nibabel.aff2axcodes`` on the volume's affine, and where a step along that axis goes on the
canvas from vispy's scene-to-canvas transform.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_orientation.py -q``.
"""

from __future__ import annotations

import numpy as np
import pytest
from nibabel.orientations import aff2axcodes

pytest.importorskip("pytestqt")

RAS = np.diag([2.0, 2.0, 2.0, 1.0])
LPS = np.diag([-2.0, -2.0, 2.0, 1.0])
FLIP = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
EDGES = ("top_center", "bottom_center", "middle_left", "middle_right")
SHAPE = (16, 16, 16)


def _volume() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


def _viewer(make_napari_viewer):
    from inversion_audit.gui._state import state_for

    viewer = make_napari_viewer()
    state_for(viewer)  # what every plugin widget does first: installs the orientation overlays
    return viewer


def _add(viewer, affine: np.ndarray, how: str):
    """A 16^3 MR volume added as the plugin adds it, as a plain napari affine, or with the
    NIfTI affine in metadata only (the napari world then is the volume's own axes)."""
    from inversion_audit.gui._layers import volume_layer_kwargs
    from inversion_audit.io import Volume

    if how == "plugin":
        return viewer.add_image(_volume(), **volume_layer_kwargs(Volume(_volume(), affine), "mr"))
    if how == "napari":
        return viewer.add_image(_volume(), name="mr", affine=affine)
    scale = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return viewer.add_image(_volume(), name="mr", scale=scale, metadata={"affine": affine})


def _canvas_xy(viewer, world) -> np.ndarray:
    """Canvas pixel (x right, y down) of a world point (displayed axes only)."""
    view = viewer.window._qt_viewer.canvas.view
    displayed = [world[d] for d in viewer.dims.displayed]
    mapped = np.asarray((view.transform * view.scene.transform).map(displayed[::-1]))
    return mapped[:2] / mapped[3]


def _expected(viewer, layer, affine) -> dict[str, str]:
    """Edge -> letter: each voxel axis's direction (nibabel) put where its step shows up."""
    centre = (np.asarray(SHAPE) - 1) / 2
    origin = _canvas_xy(viewer, layer.data_to_world(centre))
    out = {}
    for axis, code in enumerate(aff2axcodes(affine)):
        step = _canvas_xy(viewer, layer.data_to_world(centre + np.eye(3)[axis])) - origin
        norm = np.linalg.norm(step)
        if norm < 1e-6:
            continue  # the sliced axis
        dx, dy = step / norm
        if abs(dx) > 0.9:
            out["middle_right" if dx > 0 else "middle_left"] = code
            out["middle_left" if dx > 0 else "middle_right"] = FLIP[code]
        elif abs(dy) > 0.9:
            out["bottom_center" if dy > 0 else "top_center"] = code
            out["top_center" if dy > 0 else "bottom_center"] = FLIP[code]
    return out


def _shown(viewer) -> dict[str, str]:
    """The visible text overlays at the canvas edges, by position."""
    from napari.components.overlays import TextOverlay

    return {
        str(overlay.position): overlay.text
        for overlay in viewer.canvas.overlays.values()
        if isinstance(overlay, TextOverlay)
        and overlay.visible
        and overlay.text
        and str(overlay.position) in EDGES
    }


def _slice_overlay_text(viewer) -> str:
    from napari.components.overlays import TextOverlay

    texts = [
        overlay.text
        for overlay in viewer.canvas.overlays.values()
        if isinstance(overlay, TextOverlay) and overlay.visible and "mm" in overlay.text
    ]
    assert len(texts) == 1, texts
    return texts[0]


RADIOLOGICAL = {"top_center": "A", "bottom_center": "P", "middle_left": "R", "middle_right": "L"}
CASES = [(RAS, "plugin"), (LPS, "plugin"), (LPS, "napari"), (LPS, "metadata")]
IDS = ["RAS", "LPS-plugin", "LPS-napari", "LPS-metadata-world"]


@pytest.mark.parametrize(("affine", "how"), CASES, ids=IDS)
def test_new_volume_is_axial_anterior_up_right_on_left(make_napari_viewer, affine, how):
    viewer = _viewer(make_napari_viewer)
    layer = _add(viewer, affine, how)
    codes = aff2axcodes(affine)
    assert viewer.dims.ndisplay == 2
    # the slider moves along the voxel axis that runs superior-inferior: an axial slice
    assert viewer.dims.not_displayed == (codes.index("S"),)
    expected = _expected(viewer, layer, affine)
    assert expected == RADIOLOGICAL  # what napari draws: anterior up, patient's right left
    assert _shown(viewer) == expected


@pytest.mark.parametrize(("affine", "how"), CASES, ids=IDS)
def test_letters_follow_dims_order_and_camera_flips(make_napari_viewer, affine, how):
    viewer = _viewer(make_napari_viewer)
    layer = _add(viewer, affine, how)
    camera = viewer.scene.camera
    seen = set()
    for order in [(1, 2, 0), (0, 2, 1), (2, 0, 1)]:  # coronal, sagittal, axial transposed
        viewer.dims.order = order
        for flip in [("down", "right"), ("up", "right"), ("down", "left")]:
            camera.orientation2d = flip
            expected = _expected(viewer, layer, affine)
            assert len(expected) == 4
            assert _shown(viewer) == expected, (order, flip)
            seen.add(tuple(sorted(expected.items())))
    viewer.dims.roll()
    assert _shown(viewer) == _expected(viewer, layer, affine)
    assert len(seen) == 9  # every view put other letters on the edges
    letters = {letter for view in seen for _, letter in view}
    assert letters == set("RLAPSI")


def test_letters_follow_a_3d_camera(make_napari_viewer):
    viewer = _viewer(make_napari_viewer)
    layer = _add(viewer, LPS, "plugin")
    viewer.dims.ndisplay = 3
    camera = viewer.scene.camera
    for view, up in [((1, 0, 0), (0, -1, 0)), ((0, 1, 0), (-1, 0, 0)), ((0, 0, -1), (1, 0, 0))]:
        camera.set_view_direction(view, up)
        expected = _expected(viewer, layer, LPS)
        assert len(expected) == 4
        assert _shown(viewer) == expected, (view, up)


def test_a_later_volume_keeps_the_users_view(make_napari_viewer):
    viewer = _viewer(make_napari_viewer)
    _add(viewer, RAS, "plugin")
    viewer.dims.order = (1, 2, 0)  # the user looks at coronal slices
    viewer.add_image(_volume(), name="second", scale=(2, 2, 2))
    assert tuple(viewer.dims.order) == (1, 2, 0)
    assert set(_shown(viewer).values()) == set("RLSI")


@pytest.mark.parametrize(
    ("affine", "how", "order", "step", "text"),
    [
        (RAS, "plugin", (2, 1, 0), 11, "axial  z = 12.0 mm"),
        (LPS, "napari", (1, 2, 0), 11, "coronal  y = -22.0 mm"),
        (LPS, "metadata", (0, 2, 1), 5, "sagittal  x = -10.0 mm"),
    ],
    ids=["RAS-axial", "LPS-coronal", "LPS-metadata-sagittal"],
)
def test_slice_position_is_shown_in_mm(make_napari_viewer, affine, how, order, step, text):
    viewer = _viewer(make_napari_viewer)
    affine = affine.copy()
    affine[:3, 3] = (0.0, 0.0, -10.0)
    layer = _add(viewer, affine, how)
    viewer.dims.order = order
    sliced = viewer.dims.not_displayed[0]
    voxel = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    voxel[sliced] = step
    viewer.dims.set_point(sliced, layer.data_to_world(voxel)[sliced])
    ras = affine @ np.append(np.round(layer.world_to_data(viewer.dims.point)), 1.0)
    assert ras["xyz".index(text.split()[1])] == pytest.approx(float(text.split()[3]))
    assert _slice_overlay_text(viewer) == text
    # the slider names its anatomical axis, never napari's "-1"
    names = {"x": "R–L (x)", "y": "A–P (y)", "z": "S–I (z)"}
    slider = viewer.window._qt_viewer.dims.slider_widgets[sliced]
    assert slider.axis_label.text() == names[text.split()[1]]
    assert all(not label.lstrip("-").isdigit() for label in viewer.dims.axis_labels)
