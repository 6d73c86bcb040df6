"""Orientation as radiologists expect, on a study made by the real runner
(``conftest.runner_study``): axial first, radiological convention, edge letters that follow
the view, the slice position in mm.

Volumes: the study's original and reconstruction as the Study tab loads them (an RAS
volume), and the study's original resaved in LPS orientation (voxel axes 0 and 1 flipped,
the affine adjusted by nibabel) and shown three ways: opened through the plugin's reader (as
File › Open does), given to napari as its affine, or with the affine in metadata only (the
napari world then is the file's own voxel axes).

Expected letters are computed independently of the helper under test: each voxel axis's
anatomical direction from ``nibabel.aff2axcodes`` on the file's affine, and where a step along
that axis goes on the canvas from vispy's scene-to-canvas transform.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_orientation.py -q``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import aff2axcodes, axcodes2ornt, io_orientation, ornt_transform

pytest.importorskip("pytestqt")

FLIP = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
EDGES = ("top_center", "bottom_center", "middle_left", "middle_right")
RADIOLOGICAL = {"top_center": "A", "bottom_center": "P", "middle_left": "R", "middle_right": "L"}
PLUGIN = "napari-inversion-audit"


@dataclass
class Shown:
    """A volume file as shown: its layer, its NIfTI affine and data (the expected letters
    come from these), and how a voxel of the file maps to the napari world."""

    layer: object
    affine: np.ndarray
    data: np.ndarray
    world_is_ras: bool  # True: the napari world is RAS mm; False: the layer's own world

    def world(self, voxel) -> np.ndarray:
        """The napari world position of the file's voxel ``voxel``."""
        if self.world_is_ras:
            return (self.affine @ np.append(np.asarray(voxel, float), 1.0))[:3]
        return np.asarray(self.layer.data_to_world(np.asarray(voxel, float)), float)


def _viewer(make_napari_viewer):
    from inversion_audit.gui._state import state_for

    viewer = make_napari_viewer()
    state_for(viewer)  # what every plugin widget does first: installs the orientation overlays
    return viewer


def _original_file(study: Path) -> Path:
    from inversion_audit.study.index import StudyIndex

    index = StudyIndex(study)
    entry = index.entries[0]
    return index.candidate_file(entry.variant, entry.reconstruction_id)


def _lps_file(study: Path, folder: Path) -> Path:
    """The study's original resaved with LPS voxel axes (data flipped along axes 0 and 1)."""
    img = nib.load(_original_file(study))
    assert aff2axcodes(img.affine) == ("R", "A", "S")
    lps = img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt("LPS")))
    assert aff2axcodes(lps.affine) == ("L", "P", "S")
    assert np.array_equal(np.asarray(lps.dataobj), np.asarray(img.dataobj)[::-1, ::-1, :])
    path = folder / "original_LPS.nii.gz"
    nib.save(lps, path)
    return path


def _show(viewer, qtbot, study: Path, folder: Path, how: str) -> Shown:
    """Show a volume of the runner's study as ``how`` says; return what the test needs."""
    if how == "study":  # the selected reconstruction's layers, as the Study tab loads them
        from inversion_audit.gui._blinding import show_entry_layers
        from inversion_audit.gui._compute import load_entry_layers
        from inversion_audit.study.index import StudyIndex

        index = StudyIndex(study)
        roles = show_entry_layers(viewer, index, load_entry_layers(index, index.entries[0]))
        layer = viewer.layers[roles["original"]]
        path = _original_file(study)
    else:
        path = _lps_file(study, folder)
        img = nib.load(path)
        data = np.asarray(img.dataobj)
        zooms = np.asarray(img.header.get_zooms()[:3], float)
        if how == "plugin":  # File › Open: the plugin's reader, then its axial view
            (layer,) = viewer.open(str(path), plugin=PLUGIN)
            qtbot.wait(50)
        elif how == "napari":
            layer = viewer.add_image(data, name="mr", affine=img.affine)
        else:
            layer = viewer.add_image(data, name="mr", scale=zooms, metadata={"affine": img.affine})
    img = nib.load(path)
    shown = Shown(layer, img.affine, np.asarray(img.dataobj), how in ("study", "plugin"))
    _check_placement(shown)
    return shown


