"""Candidate matches (the Review panel's Candidates tab).

A table of every candidate original scored against the selected reconstruction: rank,
candidate, SSIM, correlation and mean displacement (when computed), ranked by SSIM by
default or by correlation, deformation or the fused rank. Selecting a row shows that
candidate beside the reconstruction (napari grid: one camera, so position and zoom are
linked), both whole and in one window (:mod:`._display`). The true original is highlighted
only outside blinded mode. In blinded mode candidates are listed under codes in code order
(a seeded shuffle, not by score) with no scores; the selection's named layers leave the
viewer (:mod:`._blinding`): the reconstruction is ``recon`` on the centred preprocessed grid,
each candidate is its code (``C03``), with no subject id in any layer name or metadata, and
export is off. The table exports to CSV (written atomically).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor, QFont
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..io import atomic_write_text
from ..reader_study.session import DISPLAY_WINDOW
from ._blinding import (
    blind_layers,
    blinded_metadata,
    finish_unblinding,
    start_unblinding,
)
from ._compute import load_candidate_layer, load_entry_layers
from ._display import FULL_VIEW, sync_titles, window_layers
from ._layers import find_layer, same_geometry, set_layer
from ._ranking import RANK_KEYS, RankedCandidate, blinded_codes, rank_candidates, rank_keys
from ._state import state_for
from ._workers import Job, JobPanel

if TYPE_CHECKING:
    import napari

__all__ = ["CandidatesWidget", "COLUMNS", "EXPORT_BLINDED_TIP"]

#: column headers (short: the panel is narrow) and their full names, shown as tooltips
COLUMNS = ("#", "candidate", "SSIM", "corr.", "disp.")
COLUMN_TIPS = ("rank", "candidate", "SSIM", "correlation", "mean displacement (mm)")
TRUE_MATCH_COLOR = QColor(255, 200, 0, 110)
#: columns shown only outside blinded mode (rank and scores)
_SCORE_COLUMNS = (0, 2, 3, 4)
EXPORT_TIP = "Save the table as you see it (CSV)"
EXPORT_BLINDED_TIP = (
    "Export is off while blinded: the table's scores and ranks would give the true original "
    "away. Untick blinded to export."
)


def _number(value: float, digits: int = 3) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


class CandidatesWidget(QWidget):
    """Ranked candidate originals of the selected reconstruction."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)
        self.rows: list[RankedCandidate] = []
        self._codes: dict[str, str] = {}
        self._highlighted: list[int] = []

        self.title = QLabel("Open a study and select a reconstruction.")
        self.title.setWordWrap(True)
        self.sort_combo = QComboBox()
        self.sort_combo.addItems(RANK_KEYS)
        self.blinded_check = QCheckBox("blinded (hide the true original)")
        self.blinded_check.setChecked(self.state.blinded)
        self.table = QTableWidget(0, len(COLUMNS))
        for col, (text, tip) in enumerate(zip(COLUMNS, COLUMN_TIPS, strict=True)):
            header = QTableWidgetItem(text)
            header.setToolTip(tip)
            self.table.setHorizontalHeaderItem(col, header)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        rows = self.table.verticalHeader()  # compact rows: ten fit the panel at 1280x800
        rows.setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        self.export_button = QPushButton("Export CSV…")
        self.panel = JobPanel("Show selected")
        self.panel.run_button.hide()

        top = QHBoxLayout()
        top.addWidget(QLabel("rank by"))
        top.addWidget(self.sort_combo, stretch=1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(top)
        layout.addWidget(self.blinded_check)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.panel)
        layout.addWidget(self.export_button)

        self.sort_combo.currentTextChanged.connect(lambda _: self.refresh())
        self.blinded_check.toggled.connect(self._set_blinded)
        self.table.horizontalHeader().sectionClicked.connect(self._header_clicked)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.export_button.clicked.connect(self._browse_export)
        self.state.events.entry.connect(self._entry_changed)
        self.state.events.blinded.connect(self._blinded_changed)
        self.refresh()
        self._export_enabled()

    # -- table -------------------------------------------------------------------------------
    def _entry_changed(self, *_: Any) -> None:
        old = find_layer(self.viewer, self.state.candidate_layer)
        if old is not None:
            self.viewer.layers.remove(old.name)
        self.state.candidate_id = None
        self.state.candidate_layer = None
        self.refresh()
        if self.state.blinded:
            blind_layers(self.viewer, self.state)

    def _set_blinded(self, value: bool) -> None:
        self.state.blinded = bool(value)

    def _blinded_changed(self, value: bool) -> None:
        self.blinded_check.setChecked(bool(value))
        self.refresh()
        self._export_enabled()
        self.panel.status.setText("")  # a job's title may name a subject
        self.apply_blinding()

    def _export_enabled(self) -> None:
        blinded = self.state.blinded
        self.export_button.setEnabled(not blinded)
        self.export_button.setToolTip(EXPORT_BLINDED_TIP if blinded else EXPORT_TIP)

    # -- blinded layers ----------------------------------------------------------------------
    def apply_blinding(self) -> Job | None:
        """Swap the selection's named layers for blinded ones, or back (a loading job)."""
        if self.state.blinded:
            blind_layers(self.viewer, self.state)
            return None
        view = start_unblinding(self.viewer, self.state)
        study, entry = self.state.study, self.state.entry
        if view is None or study is None or entry is None:
            return None

        def show(layers: list) -> None:
            finish_unblinding(self.viewer, self.state, study, layers, view)

        job = Job(load_entry_layers, study, entry, title="Show the named layers", on_returned=show)
        return self.panel.start(job, replace=True)

    def _offer_rank_keys(self, keys: tuple[str, ...]) -> None:
        """The ranking choices of the open study (keeps the current one when offered)."""
        current = self.sort_combo.currentText()
        if tuple(self.sort_combo.itemText(i) for i in range(self.sort_combo.count())) == keys:
            return
        self.sort_combo.blockSignals(True)
        self.sort_combo.clear()
        self.sort_combo.addItems(keys)
        self.sort_combo.setCurrentText(current if current in keys else keys[0])
        self.sort_combo.blockSignals(False)

    def _header_clicked(self, column: int) -> None:
        key = {2: "ssim", 3: "correlation", 4: "deformation"}.get(column)
        if key is not None:
            self.sort_combo.setCurrentText(key)

    def refresh(self) -> list[RankedCandidate]:
        """Rebuild the table for the selected reconstruction and ranking; return the rows."""
        study, entry = self.state.study, self.state.entry
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        self.rows = []
        self._highlighted = []
        if study is None or entry is None:
            self.title.setText("Open a study and select a reconstruction.")
            self.table.blockSignals(False)
            return self.rows
        blinded = self.state.blinded
        candidates = study.candidates(entry.run, entry.reconstruction_id)
        self._codes = blinded_codes([c.candidate_id for c in candidates], seed=entry.label)
        self._offer_rank_keys(rank_keys(study.metrics()))
        by = self.sort_combo.currentText()
        self.rows = rank_candidates(candidates, by)
        self.sort_combo.setEnabled(not blinded)
        for col in _SCORE_COLUMNS:
            self.table.setColumnHidden(col, blinded)
        if blinded:  # code order (a seeded shuffle); scores would point at the answer
            self.rows.sort(key=lambda row: self._codes[row.candidate.candidate_id])
            self.title.setText(
                f"{len(self.rows)} candidates for the reconstruction, in code order "
                "(scores hidden while blinded)"
            )
        else:
            self.title.setText(
                f"{len(self.rows)} candidates for {entry.reconstruction_id} ({entry.run}), "
                f"ranked by {self.sort_combo.currentText()}"
            )
        self.table.setRowCount(len(self.rows))
        bold = QFont()
        bold.setBold(True)
        for r, row in enumerate(self.rows):
            c = row.candidate
            cells = (
                ("", self.display_id(c.candidate_id), "", "", "")
                if blinded
                else (
                    str(row.rank),
                    c.candidate_id,
                    _number(c.ssim),
                    _number(c.correlation),
                    _number(c.deformation, 2),
                )
            )
            is_true = not blinded and c.candidate_id == entry.reconstruction_id
            ranked_value = "" if blinded or by == "fused" else f"{by} {_number(c.value(by))}"
            if is_true:
                self._highlighted.append(r)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(
                    int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    if col != 1
                    else int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
                )
                if col == 0 and ranked_value:
                    item.setToolTip(ranked_value)
                if is_true:
                    item.setBackground(QBrush(TRUE_MATCH_COLOR))
                    item.setFont(bold)
                    item.setToolTip("the true original of this reconstruction")
                self.table.setItem(r, col, item)
        self.table.resizeColumnsToContents()
        self.table.blockSignals(False)
        return self.rows

    def display_id(self, candidate_id: str) -> str:
        """The candidate's id, or its code in blinded mode."""
        return self._codes.get(candidate_id, candidate_id) if self.state.blinded else candidate_id

    def highlighted_rows(self) -> list[int]:
        """Rows drawn as the true original (none in blinded mode)."""
        return list(self._highlighted)

    # -- selection ---------------------------------------------------------------------------
    def select_row(self, row: int) -> Job | None:
        """Select a table row: show that candidate beside the reconstruction; return the job."""
        self.table.selectRow(row)
        return self.panel.job

    def _selection_changed(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if len(rows) == 1:
            self.show_candidate(self.rows[rows.pop()].candidate.candidate_id)

    def show_candidate(self, candidate_id: str) -> Job | None:
        """Load a candidate (worker) and show it beside the reconstruction in grid mode,
        both whole and in one window."""
        study, entry = self.state.study, self.state.entry
        recon = find_layer(self.viewer, self.state.reconstruction_layer)
        if study is None or entry is None or recon is None:
            show_error("Candidate matches: load a reconstruction with Open study first.")
            return None
        name = self.display_id(candidate_id)
        previous = self.state.candidate_layer
        blinded = self.state.blinded

        def show(data: Any) -> None:
            array, kwargs, kind = data
            kwargs = {**kwargs, **FULL_VIEW, "visible": True}
            if blinded:  # no id in the metadata; the blinded images' range
                array = np.clip(np.nan_to_num(np.asarray(array, np.float32)), *DISPLAY_WINDOW)
                kwargs["metadata"] = blinded_metadata("candidate")
            old = find_layer(self.viewer, previous)
            if old is not None and previous != name:
                self.viewer.layers.remove(old.name)
            layer = set_layer(self.viewer, array, kwargs, kind)
            if blinded:
                layer.contrast_limits_range = DISPLAY_WINDOW
            for other in self.viewer.layers:
                other.visible = other.name in (layer.name, recon.name)
            recon.opacity, recon.blending = FULL_VIEW["opacity"], FULL_VIEW["blending"]
            window_layers([recon, layer], reference=layer)
            i, j = self.viewer.layers.index(recon.name), self.viewer.layers.index(layer.name)
            if j != i + 1:  # the candidate's grid cell right beside the reconstruction's
                self.viewer.layers.move(j, i + 1 if j > i else i)
            if not self.viewer.canvas.grid.enabled:
                self.viewer.canvas.grid.enabled = True
                self.viewer.reset_view()
            sync_titles(self.viewer)
            self.state.candidate_id = candidate_id
            self.state.candidate_layer = name

        job = Job(
            load_candidate_layer,
            study,
            entry,
            candidate_id,
            same_geometry(recon),
            name,
            title=f"Show {name}",
            on_returned=show,
        )
        return self.panel.start(job, replace=True)

    # -- export ------------------------------------------------------------------------------
    def table_csv(self) -> str:
        """The table as CSV text; while blinded only the codes, in code order."""
        entry = self.state.entry
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if self.state.blinded:
            w.writerow(["candidate"])
            for row in self.rows:
                w.writerow([self.display_id(row.candidate.candidate_id)])
            return buf.getvalue()
        header = ["rank", "candidate", "ssim", "correlation", "mean_displacement_mm", "ranked_by"]
        w.writerow([*header, "true_original"])
        for row in self.rows:
            c = row.candidate
            line = [row.rank, c.candidate_id]
            line += [
                "" if math.isnan(v) else f"{v:.6g}" for v in (c.ssim, c.correlation, c.deformation)
            ]
            line.append(self.sort_combo.currentText())
            line.append(int(entry is not None and c.candidate_id == entry.reconstruction_id))
            w.writerow(line)
        return buf.getvalue()

    def export_csv(self, path: str | Path) -> Path | None:
        """Write the table to ``path`` atomically; refused (``None``) while blinded."""
        if self.state.blinded:
            show_error(f"Candidate matches: {EXPORT_BLINDED_TIP}")
            return None
        out = atomic_write_text(Path(path), self.table_csv())
        show_info(f"Candidate table written to {out}")
        return out

    def _browse_export(self) -> None:
        if not self.rows:
            show_error("Candidate matches: nothing to export yet.")
            return
        if self.state.blinded:
            show_error(f"Candidate matches: {EXPORT_BLINDED_TIP}")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export candidate table", "candidates.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)
