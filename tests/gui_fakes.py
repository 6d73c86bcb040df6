"""Study folders and helpers for the GUI tests.

``copy_study(runner_study, dest)`` copies the session's study made by the real runner
(``conftest.runner_study``) and describes it: subjects, runs, folds and every score read
from ``scores/scores.csv`` with the csv module (not through the study index under test).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RunnerStudy:
    """A copy of the session's runner-made study and what its files hold."""

    root: Path
    subjects: list[str]
    runs: list[tuple[str, str, str]]
    spacing: tuple[float, float, float]
    folds: dict[str, int] = field(default_factory=dict)
    scores: dict[tuple[str, str, str, str], float] = field(default_factory=dict)

    def run_name(self, arch: str, variant: str, threat: str) -> str:
        return f"{arch}_{variant}_{threat.replace('+', '-')}"


def copy_study(source: Path, dest: Path, with_scores: bool = True) -> RunnerStudy:
    """Copy the study at ``source`` to ``dest`` (without ``scores.csv`` unless ``with_scores``,
    as a study interrupted before its report) and read what it holds."""
    import nibabel as nib

    shutil.copytree(source, dest)
    with open(source / "scores" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not with_scores:
        (dest / "scores" / "scores.csv").unlink()
    subjects = sorted(
        p.name.removesuffix(".nii.gz")
        for p in (dest / "preprocessed" / "skull-stripped").glob("*.nii.gz")
        if not p.name.endswith("_seg.nii.gz")
    )
    first = nib.load(dest / "preprocessed" / "skull-stripped" / f"{subjects[0]}.nii.gz")
    study = RunnerStudy(
        dest,
        subjects,
        sorted({(r["arch"], r["variant"], r["threat_model"]) for r in rows}),
        tuple(float(v) for v in first.header.get_zooms()[:3]),
    )
    for r in rows:
        run = study.run_name(r["arch"], r["variant"], r["threat_model"])
        study.folds[r["reconstruction_id"]] = int(r["fold"])
        study.scores[(run, r["reconstruction_id"], r["candidate_id"], r["metric"])] = float(
            r["value"]
        )
    return study


def blob_image(shape, seed: int) -> np.ndarray:
    """A smooth head-like image in [0, 1], different per seed."""
    from scipy.ndimage import gaussian_filter

    r = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    img = np.zeros(shape, np.float32)
    img[(grid**2).sum(0) < 0.8**2] = 0.4
    for _ in range(4):
        c = r.uniform(-0.4, 0.4, 3)[:, None, None, None]
        img[((grid - c) ** 2).sum(0) < r.uniform(0.15, 0.3) ** 2] = r.uniform(0.6, 1.0)
    return np.clip(gaussian_filter(img, 1.0), 0, 1).astype(np.float32)


def make_tiny_checkpoints(
    folder: Path,
    arch: str = "unet",
    shape: tuple[int, int, int] = (16, 16, 16),
    spacing: float = 2.0,
    skull_strip: str = "none",
    threat_model: str = "bottleneck",
    seed: int = 0,
) -> tuple[Path, Path]:
    """An untrained tiny target network (depth 2, 4 base filters) and its inversion decoder,
    saved with the project's checkpoint API; the decoder's sidecar records the preprocessing."""
    import torch

    from inversion_audit.attack import build_inversion_decoder
    from inversion_audit.checkpoints import save_checkpoint
    from inversion_audit.data import PreprocessConfig
    from inversion_audit.models import build_target_network

    torch.manual_seed(seed)
    target = build_target_network(arch, n_classes=2, depth=2, base_filters=4, norm="none")
    decoder = build_inversion_decoder(target, threat_model)
    pre = PreprocessConfig(
        spacing=(spacing,) * 3,
        shape=shape,
        divisible_by=4,
        skull_strip=skull_strip,
        bias_correction=False,
    )
    target_path, _ = save_checkpoint(folder / "target", target, {"preprocess": pre.to_dict()})
    inversion_path, _ = save_checkpoint(
        folder / "inversion", decoder, {"preprocess": pre.to_dict()}
    )
    return target_path, inversion_path


class Notifications:
    """Collects napari notifications (``show_error`` etc.) while in a ``with`` block."""

    def __enter__(self):
        from napari.utils.notifications import notification_manager

        self.records = []
        self._manager = notification_manager
        notification_manager.notification_ready.connect(self.records.append)
        return self

    def __exit__(self, *exc):
        self._manager.notification_ready.disconnect(self.records.append)

    def errors(self) -> list[str]:
        return [str(n.message) for n in self.records if str(n.severity).lower().endswith("error")]

    def messages(self) -> list[str]:
        return [str(n.message) for n in self.records]


def ticks_while_running(qtbot, start_job, interval_ms: int = 50, timeout_ms: int = 180000):
    """Start a widget job while a ``QTimer`` ticks every ``interval_ms`` on the UI thread.

    Returns ``(job, ticks, seconds)``: the tick times and the duration up to the worker's last
    progress report (handled on the UI thread), so that adding the result layers, which is
    UI work by design, is not counted as the worker blocking the UI.
    """
    import time

    from qtpy.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(interval_ms)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    start = time.perf_counter()
    job = start_job()
    last = [start]
    job.progressed.connect(lambda *_: last.__setitem__(0, time.perf_counter()))
    qtbot.waitUntil(lambda: not job.is_running, timeout=timeout_ms)
    timer.stop()
    return job, [t for t in ticks if t <= last[0]], last[0] - start
