"""The reader-study widget's answer buttons: candidates A, B, ... and "none", and the 1-5
scales (confidence, recognisable anatomy), cleared between cases.

The form fits napari's left column (about 300 px wide, :mod:`._dock`): the candidate buttons
wrap after :data:`BUTTONS_PER_ROW`, and each scale puts its end words under its ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QRadioButton,
    QWidget,
)

from ..reader_study import LABELS, MATCH_NONE

__all__ = [
    "BUTTONS_PER_ROW",
    "NONE_TEXT",
    "arrange_match_buttons",
    "clear_choice",
    "level_group",
    "match_group",
]

NONE_TEXT = "None (0)"
#: candidate buttons in one row of the "same person?" box
BUTTONS_PER_ROW = 5


def match_group() -> tuple[QGroupBox, QButtonGroup, dict[str, QPushButton]]:
    """The "same person?" box: one checkable button per label and "none", each with its
    answer in the ``answer`` property; returns the box, its group and the buttons by answer."""
    box = QGroupBox("Which candidate is the same person?")
    grid = QGridLayout(box)
    group = QButtonGroup(box)
    buttons: dict[str, QPushButton] = {}
    for label in (*LABELS, MATCH_NONE):
        b = QPushButton(NONE_TEXT if label == MATCH_NONE else label)
        b.setCheckable(True)
        b.setMinimumWidth(0)
        b.setToolTip(
            "None of the candidates (key 0)"
            if label == MATCH_NONE
            else f"Candidate {label} (key {label})"
        )
        b.setProperty("answer", label)
        group.addButton(b)
        buttons[label] = b
    arrange_match_buttons(grid, buttons, LABELS)
    return box, group, buttons


def arrange_match_buttons(
    grid: QGridLayout, buttons: dict[str, QPushButton], labels: Sequence[str]
) -> None:
    """Lay out the buttons of ``labels`` (the case's candidates) in rows of
    :data:`BUTTONS_PER_ROW`, then "none" over the rest of its row (a row of its own when the
    last row is full); the other candidates' buttons are hidden."""
    for b in buttons.values():
        grid.removeWidget(b)
    shown = [label for label in LABELS if label in labels]
    for i, label in enumerate(shown):
        grid.addWidget(buttons[label], i // BUTTONS_PER_ROW, i % BUTTONS_PER_ROW)
        buttons[label].setVisible(True)
    for label in LABELS:
        if label not in shown:
            buttons[label].setVisible(False)
    column = len(shown) % BUTTONS_PER_ROW
    row = len(shown) // BUTTONS_PER_ROW
    span = BUTTONS_PER_ROW - column
    grid.addWidget(buttons[MATCH_NONE], row, column, 1, span)
    buttons[MATCH_NONE].setVisible(True)


def level_group(parent: QWidget, title: str, low: str, high: str) -> tuple[QGroupBox, QButtonGroup]:
    """A 1-5 scale of radio buttons (ids 1 to 5), the word ``low`` under 1 and ``high``
    under 5."""
    box = QGroupBox(title, parent)
    grid = QGridLayout(box)
    group = QButtonGroup(box)
    for level in range(1, 6):
        b = QRadioButton(str(level))
        group.addButton(b, level)
        grid.addWidget(b, 0, level - 1)
    grid.addWidget(QLabel(f"1 = {low}"), 1, 0, 1, 3, Qt.AlignmentFlag.AlignLeft)
    grid.addWidget(QLabel(f"{high} = 5"), 1, 3, 1, 2, Qt.AlignmentFlag.AlignRight)
    return box, group


def clear_choice(group: QButtonGroup) -> None:
    """Uncheck every button of ``group`` (an exclusive group cannot do it by itself)."""
    group.setExclusive(False)
    for b in group.buttons():
        b.setChecked(False)
    group.setExclusive(True)
