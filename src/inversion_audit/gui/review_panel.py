"""Review panel (Plugins > Inversion Audit > Review): one dock, one tab per review step.

Study, Compare, Candidates, Deformation and Reconstruct are the single widgets (which stay
in the Plugins menu too), each on a tab of its own inside a scroll area, so that the dock
fits a 1280x800 screen and the candidate table gets the dock's height. The tabs share the
viewer's state, as the single widgets do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QSize
from qtpy.QtWidgets import QFrame, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .candidates_widget import CandidatesWidget
from .compare_widget import CompareWidget
from .deformation_widget import DeformationWidget
from .reconstruct_widget import ReconstructWidget
from .study_widget import StudyWidget

if TYPE_CHECKING:
    import napari

__all__ = ["ReviewPanel", "TABS"]

#: tab titles, in review order, and the widget each shows
TABS = (
    ("Study", StudyWidget),
    ("Compare", CompareWidget),
    ("Candidates", CandidatesWidget),
    ("Deformation", DeformationWidget),
    ("Reconstruct", ReconstructWidget),
)
#: the size the panel asks for: narrow enough beside the canvas, short enough for 800 px
PREFERRED_SIZE = QSize(440, 560)


class ReviewPanel(QWidget):
    """The review widgets of one viewer as tabs of one dock."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.tabs = QTabWidget()
        self.pages: dict[str, QWidget] = {}
        for title, cls in TABS:
            page = cls(napari_viewer)
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(page)
            self.tabs.addTab(scroll, title)
            self.pages[title] = page
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        # follow the review: a selection leads to Compare/Candidates, a study to Study
        state = self.pages["Study"].state
        state.events.study.connect(lambda *_: self.show_tab("Study"))

    def show_tab(self, title: str) -> QWidget:
        """Bring tab ``title`` to the front; return its widget."""
        index = [t for t, _ in TABS].index(title)
        self.tabs.setCurrentIndex(index)
        return self.pages[title]

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return PREFERRED_SIZE

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(320, 320)

    def reset_choices(self, *_: object) -> None:
        """napari calls this when layers change: pass it on to the tabs that list layers."""
        for page in self.pages.values():
            reset = getattr(page, "reset_choices", None)
            if callable(reset):
                reset()
