"""Room for the canvas: a plugin dock in napari's left column, beside the layer controls.

napari's layer controls take about 320 px on the left whatever a plugin does, so a second
column on the right leaves the canvas under 60% of a 1280-px-wide window. The Review panel
and the reader-study widget therefore join the left column as a tab beside napari's "layer
controls" (one click away), above the layer list, no wider than those controls
(:func:`compact_form`: form labels above their fields, dropdowns and text fields that
shrink), taking most of the column's height (:func:`join_left_column`).
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFormLayout,
    QLineEdit,
    QMainWindow,
    QWidget,
)

__all__ = ["CONTROLS_DOCK", "LAYER_LIST_DOCK", "compact_form", "join_left_column"]

#: napari's dock widgets a plugin dock joins (their Qt object names)
CONTROLS_DOCK, LAYER_LIST_DOCK = "layer controls", "layer list"
#: a dropdown shows at least this many characters, and grows no wider than its dock
_COMBO_CHARS = 8
#: a text field may shrink to this width (pixels)
_EDIT_MIN_WIDTH = 60


def compact_form(page: QWidget) -> None:
    """Fit a widget into the narrow left column: labels above fields, dropdowns and text
    fields that shrink with the column."""
    for form in page.findChildren(QFormLayout):
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
    for combo in page.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(_COMBO_CHARS)
    for edit in page.findChildren(QLineEdit):
        edit.setMinimumWidth(_EDIT_MIN_WIDTH)


def join_left_column(widget: QWidget, layer_list_share: float) -> bool:
    """Move the dock holding ``widget`` into napari's left column, as a tab beside the layer
    controls, raised, with the layer list below it taking ``layer_list_share`` of the
    column's height. ``False`` (nothing moved) when ``widget`` is not docked in a napari
    window or the layer controls are hidden."""
    dock = widget.parent()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parent()
    main = dock.parent() if dock is not None else None
    if not isinstance(main, QMainWindow):
        return False
    controls = main.findChild(QDockWidget, CONTROLS_DOCK)
    layer_list = main.findChild(QDockWidget, LAYER_LIST_DOCK)
    if controls is None or controls is dock or not controls.isVisible():
        return False
    main.tabifyDockWidget(controls, dock)
    dock.show()
    dock.raise_()
    if layer_list is not None and layer_list.isVisible():
        height = max(controls.height() + layer_list.height(), 1)
        listed = round(height * layer_list_share)
        main.resizeDocks([dock, layer_list], [height - listed, listed], Qt.Orientation.Vertical)
    return True
