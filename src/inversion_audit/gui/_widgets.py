"""Small Qt widgets shared by the dock widgets: layer and device dropdowns, a colour legend."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QWidget

__all__ = ["LayerCombo", "DeviceCombo", "ColorLegend"]

NONE_TEXT = "(none)"


class LayerCombo(QComboBox):
    """A dropdown of the viewer's layers of some kinds, refreshed by :meth:`reset_choices`."""

    def __init__(
        self, viewer: Any, kinds: tuple[str, ...] = ("image",), optional: bool = False
    ) -> None:
        super().__init__()
        self.viewer = viewer
        self.kinds = kinds
        self.optional = optional
        self.preferred: str | None = None
        self._listed_names: list[str] = []
        self.reset_choices()

    def reset_choices(self, *_: Any) -> None:
        current = self.currentText()
        names = [
            layer.name for layer in self.viewer.layers if type(layer).__name__.lower() in self.kinds
        ]
        if self.optional:
            names = [NONE_TEXT, *names]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if self.preferred in names and self.preferred not in self._listed_names:
            current = self.preferred  # a layer asked for before it existed has just appeared
        self._listed_names = names
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)
        if self.currentText() != current:
            self.currentTextChanged.emit(self.currentText())

    def layer(self) -> Any | None:
        """The chosen layer, or ``None``."""
        name = self.currentText()
        for layer in self.viewer.layers:
            if layer.name == name and type(layer).__name__.lower() in self.kinds:
                return layer
        return None

    def choose(self, name: str | None) -> bool:
        """Select the layer called ``name``; if it is not listed yet, select it when it appears."""
        self.preferred = name
        if name is None or self.findText(name) < 0:
            return False
        self.setCurrentText(name)
        return True


class DeviceCombo(QComboBox):
    """``auto`` plus the devices that exist here (cpu, cuda, mps).

    Listing devices imports torch, so it is done when the dropdown first opens (or at
    once when torch is already imported): opening the plugin menu stays light.
    """

    def __init__(self) -> None:
        super().__init__()
        self.addItems(["auto", "cpu"])
        self._listed = False
        if "torch" in sys.modules:
            self.list_devices()

    def list_devices(self) -> list[str]:
        from ..devices import available_devices

        current = self.currentText()
        devices = available_devices()
        self.clear()
        self.addItems(devices)
        self.setCurrentText(current if current in devices else "auto")
        self._listed = True
        return devices

    def showPopup(self) -> None:  # noqa: N802 (Qt override)
        if not self._listed:
            self.list_devices()
        super().showPopup()


class ColorLegend(QWidget):
    """A horizontal colour bar with its range: ``low [gradient] high unit``."""

    def __init__(self, unit: str = "") -> None:
        super().__init__()
        self.unit = unit
        self.low = QLabel("")
        self.high = QLabel("")
        self.bar = QLabel()
        self.bar.setFixedHeight(14)
        self.bar.setMinimumWidth(80)
        self.bar.setScaledContents(True)
        # the gradient stretches to the space left by the numbers, never the other way round
        self.bar.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.low)
        row.addWidget(self.bar, stretch=1)
        row.addWidget(self.high)
        self.range: tuple[float, float] | None = None

    def set_colormap(self, colormap: Any, low: float, high: float) -> None:
        """Show ``colormap`` (a napari Colormap) spanning ``low``..``high``."""
        rgba = np.asarray(colormap.map(np.linspace(0.0, 1.0, 256)), float)
        row = np.ascontiguousarray((rgba[:, :3] * 255).astype(np.uint8))
        strip = np.ascontiguousarray(np.repeat(row[None], 14, axis=0))
        image = QImage(strip.data, 256, 14, 256 * 3, QImage.Format.Format_RGB888).copy()
        self.bar.setPixmap(QPixmap.fromImage(image))
        self.low.setText(f"{low:.2f}")
        self.high.setText(f"{high:.2f} {self.unit}".strip())
        self.range = (float(low), float(high))

    def clear(self) -> None:
        """No colour bar and no range (nothing computed)."""
        self.bar.clear()
        self.low.setText("")
        self.high.setText("")
        self.range = None
