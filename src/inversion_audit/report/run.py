"""A study run from a front door: run (or resume) it, then write its report.

``inversion-audit run`` and napari's Run study (in a child process: a Qt-free module, so the
function pickles by name) call :func:`run_and_report`; the study layer itself never writes
the report.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..progress import ProgressCallback
from ..study.config import StudyConfig
from .document import write_report

__all__ = ["run_and_report"]


def run_and_report(
    config: StudyConfig,
    out_dir: str | os.PathLike[str],
    device: str | None = None,
    progress: ProgressCallback | None = None,
    reuse_from: str | os.PathLike[str] | None = None,
) -> Path:
    """:func:`~inversion_audit.study.runner.run_study`, then :func:`.write_report` into the
    finished study folder (``report.md``, ``report.html``, ``report.json``); returns the folder."""
    from ..study.runner import run_study

    out = run_study(config, out_dir, device=device, progress=progress, reuse_from=reuse_from)
    write_report(out)
    return out
