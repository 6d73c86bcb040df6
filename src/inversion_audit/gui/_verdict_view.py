"""The open study's verdict in the Study tab: the report's verdict cards, read-only.

One card per audited model and threat model (its undefended run): the risk word, coloured,
with the rule that gave it, who leaks, how hard the attacker tried and the best defence
tried. The cards come from :func:`~inversion_audit.report.verdict.study_verdict_cards`, the
function behind ``report.json``'s ``verdict``, computed from the study's files (no report
needed) in a worker and kept per study. Blinded, the cards are hidden: their identification
rates are scores against the true originals.
"""

from __future__ import annotations

import atexit
from html import escape
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, QThreadPool
from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from ..errors import StudyError
from ._workers import Job

if TYPE_CHECKING:
    from ..study.index import StudyIndex

__all__ = ["BLINDED_TEXT", "RISK_COLOURS", "VerdictView", "study_cards"]

#: the risk word's colour (readable on napari's dark and light themes)
RISK_COLOURS = {
    "high": "#e5533d",
    "moderate": "#e6a23c",
    "low": "#4caf50",
    "not shown": "#9e9e9e",
}

#: shown instead of the cards while blinded (no number)
BLINDED_TEXT = (
    "Verdict hidden while blinded: its identification rates are scored against the true originals."
)


#: verdict jobs still computing (a study opened and closed at once leaves one behind)
_RUNNING: set[Job] = set()


@atexit.register
def _await_running() -> None:
    """Let a verdict still computing finish before Qt's objects go at interpreter exit."""
    if any(job.is_running for job in _RUNNING):
        QThreadPool.globalInstance().waitForDone(60000)


def study_cards(study: StudyIndex, progress: Any = None) -> list[dict] | str:
    """The study's verdict cards, or why it has none (a study not scored yet)."""
    from ..report.verdict import study_verdict_cards  # the report stack: only when needed

    if progress is not None:
        progress(0, 0, "reading the scores")
    try:
        return study_verdict_cards(study)
    except StudyError:
        return "No verdict yet: the study has no scores (scores.csv)."


def _card_html(card: dict) -> str:
    r = card["risk"]
    colour = RISK_COLOURS.get(r["level"], RISK_COLOURS["not shown"])
    items = [
        f'<b>Risk: <span style="color:{colour}">{escape(r["level"])}</span>.</b> '
        f"{escape(r['text'])} <i>Rule: {escape(r['rule'])}.</i>",
        f"<b>Who leaks:</b> {escape(card['who_leaks']['answer'])}: "
        f"{escape(card['who_leaks']['text'])}",
        f"<b>Attacker effort:</b> {escape(card['attacker_effort']['text'])}",
        f"<b>Best defence tried:</b> {escape(card['best_defence']['text'])}",
    ]
    return f"<p><b>{escape(card['title'])}</b></p>" + "".join(
        f"<p style='margin-left:6px'>{item}</p>" for item in items
    )


def cards_html(cards: list[dict]) -> str:
    """The cards as the label's rich text."""
    if not cards:
        return "No verdict: the study has no undefended run."
    return "".join(_card_html(c) for c in cards)


class VerdictView(QWidget):
    """A scrollable, read-only view of the open study's verdict cards."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setToolTip("The report's verdict: one card per model and threat model audited")
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.label)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.StyledPanel)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setMinimumHeight(130)
        self.scroll.setMaximumHeight(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll)
        #: the shown study's cards (``None`` until computed), a message when it has none
        self.cards: list[dict] | None = None
        self.job: Job | None = None
        self._study: StudyIndex | None = None
        self._result: list[dict] | str | None = None
        self._blinded = False
        self.hide()

    def show_study(self, study: StudyIndex | None) -> Job | None:
        """Show ``study``'s cards, computing them in a worker unless already computed."""
        if self.job is not None and self.job.is_running:
            self.job.cancel()
        self.job = None
        if study is not self._study:
            self._study, self._result, self.cards = study, None, None
        self.setVisible(study is not None)
        if study is None:
            self.label.setText("")
            return None
        if self._result is not None:
            self._render()
            return None
        self.label.setText("Computing the verdict…")
        job = Job(
            study_cards,
            study,
            title="Compute the verdict",
            on_returned=lambda result: self._returned(study, result),
        )
        job.ended.connect(lambda: self._ended(job))
        self.job = job
        _RUNNING.add(job)
        return job.start()

    def set_blinded(self, blinded: bool) -> None:
        self._blinded = bool(blinded)
        if self._study is not None:
            self._render()

    def _returned(self, study: StudyIndex, result: list[dict] | str) -> None:
        if study is not self._study:
            return
        self._result = result
        self.cards = result if isinstance(result, list) else None
        try:
            self._render()
        except RuntimeError:  # the widget was closed meanwhile
            pass

    def _ended(self, job: Job) -> None:
        _RUNNING.discard(job)
        if job is self.job and job.error is not None:
            try:
                self.label.setText("Could not compute the verdict.")
            except RuntimeError:
                pass

    def _render(self) -> None:
        if self._blinded:
            self.label.setText(BLINDED_TEXT)
        elif isinstance(self._result, str):
            self.label.setText(escape(self._result))
        elif self._result is None:
            self.label.setText("Computing the verdict…")
        else:
            self.label.setText(cards_html(self._result))
