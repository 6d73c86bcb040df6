"""The Study tab's verdict cards on a study made by the real runner (no report written): one
card per run, with the risk words and numbers of ``report.json``'s ``verdict``; hidden while
blinded.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_study_verdict.py -q``.
"""

from __future__ import annotations

import json
import shutil

import pytest

from inversion_audit.gui._verdict_view import BLINDED_TEXT, RISK_COLOURS
from inversion_audit.gui.review_panel import open_review

pytest.importorskip("pytestqt")


def _plain(html: str) -> str:
    from qtpy.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setHtml(html)
    return doc.toPlainText()


def _wait(qtbot, job):
    if job is not None:
        qtbot.waitUntil(lambda: not job.is_running, timeout=120000)
        assert job.error is None, job.error


def test_study_tab_shows_the_reports_verdict(make_napari_viewer, qtbot, tmp_path, runner_study):
    study = tmp_path / "study"
    shutil.copytree(runner_study, study)
    assert not list(study.glob("report.*"))  # the card needs no report

    viewer = make_napari_viewer()
    opener = open_review(viewer).pages["Study"]
    opener.open_study(study)
    view = opener.verdict
    _wait(qtbot, view.job)
    assert not list(study.glob("report.*"))  # and writes none
    assert view.isVisibleTo(opener)
    html = view.label.text()
    text = _plain(html)

    from inversion_audit.report import write_report

    write_report(study)
    cards = json.loads((study / "report.json").read_text())["verdict"]
    runs = sorted({e.run for e in opener.state.study.entries})
    assert [c["run"] for c in cards] == runs  # one card per (undefended) run
    assert [c["run"] for c in view.cards] == runs
    for card in cards:
        assert text.count(card["title"]) == 1
        level = card["risk"]["level"]
        assert f"Risk: {level}." in text
        assert f'color:{RISK_COLOURS[level]}">{level}' in html
        for item in ("risk", "who_leaks", "attacker_effort", "best_defence"):
            assert card[item]["text"] in text, (item, card[item]["text"])
        assert f"Rule: {card['risk']['rule']}." in text
    rates = [f"{c['risk']['identification']['top1']} of " for c in cards]
    assert all(r in text for r in rates)

    # cached per study: reopening the tab's study shows it at once
    assert view.show_study(opener.state.study) is None
    assert _plain(view.label.text()) == text

    # blinded: no card, no number
    opener.state.blinded = True
    shown = view.label.text()
    assert shown == BLINDED_TEXT
    assert not any(ch.isdigit() for ch in shown)
    assert not any(r in shown for r in rates)
    assert view.label.toolTip() and not any(ch.isdigit() for ch in view.label.toolTip())
    opener.state.blinded = False
    assert _plain(view.label.text()) == text


def test_unscored_study_says_so(make_napari_viewer, qtbot, tmp_path, runner_study):
    study = tmp_path / "study"
    shutil.copytree(runner_study, study)
    (study / "scores" / "scores.csv").unlink()
    viewer = make_napari_viewer()
    opener = open_review(viewer).pages["Study"]
    assert opener.open_study(study) is not None  # a study interrupted before scoring
    _wait(qtbot, opener.verdict.job)
    assert opener.verdict.cards is None
    assert "no scores" in opener.verdict.label.text()
