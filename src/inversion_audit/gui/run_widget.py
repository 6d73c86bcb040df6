"""Run study (Plugins > Inversion Audit > Run study).

Run, or resume, an audit study from a TOML config into an output folder, as
``inversion-audit run CONFIG.toml --out DIR`` does, with a napari progress bar and Cancel.
The config is checked first: a bad one (an unknown key, a missing file) is an error
notification naming the problem and nothing starts. The study runs in a child process
driven by a thread worker (the scoring stage's ANTs registrations hold the GIL and would
freeze napari in a thread). Cancel kills the child; completed stages are kept, so pressing
Run again resumes. A finished study is opened in the viewer's shared state, where the
Review panel's Study tab lists its reconstructions. The device dropdown starts at "as config"
(the config's ``study.device``); a device picked there overrides it, through
:func:`~inversion_audit.study.config.apply_overrides` as ``inversion-audit run --device`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from ..errors import InversionAuditError
from ..study.index import StudyIndex
from ..study.layout import StudyPaths
from ._messages import user_message
from ._state import state_for
from ._subprocess import call_in_subprocess
from ._widgets import DeviceCombo
from ._workers import Job, JobPanel

if TYPE_CHECKING:
    import napari

    from ..progress import ProgressCallback
    from ..study.config import StudyConfig

PLUGIN = "napari-inversion-audit"

__all__ = ["AS_CONFIG", "RunStudyWidget", "StudyDeviceCombo", "run_study_in_child"]

#: the device dropdown's first entry: the config's ``study.device``
AS_CONFIG = "as config"


def run_study_in_child(
    config: StudyConfig,
    out_dir: str | Path,
    device: str | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Run (or resume) a study in a child interpreter, forwarding its progress.

    The child runs :func:`inversion_audit.report.run_and_report` (the study, then its report;
    a Qt-free module, so it pickles by name) on the validated ``config``. A
    :class:`~inversion_audit.errors.JobCancelled` raised by ``progress`` kills the child.
    """
    from ..report.run import run_and_report

    return call_in_subprocess(
        run_and_report, config, str(out_dir), device=device, progress=progress
    )


class StudyDeviceCombo(DeviceCombo):
    """:class:`DeviceCombo` with "as config" first (the default): :meth:`device` is then ``None``."""

    def __init__(self) -> None:
        super().__init__()
        if self.findText(AS_CONFIG) < 0:
            self.insertItem(0, AS_CONFIG)
        self.setCurrentIndex(0)

    def list_devices(self) -> list[str]:
        current = self.currentText()
        devices = super().list_devices()
        self.insertItem(0, AS_CONFIG)
        self.setCurrentText(current if current in (AS_CONFIG, *devices) else AS_CONFIG)
        return devices

    def device(self) -> str | None:
        """The device picked, or ``None`` for "as config"."""
        text = self.currentText()
        return None if text in ("", AS_CONFIG) else text


class RunStudyWidget(QWidget):
    """Run or resume a study from a TOML config, then open it for the other widgets."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = state_for(napari_viewer)

        self.config_edit = QLineEdit()
        self.config_edit.setPlaceholderText("study config (TOML)")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("study folder (created; an existing one resumes)")
        config_browse, out_browse = QPushButton("Browse…"), QPushButton("Browse…")
        config_row, out_row = QHBoxLayout(), QHBoxLayout()
        config_row.addWidget(self.config_edit)
        config_row.addWidget(config_browse)
        out_row.addWidget(self.out_edit)
        out_row.addWidget(out_browse)
        self.device_combo = StudyDeviceCombo()
        self.panel = JobPanel("Run")
        self.status = QLabel("No study run yet.")
        self.status.setWordWrap(True)

        form = QFormLayout(self)
        form.addRow("config", config_row)
        form.addRow("output folder", out_row)
        form.addRow("device", self.device_combo)
        form.addRow(self.panel)
        form.addRow(self.status)

        config_browse.clicked.connect(self._browse_config)
        out_browse.clicked.connect(self._browse_out)
        self.panel.run_button.clicked.connect(
            lambda: self.run(
                self.config_edit.text(), self.out_edit.text(), self.device_combo.device()
            )
        )

    def run(
        self, config_path: str | Path, out_dir: str | Path, device: str | None = None
    ) -> Job | None:
        """Check the config and start the study in a worker; ``None`` (and an error) if invalid.

        ``device`` overrides the config's ``study.device``; ``None`` runs as the config says.
        """
        from ..study.config import apply_overrides, load_study_config
        from ..study.inputs import check_cohort_paths

        if not str(config_path).strip() or not str(out_dir).strip():
            show_error("Run study: choose a config file and an output folder first.")
            return None
        job = self.panel.job
        if job is not None and job.is_running:
            show_error(f"Run study: {job.title} is still running.")
            return None
        config_path = Path(str(config_path)).expanduser()
        out = Path(str(out_dir)).expanduser()
        if out.exists() and not out.is_dir():
            show_error(f"Run study: {out} is a file, not a folder.")
            return None
        try:
            config = apply_overrides(load_study_config(config_path), device=device)
            check_cohort_paths(config)  # a missing cohort folder fails here, not in the job
        except InversionAuditError as exc:
            show_error(f"Run study: {user_message(exc)}")
            return None
        self.config_edit.setText(str(config_path))
        self.out_edit.setText(str(out))
        resume = StudyPaths(out).stages_dir.is_dir()
        self.status.setText(f"{'Resuming' if resume else 'Running'} {config.study.name} in {out}…")
        job = Job(
            run_study_in_child,
            config,
            out,
            None,  # the device is the config's, overridden above
            title=f"Run study {config.study.name}",
            on_returned=self._show_study,
        )
        job.ended.connect(lambda: self._finished(job, out))
        return self.panel.start(job)

    def _show_study(self, out: str | Path) -> None:
        study = StudyIndex.open(Path(out))  # a problem is reported as the job's error
        self.state.study = study
        report = study.paths.report("html")
        self.status.setText(f"Done: {len(study.entries)} reconstructions; report: {report}")
        show_info(f"Study finished: {report}")
        self._open_review()

    def _open_review(self) -> None:
        """Show the finished study in the Review panel (its Study tab)."""
        window = getattr(self.viewer, "window", None)
        if window is None:
            return
        _, panel = window.add_plugin_dock_widget(PLUGIN, "Review")
        if hasattr(panel, "show_tab"):
            panel.show_tab("Study")

    def _finished(self, job: Job, out: Path) -> None:
        if job.cancelled:
            self.status.setText(f"Cancelled; press Run to resume the study in {out}.")
        elif job.error is not None:
            self.status.setText(f"Failed: {user_message(job.error)}")

    def _browse_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Study config", self.config_edit.text(), "TOML (*.toml)"
        )
        if path:
            self.config_edit.setText(path)
            if not self.out_edit.text().strip():
                self.out_edit.setText(str(Path(path).with_suffix("")) + "-study")

    def _browse_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Study folder", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)