def _check_placement(shown: Shown) -> None:
    """The world position the test expects a file voxel at holds that voxel's value."""
    layer = shown.layer
    for voxel in [(3, 5, 7), (20, 9, 14), (11, 25, 2)]:
        at = np.round(np.asarray(layer.world_to_data(shown.world(voxel)), float)).astype(int)
        assert float(np.asarray(layer.data)[tuple(at)]) == pytest.approx(
            float(shown.data[voxel]), rel=1e-5, abs=1e-5
        )


def _canvas_xy(viewer, world) -> np.ndarray:
    """Canvas pixel (x right, y down) of a world point (displayed axes only)."""
    view = viewer.window._qt_viewer.canvas.view
    displayed = [world[d] for d in viewer.dims.displayed]
    mapped = np.asarray((view.transform * view.scene.transform).map(displayed[::-1]))
    return mapped[:2] / mapped[3]


def _expected(viewer, shown: Shown) -> dict[str, str]:
    """Edge -> letter: each file voxel axis's direction (nibabel) put where its step shows up;
    also checks that the one axis with no step on screen is the sliced one."""
    centre = (np.asarray(shown.data.shape) - 1) / 2
    origin = _canvas_xy(viewer, shown.world(centre))
    out, sliced = {}, []
    for axis, code in enumerate(aff2axcodes(shown.affine)):
        step = _canvas_xy(viewer, shown.world(centre + np.eye(3)[axis])) - origin
        norm = np.linalg.norm(step)
        if norm < 1e-6:
            sliced.append(code)
            continue
        dx, dy = step / norm
        if abs(dx) > 0.9:
            out["middle_right" if dx > 0 else "middle_left"] = code
            out["middle_left" if dx > 0 else "middle_right"] = FLIP[code]
        elif abs(dy) > 0.9:
            out["bottom_center" if dy > 0 else "top_center"] = code
            out["top_center" if dy > 0 else "bottom_center"] = FLIP[code]
    if viewer.dims.ndisplay == 2:
        assert len(sliced) == 1
    return out


