"""Reconstruct (the Review panel's Reconstruct tab).

Runs an inversion decoder D^ on the latent code Enc(X) of the selected image layer: the
image is preprocessed with the checkpoint's own recorded config, reconstructed in a
thread worker (progress bar, Cancel) and added as a new layer on the input's grid, so it
lies exactly over the original. Models are cached between runs. The checkpoint fields
follow the study selection; when the study kept no checkpoints for the selection's fold,
a note says so (:func:`checkpoint_note`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from ..attack_pair import target_problem
from ..study.index import ReconstructionEntry, StudyIndex
from ._compute import META_KEY, reconstruct_volume
from ._layers import layer_volume, same_geometry, set_layer
from ._messages import checkpoint_problem
from ._state import state_for
from ._widgets import DeviceCombo, LayerCombo
from ._workers import Job, JobPanel

if TYPE_CHECKING:
    import napari

__all__ = ["ReconstructWidget", "checkpoint_note"]


def checkpoint_note(study: StudyIndex | None, entry: ReconstructionEntry | None) -> str:
    """Why the study gives no checkpoint pair for ``entry`` ("" when it gives one, or when no
    study reconstruction is selected)."""
    if study is None or entry is None:
        return ""
    files = study.checkpoint_files(entry)
    if files is not None and all(f.is_file() for f in files):
        return ""
    if entry.fold is None:
        return (
            "The study does not record this reconstruction's fold, so its checkpoints are "
            "unknown: choose the two files."
        )
    folds = sorted({e.fold for e in study.entries if e.run == entry.run and e.fold is not None})
    kept = []
    for fold in folds:
        other = study.checkpoint_files(dataclasses.replace(entry, reconstruction_id="", fold=fold))
        if other is not None and all(f.is_file() for f in other):
            kept.append(fold)
    if not kept:
        return (
            f"No checkpoints for fold {entry.fold} in this study: it kept none for this run. "
            "Choose the two files."
        )
    which = ", ".join(str(f) for f in kept)
    plural = "s" if len(kept) > 1 else ""
    return (
        f"No checkpoints for fold {entry.fold} in this study: only fold{plural} {which}'s "
        "were kept. Choose the two files, or select a reconstruction of "
        f"fold{plural} {which}."
    )


def _path_row(edit: QLineEdit, title: str, parent: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    button = QPushButton("…")
    row.addWidget(edit)
    row.addWidget(button)

    def browse() -> None:
        path, _ = QFileDialog.getOpenFileName(
            parent, title, edit.text(), "Checkpoints (*.safetensors *.pt *.pth)"
        )
        if path:
            edit.setText(path)

    button.clicked.connect(browse)
    return row


class ReconstructWidget(QWidget):
    """Reconstruct the selected image from its latent code with an inversion decoder."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.image_combo = LayerCombo(napari_viewer, ("image",))
        self.labels_combo = LayerCombo(napari_viewer, ("labels",), optional=True)
        self.preprocessed_check = QCheckBox("image is already preprocessed")
        self.preprocessed_check.setToolTip(
            "a study's original, candidate and reconstruction layers are preprocessed"
        )
        self.target_edit = QLineEdit(str(self.state.target_checkpoint or ""))
        self.inversion_edit = QLineEdit(str(self.state.inversion_checkpoint or ""))
        self.device_combo = DeviceCombo()
        self.panel = JobPanel("Reconstruct")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.hide()

        form = QFormLayout(self)
        form.addRow("image", self.image_combo)
        form.addRow("labels / brain mask", self.labels_combo)
        form.addRow(self.preprocessed_check)
        form.addRow("target checkpoint", _path_row(self.target_edit, "Target checkpoint", self))
        form.addRow(
            "inversion checkpoint", _path_row(self.inversion_edit, "Inversion checkpoint", self)
        )
        form.addRow("device", self.device_combo)
        form.addRow(self.note)
        form.addRow(self.panel)

        self.panel.run_button.clicked.connect(self.run)
        self.image_combo.currentTextChanged.connect(self._guess_preprocessed)
        self.state.events.target_checkpoint.connect(
            lambda p: self.target_edit.setText(str(p or ""))
        )
        self.state.events.inversion_checkpoint.connect(
            lambda p: self.inversion_edit.setText(str(p or ""))
        )
        self.state.events.original_layer.connect(self.image_combo.choose)
        self.state.events.entry.connect(self._show_note)
        self.image_combo.choose(self.state.original_layer)
        self._guess_preprocessed()
        self._show_note()

    def _show_note(self, *_: object) -> None:
        """Say why the checkpoint fields are empty for the study's selection."""
        text = checkpoint_note(self.state.study, self.state.entry)
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer dropdowns (napari calls this when layers change)."""
        self.image_combo.reset_choices()
        self.labels_combo.reset_choices()

    def _guess_preprocessed(self, *_: Any) -> None:
        layer = self.image_combo.layer()
        info = layer.metadata.get(META_KEY, {}) if layer is not None else {}
        self.preprocessed_check.setChecked(
            info.get("role") in ("original", "candidate", "reconstruction")
        )

    def run(self) -> Job | None:
        """Start the reconstruction of the chosen image layer; return the job."""
        image = self.image_combo.layer()
        if image is None:
            show_error("Reconstruct: choose an image layer first.")
            return None
        target, inversion = self.target_edit.text().strip(), self.inversion_edit.text().strip()
        if not target or not inversion:
            show_error("Reconstruct: choose a target checkpoint and an inversion checkpoint.")
            return None
        # a checkpoint, MONAI weights, a bundle or nnU-Net folder: the decoder's sidecar says which
        problem = target_problem(target) or checkpoint_problem(inversion, "inversion checkpoint")
        if problem is not None:
            show_error(f"Reconstruct: {problem}")
            return None
        labels = self.labels_combo.layer()
        volume = layer_volume(image)
        geometry = same_geometry(image)
        name = f"{image.name} reconstruction"
        source = image.name

        def show(array: Any) -> None:
            set_layer(
                self.viewer,
                array,
                {
                    "name": name,
                    "colormap": "gray",
                    **geometry,
                    "metadata": {
                        META_KEY: {
                            "role": "reconstruction",
                            "source_layer": source,
                            "inversion": inversion,
                        }
                    },
                },
            )

        job = Job(
            reconstruct_volume,  # load_models rebuilds an external model from its decoder's sidecar
            volume,
            Path(target),
            Path(inversion),
            self.device_combo.currentText(),
            labels=layer_volume(labels) if labels is not None else None,
            preprocessed=self.preprocessed_check.isChecked(),
            title=f"Reconstruct {image.name}",
            on_returned=show,
        )
        return self.panel.start(job)
