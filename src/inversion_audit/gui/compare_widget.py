"""Compare (the Review panel's Compare tab): a reconstruction over its original.

Views (:mod:`._compare_views`): overlay (blending mode and opacity of the reconstruction),
side by side (napari grid, one shared camera, each panel titled), checkerboard and curtain
(one shared layer). All follow :mod:`._display`'s one rule: one window for both images,
the opacity and blending this tab shows (side by side, and the Candidates tab's grid, which
this tab then shows as "side by side": each image whole). "Compute" adds a ``difference``
layer (reconstruction - original, diverging colormap, symmetric contrast limits) and an
``SSIM map`` layer, reused by the next pair, and shows the global SSIM, correlation and PSNR;
it runs in a worker. Outside blinded mode the study's recorded scores of a study pair are
shown too; while blinded only what is computed against the image the user picked.

Axes are named by anatomy (R–L, A–P, S–I: volumes are in RAS voxel order); the curtain cuts
across the slice on screen.

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
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QWidget,
)

from ..study.layout import parse_run, run_name
from ._compare_views import VIEW_MODES, show_composite, show_images, subject_reconstructions
from ._compute import META_KEY, Comparison, align_to, compare_volumes
from ._display import OVERLAY_BLENDING, OVERLAY_OPACITY
from ._layers import layer_volume, same_geometry, set_layer
from ._state import state_for
from ._widgets import ColorLegend, LayerCombo
from ._workers import Job, JobPanel

if TYPE_CHECKING:
    import napari

__all__ = ["CompareWidget", "VIEW_MODES"]

BLENDINGS = ("translucent", "additive", "minimum", "opaque")
#: blue where the reconstruction is darker, black where equal, red where brighter (dark canvas)
DIFFERENCE_COLORMAP = Colormap(
    [[0.2, 0.5, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.25, 0.15, 1.0]],
    name="difference (blue-black-red)",
)
SSIM_COLORMAP = "magma"
#: the three voxel axes of a RAS volume, by anatomy
AXIS_NAMES = ("R–L (x)", "A–P (y)", "S–I (z)")
#: the layer names of Compute's results
DIFFERENCE_LAYER, SSIM_LAYER = "difference", "SSIM map"
METRICS_NONE = "SSIM –  ·  correlation –  ·  PSNR –"
SIDE_TIP = "side by side shows each image whole: opacity 100%, translucent"


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
        self.blending_combo.setCurrentText(OVERLAY_BLENDING)
        self.opacity_slider = _slider(0, 100, round(OVERLAY_OPACITY * 100))
        self.opacity_label = QLabel("")
        self.tile_slider = _slider(1, 32, 8)
        self.curtain_slider = _slider(0, 100, 50)
        self.axis_combo = QComboBox()
        self.axis_combo.addItems(list(AXIS_NAMES))
        self.axis_combo.setCurrentIndex(0)  # R–L: across an axial slice
        self.panel = JobPanel("Compute maps")
        self.panel.run_button.setToolTip(
            "compute the difference and SSIM map layers and the global SSIM, correlation, PSNR"
        )
        self.metrics_label = QLabel(METRICS_NONE)
        self.metrics_label.setWordWrap(True)
        self.difference_legend = ColorLegend()
        self.ssim_legend = ColorLegend()

        opacity_row = QHBoxLayout()
        opacity_row.addWidget(self.opacity_slider, stretch=1)
        opacity_row.addWidget(self.opacity_label)
        form = QFormLayout(self)
        form.addRow("original", self.original_combo)
        form.addRow("reconstruction", self.reconstruction_combo)
        form.addRow("view", self.mode_combo)
        form.addRow("blending", self.blending_combo)
        form.addRow("opacity", opacity_row)
        form.addRow("checkerboard tile (voxels)", self.tile_slider)
        form.addRow("curtain position", self.curtain_slider)
        form.addRow("curtain axis", self.axis_combo)
        self.defence_button = QPushButton("Undefended vs defended")
        self.defence_button.setToolTip(
            "the subject's undefended reconstruction beside a defended run's, side by side "
            "(load every run's reconstruction in Open study first)"
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
        self.state.events.original_layer.connect(self._pair_changed)
        self.state.events.blinded.connect(self._blinded_changed)
        napari_viewer.canvas.grid.events.enabled.connect(self._grid_changed)
        self._show_controls()
        self._follow_state()

    # -- layers ------------------------------------------------------------------------------
    def reset_choices(self, *_: Any) -> None:
        self.original_combo.reset_choices()
        self.reconstruction_combo.reset_choices()

    def _follow_state(self, *_: Any) -> None:
        """A new selection: its pair, shown as this tab says; its recorded scores."""
        self.original_combo.choose(self.state.original_layer)
        self.reconstruction_combo.choose(self.state.reconstruction_layer)
        self._clear_results()
        recorded = self.recorded_scores()
        if recorded:
            self.metrics_label.setText(f"study scores.csv: {recorded}\n(Compute for the maps)")
        if self._pair(quiet=True) is not None:
            self.apply_view()

    def _pair_changed(self, *_: Any) -> None:
        """The selection's layers came back (unblinding): show them as this tab says."""
        self.original_combo.choose(self.state.original_layer)
        self.reconstruction_combo.choose(self.state.reconstruction_layer)
        if self.state.original_layer is not None and self._pair(quiet=True) is not None:
            self.apply_view()

    def _blinded_changed(self, *_: Any) -> None:
        """Nothing computed against the named pair, nor recorded, stays on show."""
        self._clear_results()
        self.panel.status.setText("")
        self.original_combo.choose(self.state.original_layer)
        self.reconstruction_combo.choose(self.state.reconstruction_layer)

    def _clear_results(self) -> None:
        self.comparison = None
        self.metrics_label.setText(METRICS_NONE)
        for legend in (self.difference_legend, self.ssim_legend):
            legend.clear()

    def _forget(self, *_: Any) -> None:
        self.comparison = None

    def _pair(self, quiet: bool = False) -> tuple[Any, Any] | None:
        original, recon = self.original_combo.layer(), self.reconstruction_combo.layer()
        problem = None
        if original is None or recon is None:
            problem = "Compare: choose an original and a reconstruction image layer."
        elif original.name == recon.name:
            problem = "Compare: the original and the reconstruction are the same layer."
        if problem is not None:
            if not quiet:
                show_error(problem)
            return None
        return original, recon

    # -- defended vs undefended ---------------------------------------------------------------
    def compare_defence(self, defended_run: str | None = None) -> bool:
        """The undefended reconstruction (left, as "original") beside ``defended_run``'s (the
        selected run when it is defended, else the first defended run loaded), side by side."""
        layers = subject_reconstructions(self.viewer, self.state.study, self.state.entry)

        def defended(run: str) -> bool:
            return bool(parse_run(run)[3])

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
        base = run_name(*parse_run(chosen)[:3])  # the same run, undefended
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

    def _show_controls(self) -> None:
        """Opacity and blending apply to the overlay; other views show each image whole."""
        overlay = self.mode_combo.currentText() == "overlay"
        for control in (self.opacity_slider, self.blending_combo):
            control.setEnabled(overlay)
            control.setToolTip("" if overlay else SIDE_TIP)
        value = self.opacity_slider.value() if overlay else 100
        self.opacity_label.setText(f"{value}%")

    def _grid_changed(self, *_: Any) -> None:
        """The grid turned on or off elsewhere (Candidates, Deformation): say what is shown."""
        on, mode = self.viewer.canvas.grid.enabled, self.mode_combo.currentText()
        if on != (mode == "side by side") and (on or mode == "side by side"):
            self.mode_combo.blockSignals(True)
            self.mode_combo.setCurrentText("side by side" if on else "overlay")
            self.mode_combo.blockSignals(False)
            if not on:
                self.apply_overlay()
        self._show_controls()

    def apply_overlay(self) -> None:
        """Blending and opacity of the reconstruction over the original (overlay view)."""
        self._show_controls()
        recon = self.reconstruction_combo.layer()
        if recon is None or self.mode_combo.currentText() != "overlay":
            return
        recon.blending = self.blending_combo.currentText()
        recon.opacity = self.opacity_slider.value() / 100.0

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
        """Show the chosen pair in the chosen view."""
        self._show_controls()
        pair = self._pair()
        if pair is None:
            return
        original, recon = pair
        mode = self.mode_combo.currentText()
        if mode in ("overlay", "side by side"):
            show_images(
                self.viewer,
                original,
                recon,
                side=mode == "side by side",
                opacity=self.opacity_slider.value() / 100.0,
                blending=self.blending_combo.currentText(),
            )
            return
        aligned = (
            self.comparison.aligned
            if self.comparison is not None
            else align_to(layer_volume(recon), layer_volume(original))
        )
        show_composite(
            self.viewer,
            original,
            recon,
            aligned,
            mode,
            self.tile_slider.value(),
            self._curtain_axis(),
            self.curtain_slider.value() / 100.0,
        )

    # -- difference and SSIM ------------------------------------------------------------------
    def compute(self) -> Job | None:
        """Compute the difference and SSIM map layers and the global scores in a worker."""
        pair = self._pair()
        if pair is None:
            return None
        original, recon = pair
        geometry = same_geometry(original)
        title = f"{recon.name} vs {original.name}"

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
                    "name": DIFFERENCE_LAYER,
                    "colormap": DIFFERENCE_COLORMAP,
                    "contrast_limits": (-limit, limit),
                    **geometry,
                    "metadata": {META_KEY: {"role": "difference", "title": title}},
                },
            )
            low = float(min(result.ssim_map.min(), 0.99))
            smap = set_layer(
                self.viewer,
                result.ssim_map,
                {
                    "name": SSIM_LAYER,
                    "colormap": SSIM_COLORMAP,
                    "contrast_limits": (low, 1.0),
                    "visible": False,
                    **geometry,
                    "metadata": {META_KEY: {"role": "ssim_map", "title": title}},
                },
            )
            self.difference_legend.set_colormap(diff.colormap, -limit, limit)
            self.ssim_legend.set_colormap(smap.colormap, low, 1.0)
            self.metrics_label.setText(self.metrics_text(result))

        job = Job(
            compare_volumes,
            layer_volume(original),
            layer_volume(recon),
            title=f"Compare {title}",
            on_returned=show,
        )
        return self.panel.start(job, replace=True)

    def recorded_scores(self) -> str:
        """The selected study reconstruction's own scores from ``scores.csv`` ("" when none,
        and always while blinded: they would point at the true original)."""
        s, entry = self.state, self.state.entry
        if s.study is None or entry is None or s.blinded:
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
        study_pair = (
            self.original_combo.currentText() == self.state.original_layer
            and self.reconstruction_combo.currentText() == self.state.reconstruction_layer
        )
        if recorded and study_pair:
            text += f"\n(study scores.csv: {recorded})"
        return text
