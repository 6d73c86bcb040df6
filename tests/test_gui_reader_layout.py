"""The reader-study case on screen, on a reader package made from the real runner's study
(``conftest.runner_study``): the case grid keeps at least 60% of a 1280x800 window, and in
every panel the title, the R/L/A/P letters and the slice position never overlap.

Overlap is measured on what is drawn: the canvas is rendered with one kind of text shown at
a time (titles, each edge's letters, the slice position; the others fully transparent, so
nothing moves), each kind's pixels are grouped into word boxes in canvas pixels, and no box
of one kind may meet a box of another.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_reader_layout.py -q``.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("pytestqt")

from inversion_audit.gui._orientation import OVERLAY_KEYS  # noqa: E402
from inversion_audit.reader_study import create_design, write_package  # noqa: E402

PLUGIN = "napari-inversion-audit"
N_CANDIDATES = 4  # a case: the reconstruction and candidates A-D, on a 2x3 grid
#: what the radiological axial view puts on each edge
RADIOLOGICAL = {"top": "A", "bottom": "P", "left": "R", "right": "L"}
#: pixels around a glyph that count as the text's: boxes closer than twice this meet
MARGIN = 3


@pytest.fixture
def package(tmp_path, runner_study) -> Path:
    """A reader package of the runner's study, as ``reader-study create`` writes it."""
    design = create_design(runner_study, ["alice"], n_candidates=N_CANDIDATES, seed=0)
    return write_package(tmp_path / "package", tmp_path / "key.sqlite", design, runner_study)


def _open_case(make_napari_viewer, qtbot, package: Path, size: tuple[int, int]):
    """A viewer of ``size`` with the reader-study widget docked, showing alice's first case."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*size)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Reader study")
    assert widget.open_database(str(package))
    assert widget.log_in("alice")
    assert widget.session.case.kind == "match"  # no quality-only cases in this design
    qtbot.waitUntil(lambda: len(viewer.layers) == N_CANDIDATES + 1, timeout=10000)
    qtbot.wait(300)  # the dock's move to the left column, the canvas's resize
    viewer.reset_view()
    qtbot.wait(100)
    return viewer, window, widget


def test_reader_case_keeps_60_percent_of_a_1280x800_window(make_napari_viewer, qtbot, package):
    from qtpy.QtWidgets import QDockWidget, QScrollArea

    viewer, window, widget = _open_case(make_napari_viewer, qtbot, package, (1280, 800))
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.waitUntil(lambda: canvas.width() >= 0.6 * 1280, timeout=5000)
    assert window.width() == 1280 and window.height() <= 800
    assert canvas.width() / window.width() >= 0.6, canvas.width()
    # the form sits beside napari's layer controls, raised, and fits the column's width
    dock = widget.parent()
    while not isinstance(dock, QDockWidget):
        dock = dock.parent()
    tabbed = [d.objectName() for d in window.tabifiedDockWidgets(dock)]
    assert tabbed == ["layer controls"]
    # the form never widens the column past what the canvas leaves (385 px measured at 1280)
    assert widget.isVisible() and widget.width() <= window.width() - canvas.width()
    assert not widget.findChild(QScrollArea).horizontalScrollBar().isVisible()
    for label in widget.session.case.labels:
        button = widget.match_buttons[label]
        assert button.isVisible() and button.width() >= 30, (label, button.width())
    assert widget.match_buttons["none"].isVisible()


def _render(viewer, qtbot) -> np.ndarray:
    qtbot.wait(50)
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(int)


def _word_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of each group of drawn pixels, grown by :data:`MARGIN`."""
    grown = ndimage.binary_dilation(mask, iterations=MARGIN)
    labels, _ = ndimage.label(grown)
    return [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels)]


def _meet(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("size", [(1280, 800), (960, 680)], ids=["1280x800", "960x680"])
def test_titles_letters_and_slice_text_never_overlap(make_napari_viewer, qtbot, package, size):
    viewer, _, _ = _open_case(make_napari_viewer, qtbot, package, size)
    overlays = viewer.canvas.overlays
    kinds = {"title": [layer.name_overlay for layer in viewer.layers]}
    kinds |= {edge: [overlays[OVERLAY_KEYS[edge]]] for edge in RADIOLOGICAL}
    kinds["slice"] = [overlays[OVERLAY_KEYS["slice"]]]
    for edge, letter in RADIOLOGICAL.items():  # the radiological axial view, letters shown
        assert overlays[OVERLAY_KEYS[edge]].visible
        assert overlays[OVERLAY_KEYS[edge]].text.strip() == letter
    assert "axial" in overlays[OVERLAY_KEYS["slice"]].text
    assert all(title.visible for title in kinds["title"])

    every = [overlay for group in kinds.values() for overlay in group]
    for overlay in every:
        overlay.opacity = 0.0
    blank = _render(viewer, qtbot)
    boxes = {}
    for kind, group in kinds.items():
        for overlay in group:
            overlay.opacity = 1.0
        drawn = np.abs(_render(viewer, qtbot) - blank).max(axis=-1) > 40
        for overlay in group:
            overlay.opacity = 0.0
        boxes[kind] = _word_boxes(drawn)
    for overlay in every:
        overlay.opacity = 1.0

    height, width = blank.shape[:2]
    rows, cols = viewer.canvas.grid.actual_shape(viewer.layers)
    assert (rows, cols) == (2, 3) and viewer.canvas.grid.spacing == 0
    panel_w, panel_h = width / cols, height / rows
    panels = len(viewer.layers)  # one image per panel; the last panel may stay empty
    assert len(boxes["title"]) >= panels, boxes["title"]  # one title (a word or more) each
    for edge in RADIOLOGICAL:  # one letter per panel, at the middle of that panel's edge
        assert len(boxes[edge]) == panels, (edge, boxes[edge])
        for x0, y0, x1, y1 in boxes[edge]:
            col, row = int((x0 + x1) / 2 // panel_w), int((y0 + y1) / 2 // panel_h)
            left, top = col * panel_w, row * panel_h
            cx, cy = (x0 + x1) / 2 - left, (y0 + y1) / 2 - top
            if edge in ("top", "bottom"):
                assert abs(cx - panel_w / 2) < 4, (edge, cx, panel_w)
                near = cy if edge == "top" else panel_h - cy
                assert near < 0.22 * panel_h, (edge, near, panel_h)
            else:
                assert abs(cy - panel_h / 2) < 4, (edge, cy, panel_h)
                near = cx if edge == "left" else panel_w - cx
                assert near < 0.2 * panel_w, (edge, near, panel_w)
    assert boxes["slice"] and all(y0 > height - 0.1 * height for _, y0, _, _ in boxes["slice"])
    for (kind_a, a_boxes), (kind_b, b_boxes) in combinations(boxes.items(), 2):
        for a in a_boxes:
            for b in b_boxes:
                assert not _meet(a, b), (kind_a, a, kind_b, b)
