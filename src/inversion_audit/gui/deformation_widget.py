"""Deformation (the Review panel's Deformation tab).

Registers a reconstruction (moving) to a chosen candidate (fixed) with ANTs (the default),
preset ``paper`` (affine + SyN as in the paper) or ``fast``, or with greedy (affine + NCC
deformable, preset ``fast``), and shows the displacement
magnitude in mm as an Image layer over the candidate's brain only (transparent elsewhere:
the study's scoring mask for a study candidate) with a colour legend of its range,
optionally a Vectors layer of the displacement field on every slice of the viewed axis
(an in-plane lattice, re-selected when the view changes), and the mean displacement norm. The registration runs in a child process driven by a thread worker
(ANTs and greedy hold the GIL), with progress and Cancel. A pair the study already registered
with the chosen backend opens at once from ``deformation/<run>/`` (never while blinded: the
study's numbers would point at the true original). A new registration reports its mean displacement inside the
candidate's brain. The layers are ``displacement (mm)`` and ``vectors``, reused by the next
pair (the pair in their metadata).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QSpinBox, QWidget

from ..errors import InversionAuditError
from ..study.index import StudyIndex
from ._compute import META_KEY
from ._deformation_display import (
    DisplayResult,
    brain_mask,
    mask_in_child,
    mask_needs_child,
    masked_magnitude,
    outside_transparent_colormap,
    register_for_display,
    vectors_for_view,
)
from ._display import sync_titles
from ._layers import find_layer, layer_volume, same_geometry, set_layer
from ._registration import DeformationView, cached_deformation, study_registration
from ._state import state_for
from ._subprocess import call_in_subprocess
from ._widgets import ColorLegend, LayerCombo
from ._workers import Job, JobPanel

if TYPE_CHECKING:
    import napari

__all__ = ["BACKENDS", "DeformationWidget", "PRESETS", "MAGNITUDE_COLORMAP"]

PRESETS = ("fast", "paper")
#: the backend choice as shown, and the backend each names (ANTs first: the default)
BACKENDS = {"ANTs": "ants", "greedy": "greedy"}
MAGNITUDE_COLORMAP = "turbo"
#: the layer names of a result
MAGNITUDE_LAYER, VECTORS_LAYER = "displacement (mm)", "vectors"
NO_RESULT = "mean displacement –"


def _register_in_child(*args: Any, progress: Any = None, **kwargs: Any) -> DisplayResult:
    return call_in_subprocess(register_for_display, *args, progress=progress, **kwargs)


def _study_candidate(layer: Any) -> tuple[str, str, str] | None:
    """(study folder, variant, candidate id) of a study candidate/original layer, else None."""
    f = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
    if f.get("role") in ("original", "candidate") and f.get("variant") and f.get("study"):
        return (f["study"], f["variant"], f["subject"])
    return None


class DeformationWidget(QWidget):
    """Displacement magnitude between a reconstruction and a candidate."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.result: DeformationView | None = None
        self.brain = None  # the BrainMask the map is drawn on
        self._vectors: np.ndarray | None = None  # every slice's lattice, all axes
        self._vectors_step = 1
        self._vectors_name: str | None = None
        self.moving_combo = LayerCombo(napari_viewer, ("image",))
        self.fixed_combo = LayerCombo(napari_viewer, ("image",))
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(list(BACKENDS))
        self.backend_combo.setToolTip(
            "ANTs: the paper's registration (presets fast and paper); greedy: affine then NCC "
            "deformable, several times faster (preset fast)"
        )
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(PRESETS)
        self.vectors_check = QCheckBox("show displacement vectors")
        self.step_spin = QSpinBox()
        self.step_spin.setRange(1, 32)
        self.step_spin.setValue(4)
        self.step_spin.setSuffix(" voxels")
        self.vectors_check.setToolTip(
            "a subsampled Vectors layer of the displacement field (registers again when the "
            "study holds only the magnitude map)"
        )
        self.cache_check = QCheckBox("use the study's stored result")
        self.cache_check.setToolTip(
            "open the study's own result for a pair it registered (never while blinded)"
        )
        self.cache_check.setChecked(True)
        self.panel = JobPanel("Register")
        self.result_label = QLabel(NO_RESULT)
        self.result_label.setWordWrap(True)
        self.legend = ColorLegend(unit="mm")

        form = QFormLayout(self)
        form.addRow("reconstruction (moving)", self.moving_combo)
        form.addRow("candidate (fixed)", self.fixed_combo)
        form.addRow("registration", self.backend_combo)
        form.addRow("preset", self.preset_combo)
        form.addRow(self.vectors_check)
        form.addRow("vector spacing", self.step_spin)
        form.addRow(self.cache_check)
        form.addRow(self.panel)
        form.addRow(self.result_label)
        form.addRow("magnitude", self.legend)

        self.panel.run_button.clicked.connect(self.run)
        self.backend_combo.currentTextChanged.connect(self._backend_changed)
        self.state.events.reconstruction_layer.connect(self.moving_combo.choose)
        self.state.events.candidate_layer.connect(self.fixed_combo.choose)
        self.moving_combo.choose(self.state.reconstruction_layer)
        self.fixed_combo.choose(self.state.candidate_layer or self.state.original_layer)
        napari_viewer.dims.events.order.connect(self._show_vectors)
        napari_viewer.dims.events.ndisplay.connect(self._show_vectors)
        self.state.events.blinded.connect(self._blinded_changed)

    def registration(self) -> str:
        """The chosen backend, ``"ants"`` or ``"greedy"``."""
        return BACKENDS[self.backend_combo.currentText()]

    def _backend_changed(self, *_: Any) -> None:
        """Offer the chosen backend's presets only (greedy has no ``paper``), keeping the
        preset when the backend has it."""
        from ..metrics.registration import BACKEND_PRESETS

        current = self.preset_combo.currentText()
        presets = [p for p in PRESETS if p in BACKEND_PRESETS[self.registration()]]
        self.preset_combo.clear()
        self.preset_combo.addItems(presets)
        if current in presets:
            self.preset_combo.setCurrentText(current)

    def _blinded_changed(self, *_: Any) -> None:
        """A result computed against the named pair is not shown on (its layers are removed
        with the pair's, :mod:`._blinding`)."""
        self.result, self.brain, self._vectors = None, None, None
        self.result_label.setText(NO_RESULT)
        self.legend.clear()
        self.panel.status.setText("")

    def reset_choices(self, *_: Any) -> None:
        self.moving_combo.reset_choices()
        self.fixed_combo.reset_choices()

    # -- cache -------------------------------------------------------------------------------
    def cached(self, moving: Any, fixed: Any) -> DeformationView | None:
        """The study's stored result for this pair of study layers, if any."""
        m, f = moving.metadata.get(META_KEY, {}), fixed.metadata.get(META_KEY, {})
        study = self.state.study
        if (
            not m.get("study")
            or m.get("study") != f.get("study")
            or m.get("role") != "reconstruction"
        ):
            return None
        if study is None or str(study.root) != m["study"]:
            try:
                study = StudyIndex.open(m["study"])
            except InversionAuditError:  # the study moved: register instead
                return None
        run = m.get("run")
        if run is None or not f.get("subject"):
            return None
        if study_registration(study) != self.registration():  # another backend's numbers
            return None
        return cached_deformation(study, run, m["subject"], f["subject"])

    # -- run ---------------------------------------------------------------------------------
    def run(self) -> Job | DeformationView | None:
        """Show the stored result at once, or register in a worker (returns the job)."""
        moving, fixed = self.moving_combo.layer(), self.fixed_combo.layer()
        if moving is None or fixed is None or moving.name == fixed.name:
            show_error(
                "Deformation: choose a reconstruction and a different candidate image layer."
            )
            return None
        step = self.step_spin.value() if self.vectors_check.isChecked() else None
        use_cache = self.cache_check.isChecked() and not self.state.blinded
        if use_cache and step is None:  # studies store no vector fields
            stored = self.cached(moving, fixed)
            if stored is not None and stored.magnitude.shape == fixed.data.shape:
                return self._show_stored(stored, moving, fixed)
        candidate = _study_candidate(fixed)
        self._vectors_step = step or 1
        job = Job(
            _register_in_child,
            layer_volume(moving),
            layer_volume(fixed),
            preset=self.preset_combo.currentText(),
            vectors_step=step,
            study_candidate=candidate,
            registration=self.registration(),
            title=f"Register {moving.name} to {fixed.name}",
            on_returned=lambda view: self.show_result(view, moving, fixed),
        )
        return self.panel.start(job, replace=True)

    def _show_stored(self, stored: DeformationView, moving: Any, fixed: Any) -> Any:
        """The stored map at once over the brain mask; the mask in a child process when it
        needs ANTs' bias correction (returns that job), else here (returns ``stored``)."""
        candidate = _study_candidate(fixed)
        data = np.asarray(fixed.data)
        if not mask_needs_child(candidate):
            self.show_result(DisplayResult(stored, brain_mask(data, candidate)), moving, fixed)
            return stored
        job = Job(
            call_in_subprocess,
            mask_in_child,
            data,
            candidate,
            title=f"Brain mask of {fixed.name}",
            on_returned=lambda brain: self.show_result(DisplayResult(stored, brain), moving, fixed),
        )
        return self.panel.start(job, replace=True)

    def show_result(self, result: DisplayResult, moving: Any, fixed: Any) -> None:
        """Add the magnitude (and vectors) layers over the candidate and report the mean."""
        view = result.view
        self.result, self.brain = view, result.brain
        geometry = same_geometry(fixed)
        # drawn over the candidate's brain only: 0, transparent, elsewhere
        shown_map = masked_magnitude(view.magnitude, result.brain.mask)
        # the legend spans exactly the numbers written beside it: 0 to the map's maximum
        high = float(shown_map.max()) if shown_map.size else 0.0
        high = high if np.isfinite(high) and high > 0 else 1.0
        name, vectors_name = MAGNITUDE_LAYER, VECTORS_LAYER
        pair = f"{moving.name} → {fixed.name}"
        for old in list(self.viewer.layers):  # a new result replaces the previous pair's
            role = (
                old.metadata.get(META_KEY, {}).get("role")
                if isinstance(old.metadata, dict)
                else None
            )
            if role in ("deformation", "deformation_vectors") and old.name not in (
                name,
                vectors_name,
            ):
                self.viewer.layers.remove(old)
        layer = set_layer(
            self.viewer,
            shown_map,
            {
                "name": name,
                "colormap": outside_transparent_colormap(MAGNITUDE_COLORMAP),
                "contrast_limits": (0.0, high),
                "opacity": 0.6,
                "visible": True,
                **geometry,
                "metadata": {
                    META_KEY: {
                        "role": "deformation",
                        "title": pair,
                        "mean_displacement_mm": view.mean_displacement_mm,
                        "stored": bool(view.cached),
                        "mask": result.brain.source,
                    }
                },
            },
        )
        self._vectors = result.vectors
        if result.vectors is not None and len(result.vectors):
            set_layer(
                self.viewer,
                self._view_vectors(),
                {
                    "name": vectors_name,
                    "edge_width": 0.3,
                    "edge_color": "yellow",
                    "length": 1.0,
                    **geometry,
                    "metadata": {META_KEY: {"role": "deformation_vectors", "title": pair}},
                },
                "vectors",
            )
        elif (old := find_layer(self.viewer, vectors_name)) is not None:
            self.viewer.layers.remove(old.name)
        self._vectors_name = vectors_name
        if self.viewer.canvas.grid.enabled:  # the map lies over the candidate
            self.viewer.canvas.grid.enabled = False
            self.viewer.reset_view()
        fixed.visible = True
        moving.visible = False
        sync_titles(self.viewer)
        self.legend.set_colormap(layer.colormap, 0.0, high)
        source = (
            "stored in the study"
            if view.cached
            else f"{self.backend_combo.currentText()} preset {self.preset_combo.currentText()}"
        )
        mean = view.mean_displacement_mm
        shown = f"{mean:.2f} mm" if np.isfinite(mean) else "not computed"
        self.result_label.setText(
            f"mean displacement {shown} ({source}); colour scale 0–{high:.2f} mm (0 to the "
            f"maximum), drawn inside {result.brain.source}"
        )

    # -- vectors on the viewed slice -------------------------------------------------------
    def _view_vectors(self) -> np.ndarray:
        displayed = tuple(int(d) for d in self.viewer.dims.displayed)
        return vectors_for_view(self._vectors, self._vectors_step, displayed)

    def _show_vectors(self, *_: Any) -> None:
        """Re-select the vectors for the axes now displayed (every slice of the viewed axis)."""
        if self._vectors is None or not len(self._vectors):
            return
        layer = find_layer(self.viewer, self._vectors_name)
        if layer is not None:
            layer.data = self._view_vectors()
