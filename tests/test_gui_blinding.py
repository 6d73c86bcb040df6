"""Blinded review across every tab of the Review panel and the export, on a study made by the
real runner: no stored score, rank or number computed against the true original, and no
subject id, in any widget text, table cell, tooltip, layer name or layer metadata; the view
kept and no stray layers when blinding and unblinding.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_blinding.py -q``.
"""

from __future__ import annotations

import numpy as np
import pytest

from gui_fakes import copy_study
from inversion_audit.gui.review_panel import open_review

pytest.importorskip("pytestqt")

SUBJECT = "sub-001"


@pytest.fixture
def study(tmp_path, runner_study):
    return copy_study(runner_study, tmp_path / "study")


def _wait(qtbot, job, timeout=120000):
    if job is not None:
        qtbot.waitUntil(lambda: not job.is_running, timeout=timeout)
        assert job.error is None, job.error


def _open(viewer, qtbot, study):
    panel = open_review(viewer)
    opener = panel.pages["Study"]
    index = opener.open_study(study.root)
    entry = index.search(SUBJECT)[0]
    _wait(qtbot, opener.select(entry))
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    return panel, entry


def _texts(panel, viewer) -> list[str]:
    """Every text the panel and the viewer's layers hold, shown or not."""
    from qtpy.QtWidgets import (
        QAbstractButton,
        QComboBox,
        QLabel,
        QLineEdit,
        QListWidget,
        QTableWidget,
        QTabWidget,
        QWidget,
    )

    out = []
    for w in [panel, *panel.findChildren(QWidget)]:
        out += [w.toolTip(), w.windowTitle(), w.statusTip()]
        if isinstance(w, QLabel | QAbstractButton):
            out.append(w.text())
        if isinstance(w, QLineEdit):
            out += [w.text(), w.placeholderText()]
        if isinstance(w, QComboBox):
            out += [w.itemText(i) for i in range(w.count())]
        if isinstance(w, QListWidget):
            out += [w.item(i).text() for i in range(w.count())]
            out += [w.item(i).toolTip() for i in range(w.count())]
        if isinstance(w, QTabWidget):
            out += [w.tabText(i) for i in range(w.count())]
        if isinstance(w, QTableWidget):
            for c in range(w.columnCount()):
                header = w.horizontalHeaderItem(c)
                out += [header.text(), header.toolTip()] if header is not None else []
                for r in range(w.rowCount()):
                    item = w.item(r, c)
                    out += [item.text(), item.toolTip()] if item is not None else []
    for layer in viewer.layers:
        out += [layer.name, str(layer.metadata), layer.get_source_str()]
    return out


def _secrets(study, entry) -> list[str]:
    """The true original's id and its stored numbers, formatted as the widgets format them."""
    out = [SUBJECT]
    for metric in ("ssim", "correlation", "psnr", "deformation"):
        value = study.scores.get((entry.run, SUBJECT, SUBJECT, metric))
        if value is not None and np.isfinite(value):
            out += [f"{value:.3f}"] + ([f"{value:.2f}"] if metric == "deformation" else [])
    return out


def _leaks(panel, viewer, secrets) -> list[str]:
    return [t for t in _texts(panel, viewer) if any(s in t for s in secrets)]