def _shown(viewer) -> dict[str, str]:
    """The letters of the visible text overlays at the canvas edges, by position (each
    letter may be moved in from its edge by blank lines)."""
    from napari.components.overlays import TextOverlay

    return {
        str(overlay.position): overlay.text.strip()
        for overlay in viewer.canvas.overlays.values()
        if isinstance(overlay, TextOverlay)
        and overlay.visible
        and overlay.text.strip()
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


HOWS = ["study", "plugin", "napari", "metadata"]
IDS = ["RAS-study", "LPS-plugin", "LPS-napari", "LPS-metadata-world"]


@pytest.mark.parametrize("how", HOWS, ids=IDS)
def test_new_volume_is_axial_anterior_up_right_on_left(
    make_napari_viewer, qtbot, tmp_path, runner_study, how
):
    viewer = _viewer(make_napari_viewer)
    shown = _show(viewer, qtbot, runner_study, tmp_path, how)
    assert viewer.dims.ndisplay == 2
    # the slider moves along the file's superior-inferior voxel axis: an axial slice
    assert viewer.dims.not_displayed == (aff2axcodes(shown.affine).index("S"),)
    expected = _expected(viewer, shown)
    assert expected == RADIOLOGICAL  # what napari draws: anterior up, patient's right left
    assert _shown(viewer) == expected


@pytest.mark.parametrize("how", HOWS, ids=IDS)
def test_letters_follow_dims_order_and_camera_flips(
    make_napari_viewer, qtbot, tmp_path, runner_study, how
):
    viewer = _viewer(make_napari_viewer)
    shown = _show(viewer, qtbot, runner_study, tmp_path, how)
    camera = viewer.scene.camera
    seen = set()
    for order in [(1, 2, 0), (0, 2, 1), (2, 0, 1)]:  # coronal, sagittal, axial transposed
        viewer.dims.order = order
        for flip in [("down", "right"), ("up", "right"), ("down", "left")]:
            camera.orientation2d = flip
            expected = _expected(viewer, shown)
            assert len(expected) == 4
            assert _shown(viewer) == expected, (order, flip)
            seen.add(tuple(sorted(expected.items())))
    viewer.dims.roll()
    assert _shown(viewer) == _expected(viewer, shown)
    assert len(seen) == 9  # every view put other letters on the edges
    letters = {letter for view in seen for _, letter in view}
    assert letters == set("RLAPSI")


def test_letters_follow_a_3d_camera(make_napari_viewer, qtbot, tmp_path, runner_study):
    viewer = _viewer(make_napari_viewer)
    shown = _show(viewer, qtbot, runner_study, tmp_path, "napari")  # LPS voxels, RAS world
    viewer.dims.ndisplay = 3
    camera = viewer.scene.camera
    for view, up in [((1, 0, 0), (0, -1, 0)), ((0, 1, 0), (-1, 0, 0)), ((0, 0, -1), (1, 0, 0))]:
        camera.set_view_direction(view, up)
        expected = _expected(viewer, shown)
        assert len(expected) == 4
        assert _shown(viewer) == expected, (view, up)


def test_a_later_volume_keeps_the_users_view(make_napari_viewer, qtbot, tmp_path, runner_study):
    viewer = _viewer(make_napari_viewer)
    _show(viewer, qtbot, runner_study, tmp_path, "study")
    viewer.dims.order = (1, 2, 0)  # the user looks at coronal slices
    lps = _lps_file(runner_study, tmp_path)
    img = nib.load(lps)
    viewer.add_image(np.asarray(img.dataobj), name="second", affine=img.affine)
    assert tuple(viewer.dims.order) == (1, 2, 0)
    assert set(_shown(viewer).values()) == set("RLSI")


@pytest.mark.parametrize(
    ("how", "order", "step", "plane"),
    [
        ("study", (2, 1, 0), 11, "axial"),
        ("napari", (1, 2, 0), 11, "coronal"),
        ("metadata", (0, 2, 1), 5, "sagittal"),
    ],
    ids=["RAS-study-axial", "LPS-coronal", "LPS-metadata-sagittal"],
)
def test_slice_position_is_shown_in_mm(
    make_napari_viewer, qtbot, tmp_path, runner_study, how, order, step, plane
):
    viewer = _viewer(make_napari_viewer)
    shown = _show(viewer, qtbot, runner_study, tmp_path, how)
    layer = shown.layer
    viewer.dims.order = order
    sliced = viewer.dims.not_displayed[0]
    voxel = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    voxel[sliced] = step
    viewer.dims.set_point(sliced, layer.data_to_world(voxel)[sliced])
    # the file voxel now shown, and its RAS position by the file's affine
    shown_voxel = np.round(np.asarray(layer.world_to_data(viewer.dims.point), float))
    ras = shown.affine @ np.append(shown_voxel, 1.0)
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    assert _slice_overlay_text(viewer) == f"{plane}  {'xyz'[axis]} = {ras[axis]:.1f} mm"
    # the slider names its anatomical axis, never napari's "-1"
    names = {0: "R–L (x)", 1: "A–P (y)", 2: "S–I (z)"}
    slider = viewer.window._qt_viewer.dims.slider_widgets[sliced]
    assert slider.axis_label.text() == names[axis]
    assert all(not label.lstrip("-").isdigit() for label in viewer.dims.axis_labels)
