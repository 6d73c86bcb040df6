"""Deformation display on the bundled demo study's stored results: the legend spans the
numbers written beside it, and a new result replaces the previous one.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_deformation_display.py -q``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from inversion_audit.gui.demo_study import demo_study_dir
from inversion_audit.gui.review_panel import open_tab

pytest.importorskip("pytestqt")

PLUGIN = "napari-inversion-audit"


def test_stored_results_replace_each_other_with_an_honest_legend(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    opener = open_tab(viewer, "Open study")
    index = opener.open_study(demo_study_dir())
    entry = index.entries[0]
    opener.select(entry)
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    table = open_tab(viewer, "Candidate matches")
    widget = open_tab(viewer, "Deformation")
    scored = [r for r in table.rows if np.isfinite(r.candidate.deformation)]
    assert len(scored) >= 2
    for row in scored[:2]:
        cid = row.candidate.candidate_id
        table.select_row(table.rows.index(row))
        qtbot.waitUntil(lambda cid=cid: table.state.candidate_id == cid, timeout=15000)
        view = widget.run()
        assert view is not None and view.cached  # the study's stored map, no registration
        maps = [la for la in viewer.layers if la.name.endswith("displacement (mm)")]
        assert len(maps) == 1  # the previous pair's map is gone (its layer reused)
        assert maps[0].metadata["inversion_audit"]["title"] == f"recon → {cid}"
        layer = maps[0]
        high = float(np.max(layer.data))
        assert tuple(layer.contrast_limits) == pytest.approx((0.0, high))
        assert widget.legend.range == pytest.approx((0.0, high))
        text = widget.result_label.text()
        written = [float(v) for v in re.findall(r"(\d+\.\d+) mm", text)]
        assert f"{high:.2f}" in text and pytest.approx(high, abs=0.006) in written
        assert "stored in the study" in text and layer.metadata["inversion_audit"]["stored"]
        # the demo's cohort is not on this machine: drawn over the skull-stripped candidate's
        # non-zero voxels, 0 (transparent) elsewhere, and the label says which mask
        candidate = np.asarray(viewer.layers[table.state.candidate_layer].data)
        assert 0.05 < (candidate != 0).mean() < 0.9
        assert (layer.data[candidate == 0] == 0).all() and layer.data[candidate != 0].max() > 0
        assert layer.colormap.map(np.array([0.0]))[0, 3] == 0.0
        assert "non-zero voxels" in text
