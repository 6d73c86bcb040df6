"""Compare (Plugins > Inversion Audit > Compare): a reconstruction over its original.

Views: overlay (blending mode and opacity of the reconstruction), side by side (napari
grid, one shared camera), checkerboard, and curtain. "Compute" adds a difference layer
(reconstruction - original, diverging colormap, symmetric contrast limits) and an SSIM
map layer, and shows the global SSIM, correlation and PSNR; it runs in a worker.

Defaults that do not mislead the eye: label layers are hidden while comparing (they would
tint the images); side by side draws both images at full opacity with their names in each
panel; the curtain cuts across the slice on screen; axes are named by anatomy (R–L, A–P,
S–I: volumes are in RAS voxel order).

"Undefended vs defended" puts the undefended reconstruction of the selected subject beside
a defended run's reconstruction of the same subject (both loaded with Open study's "every
run" option), side by side.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.colormaps import Colormap
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QPushButton, QSlider, QWidget

from ..study.layout import parse_run_name
from ._compute import (
    META_KEY,
    Comparison,
    align_to,
    checkerboard,
    compare_volumes,
    curtain,
    display_scale,
)
from ._layers import find_layer, layer_volume, same_geometry, set_layer
from ._state import state_for
from ._widgets import ColorLegend, LayerCombo
from ._workers import Job, JobPanel

if TYPE_CHECKING:
    import napari

__all__ = ["CompareWidget", "VIEW_MODES"]

VIEW_MODES = ("overlay", "side by side", "checkerboard", "curtain")
BLENDINGS = ("translucent", "additive", "minimum", "opaque")
#: blue where the reconstruction is darker, black where equal, red where brighter (dark canvas)
DIFFERENCE_COLORMAP = Colormap(
    [[0.2, 0.5, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.25, 0.15, 1.0]],
    name="difference (blue-black-red)",
)
SSIM_COLORMAP = "magma"
#: the three voxel axes of a RAS volume, by anatomy
AXIS_NAMES = ("R–L (x)", "A–P (y)", "S–I (z)")


def _slider(low: int, high: int, value: int) -> QSlider:
    s = QSlider(Qt.Orientation.Horizontal)
    s.setRange(low, high)
    s.setValue(value)
    return s


class CompareWidget(QWidget):
    """Overlay, side-by-side, checkerboard and curtain views plus difference/SSIM maps."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.comparison: Comparison | None = None
        self.original_combo = LayerCombo(napari_viewer, ("image",))
        self.reconstruction_combo = LayerCombo(napari_viewer, ("image",))
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(VIEW_MODES)
        self.blending_combo = QComboBox()
        self.blending_combo.addItems(BLENDINGS)
        self.opacity_slider = _slider(0, 100, 50)
        self.tile_slider = _slider(1, 32, 8)
        self.curtain_slider = _slider(0, 100, 50)
        self.axis_combo = QComboBox()
        self.axis_combo.addItems(list(AXIS_NAMES))
        self.axis_combo.setCurrentIndex(0)  # R–L: across an axial slice
        self.panel = JobPanel("Compute difference and SSIM map")
        self.metrics_label = QLabel("SSIM –  ·  correlation –  ·  PSNR –")
        self.metrics_label.setWordWrap(True)
        self.difference_legend = ColorLegend()
        self.ssim_legend = ColorLegend()

        form = QFormLayout(self)
        form.addRow("original", self.original_combo)
        form.addRow("reconstruction", self.reconstruction_combo)
        form.addRow("view", self.mode_combo)
        form.addRow("blending", self.blending_combo)
        form.addRow("opacity", self.opacity_slider)
        form.addRow("checkerboard tile (voxels)", self.tile_slider)
        form.addRow("curtain position", self.curtain_slider)
        form.addRow("curtain axis", self.axis_combo)
        self.defence_button = QPushButton("Undefended vs defended (side by side)")
        self.defence_button.setToolTip(
            "the subject's undefended reconstruction beside a defended run's (load every run's "
            "reconstruction in Open study first)"
        )
        form.addRow(self.defence_button)
        form.addRow(self.panel)
        form.addRow(self.metrics_label)
        form.addRow("difference", self.difference_legend)
        form.addRow("SSIM map", self.ssim_legend)

        self.mode_combo.currentTextChanged.connect(lambda _: self.apply_view())
        self.blending_combo.currentTextChanged.connect(lambda _: self.apply_overlay())
        self.opacity_slider.valueChanged.connect(lambda _: self.apply_overlay())
        self.tile_slider.valueChanged.connect(lambda _: self.apply_view())
        self.curtain_slider.valueChanged.connect(lambda _: self.apply_view())
        self.axis_combo.currentIndexChanged.connect(lambda _: self.apply_view())
        self.original_combo.currentTextChanged.connect(self._forget)
        self.reconstruction_combo.currentTextChanged.connect(self._forget)
        self.panel.run_button.clicked.connect(self.compute)
        self.defence_button.clicked.connect(lambda: self.compare_defence())
        self.state.events.entry.connect(self._follow_state)
        self._follow_state()

    # -- layers ------------------------------------------------------------------------------
    def reset_choices(self, *_: Any) -> None:
        self.original_combo.reset_choices()
        self.reconstruction_combo.reset_choices()

    def _follow_state(self, *_: Any) -> None:
        self.original_combo.choose(self.state.original_layer)
        self.reconstruction_combo.choose(self.state.reconstruction_layer)
        recorded = self.recorded_scores()
        if recorded:
            self.metrics_label.setText(f"study scores.csv: {recorded}\n(Compute for the maps)")

    def _forget(self, *_: Any) -> None:
        self.comparison = None

    def _pair(self) -> tuple[Any, Any] | None:
        original, recon = self.original_combo.layer(), self.reconstruction_combo.layer()
        if original is None or recon is None:
            show_error("Compare: choose an original and a reconstruction image layer.")
            return None
        if original.name == recon.name:
            show_error("Compare: the original and the reconstruction are the same layer.")
            return None
        return original, recon

    @property
    def composite_name(self) -> str:
        return f"{self.reconstruction_combo.currentText()} {self.mode_combo.currentText()}"

    # -- defended vs undefended ---------------------------------------------------------------
    def _subject_reconstructions(self) -> dict[str, str]:
        """run -> layer name of the selected subject's loaded reconstructions (this study)."""
        study, entry = self.state.study, self.state.entry
        if study is None or entry is None:
            return {}
        out = {}
        for layer in self.viewer.layers:
            info = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
            if (
                info.get("role") == "reconstruction"
                and info.get("study") == str(study.root)
                and info.get("subject") == entry.reconstruction_id
                and info.get("run")
            ):
                out[info["run"]] = layer.name
        return out

    def compare_defence(self, defended_run: str | None = None) -> bool:
        """The undefended reconstruction (left, as "original") beside ``defended_run``'s (the
        selected run when it is defended, else the first defended run loaded), side by side."""
        layers = self._subject_reconstructions()

        def defended(run: str) -> bool:
            threat = parse_run_name(run)[2]
            return "_" in threat

        plain = [r for r in layers if not defended(r)]
        entry = self.state.entry
        chosen = defended_run or (entry.run if entry is not None else None)
        runs = sorted(r for r in layers if defended(r))
        if chosen not in runs:
            chosen = runs[0] if runs else None
        if not plain or chosen is None:
            show_error(
                "Compare: load the subject's undefended and defended reconstructions first "
                "(Open study › load every run's reconstruction of the subject)."
            )
            return False
        base = chosen.rsplit("_", 1)[0]  # <arch>_<variant>_<threat>: the same run, undefended
        self.original_combo.choose(layers[base if base in layers else plain[0]])
        self.reconstruction_combo.choose(layers[chosen])
        self.set_mode("side by side")
        return True

    # -- views -------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """Switch the view: one of :data:`VIEW_MODES`."""
        if mode not in VIEW_MODES:
            raise ValueError(f"unknown view {mode!r}; choose one of {', '.join(VIEW_MODES)}")
        self.mode_combo.setCurrentText(mode)
        self.apply_view()

    def apply_overlay(self) -> None:
        """Blending and opacity of the reconstruction over the original."""
        recon = self.reconstruction_combo.layer()
        if recon is None:
            return
        recon.blending = self.blending_combo.currentText()
        recon.opacity = self.opacity_slider.value() / 100.0

    def _titles(self, layers: list[Any], visible: bool) -> None:
        """Each grid panel titled with its layer's name (napari >= 0.6), or untitled."""
        for layer in layers:
            overlay = getattr(layer, "name_overlay", None)
            if overlay is not None:
                overlay.visible = visible

    def _curtain_axis(self) -> int:
        """The chosen curtain axis, moved onto the slice shown when it is the sliced axis."""
        axis = self.axis_combo.currentIndex()
        displayed = tuple(self.viewer.dims.displayed)
        if axis not in displayed and displayed:
            axis = displayed[-1]  # the screen's horizontal axis
            self.axis_combo.blockSignals(True)
            self.axis_combo.setCurrentIndex(axis)
            self.axis_combo.blockSignals(False)
        return axis

    def apply_view(self) -> None:
        pair = self._pair()
        if pair is None:
            return
        original, recon = pair
        mode = self.mode_combo.currentText()
        grid = self.viewer.canvas.grid
        for m in ("checkerboard", "curtain"):
            layer = find_layer(self.viewer, f"{recon.name} {m}")
            if layer is not None and m != mode:
                layer.visible = False
        for layer in self.viewer.layers:  # labels would tint the images
            if type(layer).__name__ == "Labels":
                layer.visible = False
        if mode in ("overlay", "side by side"):
            original.visible = recon.visible = True
            side = mode == "side by side"
            if side:
                for layer in self.viewer.layers:
                    layer.visible = layer.name in (original.name, recon.name)
            if grid.enabled != side:
                grid.enabled = side
                self.viewer.reset_view()
            i, j = self.viewer.layers.index(original.name), self.viewer.layers.index(recon.name)
            if j < i:  # the reconstruction is drawn over the original
                self.viewer.layers.move(j, i)
            self._titles([original, recon], side)
            if side:  # each image whole, in its own titled panel
                original.opacity = recon.opacity = 1.0
                original.blending = recon.blending = "translucent"
            else:
                self.apply_overlay()
            return
        self._titles([original, recon], False)
        grid.enabled = False
        a = display_scale(original.data)
        b = (
            self.comparison.aligned
            if self.comparison is not None
            else align_to(layer_volume(recon), layer_volume(original))
        )
        b = display_scale(b)
        if mode == "checkerboard":
            data = checkerboard(a, b, self.tile_slider.value())
        else:
            data = curtain(a, b, self._curtain_axis(), self.curtain_slider.value() / 100.0)
        set_layer(
            self.viewer,
            data,
            {
                "name": self.composite_name,
                "colormap": "gray",
                "contrast_limits": (0.0, 1.0),
                "visible": True,
                **same_geometry(original),
                "metadata": {META_KEY: {"role": mode}},
            },
        )
        original.visible = recon.visible = False

    # -- difference and SSIM ------------------------------------------------------------------
    def compute(self) -> Job | None:
        """Compute the difference and SSIM map layers and the global scores in a worker."""
        pair = self._pair()
        if pair is None:
            return None
        original, recon = pair
        geometry = same_geometry(original)
        names = (f"{recon.name} difference", f"{recon.name} SSIM map")

        def show(result: Comparison) -> None:
            self.comparison = result
            # symmetric limits at the 99.5th percentile of |difference|: a few outliers do not wash it out
            limit = (
                float(np.percentile(np.abs(result.difference), 99.5))
                or float(np.abs(result.difference).max())
                or 1.0
            )
            diff = set_layer(
                self.viewer,
                result.difference,
                {
                    "name": names[0],
                    "colormap": DIFFERENCE_COLORMAP,
                    "contrast_limits": (-limit, limit),
                    **geometry,
                    "metadata": {META_KEY: {"role": "difference"}},
                },
            )
            low = float(min(result.ssim_map.min(), 0.99))
            smap = set_layer(
                self.viewer,
                result.ssim_map,
                {
                    "name": names[1],
                    "colormap": SSIM_COLORMAP,
                    "contrast_limits": (low, 1.0),
                    "visible": False,
                    **geometry,
                    "metadata": {META_KEY: {"role": "ssim_map"}},
                },
            )
            self.difference_legend.set_colormap(diff.colormap, -limit, limit)
            self.ssim_legend.set_colormap(smap.colormap, low, 1.0)
            self.metrics_label.setText(self.metrics_text(result))

        job = Job(
            compare_volumes,
            layer_volume(original),
            layer_volume(recon),
            title=f"Compare {recon.name}",
            on_returned=show,
        )
        return self.panel.start(job, replace=True)

    def recorded_scores(self) -> str:
        """The selected study reconstruction's own scores from ``scores.csv`` ("" when none)."""
        s, entry = self.state, self.state.entry
        if s.study is None or entry is None:
            return ""
        sid = entry.reconstruction_id
        recorded = [
            (m, s.study.score(entry.run, sid, sid, m)) for m in ("ssim", "correlation", "psnr")
        ]
        return ", ".join(f"{m} {v:.3f}" for m, v in recorded if not math.isnan(v))

    def metrics_text(self, result: Comparison) -> str:
        """The global scores, with the study's recorded ones when a study reconstruction is shown."""
        text = f"SSIM {result.ssim:.3f}  ·  correlation {result.correlation:.3f}  ·  PSNR {result.psnr:.1f} dB"
        recorded = self.recorded_scores()
        if recorded and self.reconstruction_combo.currentText() == self.state.reconstruction_layer:
            text += f"\n(study scores.csv: {recorded})"
        return text
