"""Open study (Plugins > Inversion Audit > Open study).

Open a study folder written by ``inversion-audit run`` and pick a reconstruction from a
searchable list of subjects, folds, architectures, variants and threat models, each marked
member (trained the target) or non-member (the study's holdout), filtered by defence and
strength: its original, reconstruction(s) and labels are added as layers at their world
position. Under the study's summary line, its verdict cards (``_verdict_view.py``: the
report's, computed from the study's files). In blinded mode the list (which names subjects)
and the verdict (scored against the true originals) are hidden until unblinded. Or
load files one by one (``_one_by_one.py``): an original NIfTI, a target checkpoint or an
external model (MONAI weights, a MONAI bundle or nnU-Net folder) and an inversion checkpoint
(checked by loading them; a problem is an error notification naming the file and leaves
the viewer as it was).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import InversionAuditError
from ..study.index import ReconstructionEntry, StudyIndex, entry_defence
from ._blinding import show_entry_layers
from ._compute import META_KEY, LayerData, load_entry_layers
from ._layers import axial_view
from ._messages import user_message
from ._one_by_one import OneByOneGroup
from ._state import state_for
from ._verdict_view import VerdictView
from ._workers import Job, JobPanel

if TYPE_CHECKING:
    import napari

__all__ = ["StudyWidget", "ALL", "UNDEFENDED"]

#: filter choices: every run, and the runs without a defence
ALL, UNDEFENDED = "all", "undefended"


def _in_folder(path: Path | None, folder: Path) -> bool:
    """Whether ``path`` lies inside ``folder``."""
    if path is None:
        return False
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except OSError:
        return False


class StudyWidget(QWidget):
    """Open a study folder, search its reconstructions and load one as layers."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)

        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("study folder")
        browse = QPushButton("Browse…")
        open_button = QPushButton("Open")
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        row.addWidget(open_button)

        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("search: subject, fold, arch, variant, threat model")
        self.search_edit.setClearButtonEnabled(True)
        self.entry_list = QListWidget()
        self.defence_combo, self.strength_combo = QComboBox(), QComboBox()
        self.defence_combo.setToolTip("show the runs of one defence (or the undefended runs)")
        self.strength_combo.setToolTip("show one strength of the chosen defence")
        filters = QFormLayout()
        filters.addRow("defence", self.defence_combo)
        filters.addRow("strength", self.strength_combo)
        self.filters = QWidget()
        self.filters.setLayout(filters)
        filters.setContentsMargins(0, 0, 0, 0)
        self.blinded_note = QLabel(
            "Blinded: the list of reconstructions is hidden until you unblind on the Candidates tab."
        )
        self.blinded_note.setWordWrap(True)
        self.blinded_note.hide()
        self.all_runs = QCheckBox("load every run's reconstruction")
        self.all_runs.setToolTip(
            "load every run's reconstruction of the subject (other architectures, defences)"
        )
        self.panel = JobPanel("Load selected")

        self.one_by_one = OneByOneGroup(napari_viewer, self.state, self)

        self.summary = QLabel("No study open.")
        self.summary.setWordWrap(True)
        self.verdict = VerdictView(self)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        layout.addWidget(self.verdict)
        layout.addWidget(self.blinded_note)
        layout.addWidget(self.search_edit)
        layout.addWidget(self.filters)
        layout.addWidget(self.entry_list, stretch=1)
        layout.addWidget(self.all_runs)
        layout.addWidget(self.panel)
        layout.addWidget(self.one_by_one)

        browse.clicked.connect(self._browse_study)
        open_button.clicked.connect(lambda: self.open_study(self.path_edit.text()))
        self.path_edit.returnPressed.connect(lambda: self.open_study(self.path_edit.text()))
        self.search_edit.textChanged.connect(self.filter_entries)
        self.defence_combo.currentTextChanged.connect(self._defence_changed)
        self.strength_combo.currentTextChanged.connect(
            lambda _: self.filter_entries(self.search_edit.text())
        )
        self.state.events.blinded.connect(self._blinded_changed)
        self.entry_list.currentItemChanged.connect(lambda *_: self.load_selected())
        self.panel.run_button.clicked.connect(self.load_selected)
        self.state.events.study.connect(self._show_study)
        self.viewer.layers.events.inserted.connect(self._adopt_study_layer)
        if self.state.study is not None:
            self._show_study(self.state.study)
        else:
            self._adopt_study_layer()
        self._blinded_changed(self.state.blinded)

    # -- study -------------------------------------------------------------------------------
    def open_study(self, path: str | Path) -> StudyIndex | None:
        """Open a study folder; an invalid folder is an error notification, the state unchanged."""
        try:
            study = StudyIndex.open(Path(str(path)).expanduser())
        except InversionAuditError as exc:
            show_error(user_message(exc))
            # the field shows the study the list shows (or nothing), not the failed path
            current = self.state.study
            self.path_edit.setText(str(current.root) if current is not None else "")
            if current is None:
                self.summary.setText(f"Could not open {path}. No study open.")
            return None
        self.state.study = study
        return study

    def _show_study(self, study: StudyIndex | None) -> None:
        self.entry_list.clear()
        self._fill_defences(study)
        self.verdict.show_study(study)
        if study is None:
            self.summary.setText("No study open.")
            return
        self.path_edit.setText(str(study.root))
        runs = sorted({e.run for e in study.entries})
        subjects = sorted({e.reconstruction_id for e in study.entries})
        self.summary.setText(
            f"{study.root.name}: {len(study.entries)} reconstructions of {len(subjects)} subjects in "
            f"{len(runs)} run(s) ({', '.join(runs)})"
        )
        self._fill_entries(study)

    def _fill_entries(self, study: StudyIndex) -> None:
        """The list: every entry, marked member / non-member; nothing while blinded."""
        self.entry_list.clear()
        if self.state.blinded:
            return
        for k, entry in enumerate(study.entries):
            mark = "member" if study.is_member(entry) else "non-member"
            item = QListWidgetItem(f"{entry.label} · {mark}")
            item.setData(Qt.ItemDataRole.UserRole, k)
            item.setToolTip(
                "trained the target (a member)"
                if mark == "member"
                else "in the study's holdout: trained neither the target nor the decoder"
            )
            self.entry_list.addItem(item)
        self.filter_entries(self.search_edit.text())

    def _blinded_changed(self, blinded: bool) -> None:
        """Blinded: hide (and empty) the list naming subjects and their membership."""
        for widget in (self.search_edit, self.filters, self.entry_list, self.all_runs, self.panel):
            widget.setVisible(not blinded)
        self.blinded_note.setVisible(bool(blinded))
        self.verdict.set_blinded(blinded)
        self.panel.status.setText("")  # a job's progress may have named a subject
        if blinded:
            self.entry_list.blockSignals(True)
            self.entry_list.clear()
            self.entry_list.blockSignals(False)
        elif self.state.study is not None and self.entry_list.count() == 0:
            self._fill_entries(self.state.study)

    # -- defence filters ---------------------------------------------------------------------
    def _fill_defences(self, study: StudyIndex | None) -> None:
        kinds = sorted({d[0] for e in (study.entries if study else []) if (d := entry_defence(e))})
        self.defence_combo.blockSignals(True)
        self.defence_combo.clear()
        self.defence_combo.addItems([ALL, UNDEFENDED, *kinds])
        self.defence_combo.blockSignals(False)
        self.filters.setEnabled(bool(kinds))
        self._defence_changed(ALL)

    def _defence_changed(self, kind: str) -> None:
        study = self.state.study
        strengths = sorted(
            {
                d[1]
                for e in (study.entries if study else [])
                if (d := entry_defence(e)) and d[0] == kind
            }
        )
        self.strength_combo.blockSignals(True)
        self.strength_combo.clear()
        self.strength_combo.addItems([ALL, *(f"{v:g}" for v in strengths)])
        self.strength_combo.blockSignals(False)
        self.strength_combo.setEnabled(bool(strengths))
        self.filter_entries(self.search_edit.text())

    def set_defence_filter(self, kind: str = ALL, strength: float | None = None) -> None:
        """Show the runs of defence ``kind`` (``"undefended"``, ``"all"``) at ``strength``."""
        self.defence_combo.setCurrentText(kind)
        self.strength_combo.setCurrentText(ALL if strength is None else f"{strength:g}")
        self.filter_entries(self.search_edit.text())

    def _passes_defence(self, entry: ReconstructionEntry) -> bool:
        kind, strength = self.defence_combo.currentText(), self.strength_combo.currentText()
        defence = entry_defence(entry)
        if kind in (ALL, ""):
            return True
        if kind == UNDEFENDED:
            return defence is None
        if defence is None or defence[0] != kind:
            return False
        return strength in (ALL, "") or f"{defence[1]:g}" == strength

    def filter_entries(self, text: str) -> list[ReconstructionEntry]:
        """Show only the entries matching every word of ``text`` and the defence filter."""
        study = self.state.study
        if study is None:
            return []
        shown = {e for e in study.search(text) if self._passes_defence(e)}
        for row in range(self.entry_list.count()):
            item = self.entry_list.item(row)
            item.setHidden(study.entries[item.data(Qt.ItemDataRole.UserRole)] not in shown)
        return [e for e in study.entries if e in shown]

    def select(self, entry: ReconstructionEntry) -> Job | None:
        """Select ``entry`` in the list (which loads it) and return the loading job."""
        study = self.state.study
        if study is None:
            return None
        k = study.entries.index(entry)
        for row in range(self.entry_list.count()):
            item = self.entry_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == k:
                if self.entry_list.currentItem() is item:
                    return self.load_selected()
                self.entry_list.setCurrentItem(item)
                return self.panel.job
        return None

    def load_selected(self) -> Job | None:
        """Load the selected reconstruction's layers in a worker."""
        study, item = self.state.study, self.entry_list.currentItem()
        if study is None or item is None:
            return None
        entry = study.entries[item.data(Qt.ItemDataRole.UserRole)]
        job = Job(
            load_entry_layers,
            study,
            entry,
            all_runs=self.all_runs.isChecked(),
            title="Load the reconstruction",
            on_returned=lambda layers: self._show_entry(study, entry, layers),
        )
        return self.panel.start(job, replace=True)

    def _show_entry(
        self, study: StudyIndex, entry: ReconstructionEntry, layers: list[LayerData]
    ) -> None:
        first = len(self.viewer.layers) == 0
        roles = show_entry_layers(self.viewer, study, layers)
        if first:  # an empty viewer: start with axial slices, anterior up
            axial_view(self.viewer)
        s = self.state
        s.original_layer = roles.get("original")
        s.reconstruction_layer = roles.get("reconstruction")
        files = study.checkpoint_files(entry, existing=True)
        if files is not None:
            s.target_checkpoint, s.inversion_checkpoint = files
        elif _in_folder(s.inversion_checkpoint, study.root):
            # another fold's checkpoints would reconstruct with the wrong decoder; the
            # Reconstruct tab says why its fields are empty
            s.target_checkpoint = s.inversion_checkpoint = None
        s.entry = entry  # last: widgets following the selection read the fields above

    def _adopt_study_layer(self, *_: Any) -> None:
        """Open the study a layer came from (e.g. the demo study sample) when none is open."""
        if self.state.study is not None:
            return
        for layer in self.viewer.layers:
            info = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
            if info and info.get("study"):
                self.open_study(info["study"])
                return

    # -- one by one --------------------------------------------------------------------------
    def load_checkpoints(
        self, target: str | Path, inversion: str | Path, device: str = "cpu"
    ) -> Job | None:
        """Check a target (checkpoint, MONAI weights, bundle or nnU-Net folder) and its
        inversion checkpoint by loading them; see :meth:`OneByOneGroup.load_checkpoints`."""
        return self.one_by_one.load_checkpoints(target, inversion, device)

    def _browse_study(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open study folder", self.path_edit.text())
        if folder:
            self.open_study(folder)
