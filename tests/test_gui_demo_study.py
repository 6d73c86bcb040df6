"""Sample data "Inversion Audit: demo study".

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_demo_study.py -q``.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from qtpy.QtCore import Qt

from gui_fakes import copy_study
from inversion_audit.errors import CohortError
from inversion_audit.gui import demo_study as demo
from inversion_audit.gui.review_panel import open_tab

PLUGIN = "napari-inversion-audit"


def test_missing_demo_study_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "demo_study_dir", lambda: tmp_path / "absent")
    with pytest.raises(CohortError, match="demo study is not bundled"):
        demo.demo_study()


def test_demo_sample_opens_the_study_in_the_widgets(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, runner_study
):
    study = copy_study(runner_study, tmp_path / "demo")
    monkeypatch.setattr(demo, "demo_study_dir", lambda: study.root)
    viewer = make_napari_viewer()
    start = time.perf_counter()
    viewer.open_sample(PLUGIN, "demo_study")
    assert time.perf_counter() - start < 10.0
    from inversion_audit.gui._state import state_for

    state = state_for(viewer)
    assert state.study is not None and state.study.root == study.root
    entry = state.entry
    assert entry == state.study.entries[0]
    original = viewer.layers[state.original_layer]
    recon = viewer.layers[state.reconstruction_layer]
    np.testing.assert_allclose(original.scale, study.spacing)
    np.testing.assert_allclose(recon.translate, original.translate)
    qtbot.waitUntil(lambda: tuple(viewer.dims.order) == (2, 1, 0), timeout=5000)  # axial slices
    table = open_tab(viewer, "Candidate matches")
    assert table.table.rowCount() == len(study.subjects)


def test_bundled_demo_study_opens_in_seconds(make_napari_viewer):
    folder = demo.demo_study_dir()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    # under 20 MB (the wheel's budget for it is about 25 MB; 16.2 MB with report.pdf)
    assert size < 20e6, f"the bundled demo study grew to {size / 1e6:.1f} MB"
    viewer = make_napari_viewer()
    start = time.perf_counter()
    viewer.open_sample(PLUGIN, "demo_study")
    assert time.perf_counter() - start < 15.0
    from inversion_audit.gui._state import state_for

    state = state_for(viewer)
    assert state.study is not None and state.study.root == folder
    original = viewer.layers[state.original_layer]
    recon = viewer.layers[state.reconstruction_layer]
    assert original.data.shape == recon.data.shape and recon.data.std() > 0
    # every run of the bundled study has scores for all its reconstructions
    assert {e.run for e in state.study.entries} >= {"unet_skull-stripped_bottleneck"}
    # Open study marks the non-member holdout (holdout.json) apart from the members
    holdout = set(json.loads((folder / "holdout.json").read_text())["holdout"])
    opener = open_tab(viewer, "Open study")
    items = [opener.entry_list.item(r) for r in range(opener.entry_list.count())]
    assert len(items) == len(state.study.entries)
    marks = {}
    for item in items:
        entry = state.study.entries[item.data(Qt.ItemDataRole.UserRole)]
        marks[entry.label] = item.text().rsplit(" · ", 1)[1]
        assert marks[entry.label] == (
            "non-member" if entry.reconstruction_id in holdout else "member"
        )
    assert holdout and set(marks.values()) == {"member", "non-member"}


def test_bundled_demo_study_reports_members_vs_non_members():
    """The bundle's report has the holdout's section, with the holdout's size."""
    folder = demo.demo_study_dir()
    holdout = json.loads((folder / "holdout.json").read_text())["holdout"]
    report = (folder / "report.md").read_text()
    assert "## Who leaks: members vs non-members" in report
    runs = sorted(p.stem for p in (folder / "rankings").glob("*.csv"))
    assert runs
    # one worded heading per run ("### U-Net, skull-stripped, bottleneck (8 members, 2 non-members)")
    headings = re.findall(rf"^### (.+) \(\d+ members, {len(holdout)} non-members\)$", report, re.M)
    assert len(headings) == len(runs)
