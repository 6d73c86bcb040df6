"""Open study's "Or load files one by one" group: an original NIfTI, a target and its decoder.

The target is a checkpoint of the paper's networks or an external model: a MONAI bundle
folder, an nnU-Net v2 trained model folder, or MONAI weights that the inversion
checkpoint's sidecar describes. Checking the pair loads both in a worker (an external
model is rebuilt as the decoder's sidecar records it and its weights' hash checked); a
problem is an error notification naming the file and leaves the shared state as it was.
A checked pair goes into the viewer's shared state, where the Reconstruct widget takes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from ..attack_pair import target_problem
from ._compute import LoadedModels, check_checkpoints
from ._messages import checkpoint_problem
from ._workers import Job, JobPanel

if TYPE_CHECKING:
    import napari

    from ._state import AuditState

__all__ = ["OneByOneGroup", "pair_problem"]

#: the file dialog's filter for checkpoints and model weights
_WEIGHTS_FILTER = "Checkpoints and weights (*.safetensors *.pt *.pth)"


def pair_problem(target: Path, inversion: Path) -> str | None:
    """Why ``target`` + ``inversion`` cannot be a pair, in a line naming the file (or ``None``).

    ``target`` may be a MONAI bundle or nnU-Net folder, or weights (a paper network's
    checkpoint, or MONAI weights when the decoder was trained against an external model);
    loading the pair (:func:`~inversion_audit.attack_pair.load_attack_pair`) tells which.
    """
    return target_problem(target) or checkpoint_problem(inversion, "inversion checkpoint")


def _describe(target: Path, models: LoadedModels) -> str:
    """What was loaded, for the notification: an external model's network and latent."""
    args = getattr(models.target, "arch_args", None)
    if getattr(models.target, "arch", None) != "external" or not isinstance(args, dict):
        return target.name
    latent = args.get("latent", {}).get("module", "?")
    return f"{target.name} ({args.get('source')} {args.get('network')}, latent {latent})"


class OneByOneGroup(QGroupBox):
    """Load an original NIfTI, and check a target + inversion checkpoint pair for Reconstruct."""

    def __init__(
        self, viewer: napari.viewer.Viewer, state: AuditState, parent: QWidget | None = None
    ) -> None:
        super().__init__("Or load files one by one", parent)
        self.viewer, self.state = viewer, state
        self.original_button = QPushButton("Original NIfTI…")
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("checkpoint, MONAI weights, bundle or nnU-Net folder")
        self.target_edit.setToolTip(
            "a target checkpoint (.safetensors), MONAI weights (.safetensors/.pt/.pth) whose "
            "decoder records the network, a MONAI bundle folder or an nnU-Net v2 model folder"
        )
        self.inversion_edit = QLineEdit()
        target_file, target_folder = QPushButton("…"), QPushButton("Folder…")
        target_file.setToolTip("choose a checkpoint or weights file")
        target_folder.setToolTip("choose a MONAI bundle or nnU-Net trained model folder")
        inversion_file = QPushButton("…")
        target_row, inversion_row = QHBoxLayout(), QHBoxLayout()
        for widget in (self.target_edit, target_file, target_folder):
            target_row.addWidget(widget)
        inversion_row.addWidget(self.inversion_edit)
        inversion_row.addWidget(inversion_file)
        self.check_button = QPushButton("Load checkpoints")
        self.checkpoint_panel = JobPanel("Load checkpoints")
        self.checkpoint_panel.run_button.hide()

        form = QFormLayout(self)
        form.addRow(self.original_button)
        form.addRow("target checkpoint or model", target_row)
        form.addRow("inversion checkpoint", inversion_row)
        form.addRow(self.check_button)
        form.addRow(self.checkpoint_panel)

        self.original_button.clicked.connect(self._browse_original)
        target_file.clicked.connect(lambda: self._browse_file(self.target_edit, "Target"))
        target_folder.clicked.connect(self._browse_folder)
        inversion_file.clicked.connect(
            lambda: self._browse_file(self.inversion_edit, "Inversion checkpoint")
        )
        self.check_button.clicked.connect(
            lambda: self.load_checkpoints(self.target_edit.text(), self.inversion_edit.text())
        )
        state.events.target_checkpoint.connect(lambda p: self.target_edit.setText(str(p or "")))
        state.events.inversion_checkpoint.connect(
            lambda p: self.inversion_edit.setText(str(p or ""))
        )

    def load_checkpoints(
        self, target: str | Path, inversion: str | Path, device: str = "cpu"
    ) -> Job | None:
        """Check a target (checkpoint, MONAI weights, bundle or nnU-Net folder) and its
        inversion checkpoint by loading them in a worker; a good pair goes to the shared state
        (and the model cache) for Reconstruct."""
        if not str(target).strip() or not str(inversion).strip():
            show_error("Choose a target checkpoint or model and an inversion checkpoint first.")
            return None
        target, inversion = Path(str(target)).expanduser(), Path(str(inversion)).expanduser()
        problem = pair_problem(target, inversion)
        if problem is not None:  # before the core guesses a sidecar name from it
            show_error(problem)
            return None

        def accept(models: LoadedModels) -> None:
            self.state.target_checkpoint = target
            self.state.inversion_checkpoint = inversion
            show_info(f"Checkpoints loaded: {_describe(target, models)}, {inversion.name}")

        job = Job(
            check_checkpoints,
            target,
            inversion,
            device,
            title="Load checkpoints",
            on_returned=accept,
        )
        return self.checkpoint_panel.start(job)

    def _browse_original(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Original NIfTI", "", "NIfTI (*.nii *.nii.gz)")
        if path:
            self.viewer.open(path, plugin="napari-inversion-audit")

    def _browse_file(self, edit: QLineEdit, title: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, title, edit.text(), _WEIGHTS_FILTER)
        if path:
            edit.setText(path)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "MONAI bundle or nnU-Net model folder", self.target_edit.text()
        )
        if folder:
            self.target_edit.setText(folder)
