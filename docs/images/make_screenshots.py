"""Make every screenshot of the user guide and of docs/reader-study.md from real napari.

Usage (the demo study by default)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/images/make_screenshots.py [STUDY]

Writes, in a 1280x800 window with the Review panel docked: ``docs/images/review.png`` (the
Study tab after selecting a reconstruction), ``docs/images/compare.png`` (Compare tab, side
by side with the difference map), ``docs/images/candidates.png`` (Candidates tab, a candidate
beside the reconstruction), and ``docs/images/reader-case.png`` (a blinded reader-study case
grid; the design is created in a temporary folder with ``create_design``, as
``inversion-audit reader-study create`` does).

napari runs on a fresh settings file in a temporary folder (``NAPARI_CONFIG``), so the dock
positions and window size a user's napari remembers do not change the pictures. Both docks
join napari's left column beside the layer controls; each picture is taken once the canvas
has at least 60% of the window's width.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

# before napari reads its settings: a fresh file, not the user's remembered docks
os.environ["NAPARI_CONFIG"] = str(Path(tempfile.mkdtemp()) / "settings.yaml")

import napari  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from inversion_audit.gui.demo_study import demo_study_dir  # noqa: E402

PLUGIN = "napari-inversion-audit"
OUT = Path(__file__).resolve().parent
#: the window of every picture, and the least share of its width the canvas keeps
SIZE, CANVAS_SHARE = (1280, 800), 0.6


def wait(condition, timeout: float = 600.0) -> None:
    """Process Qt events until ``condition()`` holds (a script, so no qtbot)."""
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("timed out waiting for the GUI")
        QApplication.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 1.0) -> None:
    """Let pending layout and paint events run."""
    end = time.perf_counter() + seconds
    wait(lambda: time.perf_counter() > end)


def wide_canvas(viewer) -> None:
    """Wait until the dock has joined the left column: the canvas has its share."""
    canvas = viewer.window._qt_viewer.canvas.native
    wait(lambda: canvas.width() >= CANVAS_SHARE * SIZE[0], timeout=30.0)


def main(study: Path) -> None:
    viewer = napari.Viewer(title="Inversion Audit")
    viewer.window.resize(*SIZE)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    wide_canvas(viewer)
    opener = panel.show_tab("Study")
    index = opener.open_study(study)
    entry = index.entries[0]
    opener.select(entry)
    wait(lambda: opener.state.entry == entry and viewer.layers)
    settle()
    viewer.screenshot(str(OUT / "review.png"), canvas_only=False, flash=False)

    compare = panel.show_tab("Compare")
    job = compare.compute()
    wait(lambda: not job.is_running)
    names = {
        opener.state.original_layer,
        opener.state.reconstruction_layer,
        "difference",
    }
    for layer in viewer.layers:
        layer.visible = layer.name in names
        layer.opacity = 1.0
        if getattr(layer, "name_overlay", None) is not None:
            layer.name_overlay.visible = True
    viewer.canvas.grid.enabled = True
    viewer.reset_view()
    settle()
    viewer.screenshot(str(OUT / "compare.png"), canvas_only=False, flash=False)

    table = panel.show_tab("Candidates")
    other = next(r for r in table.rows if r.candidate.candidate_id != entry.reconstruction_id)
    table.select_row(table.rows.index(other))
    wait(lambda: table.state.candidate_id == other.candidate.candidate_id)
    settle()
    viewer.screenshot(str(OUT / "candidates.png"), canvas_only=False, flash=False)
    viewer.close()


def reader_case(study: Path) -> None:
    """A reader's first case: the reconstruction and candidates A-E on linked cameras."""
    from inversion_audit.reader_study import create_design
    from inversion_audit.reader_study.package import write_package

    with tempfile.TemporaryDirectory() as tmp:
        design = create_design(study, ["alice", "bob"], n_candidates=5, seed=0)
        db = write_package(Path(tmp) / "package", Path(tmp) / "key.sqlite", design, study)
        viewer = napari.Viewer(title="Inversion Audit reader study")
        viewer.window.resize(*SIZE)
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Reader study")
        widget.open_database(str(db))
        widget.log_in("alice")
        wait(lambda: len(viewer.layers) >= 6)
        wide_canvas(viewer)
        settle(0.5)
        viewer.reset_view()
        settle(1.0)
        viewer.screenshot(str(OUT / "reader-case.png"), canvas_only=False, flash=False)
        viewer.close()


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else demo_study_dir()
    main(folder)
    reader_case(folder)
