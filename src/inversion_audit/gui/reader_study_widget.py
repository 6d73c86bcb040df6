"""Reader study dock widget (Plugins > Inversion Audit > Reader study).

A radiologist opens the reader package (the folder ``reader-study create`` wrote; it holds no
answer key), logs in by name and answers blinded cases: the reconstruction and candidates A,
B, C... side by side in napari's grid (one shared camera).
Keys: A-H pick a candidate, 0 picks "none", Enter commits and shows the next case. Each
answer is committed to the package when given; the clock runs only while the case is on
screen. State lives in :class:`~inversion_audit.reader_study.ReaderSession`; this widget only
displays it. Layers are added from arrays under blinded names, never from file paths, in
a fixed order, all on one grid with one intensity window, the case's own (from its images'
0.5th-99.5th brain percentiles), under orientation letters (:mod:`._reader_viewer`).

Room for the canvas: once docked, the widget joins napari's left column as a tab beside
the layer controls, as the Review panel does (:mod:`._dock`), so the case grid keeps at
least 60% of a 1280-px-wide window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QEvent, QSize, Qt, QTimer
from qtpy.QtGui import QGuiApplication
from qtpy.QtWidgets import (
    QApplication,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..errors import InversionAuditError
from ..reader_study import LABELS, MATCH_NONE, ReaderSession
from ..reader_study.session import BlindedStudy
from ._dock import compact_form, join_left_column
from ._reader_form import arrange_match_buttons, clear_choice, level_group, match_group
from ._reader_viewer import bind_keys, remove_case_layers, show_case_layers, unbind_keys

if TYPE_CHECKING:
    import napari

__all__ = ["ReaderStudyWidget"]

_LETTER_KEYS = {getattr(Qt.Key, f"Key_{x}"): x for x in LABELS}
#: the size the widget asks for: no wider than napari's layer controls beside it
PREFERRED_SIZE = QSize(320, 520)
MINIMUM_SIZE = QSize(240, 160)
#: the layer list's share of the left column's height once the widget is there
LAYER_LIST_SHARE = 0.1


class ReaderStudyWidget(QWidget):
    """Blinded reader-study widget for one napari viewer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        # the reader's view of the package: names, case count, sessions (no key in it)
        self.study: BlindedStudy | None = None
        self.session: ReaderSession | None = None
        self._layers: list = []
        self._bound: dict[str, object] = {}
        self._app_active = True
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        form = QWidget()  # in a scroll area: the left column may be shorter than the form
        outer = QVBoxLayout(form)
        login = QFormLayout()
        db_row = QHBoxLayout()
        self.db_edit = QLineEdit()
        self.db_edit.setPlaceholderText("reader package")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setToolTip("Choose the reader package you were given")
        self.open_button = QPushButton("Open")
        db_row.addWidget(self.db_edit)
        db_row.addWidget(self.browse_button)
        db_row.addWidget(self.open_button)
        login.addRow("Package", db_row)
        reader_row = QHBoxLayout()
        self.reader_combo = QComboBox()
        self.reader_combo.setEditable(True)
        self.reader_combo.setToolTip("Your reader name, as given by the study coordinator")
        self.login_button = QPushButton("Log in")
        reader_row.addWidget(self.reader_combo)
        reader_row.addWidget(self.login_button)
        login.addRow("Reader", reader_row)
        outer.addLayout(login)

        self.progress_label = QLabel("Open a reader package and log in")
        font = self.progress_label.font()
        font.setBold(True)
        self.progress_label.setFont(font)
        outer.addWidget(self.progress_label)
        # what went wrong or what is missing, under the progress: never scrolled out of sight
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.hide()  # shown while it has something to say
        outer.addWidget(self.status_label)
        self.task_label = QLabel("")
        self.task_label.setWordWrap(True)
        outer.addWidget(self.task_label)

        self.match_box, self.match_group, self.match_buttons = match_group()
        outer.addWidget(self.match_box)
        self.confidence_box, self.confidence_group = level_group(
            self, "Confidence in your choice", "guess", "certain"
        )
        self.confidence_box.setToolTip("How sure are you of the candidate you chose?")
        outer.addWidget(self.confidence_box)
        self.anatomy_box, self.anatomy_group = level_group(
            self, "Recognisable anatomy", "not at all", "clearly"
        )
        self.anatomy_box.setToolTip("Does the reconstruction show recognisable anatomy?")
        outer.addWidget(self.anatomy_box)
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("Comment (optional)")
        outer.addWidget(self.comment_edit)

        nav = QHBoxLayout()
        self.previous_button = QPushButton("◀ Previous")
        self.previous_button.setToolTip("Go back to the previous case and change your answer")
        self.next_button = QPushButton("Save and next ▶")
        self.next_button.setToolTip("Save this answer and show the next case (Enter)")
        nav.addWidget(self.previous_button)
        nav.addWidget(self.next_button)
        outer.addLayout(nav)
        outer.addStretch(1)
        compact_form(form)
        login.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)  # short labels
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(form)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self._placed = False

        self.browse_button.clicked.connect(self._browse)
        self.open_button.clicked.connect(lambda: self.open_database(self.db_edit.text()))
        self.db_edit.returnPressed.connect(lambda: self.open_database(self.db_edit.text()))
        self.login_button.clicked.connect(lambda: self.log_in(self.reader_combo.currentText()))
        self.next_button.clicked.connect(self.submit)
        self.previous_button.clicked.connect(self.previous)
        app = QGuiApplication.instance()
        if app is not None:
            app.applicationStateChanged.connect(self._on_app_state)
        self._refresh()

    # -- actions ---------------------------------------------------------------------------
    def open_database(self, path: str) -> bool:
        """Open a reader package (its folder); returns False (and says why) on failure."""
        self._log_out()
        try:
            study = BlindedStudy(path.strip())
        except InversionAuditError as exc:
            self._error(str(exc))
            return False
        if self.study is not None:
            self.study.close()
        self.study = study
        self.db_edit.setText(str(study.path))
        self.reader_combo.clear()
        self.reader_combo.addItems(list(study.readers))
        self.reader_combo.setCurrentText("")
        self._say(f"{study.n_cases} cases. Type your reader name and log in.")
        self._refresh()
        return True

    def log_in(self, reader: str) -> bool:
        """Log in as ``reader`` and show their first unanswered case."""
        if self.study is None:
            self._error("Open a reader package first.")
            return False
        self._log_out()
        try:
            self.session = self.study.log_in(reader)
        except InversionAuditError as exc:
            self._error(str(exc))
            return False
        self.session.open_case()
        self.reader_combo.setCurrentText(self.session.reader)
        self._show_case()
        self.setFocus()
        return True

    def select_match(self, label: str) -> None:
        """Choose candidate ``label`` (or ``"none"``) for the current case."""
        b = self.match_buttons.get(label)
        if b is not None and b.isVisible() and b.isEnabled():
            b.setChecked(True)

    def submit(self) -> bool:
        """Commit the current answer and show the next case (Enter)."""
        s = self.session
        if s is None or s.done:
            return False
        qs = s.questions()
        values = {
            "match": self._checked_answer() if "match" in qs else None,
            "confidence": self._checked_level(self.confidence_group)
            if "confidence" in qs
            else None,
            "anatomy": self._checked_level(self.anatomy_group) if "anatomy" in qs else None,
        }
        missing = [q for q, v in values.items() if q in qs and v is None]
        if missing:
            self._say("Please answer: " + ", ".join(missing) + ".")
            return False
        comment = self.comment_edit.text().strip() if "comment" in qs else None
        try:
            s.submit(comment=comment or None, **values)
        except InversionAuditError as exc:
            self._error(str(exc))
            return False
        self._show_case()
        return True

    def previous(self) -> None:
        """Go back one case (when the design allows revisits)."""
        s = self.session
        if s is None or s.position == 0 or not s.allow_revisit:
            return
        s.go_to(s.position - 1)
        self._show_case()

    # -- display ---------------------------------------------------------------------------
    def _show_case(self) -> None:
        s = self.session
        self._refresh()
        if s is None or s.done:
            self._remove_layers()
            if s is not None:
                more = " Use ◀ Previous to review." if s.allow_revisit else ""
                self._say("All cases answered. Thank you!" + more)
            return
        try:
            images = s.images()
        except InversionAuditError as exc:
            self._remove_layers()
            self._error(str(exc))
            return
        self._layers = show_case_layers(self.viewer, self._layers, images)  # reused if they fit
        self._say("")
        s.restart_clock()  # loading time does not count
        self._update_clock()

    def _refresh(self) -> None:
        s = self.session
        active = s is not None and not s.done
        qs = s.questions() if active else ()
        case = s.case if active else None
        self.progress_label.setText(
            s.progress_text() if s is not None else "Open a reader package and log in"
        )
        if case is None:
            self.task_label.setText("")
        elif case.kind == "match":
            self.task_label.setText(
                "Compare the reconstruction (top left) with the candidates. "
                f"Keys: A-{case.labels[-1]} choose, 0 = none, Enter = save and next."
            )
        else:
            self.task_label.setText("Reconstruction only: rate its anatomy. Enter = save and next.")
        arrange_match_buttons(
            self.match_box.layout(), self.match_buttons, case.labels if case is not None else ()
        )
        self.match_box.setVisible("match" in qs)
        self.confidence_box.setVisible("confidence" in qs)
        self.anatomy_box.setVisible("anatomy" in qs)
        self.comment_edit.setVisible("comment" in qs)
        self.next_button.setEnabled(active)
        self.previous_button.setVisible(s is None or s.allow_revisit)
        self.previous_button.setEnabled(s is not None and s.allow_revisit and s.position > 0)
        for group in (self.match_group, self.confidence_group, self.anatomy_group):
            clear_choice(group)
        self.comment_edit.clear()
        answer = s.current_answer() if active else None
        if answer is not None:  # revisiting: show the current answer
            if answer.match:
                self.match_buttons[answer.match].setChecked(True)
            if answer.confidence:
                self.confidence_group.button(answer.confidence).setChecked(True)
            if answer.anatomy:
                self.anatomy_group.button(answer.anatomy).setChecked(True)
            self.comment_edit.setText(answer.comment or "")
        # lay the form out now, in its scroll area: a box shown again gets its place before
        # the next click or key, not on the next pass of the event loop
        QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)

    def _remove_layers(self) -> None:
        remove_case_layers(self.viewer, self._layers)
        self._layers = []

    def _checked_answer(self) -> str | None:
        b = self.match_group.checkedButton()
        return None if b is None else b.property("answer")

    @staticmethod
    def _checked_level(group: QButtonGroup) -> int | None:
        level = group.checkedId()
        return level if level > 0 else None

    def _say(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_label.setVisible(bool(text))

    def _error(self, text: str) -> None:
        from napari.utils.notifications import show_error

        from ._messages import user_message

        text = user_message(text)
        self._say(text)
        show_error(text)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open reader package")
        if path:
            self.open_database(path)

    def _log_out(self) -> None:
        if self.session is not None:
            self.session.pause()
        self.session = None
        self._remove_layers()
        self._refresh()

    # -- keys and clock --------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._handle_key(event.key()):
            event.accept()
        else:
            super().keyPressEvent(event)

    def _handle_key(self, key) -> bool:
        if self.session is None or self.session.done:
            return False
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submit()
            return True
        if key == Qt.Key.Key_0:
            self.select_match(MATCH_NONE)
            return True
        if key in _LETTER_KEYS:
            self.select_match(_LETTER_KEYS[key])
            return True
        return False

    def _bind_viewer_keys(self) -> None:
        """Same shortcuts while the canvas has focus; the previous bindings come back on hide."""
        if self._bound:
            return
        keys = {x: (lambda v, x=x: self.select_match(x) if self.session else None) for x in LABELS}
        keys["0"] = lambda v: self.select_match(MATCH_NONE) if self.session else None
        keys["Enter"] = lambda v: self.submit()
        self._bound = bind_keys(self.viewer, keys)

    def _unbind_viewer_keys(self) -> None:
        unbind_keys(self.viewer, self._bound)
        self._bound = {}

    def _on_app_state(self, state) -> None:
        self._app_active = state == Qt.ApplicationState.ApplicationActive
        self._update_clock()

    def _update_clock(self) -> None:
        if self.session is None:
            return
        if self.isVisible() and self._app_active:
            self.session.resume()
        else:
            self.session.pause()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._bind_viewer_keys()
        self._update_clock()
        if not self._placed:
            self._placed = True
            QTimer.singleShot(0, self.join_layer_controls)

    def join_layer_controls(self) -> bool:
        """Move the widget's dock into napari's left column, as a tab beside the layer
        controls, raised; ``False`` when the widget is not docked in a napari window."""
        return join_left_column(self, LAYER_LIST_SHARE)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return PREFERRED_SIZE

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return MINIMUM_SIZE

    def hideEvent(self, event) -> None:  # noqa: N802
        super().hideEvent(event)
        if self.session is not None:
            self.session.pause()
        self._unbind_viewer_keys()

    def closeEvent(self, event) -> None:  # noqa: N802
        self._log_out()
        self._unbind_viewer_keys()
        if self.study is not None:
            self.study.close()
            self.study = None
        super().closeEvent(event)