def test_blinded_mode_hides_the_answer_in_every_tab_and_the_export(
    make_napari_viewer, qtbot, tmp_path, study
):
    viewer = make_napari_viewer()
    panel, entry = _open(viewer, qtbot, study)
    compare, candidates = panel.pages["Compare"], panel.pages["Candidates"]
    deformation = panel.pages["Deformation"]
    secrets = _secrets(study, entry)
    assert len(secrets) >= 4  # the id and at least ssim, correlation, psnr
    # the Study tab's verdict cards: identification rates, scored against the true originals
    verdict = panel.pages["Study"].verdict
    _wait(qtbot, verdict.job)
    rates = [f"{c['risk']['identification']['top1']} of " for c in verdict.cards]
    assert rates and all(any(r in t for t in _texts(panel, viewer)) for r in rates)

    # unblinded: the answer is on show (so the checks below could fail)
    _wait(qtbot, compare.compute())  # against the true original
    true_row = next(
        r for r, row in enumerate(candidates.rows) if row.candidate.candidate_id == SUBJECT
    )
    _wait(qtbot, candidates.select_row(true_row))
    assert _leaks(panel, viewer, secrets)

    candidates.blinded_check.setChecked(True)
    assert not _leaks(panel, viewer, secrets), _leaks(panel, viewer, secrets)
    assert {la.name for la in viewer.layers} == {"recon"}  # no stray layer, none named
    assert verdict.label.text() in _texts(panel, viewer)  # walked, and without a number
    assert not any(ch.isdigit() for ch in verdict.label.text() + verdict.label.toolTip())

    # export: off, and refused when called
    assert not candidates.export_button.isEnabled()
    assert "blinded" in candidates.export_button.toolTip()
    assert candidates.export_csv(tmp_path / "out.csv") is None
    assert not (tmp_path / "out.csv").exists()
    csv_text = candidates.table_csv()
    assert not [s for s in secrets if s in csv_text]
    assert csv_text.splitlines()[0] == "candidate"

    # the user's own pick: a coded candidate that is not the true original
    row = next(r for r, x in enumerate(candidates.rows) if x.candidate.candidate_id != SUBJECT)
    _wait(qtbot, candidates.select_row(row))
    code = candidates.state.candidate_layer
    assert code.startswith("C") and code in [la.name for la in viewer.layers]
    compare.original_combo.choose(code)
    compare.reconstruction_combo.choose("recon")
    _wait(qtbot, compare.compute())
    assert "scores.csv" not in compare.metrics_label.text()
    deformation.fixed_combo.choose(code)
    deformation.moving_combo.choose("recon")
    _wait(qtbot, deformation.run())
    # a new registration reports its mean displacement, over the candidate's brain
    magnitude = viewer.layers["displacement (mm)"]
    brain = np.asarray(viewer.layers[code].data) != 0
    mean = magnitude.metadata["inversion_audit"]["mean_displacement_mm"]
    assert mean == pytest.approx(float(magnitude.data[brain].mean()), rel=1e-5)
    assert f"mean displacement {mean:.2f} mm" in deformation.result_label.text()
    assert not _leaks(panel, viewer, secrets), _leaks(panel, viewer, secrets)
    assert not any(ch.isdigit() for ch in verdict.label.text())

    # unblinding: the named layers back, nothing computed while blinded left behind
    job = candidates.blinded_check.setChecked(False) or candidates.panel.job
    _wait(qtbot, job)
    qtbot.waitUntil(lambda: candidates.state.original_layer is not None, timeout=15000)
    assert sorted(la.name for la in viewer.layers) == ["labels", "original", "recon"]
    assert not any(la.metadata["inversion_audit"].get("blinded") for la in viewer.layers)


def _slice_and_zoom(viewer, layer):
    index = np.asarray(layer.world_to_data(viewer.dims.point), float)
    return tuple(viewer.dims.order), tuple(np.round(index, 3)), round(viewer.camera.zoom, 6)


def test_blinding_keeps_the_view(make_napari_viewer, qtbot, study):
    viewer = make_napari_viewer()
    panel, entry = _open(viewer, qtbot, study)
    candidates = panel.pages["Candidates"]
    recon = viewer.layers["recon"]
    recon_translate = tuple(recon.translate)
    assert tuple(viewer.dims.displayed) == (1, 0)  # axial, as opened
    viewer.dims.set_current_step(2, 11)
    viewer.camera.zoom = viewer.camera.zoom * 2.5
    before = _slice_and_zoom(viewer, recon)

    candidates.blinded_check.setChecked(True)  # right after loading
    blinded = viewer.layers["recon"]
    assert blinded.metadata["inversion_audit"]["blinded"]
    assert _slice_and_zoom(viewer, blinded) == before
    assert tuple(viewer.dims.displayed) == (1, 0)  # still axial, not sagittal

    _wait(qtbot, candidates.panel.job)
    candidates.blinded_check.setChecked(False)
    _wait(qtbot, candidates.panel.job)
    qtbot.waitUntil(lambda: candidates.state.original_layer is not None, timeout=15000)
    named = viewer.layers["recon"]
    np.testing.assert_allclose(named.translate, recon_translate)  # its own position again
    assert _slice_and_zoom(viewer, named) == before
    assert sorted(la.name for la in viewer.layers) == ["labels", "original", "recon"]
