"""Cancel stops the work: no progress after it, no child process left, no layer changed.

``call_in_subprocess`` is tested directly with functions of this module (importable by name
in the child: the module imports no Qt at import time).

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_cancel.py -q``. The
reconstruction test comes before the first viewer that draws: loading torch's compiler stack
(triton, with its own LLVM) after mesa's OpenGL has crashed the process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from inversion_audit.errors import JobCancelled
from inversion_audit.gui._subprocess import call_in_subprocess
from inversion_audit.gui.review_panel import open_tab

PLUGIN = "napari-inversion-audit"
CHILD = "inversion_audit.gui._child"


def report_steps(n: int, progress=None) -> int:
    """Report ``n`` steps, then return this process's id."""
    for k in range(n):
        progress(k + 1, n, f"step {k + 1}")
    return os.getpid()


def fail_with(message: str, progress=None) -> None:
    raise ValueError(message)


def work_forever(pid_file: str, progress=None) -> None:
    """Write this process's id, then report progress until killed."""
    Path(pid_file).write_text(str(os.getpid()))
    k = 0
    while True:
        k += 1
        progress(k, 0, "working")
        time.sleep(0.01)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_call_in_subprocess_runs_in_a_child_and_relays_progress():
    seen = []
    pid = call_in_subprocess(report_steps, 3, progress=lambda *r: seen.append(r))
    assert pid != os.getpid()
    assert (3, 3, "step 3") in seen and seen.index((3, 3, "step 3")) > 0
    assert _gone(pid)


def test_call_in_subprocess_reraises_the_childs_exception():
    with pytest.raises(ValueError, match="boom 42"):
        call_in_subprocess(fail_with, "boom 42")


def test_call_in_subprocess_cancel_kills_the_child(tmp_path):
    pid_file = tmp_path / "pid"
    reports: list[float] = []
    cancelled_at: list[float] = []

    def progress(done, total, stage):
        if cancelled_at:  # after the cancel, nothing may be reported again
            reports.append(time.monotonic())
        if stage == "working" and done >= 3 and not cancelled_at:
            cancelled_at.append(time.monotonic())
            raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        call_in_subprocess(work_forever, str(pid_file), progress=progress)
    pid = int(pid_file.read_text())
    assert _gone(pid)  # killed (and reaped) before call_in_subprocess returned
    time.sleep(0.3)
    assert reports == []


def _children() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if CHILD in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def _cancel_on_first_report(job) -> dict:
    """Cancel ``job`` from its worker thread at its first progress report; record the child
    processes alive then and every report emitted afterwards."""
    from qtpy.QtCore import Qt

    seen: dict = {"reports": [], "children": None}

    def on_report(done, total, stage):
        if seen["children"] is None:
            seen["children"] = _children()
            job.cancel()
        else:
            seen["reports"].append((done, total, stage))

    job.progressed.connect(on_report, Qt.ConnectionType.DirectConnection)
    return seen


def test_cancelled_reconstruction_stops_before_reconstructing(make_napari_viewer, qtbot, tmp_path):
    from gui_fakes import blob_image, make_tiny_checkpoints

    target, inversion = make_tiny_checkpoints(tmp_path / "ck", shape=(16, 16, 16), spacing=2.0)
    viewer = make_napari_viewer()
    viewer.add_image(blob_image((20, 22, 18), seed=3) * 900.0, name="T1", scale=(2.0, 2.0, 2.0))
    widget = open_tab(viewer, "Reconstruct")
    widget.target_edit.setText(str(target))
    widget.inversion_edit.setText(str(inversion))
    widget.device_combo.setCurrentText("cpu")
    widget.image_combo.choose("T1")
    job = widget.run()
    seen = _cancel_on_first_report(job)
    qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
    assert job.cancelled and job.error is None
    qtbot.wait(300)
    # the work stopped at its next progress report: the later stages never reported
    assert seen["reports"] == []
    assert [layer.name for layer in viewer.layers] == ["T1"]
    assert "cancelled" in widget.panel.status.text()
    assert widget.panel.run_button.isEnabled() and not widget.panel.cancel_button.isEnabled()


def test_cancelled_registration_stops_its_child(make_napari_viewer, qtbot):
    from gui_fakes import blob_image

    viewer = make_napari_viewer()
    fixed = blob_image((16, 20, 16), seed=2)
    viewer.add_image(fixed, name="candidate", scale=(2.0, 2.0, 2.0))
    viewer.add_image(np.roll(fixed, 2, axis=0), name="recon", scale=(2.0, 2.0, 2.0))
    names = [layer.name for layer in viewer.layers]
    widget = open_tab(viewer, "Deformation")
    widget.moving_combo.choose("recon")
    widget.fixed_combo.choose("candidate")
    widget.preset_combo.setCurrentText("fast")
    widget.cache_check.setChecked(False)
    job = widget.run()
    seen = _cancel_on_first_report(job)
    qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
    assert job.cancelled and job.error is None
    assert seen["children"], "the registration's child process was running at the cancel"
    psutil.wait_procs(seen["children"], timeout=10)
    assert all(_gone(p.pid) for p in seen["children"])
    assert _children() == []
    qtbot.wait(300)
    assert seen["reports"] == []  # the worker reported nothing after the cancel
    assert [layer.name for layer in viewer.layers] == names
    assert widget.result is None


def test_a_job_has_ended_only_once_its_panel_shows_the_end(qtbot):
    """``is_running`` turns false in the same UI event that re-enables Run and writes the
    status, so nobody polling the job can see the panel half-updated (the worker's
    ``finished`` reaches each of its slots as a separate queued event)."""
    from inversion_audit.gui._workers import Job, JobPanel

    panel = JobPanel("Run")
    qtbot.addWidget(panel)
    for k in range(10):
        job = Job(report_steps, 3, title=f"steps {k}", on_returned=lambda pid: None)
        panel.start(job)
        assert job.is_running and not panel.run_button.isEnabled()
        seen: list[tuple[bool, bool]] = []
        job.ended.connect(
            lambda j=job, s=seen: s.append((j.is_running, panel.run_button.isEnabled()))
        )
        qtbot.waitUntil(lambda j=job: not j.is_running, timeout=20000)
        # no event processed since: the panel already shows the end
        assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
        assert panel.status.text() == f"steps {k}: done"
        assert seen == [(False, True)]
