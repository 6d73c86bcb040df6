"""Open study widget and the study index it reads.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_study.py -q``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gui_fakes import copy_study
from inversion_audit.errors import StudyError
from inversion_audit.gui.review_panel import open_tab
from inversion_audit.study.index import StudyIndex

PLUGIN = "napari-inversion-audit"


@pytest.fixture
def fake_study(tmp_path, runner_study):
    return copy_study(runner_study, tmp_path / "study")


# -- study index (no viewer) -------------------------------------------------------------------
def test_index_lists_every_reconstruction_with_its_fold(fake_study):
    index = StudyIndex.open(fake_study.root)
    assert len(index.entries) == len(fake_study.subjects) * len(fake_study.runs)
    for e in index.entries:
        assert e.fold == fake_study.folds[e.reconstruction_id]
        assert index.reconstruction_file(e).is_file()
        assert index.candidate_file(e.variant, e.reconstruction_id).is_file()
    assert {e.run for e in index.entries} == {fake_study.run_name(*r) for r in fake_study.runs}


def test_index_candidates_carry_the_csv_scores(fake_study):
    index = StudyIndex.open(fake_study.root)
    run = fake_study.run_name(*fake_study.runs[1])
    cands = index.candidates(run, "sub-002")
    assert [c.candidate_id for c in cands] == fake_study.subjects
    for c in cands:
        assert c.ssim == pytest.approx(
            fake_study.scores[(run, "sub-002", c.candidate_id, "ssim")], rel=1e-5
        )
        key = (run, "sub-002", c.candidate_id, "deformation")
        if key in fake_study.scores:
            assert c.deformation == pytest.approx(fake_study.scores[key], rel=1e-5)
            assert index.deformation_file(run, "sub-002", c.candidate_id).is_file()
        else:
            assert math.isnan(c.deformation)


def test_index_search_matches_every_word(fake_study):
    index = StudyIndex.open(fake_study.root)
    hits = index.search("SUB-001 segnet")
    assert [(e.reconstruction_id, e.arch) for e in hits] == [("sub-001", "segnet")]
    assert index.search("fold 1") and all(e.fold == 1 for e in index.search("fold 1"))
    assert index.search("no-such-subject") == []


def test_index_without_scores_falls_back_to_reconstruction_files(tmp_path, runner_study):
    study = copy_study(runner_study, tmp_path / "s", with_scores=False)
    index = StudyIndex.open(study.root)
    assert len(index.entries) == len(study.subjects) * len(study.runs)
    assert {(e.arch, e.variant, e.threat_model) for e in index.entries} == set(study.runs)
    assert all(e.fold is None for e in index.entries)


def test_index_rejects_a_folder_that_is_not_a_study(tmp_path):
    with pytest.raises(StudyError, match="not a study folder"):
        StudyIndex.open(tmp_path)
    with pytest.raises(StudyError, match="not found"):
        StudyIndex.open(tmp_path / "missing")
    (tmp_path / "scores").mkdir()
    (tmp_path / "scores" / "scores.csv").write_text("fold,arch\n0,unet\n")
    with pytest.raises(StudyError, match=r"scores\.csv: missing column"):
        StudyIndex.open(tmp_path)


# -- widget ------------------------------------------------------------------------------------
def _open_widget(viewer):
    widget = open_tab(viewer, "Open study")
    return widget


def test_selecting_a_subject_loads_original_reconstruction_in_world_position(
    make_napari_viewer, qtbot, fake_study
):
    viewer = make_napari_viewer()
    widget = _open_widget(viewer)
    index = widget.open_study(fake_study.root)
    assert index is not None and widget.entry_list.count() == len(index.entries)
    entry = index.search("sub-002 unet")[0]
    assert widget.select(entry) is not None
    qtbot.waitUntil(lambda: widget.state.entry == entry, timeout=10000)
    original = viewer.layers[widget.state.original_layer]
    recon = viewer.layers[widget.state.reconstruction_layer]
    from inversion_audit.io import read_volume

    truth = read_volume(index.candidate_file(entry.variant, "sub-002"))
    np.testing.assert_allclose(original.scale, truth.spacing)
    np.testing.assert_allclose(original.translate, truth.origin)
    np.testing.assert_allclose(recon.scale, original.scale)
    np.testing.assert_allclose(recon.translate, original.translate)
    np.testing.assert_array_equal(original.data, truth.array)


def test_search_hides_non_matching_entries(make_napari_viewer, fake_study):
    viewer = make_napari_viewer()
    widget = _open_widget(viewer)
    widget.open_study(fake_study.root)
    shown = widget.filter_entries("segnet sub-003")
    visible = [
        widget.entry_list.item(r).text()
        for r in range(widget.entry_list.count())
        if not widget.entry_list.item(r).isHidden()
    ]
    # a study without a holdout: every reconstruction is of a member
    assert visible == [f"{e.label} · member" for e in shown] and len(shown) == 1


def test_bad_study_folder_notifies_and_keeps_state(make_napari_viewer, tmp_path, fake_study):
    viewer = make_napari_viewer()
    widget = _open_widget(viewer)
    widget.open_study(fake_study.root)
    before = widget.state.study
    assert widget.open_study(tmp_path / "nowhere") is None
    assert widget.state.study is before


def test_checkpoints_load_one_by_one_and_bad_ones_leave_the_state(
    make_napari_viewer, qtbot, tmp_path
):
    from gui_fakes import Notifications, make_tiny_checkpoints

    viewer = make_napari_viewer()
    widget = _open_widget(viewer)
    target, inversion = make_tiny_checkpoints(tmp_path / "good")
    job = widget.load_checkpoints(target, inversion)
    qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
    assert (widget.state.target_checkpoint, widget.state.inversion_checkpoint) == (
        target,
        inversion,
    )
    _, segnet_inversion = make_tiny_checkpoints(tmp_path / "segnet", arch="segnet")
    with Notifications() as notes:
        job = widget.load_checkpoints(target, segnet_inversion)
        qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
    assert any(str(segnet_inversion) in e for e in notes.errors()), notes.messages()
    assert widget.state.inversion_checkpoint == inversion  # unchanged
