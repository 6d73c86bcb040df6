"""Builders of tiny fake study folders for the GUI tests (the study runner's layout).

``make_fake_study(root)`` writes ``preprocessed/<variant>/<id>.nii.gz`` candidates,
``reconstructions/<run>/<id>_recon_pre.nii.gz`` (the original blurred plus noise),
``scores/scores.csv`` (long format) and a few deformation magnitude maps, on 16^3-32^3 grids.
Scores are computed from the arrays (negative mean squared error and Pearson correlation
stand in for SSIM and correlation; the mean magnitude for deformation), so a test can
derive what it expects from the files rather than from hard-coded numbers.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inversion_audit.io import write_volume

RUN_FIELDS = ("unet", "skull-stripped", "bottleneck")


@dataclass
class FakeStudy:
    root: Path
    subjects: list[str]
    runs: list[tuple[str, str, str]]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    folds: dict[str, int] = field(default_factory=dict)
    scores: dict[tuple[str, str, str, str], float] = field(default_factory=dict)

    def run_name(self, arch: str, variant: str, threat: str) -> str:
        return f"{arch}_{variant}_{threat.replace('+', '-')}"


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


def _affine(shape, spacing, shift) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * np.asarray(spacing) + np.asarray(shift)
    return affine


def make_fake_study(
    root: Path,
    n_subjects: int = 4,
    shape: tuple[int, int, int] = (16, 16, 16),
    spacing: tuple[float, float, float] = (2.0, 2.0, 2.5),
    runs: list[tuple[str, str, str]] | None = None,
    deformation_top_k: int = 2,
    with_scores: bool = True,
) -> FakeStudy:
    """Write a fake study folder under ``root`` and describe it."""
    from scipy.ndimage import gaussian_filter

    runs = runs or [RUN_FIELDS]
    subjects = [f"sub-{k:03d}" for k in range(n_subjects)]
    study = FakeStudy(root, subjects, runs, shape, spacing)
    variants = sorted({v for _, v, _ in runs})
    originals, affines = {}, {}
    for k, sid in enumerate(subjects):
        originals[sid] = blob_image(shape, seed=k)
        affines[sid] = _affine(
            shape, spacing, shift=(k, -k, 0.5 * k)
        )  # each subject's own position
        study.folds[sid] = k % 2
        for variant in variants:
            write_volume(
                root / "preprocessed" / variant / f"{sid}.nii.gz", originals[sid], affines[sid]
            )
    rows = []
    rng = np.random.default_rng(123)
    for r_index, (arch, variant, threat) in enumerate(runs):
        run = study.run_name(arch, variant, threat)
        for sid in subjects:
            noise = rng.normal(0, 0.05 + 0.02 * r_index, shape)
            recon = np.clip(gaussian_filter(originals[sid], 1.0) + noise, 0, 1).astype(np.float32)
            write_volume(
                root / "reconstructions" / run / f"{sid}_recon_pre.nii.gz", recon, affines[sid]
            )
            values = {}
            for cid in subjects:
                cand = originals[cid]
                values[cid] = {
                    "ssim": float(-np.mean((recon - cand) ** 2)),
                    "correlation": float(np.corrcoef(recon.ravel(), cand.ravel())[0, 1]),
                }
            top = sorted(subjects, key=lambda c: -values[c]["ssim"])[:deformation_top_k]
            for cid in top:
                magnitude = (
                    np.abs(gaussian_filter(recon - originals[cid], 2.0)).astype(np.float32) * 40
                )
                write_volume(
                    root / "deformation" / run / f"{sid}__{cid}_magnitude.nii.gz",
                    magnitude,
                    affines[cid],
                )
                values[cid]["deformation"] = float(magnitude.mean())
            for cid, metrics in values.items():
                for metric, value in metrics.items():
                    study.scores[(run, sid, cid, metric)] = value
                    rows.append(
                        (study.folds[sid], arch, variant, threat, sid, cid, metric, f"{value:.6g}")
                    )
    if with_scores:
        (root / "scores").mkdir(parents=True, exist_ok=True)
        with open(root / "scores" / "scores.csv", "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(
                [
                    "fold",
                    "arch",
                    "variant",
                    "threat_model",
                    "reconstruction_id",
                    "candidate_id",
                    "metric",
                    "value",
                ]
            )
            w.writerows(rows)
    return study


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
