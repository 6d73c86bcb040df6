"""Review panel (Plugins > Inversion Audit > Review): one dock, one tab per review step.

Study, Compare, Candidates, Deformation and Reconstruct are the single widgets, each on a
tab of its own inside a scroll area. The panel is the Plugins menu's one entry for review;
:func:`open_tab` opens a single widget as a tab of it (docking the panel once), so widgets
are never stacked beside each other. The tabs share the viewer's state, as the single
widgets do.

Room for the canvas: once docked, the panel joins napari's left column as a tab beside the
"layer controls" (one click away), above the layer list, and is no wider than those
controls (tabs down its side, form labels above their fields; :mod:`._dock`), so the
canvas keeps at least 60% of a 1280-px-wide window; it takes most of the column's height,
so that the candidate table shows ten rows at 1280x800.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QSize, QTimer
from qtpy.QtWidgets import QFrame, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ._dock import compact_form, join_left_column
from .candidates_widget import CandidatesWidget
from .compare_widget import CompareWidget
from .deformation_widget import DeformationWidget
from .reconstruct_widget import ReconstructWidget
from .study_widget import StudyWidget

if TYPE_CHECKING:
    import napari

__all__ = ["ReviewPanel", "TABS", "open_review", "open_tab"]

PLUGIN = "napari-inversion-audit"
#: tab titles, in review order, and the widget each shows
TABS = (
    ("Study", StudyWidget),
    ("Compare", CompareWidget),
    ("Candidates", CandidatesWidget),
    ("Deformation", DeformationWidget),
    ("Reconstruct", ReconstructWidget),
)
#: the single widgets' former menu names -> their tab
ALIASES = {"Open study": "Study", "Candidate matches": "Candidates"}
#: the size the panel asks for: no wider than napari's image layer controls beside it
PREFERRED_SIZE = QSize(320, 560)
MINIMUM_SIZE = QSize(240, 160)
#: the layer list's share of the left column's height once the panel is there
LAYER_LIST_SHARE = 0.26


class ReviewPanel(QWidget):
    """The review widgets of one viewer as tabs of one dock."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.tabs = QTabWidget()
        self.tabs.setTabPosition(QTabWidget.TabPosition.West)
        self.pages: dict[str, QWidget] = {}
        for title, cls in TABS:
            page = cls(napari_viewer)
            compact_form(page)
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(page)
            self.tabs.addTab(scroll, title)
            self.pages[title] = page
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        # follow the review: a new study brings the Study tab to the front
        state = self.pages["Study"].state
        state.events.study.connect(lambda *_: self.show_tab("Study"))
        self._placed = False

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        if not self._placed:
            self._placed = True
            QTimer.singleShot(0, self.join_layer_controls)

    def join_layer_controls(self) -> bool:
        """Move the panel's dock into napari's left column, as a tab beside the layer
        controls, raised, taking most of the column's height. ``False`` when the panel is not
        docked in a napari window."""
        return join_left_column(self, LAYER_LIST_SHARE)

    def show_tab(self, title: str) -> QWidget:
        """Bring tab ``title`` (or a single widget's former name) to the front; return its
        widget."""
        title = ALIASES.get(title, title)
        index = [t for t, _ in TABS].index(title)
        self.tabs.setCurrentIndex(index)
        return self.pages[title]

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return PREFERRED_SIZE

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return MINIMUM_SIZE

    def reset_choices(self, *_: object) -> None:
        """napari calls this when layers change: pass it on to the tabs that list layers."""
        for page in self.pages.values():
            reset = getattr(page, "reset_choices", None)
            if callable(reset):
                reset()


def open_review(viewer: Any) -> ReviewPanel:
    """The viewer's Review panel, docked on first use (napari keeps one per viewer)."""
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    return panel


def open_tab(viewer: Any, title: str) -> QWidget:
    """A single review widget (``"Compare"``, ``"Open study"``...) as a tab of the viewer's
    Review panel, brought to the front; returns the widget."""
    return open_review(viewer).show_tab(title)
