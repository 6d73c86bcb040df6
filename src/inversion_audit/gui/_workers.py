"""Running a compute function off the UI thread, with a napari progress bar and cancel.

A compute function takes the core's ``progress(done, total, stage)`` callback as its
``progress`` keyword and returns a result; :class:`Job` runs it in a napari thread
worker. The callback forwards progress to the UI thread through a Qt signal (the napari
progress bar is only touched there) and raises
:class:`~inversion_audit.errors.JobCancelled` once Cancel was pressed, so that the core
stops at its next progress report. ``on_returned`` runs on the UI thread only when the
job finished and was not cancelled: a failed or cancelled job changes no layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..errors import JobCancelled
from ._messages import user_message

__all__ = ["Job", "JobPanel"]


class Job(QObject):
    """One run of ``fn(*args, progress=callback, **kwargs)`` in a napari thread worker.

    Signals
    -------
    progressed(done, total, stage) : emitted from the worker, delivered on the UI thread.
    ended() : emitted on the UI thread once the job has ended (done, failed or cancelled)
        and ``is_running`` is false. Connect to this, not to the worker's ``finished``:
        each slot of a cross-thread signal is a separate queued event, so the UI could
        otherwise be seen half-updated between them.
    """

    progressed = Signal(int, int, str)
    ended = Signal()

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        title: str,
        on_returned: Callable[[Any], None],
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.title = title
        self.error: BaseException | None = None
        self.cancelled = False
        self._on_returned = on_returned
        self._pbar: napari_progress | None = None
        self.worker = create_worker(
            fn,
            *args,
            progress=self._report,
            _start_thread=False,
            _connect={"errored": self._on_errored, "returned": self._on_worker_returned},
            **kwargs,
        )
        self.worker.finished.connect(self._on_finished)
        self.progressed.connect(self._on_progress)

    # -- worker thread ----------------------------------------------------------------------
    def _report(self, done: int, total: int, stage: str) -> None:
        if self.worker.abort_requested:
            raise JobCancelled(f"{self.title}: cancelled")
        self.progressed.emit(int(done), int(total), str(stage))

    # -- UI thread --------------------------------------------------------------------------
    def start(self) -> Job:
        """Show the progress bar and start the worker."""
        self._pbar = napari_progress(total=0, desc=self.title)
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next progress report; its result is discarded."""
        self.cancelled = True
        self.worker.quit()

    @property
    def is_running(self) -> bool:
        return self._pbar is not None

    def _on_progress(self, done: int, total: int, stage: str) -> None:
        # updating the bar may process queued events, including the job's end (which closes it)
        pbar = self._pbar
        if pbar is not None and pbar.total != total:
            pbar.total = total
        if self._pbar is pbar and pbar is not None and done != pbar.n:
            pbar.update(done - pbar.n)
        if self._pbar is pbar and pbar is not None:
            pbar.set_description(f"{self.title}: {stage}")

    def _on_worker_returned(self, result: Any) -> None:
        if self.cancelled:
            return
        try:
            self._on_returned(result)
        except Exception as exc:  # showing the result failed: report it like a job error
            self._on_errored(exc)

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, JobCancelled) or self.cancelled:
            self.cancelled = True
            show_info(f"{self.title}: cancelled")
            return
        self.error = exc
        show_error(f"{self.title} failed: {user_message(exc)}")  # one line, no library advice

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.ended.emit()


class JobPanel(QWidget):
    """Run and Cancel buttons plus a status line for one kind of job."""

    def __init__(self, run_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.job: Job | None = None
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.cancel_button.clicked.connect(self.cancel)

    def start(self, job: Job, replace: bool = False) -> Job:
        """Start ``job`` and track it in the buttons and status line.

        One job at a time: a running job is an error, or with ``replace`` it is cancelled
        and forgotten.
        """
        old = self.job
        if old is not None and old.is_running:
            if not replace:
                raise RuntimeError(f"{old.title} is still running")
            old.progressed.disconnect(self._on_progress)
            old.ended.disconnect(self._on_finished)
            old.cancel()
        self.job = job
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{job.title}…")
        job.progressed.connect(self._on_progress)
        job.ended.connect(self._on_finished)
        return job.start()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText(f"{self.job.title}: cancelling…")

    def _on_progress(self, done: int, total: int, stage: str) -> None:
        self.status.setText(f"{stage} ({done}/{total})" if total else stage)

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        job = self.job
        if job is None:
            return
        if job.cancelled:
            self.status.setText(f"{job.title}: cancelled")
        elif job.error is not None:
            self.status.setText(f"{job.title}: failed")
        else:
            self.status.setText(f"{job.title}: done")
