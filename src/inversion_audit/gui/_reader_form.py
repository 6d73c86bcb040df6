"""The reader-study widget's answer buttons: candidates A, B, ... and "none", and the 1-5
scales (confidence, recognisable anatomy), cleared between cases."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QButtonGroup,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QWidget,
)

from ..reader_study import LABELS, MATCH_NONE

__all__ = ["NONE_TEXT", "clear_choice", "level_group", "match_group"]

NONE_TEXT = "None (0)"


def match_group() -> tuple[QGroupBox, QButtonGroup, dict[str, QPushButton]]:
    """The "same person?" box: one checkable button per label and "none", each with its
    answer in the ``answer`` property; returns the box, its group and the buttons by answer."""
    box = QGroupBox("Which candidate is the same person?")
    row = QHBoxLayout(box)
    group = QButtonGroup(box)
    buttons: dict[str, QPushButton] = {}
    for label in (*LABELS, MATCH_NONE):
        b = QPushButton(NONE_TEXT if label == MATCH_NONE else label)
        b.setCheckable(True)
        b.setToolTip(
            "None of the candidates (key 0)"
            if label == MATCH_NONE
            else f"Candidate {label} (key {label})"
        )
        b.setProperty("answer", label)
        group.addButton(b)
        buttons[label] = b
        row.addWidget(b)
    return box, group, buttons


def level_group(parent: QWidget, title: str, low: str, high: str) -> tuple[QGroupBox, QButtonGroup]:
    """A 1-5 scale of radio buttons (ids 1 to 5) between the words ``low`` and ``high``."""
    box = QGroupBox(title, parent)
    row = QHBoxLayout(box)
    row.addWidget(QLabel(low))
    group = QButtonGroup(box)
    for level in range(1, 6):
        b = QRadioButton(str(level))
        group.addButton(b, level)
        row.addWidget(b)
    row.addWidget(QLabel(high))
    return box, group


def clear_choice(group: QButtonGroup) -> None:
    """Uncheck every button of ``group`` (an exclusive group cannot do it by itself)."""
    group.setExclusive(False)
    for b in group.buttons():
        b.setChecked(False)
    group.setExclusive(True)
