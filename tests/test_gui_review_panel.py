"""The Review panel: one dock with a tab per review step, fitting a 1280x800 screen.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_review_panel.py -q``.
"""

from __future__ import annotations

import pytest

from inversion_audit.gui.demo_study import demo_study_dir

pytest.importorskip("pytestqt")

PLUGIN = "napari-inversion-audit"
SINGLE = ("Open study", "Compare", "Candidate matches", "Deformation", "Reconstruct")
TITLES = ("Study", "Compare", "Candidates", "Deformation", "Reconstruct")


def test_review_is_the_one_menu_entry_for_review():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    names = [w.display_name for w in pm.get_manifest(PLUGIN).contributions.widgets]
    assert "Review" in names and not set(SINGLE) & set(names)


def test_single_widgets_open_as_tabs_of_the_one_panel(make_napari_viewer):
    from qtpy.QtWidgets import QDockWidget

    from inversion_audit.gui.review_panel import open_review, open_tab

    viewer = make_napari_viewer()
    panel = open_review(viewer)
    for name, tab in zip(SINGLE, TITLES, strict=True):
        widget = open_tab(viewer, name)
        assert widget is panel.pages[tab]
        assert panel.tabs.tabText(panel.tabs.currentIndex()) == tab
    docks = viewer.window._qt_window.findChildren(QDockWidget)
    inner = [d.inner_widget() for d in docks if hasattr(d, "inner_widget")]
    assert sum(isinstance(w, type(panel)) for w in inner) == 1


@pytest.mark.slow
def test_panel_fits_1280x800_with_ten_candidate_rows(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 800)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    assert tuple(panel.tabs.tabText(i) for i in range(panel.tabs.count())) == TITLES
    hint = panel.sizeHint()
    assert hint.width() <= 1280 and hint.height() <= 800
    opener = panel.pages["Study"]
    study = opener.open_study(demo_study_dir())
    entry = study.entries[0]
    opener.select(entry)
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    table = panel.show_tab("Candidates").table
    qtbot.wait(100)
    assert window.height() <= 800 and window.width() <= 1280
    assert table.rowCount() == len(study.candidates(entry.run, entry.reconstruction_id))
    row = table.verticalHeader().defaultSectionSize()
    assert table.viewport().height() >= 10 * row, (table.viewport().height(), row)
    assert table.isVisible()


def test_run_study_opens_the_finished_study_in_the_review_panel(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, runner = viewer.window.add_plugin_dock_widget(PLUGIN, "Run study")
    runner._show_study(demo_study_dir())  # what the finished job hands back
    dock, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")  # the same dock
    assert panel.tabs.tabText(panel.tabs.currentIndex()) == "Study"
    assert panel.pages["Study"].entry_list.count() == len(runner.state.study.entries) > 0
    assert dock.isVisible() or not viewer.window._qt_window.isVisible()
