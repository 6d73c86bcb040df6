"""Candidate matches in blinded mode, on the bundled demo study (a real study-runner output).

Every image layer shares one grid and one window; no layer name, layer metadata or widget text
holds a subject id or a score; the true original's row is uniform over reconstructions.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_candidates_blinded.py -q``.
"""

from __future__ import annotations

import csv
from collections import Counter

import pytest
from scipy.stats import chisquare

from inversion_audit.gui._ranking import blinded_codes
from inversion_audit.gui.demo_study import demo_study_dir
from inversion_audit.gui.review_panel import open_tab

pytest.importorskip("pytestqt")

PLUGIN = "napari-inversion-audit"
DEMO = demo_study_dir()


def _demo_ids_and_scores() -> tuple[list[str], list[str]]:
    ids, scores = set(), []
    with open(DEMO / "scores" / "scores.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            ids |= {row["reconstruction_id"], row["candidate_id"]}
            v = float(row["value"])
            scores += [f"{v:.3f}", f"{v:.2f}"] if row["metric"] == "deformation" else [f"{v:.3f}"]
    return sorted(ids), scores


def _strings(widget, viewer) -> list[str]:
    from qtpy.QtWidgets import QWidget

    out = []
    for w in [widget, *widget.findChildren(QWidget)]:
        out += [w.toolTip(), w.windowTitle()]
        for attr in ("text", "currentText", "title"):
            f = getattr(w, attr, None)
            if callable(f):
                try:
                    out.append(str(f()))
                except TypeError:
                    pass
    t = widget.table
    for r in range(t.rowCount()):
        for c in range(t.columnCount()):
            item = t.item(r, c)
            if item is not None:
                out += [item.text(), item.toolTip()]
    for layer in viewer.layers:
        out += [layer.name, str(layer.metadata), str(layer.source.path or "")]
    return out


def test_true_original_row_is_uniform_over_reconstructions():
    ids = [f"sub-{k:03d}" for k in range(8)]
    rows: Counter[int] = Counter()
    for n in range(2000):
        codes = blinded_codes(ids, seed=f"sub-{n % 8:03d} · fold {n} · unet")
        rows[sorted(codes.values()).index(codes[ids[n % 8]])] += 1
    assert chisquare([rows[i] for i in range(8)]).pvalue > 0.01


@pytest.mark.slow
def test_blinded_mode_shows_one_grid_and_no_id_or_score(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    opener = open_tab(viewer, "Open study")
    index = opener.open_study(DEMO)
    entry = index.entries[0]
    opener.select(entry)
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    widget = open_tab(viewer, "Candidate matches")
    ids, scores = _demo_ids_and_scores()
    assert any(entry.reconstruction_id in s for s in _strings(widget, viewer))  # not blinded yet

    widget.blinded_check.setChecked(True)
    assert widget.highlighted_rows() == []
    codes = [widget.table.item(r, 1).text() for r in range(widget.table.rowCount())]
    assert codes == sorted(codes) and len(codes) == len(ids)
    for row in range(len(widget.rows)):
        cid = widget.rows[row].candidate.candidate_id
        widget.select_row(row)
        qtbot.waitUntil(lambda cid=cid: widget.state.candidate_id == cid, timeout=15000)
        images = [la for la in viewer.layers if la.visible]
        assert [la.name for la in images] == ["recon", codes[row]]
        for la in images:
            assert la.data.shape == images[0].data.shape
            assert tuple(la.scale) == tuple(images[0].scale)
            assert tuple(la.translate) == tuple(images[0].translate)
            assert tuple(la.contrast_limits) == tuple(images[0].contrast_limits)  # one window
            assert tuple(la.contrast_limits_range) == (0.0, 1.0)
        strings = [s.lower() for s in _strings(widget, viewer)]
        assert not [s for s in strings if any(i in s for i in ids)]
        assert not [s for s in strings if any(v in s for v in scores)]

    # leaving blinded mode brings the named layers back
    job = widget.blinded_check.setChecked(False)
    assert job is None
    qtbot.waitUntil(lambda: widget.state.original_layer is not None, timeout=15000)
    assert "original" in [la.name for la in viewer.layers]
    assert not any(la.metadata["inversion_audit"].get("blinded") for la in viewer.layers)
