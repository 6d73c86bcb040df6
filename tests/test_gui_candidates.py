"""Candidate matches widget: ranking, highlighting, blinded mode, row selection, CSV export.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_candidates.py -q``.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from gui_fakes import copy_study
from inversion_audit.gui._ranking import blinded_codes, rank_candidates
from inversion_audit.gui.review_panel import open_tab
from inversion_audit.io import read_volume
from inversion_audit.study.index import CandidateScore, StudyIndex

PLUGIN = "napari-inversion-audit"


@pytest.fixture
def fake_study(tmp_path, runner_study):
    return copy_study(runner_study, tmp_path / "study")


# -- ranking (no viewer) -----------------------------------------------------------------------
def test_rank_orders_each_metric_its_own_way_with_missing_scores_last():
    cands = [
        CandidateScore("a", ssim=0.5, correlation=0.9, deformation=3.0),
        CandidateScore("b", ssim=0.8, correlation=0.1, deformation=math.nan),
        CandidateScore("c", ssim=0.6, correlation=0.5, deformation=1.0),
    ]
    assert [r.candidate.candidate_id for r in rank_candidates(cands, "ssim")] == ["b", "c", "a"]
    assert [r.candidate.candidate_id for r in rank_candidates(cands, "correlation")] == [
        "a",
        "c",
        "b",
    ]
    assert [r.candidate.candidate_id for r in rank_candidates(cands, "deformation")] == [
        "c",
        "a",
        "b",
    ]
    assert [r.rank for r in rank_candidates(cands, "ssim")] == [1, 2, 3]
    with pytest.raises(ValueError, match="cannot rank by"):
        rank_candidates(cands, "dice")


def test_blinded_codes_are_a_fixed_shuffle():
    ids = [f"sub-{k:03d}" for k in range(12)]
    codes = blinded_codes(ids, "seed")
    assert sorted(codes.values()) == [f"C{k:02d}" for k in range(1, 13)]
    assert codes == blinded_codes(ids, "seed")
    assert [codes[i] for i in ids] != sorted(codes.values())  # not in id order


# -- widget ------------------------------------------------------------------------------------
def _open(viewer, qtbot, study, subject="sub-001"):
    opener = open_tab(viewer, "Open study")
    index = opener.open_study(study.root)
    entry = index.search(subject)[0]
    opener.select(entry)
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    widget = open_tab(viewer, "Candidate matches")
    return widget, index, entry


def _column(widget, col):
    return [widget.table.item(r, col).text() for r in range(widget.table.rowCount())]


def test_table_ranks_by_ssim_then_by_other_metrics(make_napari_viewer, qtbot, fake_study):
    viewer = make_napari_viewer()
    widget, index, entry = _open(viewer, qtbot, fake_study)
    run = entry.run
    scores = {c: fake_study.scores[(run, "sub-001", c, "ssim")] for c in fake_study.subjects}
    assert _column(widget, 1) == sorted(scores, key=lambda c: -scores[c])
    assert _column(widget, 0) == [str(k) for k in range(1, len(scores) + 1)]
    widget.sort_combo.setCurrentText("correlation")
    corr = {c: fake_study.scores[(run, "sub-001", c, "correlation")] for c in fake_study.subjects}
    assert _column(widget, 1) == sorted(corr, key=lambda c: -corr[c])
    widget.sort_combo.setCurrentText("deformation")
    shown = _column(widget, 4)
    numbers = [float(v) for v in shown if v != "–"]
    n_scored = sum(k[:2] == (run, "sub-001") and k[3] == "deformation" for k in fake_study.scores)
    assert numbers == sorted(numbers) and len(numbers) == n_scored > 0
    assert shown[n_scored:] == ["–"] * (len(shown) - n_scored)


def test_true_original_is_highlighted_only_outside_blinded_mode(
    make_napari_viewer, qtbot, fake_study
):
    viewer = make_napari_viewer()
    widget, index, entry = _open(viewer, qtbot, fake_study, "sub-002")
    rows = widget.highlighted_rows()
    assert len(rows) == 1 and widget.table.item(rows[0], 1).text() == "sub-002"
    widget.blinded_check.setChecked(True)
    assert widget.state.blinded and widget.highlighted_rows() == []
    names = _column(widget, 1)
    assert not set(names) & set(fake_study.subjects)  # codes, not ids
    assert "sub-002" not in widget.title.text()


def test_selecting_a_row_shows_the_candidate_beside_the_reconstruction(
    make_napari_viewer, qtbot, fake_study
):
    viewer = make_napari_viewer()
    widget, index, entry = _open(viewer, qtbot, fake_study)
    row = 1
    candidate_id = widget.rows[row].candidate.candidate_id
    assert widget.select_row(row) is not None
    qtbot.waitUntil(lambda: widget.state.candidate_id == candidate_id, timeout=15000)
    recon = viewer.layers[widget.state.reconstruction_layer]
    cand = viewer.layers[widget.state.candidate_layer]
    assert viewer.canvas.grid.enabled
    assert {layer.name for layer in viewer.layers if layer.visible} == {recon.name, cand.name}
    np.testing.assert_allclose(cand.scale, recon.scale)
    np.testing.assert_allclose(cand.translate, recon.translate)  # voxel for voxel, as scored
    np.testing.assert_array_equal(
        cand.data, read_volume(index.candidate_file(entry.variant, candidate_id)).array
    )
    other = widget.rows[2].candidate.candidate_id
    widget.select_row(2)
    qtbot.waitUntil(lambda: widget.state.candidate_id == other, timeout=15000)
    roles = [layer.metadata.get("inversion_audit", {}).get("role") for layer in viewer.layers]
    assert roles.count("candidate") == 1 and other in viewer.layers


def test_export_csv_round_trips_the_table(make_napari_viewer, qtbot, tmp_path, fake_study):
    viewer = make_napari_viewer()
    widget, index, entry = _open(viewer, qtbot, fake_study)
    out = widget.export_csv(tmp_path / "out" / "candidates.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["candidate"] for r in rows] == _column(widget, 1)
    assert [r["true_original"] for r in rows].count("1") == 1
    truth = {
        c.candidate_id: c.ssim
        for c in StudyIndex.open(fake_study.root).candidates(entry.run, "sub-001")
    }
    for r in rows:
        assert float(r["ssim"]) == pytest.approx(truth[r["candidate"]], rel=1e-5)
    widget.blinded_check.setChecked(True)
    blinded = widget.table_csv()
    assert "true_original" not in blinded and "sub-00" not in blinded
